"""Encoder names -> encoders. One table, so error messages list exactly what exists.

A spec is either a registered name (``lexical``, ``splade-code-tiny``, ``hybrid-code-tiny``) or ``splade:<hub id or local path>``; a bare hub
id (``naver/splade-v3``) or an existing local folder is read as a SPLADE checkpoint too.
Neural encoders are imported lazily: the lexical path never imports torch.

A local SPLADE folder with a current ONNX export (``python -m tools.train.export_onnx``; the shipped
model has one) runs on ONNX Runtime, without torch; anything else runs on torch. Both give the same
vectors and the same ``encoder_id``. ``CODELSR_SPLADE_RUNTIME=torch`` (or ``onnx``) forces one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from codelsr.encoders.base import SparseEncoder
from codelsr.errors import EncoderUnavailableError, UnknownEncoderError

log = logging.getLogger("codelsr.encoders")

DEFAULT_ENCODER = "lexical"  # built in; the user's setting may differ (codelsr.config.default_encoder)


def _lexical() -> SparseEncoder:
    from codelsr.encoders.lexical import LexicalEncoder

    return LexicalEncoder()


# codelsr's own model, shipped in the package as an int8 ONNX-only folder (docs/model.md,
# tools/train/): since 2026-12-08 a 3-layer MiniLM student distilled from MiniLM and from the
# previous SPLADE-tiny model on docstring->function and prose pairs, the weight soup of two
# checkpoints of one run (mini7 + mini8). Documents are cut at 256 WordPiece tokens, queries at 64,
# the lengths it was trained and chosen with (512-token queries scored the same on validation and
# worse on DS-1000's long prompts: docs/model.md).
SHIPPED_MODEL_NAME = "splade-code-tiny"
SHIPPED_MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / SHIPPED_MODEL_NAME
SHIPPED_WINDOWS = {"max_length_doc": 256, "max_length_query": 64}  # also what a candidate model is judged with
_SHIPPED_OPTIONS = {**SHIPPED_WINDOWS, "name": SHIPPED_MODEL_NAME}


RUNTIME_ENV = "CODELSR_SPLADE_RUNTIME"  # auto (default), onnx or torch
# SpladeEncoder options the ONNX runtime honours; any other (device, dtype, preset) means torch.
_ONNX_OPTIONS = frozenset({"max_length_doc", "max_length_query", "query_top_k", "doc_top_k", "batch_size",
                           "threads", "name", "output_vocab", "doc_pieces"})


def load_splade_model(model: str, **options: Any) -> SparseEncoder:
    """A SPLADE checkpoint on the runtime that fits: ONNX Runtime for a local folder with a current
    ONNX export (no torch needed), torch otherwise. Loaded once per process either way."""
    runtime = os.environ.get(RUNTIME_ENV, "auto").strip().lower() or "auto"
    if runtime not in {"auto", "onnx", "torch"}:
        raise EncoderUnavailableError(f"{RUNTIME_ENV}={runtime!r}: use auto, onnx or torch")
    folder = Path(model).expanduser()
    onnx_problem = None
    if runtime != "torch" and set(options) <= _ONNX_OPTIONS and (folder / "onnx.json").is_file():
        from codelsr.encoders.splade.onnx_encoder import load_onnx_splade

        try:
            return load_onnx_splade(folder, **options)
        except EncoderUnavailableError as exc:
            if runtime == "onnx":
                raise
            onnx_problem = str(exc)
            log.warning("%s; trying torch instead", exc)
    elif runtime == "onnx":
        raise EncoderUnavailableError(
            f"{RUNTIME_ENV}=onnx, but {model!r} has no ONNX export (or asks for options only torch has: "
            f"{sorted(set(options) - _ONNX_OPTIONS)}); write one with `python -m tools.train.export_onnx <folder>`")
    from codelsr.encoders.splade import load_splade
    from codelsr.encoders.splade.onnx_encoder import is_onnx_only

    if is_onnx_only(folder):  # no weights for torch to read: say so, not "no model.safetensors"
        why = onnx_problem or (f"{RUNTIME_ENV}={runtime}" if runtime == "torch"
                               else f"options only torch has: {sorted(set(options) - _ONNX_OPTIONS)}")
        raise EncoderUnavailableError(
            f"{model!r} ships only an ONNX export (no weights), and ONNX Runtime cannot serve it here ({why}); "
            f"use {RUNTIME_ENV}=auto or onnx, or the full checkpoint folder")
    try:
        return load_splade(model, **options)
    except EncoderUnavailableError as exc:
        if onnx_problem is None:
            raise
        raise EncoderUnavailableError(f"{onnx_problem}; and torch cannot run it either: {exc}") from exc


def _splade_code_tiny() -> SparseEncoder:
    return load_splade_model(str(SHIPPED_MODEL_DIR), **_SHIPPED_OPTIONS)


def _hybrid_code_tiny() -> SparseEncoder:
    from codelsr.encoders.hybrid import DEFAULT_LEXICAL_WEIGHT, HybridEncoder

    return HybridEncoder(load_splade_model(str(SHIPPED_MODEL_DIR), **_SHIPPED_OPTIONS),
                         lexical_weight=DEFAULT_LEXICAL_WEIGHT)


ENCODERS: dict[str, Callable[[], SparseEncoder]] = {
    "lexical": _lexical,
    "splade-code-tiny": _splade_code_tiny,
    "hybrid-code-tiny": _hybrid_code_tiny,
}


def _splade(model: str, **options) -> SparseEncoder:
    return load_splade_model(model, **options)


def normalise_spec(spec: str | None) -> str:
    """The canonical spec string recorded in manifests (``None`` means the user's default encoder,
    ``lexical`` unless ``codelsr config default_encoder`` or ``CODELSR_DEFAULT_ENCODER`` says otherwise)."""
    if not spec:
        from codelsr.config import default_encoder

        spec = default_encoder()
    spec = spec.strip()
    if spec in ENCODERS or spec.startswith("splade:"):
        return spec
    if Path(spec).expanduser().is_dir():
        return "splade:" + str(Path(spec).expanduser().resolve())
    if spec.count("/") == 1 and " " not in spec:
        return "splade:" + spec
    raise UnknownEncoderError(
        f"unknown encoder {spec!r}: use one of {', '.join(sorted(ENCODERS))}, "
        "or 'splade:<hub id or local folder>' (e.g. splade:naver/splade-code-06B)"
    )


def get_encoder(spec: str | None = None, **options) -> SparseEncoder:
    """Build (or fetch from the per-process cache) the encoder a spec names."""
    spec = normalise_spec(spec)
    if spec.startswith("splade:"):
        model = spec.removeprefix("splade:")
        if not model:
            raise UnknownEncoderError("'splade:' needs a model: splade:<hub id or local folder>")
        return _splade(model, **options)
    return ENCODERS[spec]()
