"""The agent-questions results in issue 18's shape: one row per encoder, one column per way of
scoring (units, text only / units, path + text / codelsr's own index of the package folders).

    python -m evals --tasks agent-questions,agent-questions@dev,agent-questions-path,agent-questions-path@dev \\
        --systems bm25,codelsr:lexical,repo:lexical,dense,... --out evals/results/agent_questions
    python -m evals.agent_report evals/results/agent_questions   # -> summary.json, table.md

Several runs (say one for the text variant and repo mode, one for the path variant, run side by
side) are merged: ``python -m evals.agent_report RUN1 RUN2 --out FOLDER``. ``table.md`` holds the
summary (test split, then dev) and, below it, the runner's own table of each run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from evals.report import markdown_table

# Row label -> (system on units, system in repo mode or None).
ROWS: dict[str, tuple[str, str | None]] = {
    "lexical (codelsr BM25)": ("codelsr:lexical", "repo:lexical"),
    "bm25s (CodeRAG-Bench settings)": ("bm25", None),
    "grep": ("grep", None),
    "dense MiniLM-L6": ("dense", None),
    "splade-code-tiny": ("codelsr:splade-code-tiny", "repo:splade-code-tiny"),
    "hybrid-code-tiny": ("codelsr:hybrid-code-tiny", "repo:hybrid-code-tiny"),
}
COLUMNS = {"units, text only": "agent-questions", "units, path + text": "agent-questions-path",
           "codelsr index + search (repo)": "agent-questions"}
SHOWN = ("nDCG@10", "Success@10", "MRR@10")


def _metrics(results: dict[str, Any], task: str, system: str) -> dict[str, float] | None:
    # Merged runs may hold the same cell twice (one failed, say): the first with metrics counts.
    cell = next((c for c in results["cells"] if c["task"] == task and c["system"] == system and "metrics" in c), None)
    return cell["metrics"] if cell else None


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    """split -> row -> column -> {nDCG@10, Success@10, MRR@10} (0-1 scale), for the cells present."""
    out: dict[str, Any] = {}
    for split, suffix in (("test", ""), ("dev", "@dev")):
        rows: dict[str, Any] = {}
        for label, (units_system, repo_system) in ROWS.items():
            row = {}
            for column, task in COLUMNS.items():
                system = repo_system if column.startswith("codelsr index") else units_system
                m = _metrics(results, task + suffix, system) if system else None
                if m:
                    row[column] = {k: round(m[k] / 100, 3) for k in SHOWN if k in m}
            if row:
                rows[label] = row
        if rows:
            queries = results["tasks"].get(f"agent-questions{suffix}", {}).get("queries")
            out[split] = {"queries": queries, "rows": rows}
    return out


def summary_markdown(summary: dict[str, Any]) -> str:
    lines: list[str] = []
    for split, block in ((s, b) for s, b in summary.items() if s in ("test", "dev")):
        lines += [f"**{split}** split ({block['queries']} questions): nDCG@10 / success@10 (MRR@10)", "",
                  "| encoder | " + " | ".join(COLUMNS) + " |", "|---|" + "---:|" * len(COLUMNS)]
        for label, row in block["rows"].items():
            cells = []
            for column in COLUMNS:
                m = row.get(column)
                cells.append(" / ".join(f"{m[k]:.3f}" if k in m else "–" for k in SHOWN[:2])
                             + (f" ({m['MRR@10']:.3f})" if "MRR@10" in m else "") if m else "–")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m evals.agent_report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", type=Path, nargs="+", help="runs' output folders (each holds results.json)")
    p.add_argument("--out", type=Path, default=None, help="where summary.json and table.md go (default: the first folder)")
    args = p.parse_args(argv)
    out = args.out or args.folders[0]
    runs = [json.loads((folder / "results.json").read_text()) for folder in args.folders]
    merged = {"tasks": {t: info for r in runs for t, info in r["tasks"].items()},
              "cells": [c for r in runs for c in r["cells"]]}
    summary = summarise(merged)
    summary["runs"] = [{"folder": str(f), "command": r.get("command"), "wall_seconds": r.get("wall_seconds"),
                        "finished_at": r.get("finished_at"), "machine": r.get("machine")}
                       for f, r in zip(args.folders, runs)]
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    this = "python -m evals.agent_report " + " ".join(str(f) for f in args.folders) + (f" --out {out}" if args.out else "")
    text = "# agent-questions\n\n" + summary_markdown(summary) + "\nCommands:\n\n"
    text += "".join(f"- `{r.get('command', '')}` ({r.get('wall_seconds')} s)\n" for r in runs) + f"- `{this}`\n"
    for folder, r in zip(args.folders, runs):
        text += f"\n## The runner's table: {folder}\n\n" + markdown_table(r) + "\n"
    (out / "table.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
