"""SPLADE encoders: any SPLADE checkpoint, by hub name or local path, as a ``SparseEncoder``.

Three parts: ``checkpoint`` (hub name or folder -> files, family, fingerprint), ``pooling`` (the
logits -> term weights math, shared with training), ``encoder`` (``SpladeEncoder`` and the
process-wide ``load_splade`` cache). Two families, told apart by the checkpoint's ``config.json``:
masked-LM (bert, distilbert, roberta, ...; right padding) and decoders run bidirectionally
(qwen3, llama, ...; naver's ``"splade"`` wrapper; left padding). The research behind the
choices, with sources, is in docs/model.md.

Importing this package imports no torch; the registry in ``codelsr.encoders`` imports it lazily.
"""

from __future__ import annotations

from codelsr.encoders.splade.checkpoint import OUTPUT_VOCAB_FILE
from codelsr.encoders.splade.encoder import FAMILY_DEFAULTS, PRESETS, SpladeEncoder, load_splade

__all__ = ["FAMILY_DEFAULTS", "OUTPUT_VOCAB_FILE", "PRESETS", "SpladeEncoder", "load_splade"]
