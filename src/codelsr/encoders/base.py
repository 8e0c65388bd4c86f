"""The seam between chunks and the index: a sparse encoder turns texts into term-weighted vectors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from codelsr.records import SparseVector


@runtime_checkable
class SparseEncoder(Protocol):
    """Anything that maps texts to sparse vectors keyed by vocabulary term strings.

    ``encoder_id`` names the encoder *and* every setting that changes its vectors; it is recorded
    in each index, and an index is only searched with the encoder that built it.
    Document vectors must depend on the document text alone (no corpus statistics), so that a
    vector cached by content hash stays valid across reindexes.
    """

    encoder_id: str

    def settings(self) -> dict[str, Any]:
        """JSON-serialisable settings, recorded in the index manifest."""
        ...

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVector]: ...

    def encode_queries(self, texts: Sequence[str]) -> list[SparseVector]: ...


@runtime_checkable
class CollectionAware(Protocol):
    """An encoder whose *query* weights depend on collection statistics (BM25's idf).

    The index calls ``bind_collection`` with its document count and document frequencies before
    encoding queries; encoders without this method are used as they are.
    """

    def bind_collection(self, n_docs: int, doc_freq: Mapping[str, int]) -> "SparseEncoder": ...


def prune_top_k(vector: SparseVector, k: int | None) -> SparseVector:
    """Keep the ``k`` largest weights (ties broken by term string for determinism)."""
    if k is None or k <= 0 or len(vector) <= k:
        return vector
    kept = sorted(vector.items(), key=lambda tw: (-tw[1], tw[0]))[:k]
    return dict(kept)


def document_frequencies(vectors: Sequence[SparseVector]) -> dict[str, int]:
    """How many of ``vectors`` hold each term: what ``CollectionAware.bind_collection`` takes."""
    df: dict[str, int] = {}
    for vec in vectors:
        for term in vec:
            df[term] = df.get(term, 0) + 1
    return df


# Chunk windows per encoder (``window_lines``), measured on the agent-questions task (dev split;
# evals/results/windows/table.md): code runs at about 10 WordPiece tokens a line (9.3-10.7 on
# that corpus), so a SPLADE encoder that reads ``max_length_doc`` tokens reads about a tenth as
# many lines; windows of that length leave less of a long function unread. BM25 reads every
# term, and there longer windows kept long functions whole and scored better.
TOKENS_PER_LINE = 10
LEXICAL_WINDOW_LINES = 120


def lines_read(max_tokens: int) -> int:
    """About how many lines of code an encoder that reads ``max_tokens`` tokens sees."""
    return max(1, max_tokens // TOKENS_PER_LINE)


def window_lines(encoder: object) -> int | None:
    """How long a chunk may get for ``encoder`` before it is split into line windows, as the
    encoder states it with a ``window_lines`` attribute; None (the chunker's default,
    ``chunking.DEFAULT_WINDOW_LINES``) for an encoder that does not."""
    lines = getattr(encoder, "window_lines", None)
    return None if lines is None else int(lines)
