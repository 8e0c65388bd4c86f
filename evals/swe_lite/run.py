"""``python -m evals.swe_lite``: the ``swe-lite-files`` task, every system, one results folder.

    python -m evals.swe_lite                     # all 300 instances -> evals/results/swe_lite/
    python -m evals.swe_lite --quick             # CI: a few requests instances -> evals/results/swe_lite/quick/
    python -m evals.swe_lite --mirror ~/clones   # exact base commits from local clones (git archive)
    python -m evals.swe_lite --systems bm25s,codelsr:lexical --sample-systems dense --sample every:10

Instances are grouped by tree (repository + release, or + base commit with ``--mirror``) and the
trees visited in release order: each tree is unpacked once and indexed once per system, and
codelsr's indexes move from one release to the next incrementally. ``--sample-systems`` run only
on the sample (``--sample every:N`` keeps every N-th instance of the full list; ``repos:a,b`` keeps
those repositories), for systems too slow for all 300 on a small machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
import traceback
from collections import defaultdict
from pathlib import Path
from typing import Any

from evals.paths import RESULTS_DIR, cache_dir
from evals.swe_lite.data import Instance, load_instances
from evals.swe_lite.scoring import (FILE_MEASURES, FUNCTION_MEASURE, HEADLINE, Region, aggregate, file_metrics,
                                    file_ranking, function_ranking, function_recall, function_spans,
                                    is_function_span)
from evals.swe_lite.systems import make_tree_system
from evals.swe_lite.trees import Tree, TreeUnavailable, exact_tree, release_tree

DEFAULT_SYSTEMS = ("bm25s", "grep", "codelsr:lexical", "codelsr-raw:lexical", "agent:lexical", "policy:lexical")
DEFAULT_SAMPLE_SYSTEMS = ("dense", "codelsr:hybrid-code-tiny", "codelsr-raw:hybrid-code-tiny")
QUICK_SYSTEMS = DEFAULT_SYSTEMS
CHECKPOINT_SECONDS = 120  # a long run writes its outputs (marked partial) this often
RESULTS_VERSION = 1


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S ") + msg, file=sys.stderr, flush=True)


def _version_key(release: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in release.replace("-", ".").split("."))


def group_by_tree(instances: list[Instance], mirror: Path | None) -> list[tuple[tuple[str, str], list[Instance]]]:
    """(repo, release or commit) -> its instances, repositories in name order, releases in version
    order (exact trees in base-date order of the list), so consecutive trees are neighbours."""
    groups: dict[tuple[str, str], list[Instance]] = defaultdict(list)
    for inst in instances:
        groups[(inst.repo, inst.base_commit if mirror else inst.release)].append(inst)
    per_repo = defaultdict(int)
    for inst in instances:
        per_repo[inst.repo] += 1
    # Small repositories first: a run cut short has scored most repositories.
    order = sorted(groups, key=lambda k: (per_repo[k[0]], k[0], _version_key(groups[k][0].release),
                                          instances.index(groups[k][0])))
    return [(k, groups[k]) for k in order]


def spec_of(name: str) -> str:
    """The system spec behind a reported name (``policy-title:x`` comes from ``policy:x``)."""
    kind, _, encoder = name.partition(":")
    return f"policy:{encoder}" if kind.startswith("policy") else name


def parse_sample(spec: str, instances: list[Instance]) -> set[str]:
    if spec.startswith("every:"):
        n = int(spec.split(":", 1)[1])
        return {i.instance_id for j, i in enumerate(instances) if j % n == 0}
    if spec.startswith("repos:"):
        repos = set(spec.split(":", 1)[1].split(","))
        return {i.instance_id for i in instances if i.repo in repos or i.repo.split("/")[1] in repos}
    if spec == "all":
        return {i.instance_id for i in instances}
    raise ValueError(f"--sample {spec!r}: use every:N, repos:a,b or all")


def read_files(tree: Tree) -> dict[str, str]:
    return {p: (tree.root / p).read_text(encoding="utf-8", errors="replace") for p in tree.files()}


def gold_functions(inst: Instance, spans: dict[str, list[tuple[str, int, int]]]) -> tuple[list[tuple[str, str]], int]:
    """(file, function) gold pairs present in the tree, and how many were not found there."""
    present, missing = [], 0
    for path, names in inst.gold_spans.items():
        have = {n for n, _, _ in spans.get(path, [])}
        for name in names:
            if not is_function_span(name):
                continue
            if name in have:
                present.append((path, name))
            else:
                missing += 1
    return present, missing


def score_instance(inst: Instance, regions: list[Region], tree_files: set[str],
                   spans_of, ranks_functions: bool) -> dict[str, Any]:
    files = file_ranking(regions)
    row: dict[str, Any] = file_metrics(files, inst.gold_files)
    row["top10"] = files[:10]
    if ranks_functions:
        spans = {p: spans_of(p) for p in dict.fromkeys(r.path for r in regions)}
        spans.update({p: spans_of(p) for p in inst.gold_spans if p in tree_files})
        gold, _ = gold_functions(inst, spans)
        row[FUNCTION_MEASURE] = function_recall(function_ranking(regions, spans), gold) if gold else None
    else:
        row[FUNCTION_MEASURE] = None
    return row


def run(instances: list[Instance], systems: list[str], sample_systems: list[str], sample: set[str],
        mirror: Path | None, checkpoint=None, work: str = "work") -> dict[str, Any]:
    """Every system on every tree. ``checkpoint(results)`` is called with the results so far
    every :data:`CHECKPOINT_SECONDS` (a long run leaves readable outputs if it is stopped)."""
    started = last_checkpoint = time.perf_counter()
    all_systems = systems + [s for s in sample_systems if s not in systems]
    made = {}
    per: dict[str, dict[str, dict]] = defaultdict(dict)  # reported name -> instance -> row
    cost: dict[str, dict[str, float]] = defaultdict(lambda: {"index": 0.0, "search": 0.0})
    trees_out, no_tree, missing_gold = [], [], []
    present: set[str] = set()
    fn_missing = 0
    by_id = {i.instance_id: i for i in instances}
    groups = group_by_tree(instances, mirror)

    def assemble() -> dict[str, Any]:
        done = {i.instance_id for t in trees_out for i in map(by_id.get, t["instances"])} | {
            r["instance_id"] for r in no_tree}
        for name in list(per):  # a variant reported by a system has every instance the system ran on
            spec = spec_of(name)
            for iid in done:
                if iid not in per[name] and (spec in systems or iid in sample) and iid in per.get(spec, {}):
                    per[name][iid] = per[spec][iid]
        summary, on_sample = {}, {}
        for name, rows in per.items():
            spec = spec_of(name)
            summary[name] = aggregate(rows, present & set(rows)) | {
                "on": "all" if spec in systems else "sample",
                "seconds": {k: round(v, 1) for k, v in cost.get(spec, {}).items()}}
            sampled = {i: r for i, r in rows.items() if i in sample}
            if sampled:
                on_sample[name] = aggregate(sampled, present & set(sampled))
        kinds: dict[str, int] = defaultdict(int)
        for t in trees_out:
            kinds[t["kind"]] += len(t["instances"])
        return {"version": RESULTS_VERSION, "task": "swe-lite-files", "headline": HEADLINE,
                "measures": list(FILE_MEASURES) + [FUNCTION_MEASURE], "systems": list(per), "summary": summary,
                "summary_on_sample": on_sample, "instances": len(done), "instances_asked": len(instances),
                "sample": sorted(sample & done), "sample_systems": sample_systems,
                "scored_on": dict(kinds) | {"no_tree": len(no_tree)},
                "gold_missing_from_tree": missing_gold, "gold_functions_missing_from_tree": fn_missing,
                "no_tree": no_tree, "trees": trees_out, "per_instance": per,
                "wall_seconds": round(time.perf_counter() - started, 1)}

    for n, ((repo, ref), insts) in enumerate(groups, 1):
        t0 = time.perf_counter()
        try:
            tree = exact_tree(mirror, repo, ref) if mirror else release_tree(repo, ref)
        except TreeUnavailable as exc:
            log(f"[{n}/{len(groups)}] {repo} {ref}: NO TREE ({exc}); {len(insts)} instances count as misses")
            no_tree += [{"instance_id": i.instance_id, "reason": str(exc)} for i in insts]
            for s in all_systems:
                for i in insts:
                    if s in systems or i.instance_id in sample:
                        per[s][i.instance_id] = file_metrics([], i.gold_files) | {"top10": [], FUNCTION_MEASURE: None}
            continue
        files = read_files(tree)
        tree_files = set(files)
        span_cache: dict[str, list] = {}

        def spans_of(path: str) -> list:
            if path not in span_cache:
                span_cache[path] = function_spans(files[path]) if path.endswith(".py") and path in files else []
            return span_cache[path]

        for i in insts:
            miss = [g for g in i.gold_files if g not in tree_files]
            if miss:
                missing_gold.append({"instance_id": i.instance_id, "tree": tree.key, "missing": miss})
            else:
                present.add(i.instance_id)
            fn_missing += gold_functions(i, {p: spans_of(p) for p in i.gold_spans})[1]
        trees_out.append({"tree": tree.key, "kind": tree.kind, "source": tree.source, "files": len(files),
                          "instances": [i.instance_id for i in insts]})
        log(f"[{n}/{len(groups)}] {tree.key} ({tree.kind}, {tree.source}): {len(files)} files, "
            f"{len(insts)} instances ({time.perf_counter() - t0:.1f} s to unpack/read)")
        for spec in all_systems:
            todo = insts if spec in systems else [i for i in insts if i.instance_id in sample]
            if not todo:
                continue
            try:
                system = made.get(spec) or made.setdefault(spec, make_tree_system(spec, work))
                t1 = time.perf_counter()
                info = system.index(tree, files)
                t2 = time.perf_counter()
                results = system.search(todo)
                t3 = time.perf_counter()
            except Exception as exc:  # one broken system must not lose the run
                log(f"  {spec}: FAILED {type(exc).__name__}: {exc}")
                log(traceback.format_exc(limit=4))
                for i in todo:
                    per[spec][i.instance_id] = file_metrics([], i.gold_files) | {"top10": [], FUNCTION_MEASURE: None,
                                                                                  "error": str(exc)}
                continue
            cost[spec]["index"] += t2 - t1
            cost[spec]["search"] += t3 - t2
            ranks_functions = spec.split(":")[0] in ("codelsr", "codelsr-raw", "agent", "policy")
            for name, by_inst in results.items():
                for i in todo:
                    per[name][i.instance_id] = score_instance(i, by_inst.get(i.instance_id, []), tree_files,
                                                              spans_of, ranks_functions)
            shown = ", ".join(f"{name} {sum(per[name][i.instance_id]['Acc@5'] for i in todo):.0f}/{len(todo)}"
                              for name in results)
            log(f"  {spec}: index {t2 - t1:.1f} s, search {t3 - t2:.1f} s; Acc@5 {shown} "
                + json.dumps({k: v for k, v in info.items() if k in ('encoded_chunks', 'written', 'tokenized', 'encoded')}))
        if checkpoint is not None and time.perf_counter() - last_checkpoint > CHECKPOINT_SECONDS and n < len(groups):
            checkpoint(assemble() | {"partial": f"{n} of {len(groups)} trees"})
            last_checkpoint = time.perf_counter()
    return assemble()
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m evals.swe_lite", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--systems", default=None, help=f"comma-separated (default: {','.join(DEFAULT_SYSTEMS)})")
    p.add_argument("--sample-systems", default=None,
                   help=f"systems run on the sample only (default: {','.join(DEFAULT_SAMPLE_SYSTEMS)}; '' for none)")
    p.add_argument("--sample", default="every:10", help="every:N, repos:a,b or all (default: %(default)s)")
    p.add_argument("--quick", action="store_true", help="a few requests instances (CI); writes to results/swe_lite/quick/")
    p.add_argument("--mirror", type=Path, default=None,
                   help="folder of clones (<owner>__<name>, <name> or <owner>/<name>): exact base commits")
    p.add_argument("--instances", default=None, help="comma-separated instance ids (default: all)")
    p.add_argument("--repos", default=None, help="comma-separated repositories (owner/name or name)")
    p.add_argument("--data", type=Path, default=None, help="lite.jsonl (default: shared/data/swe-bench/lite.jsonl)")
    p.add_argument("--work", default="work", help="name of the work-folder set in the cache (one per concurrent run)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: evals/results/swe_lite[/quick])")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from evals.run import tool_versions, machine_note
    from evals.swe_lite.report import write_outputs

    args = parse_args(argv)
    instances = load_instances(args.data, quick=args.quick)
    if args.repos:
        want = set(args.repos.split(","))
        instances = [i for i in instances if i.repo in want or i.repo.split("/")[1] in want]
    if args.instances:
        want = set(args.instances.split(","))
        instances = [i for i in instances if i.instance_id in want]
    systems = [s for s in (args.systems or ",".join(QUICK_SYSTEMS if args.quick else DEFAULT_SYSTEMS)).split(",") if s]
    sample_systems = [s for s in (("" if args.quick else ",".join(DEFAULT_SAMPLE_SYSTEMS))
                                  if args.sample_systems is None else args.sample_systems).split(",") if s]
    sample = parse_sample(args.sample, instances)
    out_dir = args.out or (RESULTS_DIR / "swe_lite" / ("quick" if args.quick else ""))
    os.environ.setdefault("CODELSR_HOME", str(cache_dir("codelsr-home")))
    command = "python -m evals.swe_lite " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    log(f"{command.strip()}: {len(instances)} instances; systems {systems}; on the sample "
        f"({len(sample)} instances): {sample_systems} -> {out_dir}")
    load_at_start = machine_note()["load_average_at_start"]

    def finish(results: dict[str, Any]) -> list[Path]:
        results |= {"command": command.strip(), "versions": tool_versions(),
                    "machine": machine_note() | {"load_average_at_start": load_at_start,
                                                 "load_average_at_end": machine_note()["load_average_at_start"]},
                    "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        return write_outputs(results, out_dir)

    results = run(instances, systems, sample_systems, sample, args.mirror, checkpoint=finish, work=args.work)
    paths = finish(results)
    log(f"done in {results['wall_seconds']:.0f} s: " + ", ".join(str(p) for p in paths))
    print((out_dir / "table.md").read_text())
    return 0 if results["summary"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
