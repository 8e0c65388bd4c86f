"""Benchmark: index the CPython standard library with the lexical encoder, then search it.

Prints files, chunks, seconds, peak memory, index size, in-process search latency p50/p99 over
100 queries, and the wall time of `codelsr search` as a fresh process (interpreter start-up
included). Usage::

    .venv/bin/python -m tools.bench.stdlib_index [--backend auto|exact|seismic] [--queries 100]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

QUERIES = [
    "parse a url into components", "read a csv file row by row", "compute md5 hash of a file",
    "retry connection with timeout", "json encoder for custom objects", "walk a directory tree",
    "format a date as iso string", "compress data with gzip", "spawn a subprocess and capture output",
    "thread pool executor submit", "decode base64 string", "lock for thread synchronisation",
    "http request headers", "temporary directory cleanup", "regular expression compile flags",
    "binary search insertion point", "priority queue heap push", "shuffle a list randomly",
    "convert string to decimal", "unicode normalization", "send email smtp", "parse xml element tree",
    "socket connect and send bytes", "serialize object with pickle", "logging handler rotate file",
    "command line argument parser", "deep copy of nested objects", "ordered dictionary move to end",
    "calculate the greatest common divisor", "read configuration ini file", "zip archive extract",
    "sqlite cursor execute", "async event loop run until complete", "signal handler interrupt",
    "weak reference callback", "abstract base class register", "dataclass field default factory",
    "context manager exit suppress exception", "format traceback", "unittest assert raises",
    "tokenize python source", "abstract syntax tree visitor", "disassemble bytecode",
    "import module from file path", "inspect function signature", "pretty print nested data",
    "text wrap paragraph", "difflib sequence matcher ratio", "fraction arithmetic",
    "statistics median of data", "random gaussian distribution", "time monotonic clock",
    "calendar leap year", "locale currency formatting", "gettext translation", "mimetypes guess type",
    "html escape entities", "cookie jar", "ftp upload file", "ssl wrap socket certificate",
    "ipaddress network contains", "uuid generate random", "hmac compare digest", "secrets token hex",
    "shutil copy tree", "glob pattern match files", "fnmatch translate", "stat file permissions",
    "os environment variable", "platform system name", "sys exit code", "atexit register",
    "queue get with timeout", "multiprocessing pool map", "shared memory", "selectors register fd",
    "struct pack unpack binary", "array typecode", "bisect insort", "itertools group by",
    "functools lru cache", "operator item getter", "enum auto value", "typing generic alias",
    "contextvars copy context", "codecs incremental decoder", "string template substitute",
    "email message parse headers", "mailbox mbox", "wave file frames", "colorsys rgb to hsv",
    "curses window", "readline history", "pdb breakpoint", "timeit repeat", "trace coverage",
    "zipimport loader", "pkgutil walk packages", "plistlib load", "tarfile add directory",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--lib", default=sysconfig.get_paths()["stdlib"])
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="codelsr-bench-"))
    os.environ["CODELSR_HOME"] = str(home)
    from codelsr.index import build_index, index_status
    from codelsr.index.reader import open_index
    from codelsr.search import search_index

    # Index a copy so the stdlib's own __pycache__ and site-packages don't leak in.
    lib = Path(args.lib)
    t0 = time.perf_counter()
    report = build_index(lib, "lexical", backend=args.backend)
    index_s = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    status = index_status(lib)
    print(f"corpus: {lib}")
    print(f"files {report.files}, chunks {report.chunks}, skipped {report.skipped}")
    print(f"index: {index_s:.1f} s wall, peak RSS {peak_mb:.0f} MB, index size {status.index_bytes / 1e6:.1f} MB, "
          f"backend {report.backend}")

    reader = open_index(lib)
    queries = (QUERIES * (args.queries // len(QUERIES) + 1))[: args.queries]
    t0 = time.perf_counter()
    search_index(reader, queries[0], k=10)  # loads the backend and the encoder's statistics
    print(f"first search (loads index): {(time.perf_counter() - t0) * 1000:.0f} ms")
    lat = []
    for q in queries:
        t0 = time.perf_counter()
        search_index(reader, q, k=10)
        lat.append((time.perf_counter() - t0) * 1000)
    lat.sort()
    p99 = lat[min(len(lat) - 1, int(round(0.99 * (len(lat) - 1))))]
    print(f"in-process search over {len(lat)} queries: p50 {statistics.median(lat):.2f} ms, p99 {p99:.2f} ms")

    exe = Path(sys.executable).with_name("codelsr")
    walls = []
    for q in queries[:5]:
        t0 = time.perf_counter()
        subprocess.run([str(exe), "search", q, "--repo", str(lib), "--json"], check=True, capture_output=True,
                       env={**os.environ, "CODELSR_HOME": str(home)})
        walls.append(time.perf_counter() - t0)
    print(f"`codelsr search` as a new process: median {statistics.median(walls):.2f} s wall over {len(walls)} runs")
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
