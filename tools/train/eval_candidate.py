"""Run the eval suite on a candidate model folder as if it were the shipped model.

``python -m tools.train.eval_candidate <folder> [--lexical-weight w] -- <python -m evals arguments>``

Why: a trained model is judged through codelsr's real pipeline (chunking, index, hit list, MCP
server), not only by :mod:`tools.train.evaluate`'s exact dot products. This registers the folder,
for this process only, under two encoder names with the shipped model's settings (256-token
documents, 64-token queries): ``cand`` (the model alone) and ``hybrid-cand`` (the model plus
``--lexical-weight`` x BM25, as ``hybrid-code-tiny``), then hands the remaining arguments to
``python -m evals``. Example, the agent-questions choice split in repo mode::

    python -m tools.train.eval_candidate tools/train/runs/distill3/model -- \\
        --tasks agent-questions@dev --systems repo:hybrid-cand,repo:cand --out /tmp/cand-agent
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

CANDIDATE = "cand"
HYBRID_CANDIDATE = "hybrid-cand"


def register_candidate(folder: Path, lexical_weight: float | None = None, **options) -> None:
    """Add ``cand`` and ``hybrid-cand`` to :data:`codelsr.encoders.registry.ENCODERS` (the
    hybrid's weight: ``hybrid-code-tiny``'s unless given)."""
    from codelsr.encoders import registry
    from codelsr.encoders.hybrid import DEFAULT_LEXICAL_WEIGHT, HybridEncoder

    settings = {**registry.SHIPPED_WINDOWS, **options}
    weight = DEFAULT_LEXICAL_WEIGHT if lexical_weight is None else lexical_weight

    def alone():
        return registry.load_splade_model(str(folder), **settings)

    def hybrid():
        return HybridEncoder(alone(), lexical_weight=weight)

    registry.ENCODERS[CANDIDATE] = alone
    registry.ENCODERS[HYBRID_CANDIDATE] = hybrid


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    own, rest = (argv[: argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    ap = argparse.ArgumentParser(prog="python -m tools.train.eval_candidate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path, help="a SPLADE model folder written by tools.train")
    ap.add_argument("--lexical-weight", type=float, default=None,
                    help="BM25's weight in hybrid-cand (default: hybrid-code-tiny's)")
    args = ap.parse_args(own)
    if not (args.folder / "config.json").is_file():
        ap.error(f"{args.folder}: no config.json (a model folder written by tools.train)")
    register_candidate(args.folder.resolve(), args.lexical_weight)
    from evals.run import main as evals_main

    return evals_main(rest)


if __name__ == "__main__":
    raise SystemExit(main())
