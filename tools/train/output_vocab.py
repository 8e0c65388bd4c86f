"""Choose a SPLADE model's output vocabulary from the terms it activates on its training data.

``python -m tools.train.output_vocab <model folder> [--min-df 1] [--sample N] [--exclude-scored --prose] [--dry-run]``

A tiny SPLADE model spends ~90 % of its encoding time multiplying every token by all 30,522
rows of the MLM head, yet a fine-tuned code model only ever activates a fraction of them
(``[unusedN]``, CJK characters, most ``##`` pieces never light up). This encodes the training
pairs (queries and documents, with the model's full vocabulary), counts in how many vectors
each term is active, and writes ``output_vocab.json`` with the ids active in at least
``--min-df`` of them. :class:`codelsr.encoders.splade.SpladeEncoder` then multiplies those rows
only; the vectors are the full model's vectors restricted to those terms.

Only training data is used, never the validation or eval packages, so the effect on held-out
quality is measured honestly (``python -m tools.train.evaluate --task validation``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tools.train import data as D


def sample_pairs(pairs: Sequence[D.Pair], n: int, *, seed: int = 13) -> list[D.Pair]:
    """``n`` of ``pairs`` drawn without replacement by a seeded shuffle, in their original order
    (all of them when ``n`` is 0 or not smaller). Training pairs come grouped by package, so the
    first ``n`` would see only a few packages' words; a spread sample sees them all. A bigger
    student takes ~30 minutes for all 23k pairs on 2 cores, and the terms a few thousand pairs
    light up are nearly all of them (docs/model.md)."""
    import random

    if n <= 0 or n >= len(pairs):
        return list(pairs)
    keep = sorted(random.Random(seed).sample(range(len(pairs)), n))
    return [pairs[i] for i in keep]


def active_term_counts(model: Path, pairs: Sequence[D.Pair], *, max_length_doc: int = 256,
                       max_length_query: int = 64, dtype: str = "float32", device: str = "cpu",
                       within_output_vocab: bool = False, log=print) -> tuple[Counter, int]:
    """(vectors in which each token id is active, number of vectors), over the full vocabulary, or
    with ``within_output_vocab`` over the ``output_vocab.json`` the folder already has (a model
    trained on a training vocabulary: its other rows were never trained)."""
    from codelsr.encoders.splade import SpladeEncoder

    enc = SpladeEncoder(str(model), device=device, dtype=dtype, output_vocab=within_output_vocab,
                        max_length_doc=max_length_doc, max_length_query=max_length_query,
                        batch_size=32)  # fmt: skip
    if within_output_vocab:
        ids = sorted({int(i) for i in json.loads((model / "output_vocab.json").read_text())["token_ids"]})
        id_of = {t: ids[j] for j, t in enumerate(enc._terms) if t is not None}
    else:
        id_of = {t: i for i, t in enumerate(enc._terms) if t is not None}
    counts: Counter = Counter()
    t0 = time.perf_counter()
    step = 2048
    for start in range(0, len(pairs), step):
        part = pairs[start : start + step]
        for vec in enc.encode_documents([p.code for p in part]) + enc.encode_queries([p.query for p in part]):
            counts.update(id_of[t] for t in vec)
        log(f"output vocab: {min(start + step, len(pairs))}/{len(pairs)} pairs encoded, "
            f"{len(counts)} terms active, {time.perf_counter() - t0:.0f} s")  # fmt: skip
    return counts, 2 * len(pairs)


def write_output_vocab(model: Path, counts: Counter, vectors: int, *, min_df: int,
                       train_pairs: Sequence[D.Pair]) -> dict[str, Any]:
    """Write ``<model>/output_vocab.json``; returns what it wrote, minus the id list."""
    ids = sorted(i for i, c in counts.items() if c >= min_df)
    info = {
        "description": "The model's output space: only these vocabulary ids are ever scored "
                       "(the full model's vectors restricted to them). Chosen by "
                       "tools/train/output_vocab.py from the training data.",
        "min_df": min_df,
        "vectors_counted": vectors,
        "terms_active": len(counts),
        "terms_kept": len(ids),
        "train_pairs": len(train_pairs),
        "train_pairs_hash": D.unit_list_hash(train_pairs),
    }
    path = model / "output_vocab.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({**info, "token_ids": ids}) + "\n")
    tmp.replace(path)
    path.chmod(0o644)
    return info


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.train.output_vocab", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path)
    ap.add_argument("--min-df", type=int, default=1, help="keep terms active in at least this many vectors")
    ap.add_argument("--sample", type=int, default=0, help="a seeded sample of N training pairs (0: all)")
    ap.add_argument("--exclude-scored", action="store_true",
                    help="the pairs of a run trained with --exclude-scored (and --prose: its prose pairs too)")
    ap.add_argument("--prose", action="store_true", help="add the prose pairs, as the trainer's --prose does")
    ap.add_argument("--cache-dir", default="tools/train/runs/cache")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dry-run", action="store_true", help="print the counts, write nothing")
    ap.add_argument("--save-counts", type=Path, help="also write {token id: vectors active} here")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    say = lambda m: print(m, file=sys.stderr)  # noqa: E731
    train, _, _ = D.training_pairs(Path(args.cache_dir), exclude_scored=args.exclude_scored, log=say)
    if args.prose:
        from tools.train.train import Config, cached_prose_pairs

        cfg = Config(exclude_scored=args.exclude_scored, prose=True)
        train = train + cached_prose_pairs(Path(args.cache_dir), sorted({p.package for p in train}), cfg)
    train = sample_pairs(train, args.sample)
    counts, n = active_term_counts(args.model, train, log=say)
    if args.save_counts:
        args.save_counts.write_text(json.dumps(dict(sorted(counts.items()))) + "\n")
    for k in (1, 2, 3, 5, 10):
        print(json.dumps({"min_df": k, "terms": sum(1 for c in counts.values() if c >= k)}))
    if not args.dry_run:
        info = write_output_vocab(args.model, counts, n, min_df=args.min_df, train_pairs=train)
        print(json.dumps(info))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
