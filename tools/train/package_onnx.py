"""Package a SPLADE folder's ONNX export without its weights: what ships when size counts.

    python -m tools.train.package_onnx <folder with a current export> --out <new folder>

Why: issue 13 caps the model in the package at 50 MB. A 3-layer MiniLM-wide student's int8
export is 18 MB, but its folder also holds the bf16 weights torch reads (35 MB) and the export
needs them only to check that it is not stale. The product runs the export (ONNX Runtime), so
the package can leave the weights out (``codelsr.encoders.splade.onnx_encoder``, "ONNX-only").

What: every file of ``folder`` except the weight files and ``onnx.json`` is copied into a new
folder, which gets the same ``onnx.json`` plus ``onnx_only``, the source's
``checkpoint_fingerprint`` (so the encoder id, and every index built with either, stays valid)
and ``packaged_sha256`` (the files' digest, checked at load). The folder is written next to
``--out`` and renamed into place when complete; the copy must give the source's vectors on real
chunks, or nothing is left behind.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from codelsr.encoders.splade.checkpoint import WEIGHT_SUFFIXES, checkpoint_fingerprint
from codelsr.encoders.splade.onnx_encoder import (
    ONNX_MANIFEST_FILE,
    OnnxSpladeEncoder,
    export_state,
    is_onnx_only,
    packaged_sha256,
)

CHECK_TEXTS = ["def parse_header(line):\n    name, _, value = line.partition(':')\n    return name, value",
               "Retry a failed request after an exponential delay, capped at max_delay seconds.",
               "where is the retry delay computed", "class LRUCache:\n    def get(self, key): ..."]


def package(folder: Path, out: Path) -> dict:
    """Write the ONNX-only copy of ``folder`` to ``out`` (which must not exist); its manifest."""
    folder = folder.expanduser().resolve()
    out = out.expanduser().resolve()
    state = export_state(folder)
    if state != "current":
        raise SystemExit(f"{folder} has no current ONNX export ({state}): run "
                         f"`python -m tools.train.export_onnx {folder}` first")
    if is_onnx_only(folder):
        raise SystemExit(f"{folder} is already ONNX-only")
    if out.exists():
        raise SystemExit(f"{out} exists: choose a new folder (nothing was written)")
    out.parent.mkdir(parents=True, exist_ok=True)
    source = OnnxSpladeEncoder(folder)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        staging = Path(tmp) / out.name
        staging.mkdir()
        for p in sorted(folder.iterdir()):
            if p.is_file() and p.suffix not in WEIGHT_SUFFIXES and p.name != ONNX_MANIFEST_FILE:
                shutil.copy2(p, staging / p.name)
        manifest = json.loads((folder / ONNX_MANIFEST_FILE).read_text(encoding="utf-8"))
        manifest.update({"onnx_only": True, "checkpoint_fingerprint": checkpoint_fingerprint(folder),
                         "packaged_from": str(folder), "packaged_sha256": packaged_sha256(staging)})
        (staging / ONNX_MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        packaged = OnnxSpladeEncoder(staging)
        if packaged.fingerprint != source.fingerprint:
            raise SystemExit(f"the packaged folder's fingerprint {packaged.fingerprint} is not the source's "
                             f"{source.fingerprint}")
        for side in ("documents", "queries"):
            if getattr(packaged, f"encode_{side}")(CHECK_TEXTS) != getattr(source, f"encode_{side}")(CHECK_TEXTS):
                raise SystemExit(f"the packaged folder encodes {side} differently from {folder}")
        staging.rename(out)
    return manifest


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.train.package_onnx", description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path, help="a SPLADE folder with a current export (tools.train.export_onnx)")
    ap.add_argument("--out", type=Path, required=True, help="the new ONNX-only folder (must not exist)")
    args = ap.parse_args(argv)
    manifest = package(args.folder, args.out)
    print(json.dumps({"out": str(args.out), "weights": manifest.get("weights"),
                      "checkpoint_fingerprint": manifest["checkpoint_fingerprint"],
                      "bytes": folder_bytes(args.out), "source_bytes": folder_bytes(args.folder)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
