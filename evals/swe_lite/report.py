"""``swe-lite-files`` results -> ``results.json``, ``table.md`` and ``chart.png``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evals.swe_lite.scoring import FILE_MEASURES, FUNCTION_MEASURE, HEADLINE


def _f(v: Any) -> str:
    return "–" if v is None or v != v else f"{v:.1f}"


def _rows(summary: dict[str, Any], names: list[str], with_cost: bool) -> list[str]:
    cols = ["system", "on", "n", f"{HEADLINE} (gold present)", *FILE_MEASURES, FUNCTION_MEASURE]
    if with_cost:
        cols += ["index s", "search s"]
    lines = ["| " + " | ".join(cols) + " |", "|---|---|" + "---:|" * (len(cols) - 2)]
    best = max((summary[n][f"{HEADLINE} present"] for n in names if n in summary), default=None)
    for n in names:
        s = summary.get(n)
        if s is None:
            continue
        head = _f(s[f"{HEADLINE} present"])
        if best is not None and round(s[f"{HEADLINE} present"], 1) == round(best, 1):
            head = f"**{head}**"
        row = [f"`{n}`", s.get("on", ""), f"{s['instances']} ({s['gold_present']})", head,
               *[_f(s[m]) for m in FILE_MEASURES],
               f"{_f(s[FUNCTION_MEASURE])} ({s[f'{FUNCTION_MEASURE} instances']})" if s[FUNCTION_MEASURE] is not None else "–"]
        if with_cost:
            row += [_f(s["seconds"].get("index")), _f(s["seconds"].get("search"))]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def markdown_table(results: dict[str, Any]) -> str:
    names = results["systems"]
    on = results["scored_on"]
    lines = [f"**PARTIAL** ({results['partial']} done)", ""] if results.get("partial") else []
    if results.get("note"):
        lines += [results["note"], ""]
    lines += [f"swe-lite-files: SWE-bench Lite issue -> files to edit ({results['instances']} instances; "
             f"trees: {on.get('approximate', 0)} instances on approximate bases (PyPI releases), "
             f"{on.get('exact', 0)} on exact base commits, {on.get('no_tree', 0)} without a tree).",
             f"Gold file missing from the tree: {len(results['gold_missing_from_tree'])} instances (they count as misses "
             f"in the Acc/R/MRR columns; `{HEADLINE} (gold present)` leaves them out). Gold functions missing from "
             f"their tree: {results['gold_functions_missing_from_tree']} (left out of {FUNCTION_MEASURE}).", "",
             f"n = instances scored (with gold present); measures 0-100; {FUNCTION_MEASURE} only for systems that "
             "return line ranges (instances scored in brackets); seconds summed over trees.", ""]
    lines += _rows(results["summary"], names, with_cost=True)
    sample = results.get("summary_on_sample") or {}
    if results.get("sample_systems") and sample:
        lines += ["", f"Every system on the sample ({len(results['sample'])} instances, where the sample-only "
                      f"systems {', '.join(f'`{s}`' for s in results['sample_systems'])} ran):", ""]
        lines += _rows(sample, names, with_cost=False)
    m = results.get("machine", {})
    lines += ["", f"Command: `{results.get('command')}`; wall time {results['wall_seconds']:.0f} s on "
                  f"{m.get('cpus')} CPUs (load average at start {m.get('load_average_at_start')}, at end "
                  f"{m.get('load_average_at_end')}), finished {results.get('finished_at', '')}."]
    return "\n".join(lines) + "\n"


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = results.get("summary_on_sample") if results.get("sample_systems") else None
    panels = [("all instances", results["summary"])] + ([("sample", summary)] if summary else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 4.8), dpi=100, squeeze=False)
    measures = ["Acc@1", "Acc@5", "Acc@10", "MRR@10"]
    for ax, (title, summ) in zip(axes[0], panels):
        names = [n for n in results["systems"] if n in summ and (title == "sample" or summ[n].get("on") == "all")]
        width = 0.8 / max(1, len(names))
        for i, n in enumerate(names):
            xs = [j + (i - (len(names) - 1) / 2) * width for j in range(len(measures))]
            ax.bar(xs, [summ[n][m] for m in measures], width, label=n)
        ax.set_xticks(range(len(measures)))
        ax.set_xticklabels(measures)
        ax.set_ylim(0, 100)
        ax.set_title(f"swe-lite-files, {title}" + (" (quick)" if "quick" in str(results.get("command")) else ""))
        ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.08), frameon=False)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_outputs(results: dict[str, Any], out_dir: Path) -> list[Path]:
    from evals.report import write_outputs as write_report

    return write_report(results, out_dir, table=markdown_table, draw=chart)
