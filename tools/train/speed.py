"""Encoding speed of a SPLADE folder on real chunks: chunks/s, ms/query, chunk token lengths.

``python -m tools.train.speed <model folder> --threads 2 [--dtype bfloat16] [--packages click jinja2]``
``python -m tools.train.speed <model folder> --runtime onnx`` (the folder's ONNX export, float or int8,
as codelsr runs it by default)

Chunks come from codelsr's own chunker over the given installed packages' source files, so the
length distribution is what indexing sees. Queries are the packages' mined docstring queries,
encoded one at a time (what a search does).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence


def real_chunks(packages: Sequence[str], limit: int) -> list[str]:
    from codelsr.chunking import chunk_file
    from evals.mining import package_dir

    texts: list[str] = []
    for name in packages:
        root = package_dir(name)
        for path in sorted(root.rglob("*.py")):
            rel = path.relative_to(root.parent).as_posix()
            texts.extend(c.text for c in chunk_file(rel, path.read_text(encoding="utf-8")))
    return texts[:limit]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.train.speed", description=__doc__)
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--max-length-doc", type=int, default=256)
    ap.add_argument("--max-length-query", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--packages", nargs="*", default=["click", "jinja2"])
    ap.add_argument("--limit", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--runtime", choices=["torch", "onnx"], default="torch",
                    help="onnx: the folder's ONNX export through ONNX Runtime (--dtype does not apply)")
    args = ap.parse_args(argv)

    from evals.mining import mine_docstring_pairs

    chunks = real_chunks(args.packages, args.limit)
    windows = {"max_length_doc": args.max_length_doc, "max_length_query": args.max_length_query,
               "batch_size": args.batch_size, "threads": args.threads}
    if args.runtime == "onnx":
        from codelsr.encoders.splade.onnx_encoder import OnnxSpladeEncoder

        enc = OnnxSpladeEncoder(args.model, **windows)
        dtype = f"float32 ({enc.weights} weights)"
    else:
        from codelsr.encoders.splade import SpladeEncoder

        enc = SpladeEncoder(args.model, device="cpu", dtype=args.dtype, **windows)
        dtype = args.dtype
    lengths = sorted(len(ids) for ids in enc._tokenize(chunks, 10**6))  # untruncated, for the report
    qs = [p.query for p in mine_docstring_pairs(args.packages)][: args.queries]
    enc.encode_documents(chunks[:32])  # warm-up
    t0 = time.perf_counter()
    docs = enc.encode_documents(chunks)
    t1 = time.perf_counter()
    q_ms = []
    for q in qs:
        s = time.perf_counter()
        enc.encode_queries([q])
        q_ms.append(1000 * (time.perf_counter() - s))
    # Long queries (an agent pasting a problem statement or code): the longest chunks, as queries.
    long_qs = sorted(chunks, key=len)[-50:]
    long_ms = []
    for q in long_qs:
        s = time.perf_counter()
        enc.encode_queries([q])
        long_ms.append(1000 * (time.perf_counter() - s))

    # Where the time goes: the transformer body vs the vocabulary projection + max-pool. Per
    # runtime: a batch's inputs and what ``_pool`` reads the states with (untimed), and the body.
    import contextlib

    if args.runtime == "onnx":
        def inputs_of(batch):
            return batch, [len(x) for x in batch]

        forward = enc._hidden
        no_grad = contextlib.nullcontext()
    else:
        import torch

        def inputs_of(batch):
            input_ids, mask = enc._pad(batch)
            return (input_ids, mask), mask

        def forward(inputs):
            return enc._forward_hidden(*inputs)

        no_grad = torch.inference_mode()
    body = head = 0.0
    ids = enc._tokenize(chunks, enc.max_length_doc)
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    with no_grad:
        for s in range(0, len(order), enc.batch_size):
            inputs, pool_with = inputs_of([ids[i] for i in order[s : s + enc.batch_size]])
            a = time.perf_counter()
            hidden = forward(inputs)
            b = time.perf_counter()
            enc._pool(hidden, pool_with)
            head += time.perf_counter() - b
            body += b - a

    def pct(p: float) -> int:
        return lengths[min(len(lengths) - 1, int(p * len(lengths)))]

    out = {
        "model": args.model, "runtime": args.runtime, "dtype": dtype, "threads": args.threads,
        "max_length_doc": args.max_length_doc, "chunks": len(chunks),
        "chunks_per_s": round(len(chunks) / (t1 - t0), 1),
        "query_ms_median": round(statistics.median(q_ms), 2),
        "query_ms_p95": round(sorted(q_ms)[int(0.95 * len(q_ms))], 2),
        "long_query_tokens_median": sorted(min(len(i), enc.max_length_query) for i in enc._tokenize(long_qs, 10**6))[len(long_qs) // 2],
        "long_query_ms_median": round(statistics.median(long_ms), 2),
        "tokens_p10_p50_p90_p99_max": [pct(0.1), pct(0.5), pct(0.9), pct(0.99), lengths[-1]],
        "share_truncated": round(sum(n > args.max_length_doc for n in lengths) / len(lengths), 3),
        "terms_per_doc": round(sum(map(len, docs)) / len(docs), 1),
        "share_vocab_projection": round(head / (head + body), 2),
        "load_avg_1min": round(__import__("os").getloadavg()[0], 1),
    }  # fmt: skip
    print(json.dumps(out), flush=True)
    print(json.dumps(out), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
