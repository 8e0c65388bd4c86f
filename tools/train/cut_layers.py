"""Keep some transformer layers of a trained masked-LM SPLADE checkpoint: a faster student to train on.

``python -m tools.train.cut_layers <checkpoint folder> --keep 0,2,4 --out <folder>``

Why: on 2 AVX2 cores a 6-layer, 384-wide student encodes about 32 chunks/s, and its matrix
products already run near the cores' peak, so int8 buys a third, not the factor of two the
product needs (docs/model.md). Encoding time is close to proportional to the layers, so a
3-layer student is the next candidate. Cutting the *trained* student (its embeddings, head and
the kept layers) starts from a working SPLADE model, where cutting the seed (run mini2) started
from layers that had never produced sparse vectors. Every other layer is kept by default, as
DistilBERT was initialised.

The folder written is a checkpoint like any other (``python -m tools.train --init-from <it>``):
config with the new layer count, weights in the source's dtype, tokenizer and output vocabulary
copied, and ``cut.json`` saying where it came from.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

COPIED_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
                "output_vocab.json")


def parse_keep(text: str, layers: int) -> list[int]:
    """``"0,2,4"`` -> [0, 2, 4], checked against a model of ``layers`` layers (sorted, distinct)."""
    try:
        keep = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise SystemExit(f"--keep takes layer numbers separated by commas, not {text!r}") from None
    if not keep or keep[0] < 0 or keep[-1] >= layers:
        raise SystemExit(f"--keep {text!r}: the model has layers 0..{layers - 1}")
    return keep


def every_other(layers: int) -> list[int]:
    """The default: layers 0, 2, 4, ... (half of them, the first always kept)."""
    return list(range(0, layers, 2))


def layer_list(net):
    """The ``ModuleList`` of transformer layers of a BERT-style masked LM."""
    encoder = getattr(net.base_model, "encoder", None)
    layers = getattr(encoder, "layer", None)
    if layers is None:
        raise SystemExit(f"{type(net).__name__}: no base_model.encoder.layer to cut (BERT-style models only)")
    return encoder, layers


def cut(source: Path, out: Path, keep: str = "") -> dict:
    """Write ``source`` with only the ``keep`` layers (``"0,2,4"``; empty: :func:`every_other`) to
    ``out`` (replaced); returns ``cut.json``."""
    import torch
    import transformers

    source, out = source.expanduser().resolve(), out.expanduser().resolve()
    if not (source / "config.json").is_file():
        raise SystemExit(f"{source} is not a checkpoint folder (no config.json)")
    if out == source:
        raise SystemExit("--out must be another folder than the source")
    net = transformers.AutoModelForMaskedLM.from_pretrained(str(source))
    encoder, layers = layer_list(net)
    kept = parse_keep(keep, len(layers)) if keep else every_other(len(layers))
    encoder.layer = torch.nn.ModuleList([layers[i] for i in kept])
    net.config.num_hidden_layers = len(kept)
    if out.exists():
        shutil.rmtree(out)
    net.save_pretrained(str(out))
    for name in COPIED_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, out / name)
    info = {"source": str(source), "source_layers": len(layers), "kept": kept,
            "parameters": sum(p.numel() for p in net.parameters())}
    (out / "cut.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return info


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.train.cut_layers", description=__doc__.split("\n\n")[0])
    ap.add_argument("source", type=Path, help="a trained masked-LM SPLADE checkpoint folder")
    ap.add_argument("--out", type=Path, required=True, help="folder to write (replaced if it exists)")
    ap.add_argument("--keep", default="", help="layers to keep, e.g. 0,2,4 (default: every other one from 0)")
    args = ap.parse_args(argv)
    print(json.dumps(cut(args.source, args.out, args.keep), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
