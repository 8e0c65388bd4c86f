"""codelsr's performance benchmark: backends, encoders, peers, end to end.

Usage::

    python -m tools.bench --quick                      # every section, small sizes (minutes)
    python -m tools.bench backends --collections real:100000,synthetic:1000000 --sweep full
    python -m tools.bench encoders | peers | e2e [--size 100000]
    python -m tools.bench vocab                        # Seismic build time vs vocabulary width
    python -m tools.bench scale                        # exact vs Seismic, 100k-1M chunks (issue 17)

Figures go to stdout, one line each, and as JSON lines to ``--out`` (default
``<work>/results.jsonl``). Threads are pinned (``--threads``, default 1) for numpy, torch and
Seismic (``RAYON_NUM_THREADS``) before any of them starts. See docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

SECTIONS = ("backends", "encoders", "peers", "e2e", "vocab", "scale")


def parse_collections(spec: str) -> list[tuple[str, int, int]]:
    """``real:10000,synthetic:1000000,synthetic:5000@30522`` -> [(kind, n, vocab)]."""
    from tools.bench.corpus import QWEN3_VOCAB

    out = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        kind, _, rest = part.partition(":")
        if kind not in ("real", "synthetic"):
            raise SystemExit(f"unknown collection kind {kind!r}: use real:N or synthetic:N[@vocab]")
        n, _, vocab = rest.partition("@")
        out.append((kind, int(float(n)), int(vocab) if vocab else QWEN3_VOCAB))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__.splitlines()[0])
    parser.add_argument("sections", nargs="*", help=f"any of {', '.join(SECTIONS)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="small sizes, few settings: a few minutes")
    parser.add_argument("--collections", help="backends: real:N / synthetic:N[@vocab], comma-separated")
    parser.add_argument("--sweep", choices=["quick", "full"], help="Seismic build settings to try")
    parser.add_argument("--keep", help="Seismic: only these kept fractions (comma-separated) with default settings; "
                             "'none': exact backend only")
    parser.add_argument("--head", help="Seismic: head/tail cuts (min document frequency of a head term) to try, "
                             "comma-separated (default: codelsr's)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--size", type=int, help="peers / e2e: real chunks (default 100000; quick 10000)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-stdlib", action="store_true", help="scale: skip the `codelsr index <stdlib>` step")
    parser.add_argument("--cap-lists", default="off", help="scale: Seismic builds with lists cut before the hand-over "
                        "(on), whole (off, codelsr's default), or both (on,off); per kind of collection: "
                        "real:off,synthetic:on")
    parser.add_argument("--search-grid", choices=["default", "full"], default="default",
                        help="scale: Seismic search settings measured on each build: codelsr's, or a query_cut x "
                             "heap_factor grid as well")
    parser.add_argument("--backend", default="auto", help="e2e: backend of the index (auto, exact, seismic)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds allowed per Seismic build+sweep")
    parser.add_argument("--work", type=Path, help="cache folder (default $CODELSR_BENCH_WORK or /tmp/codelsr-bench)")
    parser.add_argument("--out", type=Path, help="JSON lines file (appended)")
    args = parser.parse_args(argv)
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {', '.join(sorted(unknown))}: use {', '.join(SECTIONS)}")
    from tools.bench.scale import parse_cap_lists

    try:
        cap_lists = parse_cap_lists(args.cap_lists)
    except ValueError as exc:
        parser.error(str(exc))

    from tools.bench.measure import machine, pin_threads

    pin_threads(args.threads)  # before numpy / torch / seismic start their pools
    from tools.bench import backends, corpus

    work = args.work or corpus.default_work()
    work.mkdir(parents=True, exist_ok=True)
    out = args.out or work / "results.jsonl"
    log = backends.make_logger(out)
    sections = args.sections or [s for s in SECTIONS if s not in ("vocab", "scale")]  # on request
    info = {"run": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "argv": sys.argv[1:], **machine()}
    print("# " + json.dumps(info))
    with open(out, "a") as f:
        f.write(json.dumps(info) + "\n")

    nl = corpus.nl_queries(args.queries)
    cap = 20_000 if args.quick else corpus.REAL_CAP  # chunks to encode when nothing is cached
    size = args.size or (10_000 if args.quick else 100_000)
    if "backends" in sections:
        spec = args.collections or ("real:10000,synthetic:3000@30522" if args.quick else
                                    "real:10000,real:100000,real:418235,synthetic:10000,synthetic:100000,"
                                    "synthetic:1000000")
        full = (args.sweep or ("quick" if args.quick else "full")) == "full"
        for kind, n, vocab in parse_collections(spec):
            if kind == "real":
                coll = corpus.real_repeated(n, work, log) if not args.quick else corpus.real_collection(n, work, log, cap)
                queries = corpus.real_queries(coll, nl)
            else:
                coll = corpus.synthetic_forward(n, vocab, work=work, log=log)
                queries = corpus.synthetic_queries(args.queries, vocab)
            builds = None
            if args.keep == "none":
                builds = []
            elif args.keep:
                base = backends.build_sweep(False)[0]
                builds = [{**base, "kept_fraction": float(f)} for f in args.keep.split(",")]
            if args.head and builds != []:
                base = backends.build_sweep(False)[0]
                builds = [{**b, "head_min_df": int(h)} for b in (builds or [base]) for h in args.head.split(",")]
            backends.run_collection(coll, queries, full, log, builds=builds, timeout_s=args.timeout)
            del coll
    if "encoders" in sections:
        from tools.bench import encoders

        coll = corpus.real_collection(size, work, log, cap)
        encoders.run(coll.texts[:5000 if args.quick else 20000], nl, args.quick, log)
    if "peers" in sections:
        from tools.bench import peers

        coll = corpus.real_collection(size, work, log, cap)
        idents = corpus.identifier_queries(coll, 100)
        peers.run(coll, nl, idents, log, dense_docs=50 if args.quick else 200)
    if "e2e" in sections:
        from tools.bench import e2e

        coll = corpus.real_collection(size, work, log, cap)
        e2e.run(coll, nl, work, log, backend=args.backend)
    if "vocab" in sections:
        backends.vocabulary_cost(log, backends.VOCAB_CASES[:2] if args.quick else backends.VOCAB_CASES)
    if "scale" in sections:
        from tools.bench import scale

        scale.run(args.collections or ("real:10000,synthetic:3000" if args.quick else scale.DEFAULT_COLLECTIONS),
                  args.queries, work, log, args.timeout, stdlib=not (args.quick or args.no_stdlib),
                  cap_lists=cap_lists, search_grid=args.search_grid)
    print(f"# results appended to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
