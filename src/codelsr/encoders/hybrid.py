"""SPLADE terms and code-aware BM25 terms in one sparse vector.

The two term spaces are concatenated: SPLADE's WordPiece terms as they are, lexical terms
prefixed with ``lex:`` (BERT's pre-tokeniser splits on ``:``, so no WordPiece term can look like
that). One index then serves both, and a dot product sums the two scores::

    score(q, d) = SPLADE(q, d) + w * BM25(q, d)

The weight ``w`` sits on the query side, so document vectors stay a function of the text alone
(the content-hash cache stays valid) and BM25's idf, the one collection statistic, comes from the
index's document frequencies of the ``lex:`` terms through :meth:`HybridEncoder.bind_collection`.
Learned sparse + BM25 interpolation is the usual strong baseline for SPLADE (Formal et al.,
"From Distillation to Hard Negative Sampling", SIGIR 2022, reports it); here it is one index.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from codelsr.encoders.base import SparseEncoder, window_lines
from codelsr.encoders.lexical import LexicalEncoder
from codelsr.records import SparseVector

__all__ = ["LEXICAL_PREFIX", "HybridEncoder", "load_hybrid"]

LEXICAL_PREFIX = "lex:"
HYBRID_VERSION = 1
DEFAULT_LEXICAL_WEIGHT = 0.2  # chosen on validation packages for splade-code-tiny (docs/model.md)


class _Unprefixed(Mapping[str, int]):
    """A view of the ``lex:`` document frequencies under their bare names (no copy)."""

    def __init__(self, doc_freq: Mapping[str, int]):
        self._df = doc_freq

    def __getitem__(self, term: str) -> int:
        return self._df[LEXICAL_PREFIX + term]

    def get(self, term: str, default: Any = None) -> Any:  # type: ignore[override]
        return self._df.get(LEXICAL_PREFIX + term, default)

    def __contains__(self, term: object) -> bool:
        return isinstance(term, str) and (LEXICAL_PREFIX + term) in self._df

    def __iter__(self) -> Iterator[str]:
        n = len(LEXICAL_PREFIX)
        return (t[n:] for t in self._df if t.startswith(LEXICAL_PREFIX))

    def __len__(self) -> int:
        return sum(1 for _ in self)


class HybridEncoder:
    """SPLADE + lexical BM25 as one :class:`~codelsr.encoders.base.SparseEncoder` (see module doc)."""

    def __init__(
        self,
        splade: SparseEncoder,
        lexical: LexicalEncoder | None = None,
        *,
        lexical_weight: float = DEFAULT_LEXICAL_WEIGHT,
    ):
        if lexical_weight < 0:
            raise ValueError("lexical_weight must be >= 0")
        self.splade = splade
        self.lexical = lexical if lexical is not None else LexicalEncoder()
        self.lexical_weight = float(lexical_weight)

    @classmethod
    def from_model(cls, model: str, *, lexical_weight: float = DEFAULT_LEXICAL_WEIGHT, **splade_options: Any) -> "HybridEncoder":
        """A hybrid over the SPLADE checkpoint ``model`` (hub id or folder) and default BM25."""
        from codelsr.encoders.splade import load_splade

        return cls(load_splade(model, **splade_options), lexical_weight=lexical_weight)

    @property
    def encoder_id(self) -> str:
        return (
            f"hybrid/v{HYBRID_VERSION}:w={self.lexical_weight:g}"
            f"[{self.splade.encoder_id}]+[{self.lexical.encoder_id}]"
        )

    @property
    def window_lines(self) -> int:
        """The SPLADE half's: it is the one that stops reading."""
        return window_lines(self.splade)

    def settings(self) -> dict[str, Any]:
        return {
            "kind": "hybrid",
            "lexical_prefix": LEXICAL_PREFIX,
            "lexical_weight": self.lexical_weight,
            "splade": self.splade.settings(),
            "lexical": self.lexical.settings(),
        }

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVector]:
        learned = self.splade.encode_documents(texts)
        lexical = self.lexical.encode_documents(texts)
        return [_merge(s, x, 1.0) for s, x in zip(learned, lexical)]

    def encode_queries(self, texts: Sequence[str]) -> list[SparseVector]:
        learned = self.splade.encode_queries(texts)
        lexical = self.lexical.encode_queries(texts)
        return [_merge(s, x, self.lexical_weight) for s, x in zip(learned, lexical)]

    def combine_query(self, learned: SparseVector, lexical: SparseVector) -> SparseVector:
        """The hybrid query vector from its halves' query vectors (as :meth:`encode_queries` makes
        it). :func:`codelsr.queries.encode_query` uses it to let each half read a long query in
        pieces of its own window."""
        return _merge(learned, lexical, self.lexical_weight)

    def bind_collection(self, n_docs: int, doc_freq: Mapping[str, int]) -> "HybridEncoder":
        """A copy whose lexical query terms carry idf from the index's ``lex:`` frequencies."""
        bound = self.lexical.bind_collection(n_docs, _Unprefixed(doc_freq))
        return HybridEncoder(self.splade, bound, lexical_weight=self.lexical_weight)


def _merge(learned: SparseVector, lexical: SparseVector, weight: float) -> SparseVector:
    out = dict(learned)
    if weight > 0:
        for term, w in lexical.items():
            out[LEXICAL_PREFIX + term] = w * weight
    return out


def load_hybrid(model: str, *, lexical_weight: float = DEFAULT_LEXICAL_WEIGHT, **splade_options: Any) -> HybridEncoder:
    """The hybrid encoder over SPLADE checkpoint ``model`` (the SPLADE part is cached per process)."""
    return HybridEncoder.from_model(model, lexical_weight=lexical_weight, **splade_options)
