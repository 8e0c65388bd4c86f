"""Query preparation: a long query (a bug report with its traceback, code and version dump) is
encoded in pieces and pooled, so every part of it counts and none of it is cut off.

Why: agents paste issue texts into ``search_code``; SWE-bench Lite's run to 24,770 characters
(median ~1,000). A SPLADE encoder reads only its query window (64 word pieces for the shipped
model, about the issue's title and first sentence) and drops the rest; BM25 reads everything but
lets a word a traceback repeats twenty times outweigh the one word that names the bug.

What: a query that fits one piece is encoded exactly as before. A longer one is split at line
ends into pieces of :func:`piece_chars` (the encoder's query window, in characters, for a model;
:data:`LEXICAL_PIECE_CHARS` for BM25), at most :data:`MAX_PIECES`; each piece is encoded on its
own and a term's weight is its largest weight in any piece (max pooling, as SPLADE pools its
tokens); then the :data:`MAX_QUERY_TERMS` heaviest terms are kept, which bounds search cost.
For BM25 this saturates query-term frequency at its count in one piece. The settings were
fixed before measuring on SWE-bench Lite (evals/README.md), not tuned on it.

A hybrid (SPLADE + BM25 in one vector) is two encoders with two windows: each half reads the
query in its own pieces (the SPLADE half in its window, the BM25 half in
:data:`LEXICAL_PIECE_CHARS`), and the halves are then combined as the hybrid combines them.
Until 2026-12-02 the BM25 half was cut into the SPLADE half's 186-character pieces, saturating
its term frequencies per 186 characters: against this module's own rule for BM25.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from codelsr.encoders.base import SparseEncoder, prune_top_k
from codelsr.records import SparseVector

MAX_QUERY_CHARS = 100_000  # refused above this: not a query, a file
LEXICAL_PIECE_CHARS = 1_000  # BM25 has no window; a piece is a paragraph or a screen of traceback
CHARS_PER_WORD_PIECE = 3  # a piece of a model's window in characters: code/prose average ~3-4 per token
MAX_PIECES = 64
MAX_QUERY_TERMS = 256


@dataclass(frozen=True)
class PreparedQuery:
    """How a query was encoded: the pieces (one: the query as it is) and whether text was left out."""

    pieces: tuple[str, ...]
    dropped_chars: int = 0


def piece_chars(encoder: SparseEncoder) -> int:
    """The characters one piece may hold: an encoder's query window (``max_length_query`` word
    pieces, a hybrid's SPLADE part's), else :data:`LEXICAL_PIECE_CHARS`."""
    for part in (encoder, getattr(encoder, "splade", None)):
        window = getattr(part, "max_length_query", None)
        if isinstance(window, int) and window > 0:
            return max(64, (window - 2) * CHARS_PER_WORD_PIECE)  # minus [CLS] / [SEP]
    return LEXICAL_PIECE_CHARS


def split_query(text: str, size: int, max_pieces: int = MAX_PIECES) -> PreparedQuery:
    """``text`` in pieces of at most ``size`` characters, cut at line ends (a longer line at a
    space); blank pieces are skipped; past ``max_pieces`` the rest is dropped (and counted)."""
    text = text.strip()
    if len(text) <= size:
        return PreparedQuery((text,) if text else ())
    pieces: list[str] = []
    current = ""
    for line in text.splitlines():
        while len(line) > size:  # one long line (minified JSON, a long assert): cut at a space
            cut = line.rfind(" ", 0, size)
            cut = cut if cut > size // 2 else size
            head, line = line[:cut], line[cut:].lstrip()
            if current.strip():
                pieces.append(current.strip())
            current = ""
            pieces.append(head)
        if current and len(current) + 1 + len(line) > size:
            pieces.append(current.strip())
            current = ""
        current = f"{current}\n{line}" if current else line
    if current.strip():
        pieces.append(current.strip())
    pieces = [p for p in pieces if p.strip()]
    kept = pieces[:max_pieces]
    return PreparedQuery(tuple(kept), sum(len(p) for p in pieces[max_pieces:]))


def max_pool(vectors: Sequence[SparseVector]) -> SparseVector:
    """Term-wise maximum of sparse vectors."""
    out: SparseVector = {}
    for vec in vectors:
        for term, w in vec.items():
            if w > out.get(term, 0.0):
                out[term] = w
    return out


def prepare_query(encoder: SparseEncoder, text: str) -> PreparedQuery:
    """The pieces ``encode_query`` encodes ``text`` as, for this encoder. For a hybrid these are its
    SPLADE half's pieces (:func:`piece_chars`); its BM25 half reads the query in its own."""
    return split_query(text, piece_chars(encoder))


def encode_query(encoder: SparseEncoder, text: str) -> SparseVector:
    """The query vector search uses: the encoder's own vector when the query fits one piece, else
    the max-pooled vectors of its pieces, cut to the :data:`MAX_QUERY_TERMS` heaviest terms.

    An encoder with halves (:class:`~codelsr.encoders.hybrid.HybridEncoder`: ``splade``,
    ``lexical`` and ``combine_query``) has each half encode the query this way, on its own window."""
    combine = getattr(encoder, "combine_query", None)
    if callable(combine):
        return combine(encode_query(encoder.splade, text), encode_query(encoder.lexical, text))  # type: ignore[attr-defined]
    prepared = prepare_query(encoder, text)
    if len(prepared.pieces) <= 1:
        return encoder.encode_queries([text])[0]
    pooled = max_pool(encoder.encode_queries(list(prepared.pieces)))
    return prune_top_k(pooled, MAX_QUERY_TERMS)
