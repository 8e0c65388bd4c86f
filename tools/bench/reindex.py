"""Benchmark: incremental reindexing of the CPython standard library with the lexical encoder.

Copies the standard library into a temporary git repository, indexes it once (a full build), then
prints the wall time of a reindex after a commit that changes one file, after one that changes
100 files, after a branch switch (up to 300 files changed, 20 deleted, 20 added), and of a compaction,
next to the full build. Also prints search latency with and without a delta segment, and, with
``--sweep``, how the cost of a reindex and of opening the index grows with the delta (the
measurement behind the compaction threshold). Usage::

    .venv/bin/python -m tools.bench.reindex [--backend auto|exact|seismic] [--sweep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

QUERIES = ["parse a url into components", "read a csv file row by row", "compute md5 hash of a file",
           "retry connection with timeout", "json encoder for custom objects", "walk a directory tree",
           "spawn a subprocess and capture output", "thread pool executor submit", "decode base64 string",
           "priority queue heap push", "logging handler rotate file", "abstract syntax tree visitor"]


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.email=bench@example.com", "-c", "user.name=bench", "-c", "commit.gpgsign=false",
                    "-c", "core.autocrlf=false", *args], cwd=repo, check=True, capture_output=True)


def make_corpus(lib: Path, dest: Path) -> list[Path]:
    shutil.copytree(lib, dest, ignore=shutil.ignore_patterns("site-packages", "__pycache__", "*.pyc"))
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "stdlib")
    return sorted(p for p in dest.rglob("*.py") if "test" not in p.relative_to(dest).parts[0])


def edit(path: Path, tag: str) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(f"\n\ndef _bench_{tag}(value):\n    \"\"\"Added by the reindex benchmark ({tag}).\"\"\"\n"
                f"    return value\n")


def timed(label: str, fn, results: dict):
    t0 = time.perf_counter()
    report = fn()
    seconds = time.perf_counter() - t0
    results[label] = seconds
    print(f"{label:<34} {seconds:7.2f} s   {report.backend}, files {report.files}, chunks {report.chunks}, "
          f"{report.changed_files} changed, {report.deleted_files} deleted, {report.encoded_chunks} encoded, "
          f"delta {report.delta_chunks}, tombstones {report.tombstones}{', COMPACTED' if report.compacted else ''}",
          flush=True)
    return report


def search_latency(repo: Path) -> tuple[float, float]:
    """(ms to open the current generation, p50 ms per search)."""
    from codelsr.index.reader import forget_open_indexes, open_index
    from codelsr.search import search_index

    forget_open_indexes()
    t0 = time.perf_counter()
    reader = open_index(repo)
    search_index(reader, QUERIES[0], k=10)
    open_ms = (time.perf_counter() - t0) * 1000
    lat = []
    for q in QUERIES * 3:
        t0 = time.perf_counter()
        search_index(reader, q, k=10)
        lat.append((time.perf_counter() - t0) * 1000)
    return open_ms, statistics.median(lat)


def sweep(repo: Path, files: list[Path], backend: str | None) -> None:
    """Reindex cost and open cost as the delta grows (compaction disabled)."""
    from codelsr.index import build, build_index

    saved = build.COMPACT_MIN_ROWS
    build.COMPACT_MIN_ROWS = 10**9
    try:
        build_index(repo, backend=backend, force=True)
        print("\ndelta sweep (compaction off): delta rows -> one-file reindex s, open ms, search p50 ms", flush=True)
        done = 0
        for target in (0, 250, 500, 1000, 2000):
            while done < target:
                edit(files[(done * 7 + 3) % len(files)], f"sweep{done}")
                done += 1
            if target:
                git(repo, "commit", "-qam", f"sweep {target}")
                build_index(repo)
            edit(files[-1], f"probe{target}")
            git(repo, "commit", "-qam", f"probe {target}")
            t0 = time.perf_counter()
            report = build_index(repo)
            seconds = time.perf_counter() - t0
            open_ms, p50 = search_latency(repo)
            print(f"  {report.delta_chunks:>7} delta rows, {report.tombstones:>7} tombstones: reindex {seconds:5.2f} s, "
                  f"open {open_ms:6.0f} ms, search p50 {p50:6.2f} ms", flush=True)
    finally:
        build.COMPACT_MIN_ROWS = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default=None, help="auto (default), exact or seismic")
    parser.add_argument("--lib", default=sysconfig.get_paths()["stdlib"])
    parser.add_argument("--sweep", action="store_true", help="also measure cost against delta size")
    parser.add_argument("--force-rebuild", action="store_true",
                        help="also time `--force` at the end (the first index already is a full build)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="codelsr-reindex-"))
    os.environ["CODELSR_HOME"] = str(work / "home")
    from codelsr.index import build_index

    repo = work / "stdlib"
    t0 = time.perf_counter()
    files = make_corpus(Path(args.lib), repo)
    print(f"corpus: copy of {args.lib} as a git repository ({time.perf_counter() - t0:.1f} s to create); "
          f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}", flush=True)
    results: dict[str, float] = {}
    try:
        timed("full build (first index)", lambda: build_index(repo, "lexical", backend=args.backend), results)
        timed("reindex, nothing changed", lambda: build_index(repo), results)
        open_ms, p50 = search_latency(repo)
        print(f"  main segment only: open {open_ms:.0f} ms, search p50 {p50:.2f} ms", flush=True)

        edit(files[len(files) // 2], "one")
        git(repo, "commit", "-qam", "one file")
        timed("reindex after a 1-file commit", lambda: build_index(repo), results)
        exe = Path(sys.executable).with_name("codelsr")
        edit(files[len(files) // 2 + 1], "cli")
        git(repo, "commit", "-qam", "one file, CLI")
        t0 = time.perf_counter()
        subprocess.run([str(exe), "index", str(repo)], check=True, capture_output=True)
        print(f"{'  same as `codelsr index` (process)':<34} {time.perf_counter() - t0:7.2f} s (interpreter start included)",
              flush=True)

        for i, path in enumerate(files[:: max(1, len(files) // 100)][:100]):
            edit(path, f"hundred{i}")
        git(repo, "commit", "-qam", "100 files")
        timed("reindex after a 100-file commit", lambda: build_index(repo), results)
        open_ms, p50 = search_latency(repo)
        print(f"  with a delta segment: open {open_ms:.0f} ms, search p50 {p50:.2f} ms", flush=True)

        git(repo, "checkout", "-q", "-b", "feature", "HEAD~3")
        for i, path in enumerate(files[5::7][:300]):
            edit(path, f"feature{i}")
        for path in files[9::31][:20]:
            path.unlink()
        for i in range(20):
            (repo / f"feature_{i}.py").write_text(f"def feature_module_{i}():\n    return {i}\n", encoding="utf-8")
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", "feature branch")
        git(repo, "checkout", "-q", "main")
        build_index(repo)
        git(repo, "checkout", "-q", "feature")
        timed("reindex after a branch switch", lambda: build_index(repo), results)
        open_ms, p50 = search_latency(repo)
        print(f"  after the switch: open {open_ms:.0f} ms, search p50 {p50:.2f} ms", flush=True)

        from codelsr.index import build

        saved = build.COMPACT_MIN_ROWS, build.COMPACT_FRACTION
        build.COMPACT_MIN_ROWS, build.COMPACT_FRACTION = 0, 0.0
        edit(files[0], "compact")
        git(repo, "commit", "-qam", "compact")
        timed("reindex that compacts (no re-encode)", lambda: build_index(repo), results)
        build.COMPACT_MIN_ROWS, build.COMPACT_FRACTION = saved
        if args.force_rebuild:
            timed("full rebuild (--force)", lambda: build_index(repo, force=True, backend=args.backend), results)
        full = results.get("full rebuild (--force)", results["full build (first index)"])
        for label in ("reindex after a 1-file commit", "reindex after a 100-file commit", "reindex after a branch switch"):
            print(f"  {label}: {full / results[label]:.0f}x faster than a full rebuild")
        if args.sweep:
            sweep(repo, files, args.backend)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
