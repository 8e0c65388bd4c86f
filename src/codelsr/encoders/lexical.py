"""The model-free encoder: BM25 expressed as sparse vectors, so it shares the index and search
path with SPLADE.

BM25(q, d) = sum over terms t in both of  idf(t) * qtf(t) * tf(t,d)(k1+1) / (tf(t,d) + k1 (1 - b + b |d| / L))

The document factor becomes the document vector and ``idf * qtf`` the query vector, so the dot
product is BM25 (Robertson & Zaragoza, "The Probabilistic Relevance Framework", 2009).
One deliberate difference: ``L`` is a fixed reference length (a setting), not the collection's
average length. That keeps each document vector a function of its text alone, so vectors cached
by content hash stay valid when the collection changes (incremental reindexing), and idf, the one
collection statistic, is applied at query time from the index's live document frequencies.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from codelsr.encoders.base import LEXICAL_WINDOW_LINES
from codelsr.encoders.identifiers import code_terms, term_counts
from codelsr.records import SparseVector

LEXICAL_VERSION = 1


def bm25_idf(n_docs: int, doc_freq: int) -> float:
    """Lucene's non-negative BM25 idf: ln(1 + (N - df + 0.5) / (df + 0.5))."""
    return math.log(1.0 + (n_docs - doc_freq + 0.5) / (doc_freq + 0.5))


class LexicalEncoder:
    """Code-aware BM25 as a sparse encoder (see the module docstring)."""

    window_lines = LEXICAL_WINDOW_LINES  # it reads every term of a chunk, however long

    def __init__(self, k1: float = 1.2, b: float = 0.75, reference_length: float = 100.0):
        if k1 <= 0 or not 0 <= b <= 1 or reference_length <= 0:
            raise ValueError("lexical encoder needs k1 > 0, 0 <= b <= 1 and reference_length > 0")
        self.k1 = k1
        self.b = b
        self.reference_length = reference_length
        self._n_docs: int | None = None
        self._doc_freq: Mapping[str, int] | None = None

    @property
    def encoder_id(self) -> str:
        return f"lexical-bm25/v{LEXICAL_VERSION}:k1={self.k1:g}:b={self.b:g}:L={self.reference_length:g}"

    def settings(self) -> dict[str, Any]:
        return {"k1": self.k1, "b": self.b, "reference_length": self.reference_length}

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVector]:
        return [self._document_vector(text) for text in texts]

    def _document_vector(self, text: str) -> SparseVector:
        counts = term_counts(text)  # == Counter(code_terms(text)), faster
        length = sum(counts.values())
        norm = self.k1 * (1.0 - self.b + self.b * length / self.reference_length)
        k1p1 = self.k1 + 1.0
        return {term: tf * k1p1 / (tf + norm) for term, tf in counts.items()}

    def encode_queries(self, texts: Sequence[str]) -> list[SparseVector]:
        return [self._query_vector(text) for text in texts]

    def _query_vector(self, text: str) -> SparseVector:
        counts = Counter(code_terms(text))
        if self._doc_freq is None or self._n_docs is None:
            return {term: float(qtf) for term, qtf in counts.items()}
        n, df = self._n_docs, self._doc_freq
        # Terms absent from the collection cannot match anything; leave them out.
        return {t: qtf * bm25_idf(n, df[t]) for t, qtf in counts.items() if df.get(t, 0) > 0}

    def bind_collection(self, n_docs: int, doc_freq: Mapping[str, int]) -> "LexicalEncoder":
        """A copy whose query vectors carry idf from this collection."""
        bound = LexicalEncoder(self.k1, self.b, self.reference_length)
        bound._n_docs, bound._doc_freq = n_docs, doc_freq
        return bound
