"""Scale benchmark (issue 17): exact search against Seismic as codelsr builds it (head/tail split,
compact ids), from 100k to 1M chunks, in one run.

Steps, each writing JSON lines through the shared logger:

1. ``codelsr index <CPython stdlib, tests included> --backend seismic --force`` as a fresh process:
   wall time of the whole command (walk, chunk, encode, write, Seismic), chunks, peak memory.
2. For every collection (``real:N``: codelsr's chunker and lexical encoder over the stdlib,
   site-packages and DevDocs, repeated with renamed identifiers past the real corpus;
   ``synthetic:N``: SPLADE-like vectors over Qwen3's 151,936 ids): the exact backend (build =
   its term-major copy), then Seismic with codelsr's defaults in a forked child (so a build that
   runs out of memory or time is recorded, not fatal): build wall and CPU time, peak resident
   memory of the building process (forward index and interpreter included), disk, p50/p99 of
   *served* latency (40 candidates + exact rescoring, what ``search_index`` does for k=10), and
   recall@10 against exact search.

Usage::

    python -m tools.bench scale [--collections real:100000,real:1000000,synthetic:100000,synthetic:1000000]
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from tools.bench.measure import load_average

# Ordered by what the goals need first (a run on a loaded machine may not reach the end).
DEFAULT_COLLECTIONS = "real:100000,synthetic:1000000,real:1000000,synthetic:100000"


def stdlib_build(log, timeout_s: float = 1800) -> dict:
    """``codelsr index`` of the CPython standard library (tests included) with Seismic, timed
    as a user sees it: one fresh process, wall clock. Peak memory: the child's maximum RSS."""
    lib = Path(sysconfig.get_paths()["stdlib"])
    home = Path(tempfile.mkdtemp(prefix="codelsr-bench-scale-"))
    env = {**os.environ, "CODELSR_HOME": str(home)}
    cmd = [sys.executable, "-m", "codelsr", "index", str(lib), "--backend", "seismic", "--force", "--json"]
    load_before = load_average()
    t0 = time.perf_counter()
    try:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s)
        wall = time.perf_counter() - t0
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        peak_mb = usage.ru_maxrss / 1024
        cpu = (usage.ru_utime + usage.ru_stime) - (before.ru_utime + before.ru_stime)
        report = json.loads(proc.stdout) if proc.returncode == 0 else {}
        settings = {}
        if proc.returncode == 0:
            from codelsr.index.manifest import IndexManifest
            from codelsr.index.generations import current_generation

            manifest = IndexManifest.read(current_generation(Path(report["index_dir"])))
            settings = {k: v for k, v in manifest.backend_settings.items() if k != "search"}
        row = {"what": "codelsr index stdlib --backend seismic", "returncode": proc.returncode,
               "wall_s": wall, "cpu_s": cpu, "chunks": report.get("chunks"), "files": report.get("files"),
               "backend": report.get("backend"), "peak_rss_mb": peak_mb, "seismic": settings,
               "stderr_tail": proc.stderr[-400:] if proc.returncode else "",
               "load_before": load_before, "load": load_average()}
    except subprocess.TimeoutExpired:
        row = {"what": "codelsr index stdlib --backend seismic", "returncode": None,
               "wall_s": time.perf_counter() - t0, "note": f"did not finish in {timeout_s:.0f} s",
               "load_before": load_before, "load": load_average()}
    finally:
        shutil.rmtree(home, ignore_errors=True)
    log(row)
    return row


def parse_cap_lists(text: str) -> dict[str, tuple[bool, ...]]:
    """``--cap-lists``: ``on``, ``off``, ``on,off`` for every collection, or per kind of collection
    (``real:off,synthetic:on``); the values of the ``cap_lists`` setting to build with, by kind."""
    entries = [e.strip() for e in text.split(",") if e.strip()]
    if entries and all(e in ("on", "off") for e in entries):
        values = tuple(e == "on" for e in entries)
        return {"real": values, "synthetic": values}
    by_kind: dict[str, tuple[bool, ...]] = {"real": (False,), "synthetic": (False,)}
    for entry in entries:
        kind, _, value = entry.partition(":")
        if kind not in by_kind or value not in ("on", "off"):
            raise ValueError(f"--cap-lists takes on, off, on,off or real:on|off,synthetic:on|off, not {text!r}")
        by_kind[kind] = (value == "on",)
    return by_kind


def run(spec: str, n_queries: int, work: Path, log, timeout_s: float, stdlib: bool = True,
        cap_lists: dict[str, tuple[bool, ...]] | None = None, search_grid: str = "default") -> None:
    """The steps above; ``cap_lists``: per kind of collection, one Seismic build per value of the
    ``cap_lists`` setting (each list cut to what Seismic keeps before the hand-over, or whole:
    codelsr's default); ``search_grid="full"`` measures every build at a query_cut x heap_factor
    grid of search settings too, after codelsr's own."""
    from tools.bench import backends, corpus
    from tools.bench.run import parse_collections

    if stdlib:
        stdlib_build(log, timeout_s)
    nl = corpus.nl_queries(n_queries)
    from codelsr.index import seismic_backend as sb

    # codelsr's defaults, as `codelsr index --backend seismic` builds
    default_build = {**backends.build_sweep(False)[0], "kept_fraction": sb.DEFAULT_KEPT_FRACTION,
                     "head_min_df": sb.HEAD_MIN_DF}

    for kind, n, vocab in parse_collections(spec):
        t0 = time.perf_counter()
        if kind == "real":
            coll = corpus.real_repeated(n, work, log)
            queries = corpus.real_queries(coll, nl)
        else:
            coll = corpus.synthetic_forward(n, vocab, work=work, log=log)
            queries = corpus.synthetic_queries(n_queries, vocab)
        log(f"# {coll.name}: {coll.forward.n_rows} chunks, {len(coll.forward.terms)} terms, "
            f"{coll.forward.indices.size} postings, loaded in {time.perf_counter() - t0:.0f} s; load {load_average()}")
        grid = [dict(sb.DEFAULT_SEARCH)]
        if search_grid == "full":
            grid += [g for g in backends.SEARCH_GRID_FULL if g != sb.DEFAULT_SEARCH]
        caps = (cap_lists or {}).get(kind, (False,))
        backends.run_collection(coll, queries, False, log, builds=[{**default_build, "cap_lists": c} for c in caps],
                                grid=grid, timeout_s=timeout_s)
        del coll, queries
