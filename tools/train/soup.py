"""Interpolate a fine-tuned SPLADE model's weights with its base model's (WiSE-FT).

``python -m tools.train.soup --base tools/train/runs/base --tuned <folder> --alpha 0.5 --out <folder>``

Why: fine-tuning SPLADE-tiny on docstring -> code pairs makes it better at code searched by a
docstring and *worse* at questions (docs/model.md, ../shared/notes/model-seeds.md: the MS MARCO
base beats every fine-tune so far on hand-written questions). Averaging the weights of the
zero-shot and the fine-tuned model (Wortsman et al., "Robust fine-tuning of zero-shot models",
arXiv 2109.01903) is known to keep much of both: the fine-tune's gains where it was trained and
the base's robustness where it was not. Both models must share architecture and vocabulary; here
they do (the fine-tune starts from the base).

``alpha`` is the fine-tuned model's share: 1 is the fine-tune, 0 the base. The output folder takes
the fine-tuned folder's tokenizer (camelCase splitting) and config; ONNX files and the output
vocabulary are *not* copied (they belong to other weights): rebuild them with
``python -m tools.train.output_vocab`` and ``python -m tools.train.export_onnx``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from codelsr.encoders.splade.checkpoint import OUTPUT_VOCAB_FILE
from codelsr.encoders.splade.onnx_encoder import ONNX_EMBEDDINGS_FILE, ONNX_GRAPH_FILE, ONNX_MANIFEST_FILE

WEIGHTS = "model.safetensors"
# Derived from a model's weights: never carried into a soup, and removed from a reused --out folder.
STALE = (ONNX_GRAPH_FILE, ONNX_MANIFEST_FILE, ONNX_EMBEDDINGS_FILE, OUTPUT_VOCAB_FILE)
CARRIED = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def interpolate(base: dict, tuned: dict, alpha: float, dtype: str = "bfloat16") -> dict:
    """``(1 - alpha) * base + alpha * tuned`` tensor by tensor, in float32, stored as ``dtype``.
    A tensor missing from either side, or shaped differently, is an error: a soup of different
    architectures is not a model."""
    import torch

    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be within [0, 1], got {alpha}")
    if set(base) != set(tuned):
        missing = sorted(set(base) ^ set(tuned))[:5]
        raise ValueError(f"the two models hold different tensors (e.g. {missing}): not the same architecture")
    out = {}
    for name, b in base.items():
        t = tuned[name]
        if b.shape != t.shape:
            raise ValueError(f"{name}: shape {tuple(b.shape)} in the base, {tuple(t.shape)} in the fine-tune")
        mixed = (1.0 - alpha) * b.float() + alpha * t.float()
        out[name] = mixed.to(getattr(torch, dtype)).contiguous()
    return out


def write_soup(base: Path, tuned: Path, alpha: float, out: Path, dtype: str = "bfloat16") -> Path:
    """The interpolated model as a loadable folder at ``out`` (see module doc)."""
    from safetensors.torch import load_file, save_file

    weights = interpolate(load_file(str(base / WEIGHTS)), load_file(str(tuned / WEIGHTS)), alpha, dtype)
    out.mkdir(parents=True, exist_ok=True)
    for name in CARRIED:
        if (tuned / name).exists():
            shutil.copy2(tuned / name, out / name)
    cfg_path = out / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["dtype"] = dtype
    cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")
    save_file(weights, str(out / WEIGHTS))
    for stale in STALE:
        (out / stale).unlink(missing_ok=True)
    record = {"soup": {"base": str(base), "tuned": str(tuned), "alpha": alpha, "dtype": dtype}}
    training = tuned / "training.json"
    if training.exists():
        record["tuned_training"] = json.loads(training.read_text())
    (out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.train.soup", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", type=Path, required=True, help="the zero-shot model folder")
    ap.add_argument("--tuned", type=Path, required=True, help="the fine-tuned model folder")
    ap.add_argument("--alpha", type=float, required=True, help="the fine-tune's share, 0..1")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    args = ap.parse_args(argv)
    for folder in (args.base, args.tuned):
        if not (folder / WEIGHTS).exists():
            ap.error(f"{folder}: no {WEIGHTS} (a model folder written by tools.train)")
    write_soup(args.base, args.tuned, args.alpha, args.out, args.dtype)
    print(f"wrote {args.out} (alpha {args.alpha})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
