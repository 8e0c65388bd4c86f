"""Merge ``swe-lite-files`` results of runs over disjoint instance sets (say, one process for
Django and one for the rest, run side by side) into one results folder.

    python -m evals.swe_lite.merge --out evals/results/swe_lite part-a/results.json part-b/results.json

Per-instance rows are kept as they are; summaries are recomputed from them; seconds are summed;
the merged wall time is the longest part's (the parts ran at the same time).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from evals.swe_lite.scoring import aggregate


def _short(command: str) -> str:
    """A part's command with a long ``--instances`` list abbreviated (the part's own results keep it)."""
    return re.sub(r"--instances (\S+)", lambda m: f"--instances <{m.group(1).count(',') + 1} ids>", command)


def drop_repo(results: dict[str, Any], repo: str) -> dict[str, Any]:
    """``results`` without ``repo``'s instances (a part stopped while on a repository that another
    part scored whole)."""
    gone = {i for t in results["trees"] if t["tree"].split("@")[0] == repo for i in t["instances"]}
    gone |= {r["instance_id"] for r in results["no_tree"] if r["instance_id"].startswith(repo.replace("/", "__") + "-")}
    out = dict(results)
    out["trees"] = [t for t in results["trees"] if t["tree"].split("@")[0] != repo]
    out["no_tree"] = [r for r in results["no_tree"] if r["instance_id"] not in gone]
    out["gold_missing_from_tree"] = [m for m in results["gold_missing_from_tree"] if m["instance_id"] not in gone]
    out["per_instance"] = {s: {i: r for i, r in rows.items() if i not in gone} for s, rows in results["per_instance"].items()}
    out["sample"] = [i for i in results["sample"] if i not in gone]
    out["instances"] = results["instances"] - len(gone)
    out["dropped"] = out.get("dropped", []) + [f"{repo}: {len(gone)} instances (scored by another part)"]
    return out


def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for p in parts:
        ids = {i for t in p["trees"] for i in t["instances"]} | {r["instance_id"] for r in p["no_tree"]}
        if ids & seen:
            raise ValueError(f"the parts overlap: {sorted(ids & seen)[:3]}")
        seen |= ids
    systems: list[str] = []
    for p in parts:
        systems += [s for s in p["systems"] if s not in systems]
    per = {s: {i: r for p in parts for i, r in p["per_instance"].get(s, {}).items()} for s in systems}
    missing = [m for p in parts for m in p["gold_missing_from_tree"]]
    trees = [t for p in parts for t in p["trees"]]
    no_tree = [r for p in parts for r in p["no_tree"]]
    missing_ids = {m["instance_id"] for m in missing}
    present = {i for t in trees for i in t["instances"]} - missing_ids
    sample = sorted({i for p in parts for i in p["sample"]})
    summary, on_sample = {}, {}
    for s in systems:
        rows = per[s]
        on = {p["summary"][s]["on"] for p in parts if s in p["summary"]}
        seconds: dict[str, float] = {}
        for p in parts:
            for k, v in p["summary"].get(s, {}).get("seconds", {}).items():
                seconds[k] = round(seconds.get(k, 0.0) + v, 1)
        summary[s] = aggregate(rows, present & set(rows)) | {"on": "all" if on == {"all"} else "sample",
                                                             "seconds": seconds}
        sampled = {i: r for i, r in rows.items() if i in sample}
        if sampled:
            on_sample[s] = aggregate(sampled, present & set(sampled))
    kinds: dict[str, int] = {}
    for t in trees:
        kinds[t["kind"]] = kinds.get(t["kind"], 0) + len(t["instances"])
    return {"version": parts[0]["version"], "task": "swe-lite-files", "headline": parts[0]["headline"],
            "measures": parts[0]["measures"], "systems": systems, "summary": summary,
            "summary_on_sample": on_sample, "instances": len(seen),
            "instances_asked": sum(p.get("instances_asked", p["instances"]) for p in parts),
            "sample": sample, "sample_systems": sorted({s for p in parts for s in p["sample_systems"]}),
            "scored_on": kinds | {"no_tree": len(no_tree)}, "gold_missing_from_tree": missing,
            "gold_functions_missing_from_tree": sum(p["gold_functions_missing_from_tree"] for p in parts),
            "no_tree": no_tree, "trees": trees, "per_instance": per,
            "wall_seconds": max(p["wall_seconds"] for p in parts),
            "command": " ; ".join(_short(p.get("command", "")) for p in parts) + "  (run side by side, merged)",
            "versions": parts[0].get("versions"), "finished_at": max(p.get("finished_at", "") for p in parts),
            "machine": parts[0].get("machine", {}) | {
                "load_average_at_end": max((p.get("machine", {}) for p in parts),
                                           key=lambda m: str(m.get("load_average_at_end")))
                .get("load_average_at_end")},
            "parts": [{"command": p.get("command"), "wall_seconds": p["wall_seconds"], "instances": p["instances"],
                       "partial": p.get("partial"), "dropped": p.get("dropped")} for p in parts],
            **({"partial": "; ".join(p["partial"] for p in parts if p.get("partial"))}
               if any(p.get("partial") for p in parts) else {})}


def main(argv: list[str] | None = None) -> int:
    from evals.swe_lite.report import write_outputs

    ap = argparse.ArgumentParser(prog="python -m evals.swe_lite.merge", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("parts", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--drop", action="append", default=[], metavar="N:REPO",
                    help="leave REPO out of the N-th part (0-based), e.g. 0:sympy/sympy (repeatable)")
    args = ap.parse_args(argv)
    parts = [json.loads(p.read_text()) for p in args.parts]
    for spec in args.drop:
        n, _, repo = spec.partition(":")
        parts[int(n)] = drop_repo(parts[int(n)], repo)
    merged = merge(parts)
    for path in write_outputs(merged, args.out):
        print(path)
    print((args.out / "table.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
