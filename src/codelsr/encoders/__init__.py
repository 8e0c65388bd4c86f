"""Chunks -> sparse vectors. ``get_encoder`` picks one by name; see ``base.SparseEncoder``."""

from codelsr.encoders.base import CollectionAware, SparseEncoder, prune_top_k, window_lines
from codelsr.encoders.registry import DEFAULT_ENCODER, ENCODERS, get_encoder, normalise_spec

__all__ = [
    "DEFAULT_ENCODER",
    "ENCODERS",
    "CollectionAware",
    "SparseEncoder",
    "get_encoder",
    "normalise_spec",
    "prune_top_k",
    "window_lines",
]
