"""A model folder from a training run's latest checkpoint, while the run goes on or after it stopped.

``python -m tools.train.snapshot <run dir> --out <folder>``

Why: choosing a checkpoint means scoring it on the choice splits (:mod:`tools.train.evaluate`),
which read model folders, and a run writes its folder only when it ends. This turns
``<run>/checkpoint.pt`` into a folder any encoder loads: the start model's architecture with the
checkpoint's weights, the start model's tokenizer, and, for a run with a training vocabulary
(``--train-vocab-min-df``), that vocabulary as ``output_vocab.json`` (rows outside it were never
trained). ``snapshot.json`` says which run and step it is. The folder is staged next to ``--out``
and renamed into place, so a reader never sees half of it; an existing ``--out`` is refused.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tools.train.train import save_model_folder

CHECKPOINT = "checkpoint.pt"


def write_snapshot(run: Path, out: Path, *, dtype: str = "float32") -> dict[str, Any]:
    """Write ``out`` from ``run``'s checkpoint; returns what ``snapshot.json`` records."""
    import torch
    from transformers import AutoModelForMaskedLM

    start, ckpt_path = run / "start", run / CHECKPOINT
    if not ckpt_path.is_file() or not (start / "config.json").is_file():
        raise FileNotFoundError(f"{run}: not a training run with a checkpoint ({CHECKPOINT} and start/ needed)")
    if out.exists():
        raise FileExistsError(f"{out} exists: choose a new folder")
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    net = AutoModelForMaskedLM.from_pretrained(str(start), dtype=torch.float32)
    net.load_state_dict(ckpt["model"])
    stage = out.with_name(out.name + ".tmp")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    save_model_folder(net, start, stage, dtype)
    state = ckpt.get("state", {})
    info: dict[str, Any] = {"run": str(run), "step": state.get("step"),
                            "train_minutes": round(state.get("seconds", 0.0) / 60, 1), "dtype": dtype}
    vocab = run / "train_vocab.json"
    if vocab.is_file():
        saved = json.loads(vocab.read_text())
        (stage / "output_vocab.json").write_text(json.dumps({
            "description": "The run's training vocabulary: rows outside it were never trained "
                           "(tools/train/snapshot.py).",
            "min_df": saved["min_df"], "train_pairs_hash": saved["train_pairs_hash"],
            "terms_kept": len(saved["token_ids"]), "token_ids": saved["token_ids"]}) + "\n")
        info["output_vocab_terms"] = len(saved["token_ids"])
    (stage / "snapshot.json").write_text(json.dumps(info, indent=2) + "\n")
    stage.rename(out)
    return info


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.train.snapshot", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a run directory (--run-dir of python -m tools.train)")
    ap.add_argument("--out", type=Path, required=True, help="the model folder to write (must not exist)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = ap.parse_args(argv)
    try:
        info = write_snapshot(args.run, args.out, dtype=args.dtype)
    except (FileNotFoundError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
