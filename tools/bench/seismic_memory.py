"""Where Seismic's build memory goes: resident memory of a build, phase by phase.

Runs ``seismic_backend.build`` over one collection in a child process, samples the child's
resident memory every 0.2 s, and tags each sample with the last progress line Seismic printed
(its phases: adding documents, "Distributing and pruning postings", "Building summaries",
saving). Prints one JSON line: peak per phase, the collection's forward-index size, wall time.

    python -m tools.bench.seismic_memory synthetic:1000000 [--head 64] [--keep 0.5] [--batched N] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from tools.bench.measure import rss_mb

CHILD = r"""
import json, sys, tempfile, time, shutil
from pathlib import Path
from tools.bench import corpus
from tools.bench.run import parse_collections
from codelsr.index import seismic_backend as sb
kind, n, vocab = parse_collections(sys.argv[1])[0]
settings = json.loads(sys.argv[2])
coll = corpus.real_repeated(n, log=lambda s: None) if kind == "real" else corpus.synthetic_forward(n, vocab, log=lambda s: None)
fwd = coll.forward
print("PHASE forward loaded", fwd.indptr.nbytes + fwd.indices.nbytes + fwd.data.nbytes, len(fwd.terms), file=sys.stderr, flush=True)
folder = Path(tempfile.mkdtemp(prefix="codelsr-seismic-mem-"))
t0 = time.perf_counter()
used = sb.build(fwd, folder, settings)
print("PHASE built", time.perf_counter() - t0, file=sys.stderr, flush=True)
print("RESULT " + json.dumps({k: v for k, v in used.items() if k != "search"}), file=sys.stderr, flush=True)
shutil.rmtree(folder, ignore_errors=True)
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("collection")
    parser.add_argument("--head", type=int, help="head_min_df (default: codelsr's)")
    parser.add_argument("--keep", type=float, help="kept_fraction (default: codelsr's)")
    parser.add_argument("--batched", type=int, help="Seismic's batched_indexing (documents per batch)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    settings = {}
    if args.head is not None:
        settings["head_min_df"] = args.head
    if args.keep is not None:
        settings["kept_fraction"] = args.keep
    if args.batched is not None:
        settings["build"] = {"batched_indexing": args.batched}
    env = {**os.environ, **{v: str(args.threads) for v in
                            ("RAYON_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, args.collection, json.dumps(settings)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    phase = ["starting"]
    peaks: dict[str, float] = {}
    order: list[str] = []
    result: dict = {}
    events: list[tuple[float, str]] = []
    t0 = time.perf_counter()

    def read_stderr():
        for line in proc.stderr:
            line = line.strip()
            if line.startswith("RESULT "):
                result.update(json.loads(line[7:]))
            elif line and not line.startswith("Saving"):
                events.append((time.perf_counter() - t0, line[:160]))
                phase[0] = line[:80]

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    while proc.poll() is None and time.perf_counter() - t0 < args.timeout:
        now = rss_mb(proc.pid)
        if phase[0] not in peaks:
            order.append(phase[0])
        peaks[phase[0]] = max(peaks.get(phase[0], 0.0), now)
        time.sleep(0.2)
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    reader.join(5)
    row = {"what": "seismic build memory by phase", "collection": args.collection, "settings": settings,
           "threads": args.threads, "returncode": proc.returncode, "wall_s": time.perf_counter() - t0,
           "peak_mb_by_phase": [(p, round(peaks[p])) for p in order], "peak_mb": round(max(peaks.values(), default=0)),
           "events": events, "result": result, "load": " ".join(f"{x:.2f}" for x in os.getloadavg())}
    print(json.dumps(row), flush=True)
    if args.out:
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")
    return 0 if proc.returncode == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
