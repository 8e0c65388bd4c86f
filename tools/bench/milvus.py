"""Milvus Lite next to the exact backend (and Seismic, through ``backends``) on the same chunks.

Build: entities (hashed term dimensions, as ``codelsr.index.milvus_backend`` writes them) upserted
into a fresh Milvus Lite file, then the first query (the engine builds its sparse index on the
way); "build s" is from an empty file to the first answer. Latency: single queries through
``engine_search`` (with the repository filter every codelsr query carries), and "served": FETCH
candidates rescored exactly, as ``search_index`` does for k=10. Recall@10 is tie-aware against
exact search, like the Seismic rows. Also: hash collisions over the collection's vocabulary.

    python -m tools.bench.milvus --collections real:100000,synthetic:100000@30522
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from codelsr.index import milvus_backend as mb
from tools.bench import backends, corpus
from tools.bench.measure import PeakMemory, latencies, load_average, machine, pin_threads

KEY = "bench"


def dir_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def bench_milvus(coll, queries, truths, scorer, log, flush: bool = False) -> dict:
    fwd = coll.forward
    folder = Path(tempfile.mkdtemp(prefix="codelsr-bench-milvus-"))
    target = mb.MilvusTarget(str(folder / "bench.db"), "bench")
    dims = mb.term_ids(fwd.terms)
    gc.collect()
    try:
        with PeakMemory() as mem:
            t0 = time.perf_counter()
            mb.ensure_collection(target)
            c = mb.client(target)
            for lo in range(0, fwd.n_rows, mb.WRITE_BATCH):
                rows = range(lo, min(fwd.n_rows, lo + mb.WRITE_BATCH))
                ents = []
                for r in rows:
                    a, b = int(fwd.indptr[r]), int(fwd.indptr[r + 1])
                    ents.append({"pk": f"{KEY}:{r}", "repo": KEY, "path": "p", "language": "x",
                                 "vector": mb.hashed_vector(dims[fwd.indices[a:b]], fwd.data[a:b])})
                c.insert(target.collection, ents)  # as a first build does (milvus_backend.sync)
            insert_s = time.perf_counter() - t0
            if flush:  # seal the segments: the engine then builds its sparse index over them
                c.flush(target.collection)
            ids, w = queries[0]
            mb.engine_search(target, [KEY], [fwd.terms[i] for i in ids], w, backends.K)
            build_s = time.perf_counter() - t0

        def search(q, k):
            ids, w = q
            hits = mb.engine_search(target, [KEY], [fwd.terms[i] for i in ids], w, k)
            return [(int(h.chunk_id), h.score) for h in hits]

        lat = latencies(lambda q: search(q, backends.K), queries)
        results = [search(q, backends.K) for q in queries]
        rec = backends.mean_recall(results, queries, truths, scorer)
        served = [backends.served_top(search(q, backends.FETCH), q[0], q[1], scorer) for q in queries]
        rec_served = backends.mean_recall(served, queries, truths, scorer)

        def served_once(q):
            from types import SimpleNamespace

            from codelsr.index.reader import IndexReader

            rows = [r for r, _ in search(q, backends.FETCH)]
            return IndexReader.row_scores(SimpleNamespace(forward=fwd), rows, q[0], q[1])

        served_lat = latencies(served_once, queries)
        coll_stats = mb.collisions(fwd.terms)
        row = {"collection": coll.name, "backend": "milvus-lite" + ("+flush" if flush else ""), "chunks": fwd.n_rows, "nnz": int(fwd.indices.size),
               "build_s": build_s, "insert_s": insert_s, "build_peak_mb": mem.peak, "disk_mb": dir_mb(folder),
               **lat, "recall10": rec, "served_p50_ms": served_lat["p50_ms"], "served_p99_ms": served_lat["p99_ms"],
               "served_recall10": rec_served, "collisions": coll_stats, "load": load_average()}
        log(row)
        return row
    finally:
        mb.close_clients()
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.milvus")
    parser.add_argument("--collections", default="real:100000,synthetic:100000@30522")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--no-flush", action="store_true", help="skip the second build that seals segments first")
    args = parser.parse_args(argv)
    pin_threads(args.threads)
    from tools.bench.run import parse_collections

    work = corpus.default_work()
    out = args.out or work / "results.jsonl"
    log = backends.make_logger(out)
    info = {"run": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "argv": sys.argv[1:], **machine()}
    print("# " + json.dumps(info))
    with open(out, "a") as f:
        f.write(json.dumps(info) + "\n")
    nl = corpus.nl_queries(args.queries)
    for kind, n, vocab in parse_collections(args.collections):
        if kind == "real":
            coll = corpus.real_repeated(n, work, log)  # the same chunks as the scale bench's real:N
            queries = corpus.real_queries(coll, nl)
        else:
            coll = corpus.synthetic_forward(n, vocab, work=work, log=log)
            queries = corpus.synthetic_queries(args.queries, vocab)
        _, exact, truths = backends.bench_exact(coll, queries, log)
        del exact
        scorer = backends.RowScorer(coll.forward)
        for flush in (False,) if args.no_flush else (False, True):
            bench_milvus(coll, queries, truths, scorer, log, flush=flush)
        del coll, scorer
        gc.collect()
    print(f"# results appended to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
