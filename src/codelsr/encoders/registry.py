"""Encoder names -> encoders. One table, so error messages list exactly what exists.

A spec is either a registered name (``lexical``, ``splade-code-tiny``, ``hybrid-code-tiny``) or ``splade:<hub id or local path>``; a bare hub
id (``naver/splade-v3``) or an existing local folder is read as a SPLADE checkpoint too.
Neural encoders are imported lazily: the lexical path never imports torch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from codelsr.encoders.base import SparseEncoder
from codelsr.errors import UnknownEncoderError

DEFAULT_ENCODER = "lexical"


def _lexical() -> SparseEncoder:
    from codelsr.encoders.lexical import LexicalEncoder

    return LexicalEncoder()


# codelsr's own model, shipped in the package (docs/model.md, tools/train/): SPLADE-tiny fine-tuned
# on docstring->function pairs. Documents are cut at 256 WordPiece tokens (512 was worse on
# validation), queries at 64, the length it was trained with (512 scored the same on validation
# and worse on DS-1000's long prompts: docs/model.md).
SHIPPED_MODEL_NAME = "splade-code-tiny"
SHIPPED_MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / SHIPPED_MODEL_NAME
_SHIPPED_OPTIONS = {"max_length_doc": 256, "max_length_query": 64, "name": SHIPPED_MODEL_NAME}


def _splade_code_tiny() -> SparseEncoder:
    from codelsr.encoders.splade import load_splade

    return load_splade(str(SHIPPED_MODEL_DIR), **_SHIPPED_OPTIONS)


def _hybrid_code_tiny() -> SparseEncoder:
    from codelsr.encoders.hybrid import load_hybrid

    return load_hybrid(str(SHIPPED_MODEL_DIR), lexical_weight=0.2, **_SHIPPED_OPTIONS)


ENCODERS: dict[str, Callable[[], SparseEncoder]] = {
    "lexical": _lexical,
    "splade-code-tiny": _splade_code_tiny,
    "hybrid-code-tiny": _hybrid_code_tiny,
}


def _splade(model: str, **options) -> SparseEncoder:
    from codelsr.encoders.splade import load_splade

    return load_splade(model, **options)


def normalise_spec(spec: str | None) -> str:
    """The canonical spec string recorded in manifests (``None`` means the default)."""
    spec = (spec or DEFAULT_ENCODER).strip()
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
