"""Results -> ``results.json``, ``table.md`` (markdown) and ``chart.png`` (matplotlib)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evals.metrics import HEADLINE, MEASURES


def _cell(results: dict[str, Any], task: str, system: str) -> dict[str, Any] | None:
    return next((c for c in results["cells"] if c["task"] == task and c["system"] == system), None)


def _fmt(cell: dict[str, Any] | None, measure: str) -> str:
    if cell is None:
        return ""
    if "error" in cell:
        return "error"
    return f"{cell['metrics'][measure]:.1f}"


def markdown_table(results: dict[str, Any]) -> str:
    tasks, systems = list(results["tasks"]), results["systems"]
    lines = [f"{HEADLINE} (0-100; best of each row in bold)", "",
             "| task | docs | queries | " + " | ".join(f"`{s}`" for s in systems) + " |",
             "|---|---:|---:|" + "---:|" * len(systems)]
    for task in tasks:
        info = results["tasks"][task]
        cells = [_cell(results, task, s) for s in systems]
        scores = [c["metrics"][HEADLINE] for c in cells if c and "metrics" in c]
        best = max(scores) if scores else None
        shown = []
        for c in cells:
            text = _fmt(c, HEADLINE)
            if c and "metrics" in c and best is not None and round(c["metrics"][HEADLINE], 1) == round(best, 1):
                text = f"**{text}**"
            shown.append(text)
        lines.append(f"| {task} | {info['docs']} | {info['queries']} | " + " | ".join(shown) + " |")
    lines += ["", "All measures (nDCG@10 / R@10 / R@100 / MRR@10):", "",
              "| task | " + " | ".join(f"`{s}`" for s in systems) + " |", "|---|" + "---|" * len(systems)]
    for task in tasks:
        row = []
        for s in systems:
            c = _cell(results, task, s)
            row.append(" / ".join(_fmt(c, m) for m in MEASURES) if c and "metrics" in c else _fmt(c, HEADLINE))
        lines.append(f"| {task} | " + " | ".join(row) + " |")
    m = results.get("machine", {})
    lines += ["", f"Command: `{results.get('command', 'python -m evals')}`; wall time {results['wall_seconds']:.0f} s "
              f"on {m.get('cpus')} CPUs (load average at start {m.get('load_average_at_start')}, at end "
              f"{m.get('load_average_at_end')}), "
              f"finished {results.get('finished_at', '')}."]
    published = {t: i["published_bm25_ndcg10"] for t, i in results["tasks"].items() if "published_bm25_ndcg10" in i}
    if published:
        lines.append("Published CodeRAG-Bench BM25 nDCG@10 (original corpora): "
                     + ", ".join(f"{t} {v}" for t, v in published.items()) + ".")
    errors = [c for c in results["cells"] if "error" in c]
    for c in errors:
        lines.append(f"- {c['task']} x {c['system']}: {c['error']}")
    return "\n".join(lines) + "\n"


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks, systems = list(results["tasks"]), results["systems"]
    width = 0.8 / max(1, len(systems))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(tasks) + 2), 4.6), dpi=100)
    for i, s in enumerate(systems):
        values = []
        for t in tasks:
            c = _cell(results, t, s)
            values.append(c["metrics"][HEADLINE] if c and "metrics" in c else 0.0)
        xs = [j + (i - (len(systems) - 1) / 2) * width for j in range(len(tasks))]
        ax.bar(xs, values, width, label=s)
    ax.set_xticks(range(len(tasks)))
    ax.set_xticklabels(tasks, rotation=15, ha="right", fontsize=8)
    ax.set_ylabel(HEADLINE)
    ax.set_ylim(0, 100)
    ax.set_title(("quick subsets: " if results.get("quick") else "") + f"{HEADLINE} by task and system")
    ax.legend(fontsize=7, ncol=min(len(systems), 6), loc="upper center", bbox_to_anchor=(0.5, -0.22), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_outputs(results: dict[str, Any], out_dir: Path, table=None, draw=None) -> list[Path]:
    """results.json, table.md and chart.png in ``out_dir``; ``table``/``draw`` let another task's report
    (e.g. :mod:`evals.swe_lite.report`) reuse the writer with its own table and chart."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "results.json", out_dir / "table.md", out_dir / "chart.png"]
    paths[0].write_text(json.dumps(results, indent=1, sort_keys=False) + "\n")
    paths[1].write_text((table or markdown_table)(results))
    (draw or chart)(results, paths[2])
    return paths


README_BEGIN, README_END = "<!-- results:begin -->", "<!-- results:end -->"


def update_readme(readme: Path, table: str) -> bool:
    """Put ``table`` between the results markers of ``readme``; False when the markers are missing."""
    text = readme.read_text(encoding="utf-8")
    start, end = text.find(README_BEGIN), text.find(README_END)
    if start < 0 or end < start:
        return False
    readme.write_text(text[: start + len(README_BEGIN)] + "\n" + table + text[end:], encoding="utf-8")
    return True
