"""The records that flow through the pipeline: chunks in, sparse vectors, hits out."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

# A sparse vector maps vocabulary term strings to positive weights. Term strings, not ids, cross
# every seam: they are what `explain` shows and what makes two encoders' outputs comparable.
SparseVector = dict[str, float]


@dataclass(frozen=True, slots=True)
class Chunk:
    """A unit of code to index: a function, method, class or window of lines.

    Lines are 1-based and inclusive. ``path`` is relative to the repository root, with ``/``.
    ``symbol`` is the qualified name (``Class.method``) or ``None`` for line windows.
    ``context`` is a header derived from ``path``, ``symbol`` and ``kind`` by the index's context scheme
    (``codelsr.chunking.context``); it is not stored, a reader derives it again.
    """

    path: str
    start_line: int
    end_line: int
    language: str
    symbol: str | None
    kind: str  # "function", "method", "class", "window", "module", "section", ...
    text: str
    context: str = ""  # the header encoded before the text (``chunking.context``); "" for none

    @property
    def encoded_text(self) -> str:
        """What the encoders see: the context header on its own first line, then the text."""
        return f"{self.context}\n{self.text}" if self.context else self.text

    @property
    def content_hash(self) -> str:
        """Hash of what is encoded (header and text): the key of the vector caches, so a vector is
        reused only for the same header and text. Without a header it is the hash of the text."""
        return hashlib.sha1(self.encoded_text.encode("utf-8", "surrogatepass")).hexdigest()

    @property
    def chunk_id(self) -> str:
        """Stable id: the same chunk at the same place keeps its id across reindexes."""
        key = f"{self.path}\0{self.start_line}\0{self.end_line}\0{self.content_hash}"
        return hashlib.sha1(key.encode("utf-8", "surrogatepass")).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Hit:
    """One ranked search result. ``path`` is relative to the repository root."""

    chunk_id: str
    path: str
    start_line: int
    end_line: int
    symbol: str | None
    language: str
    score: float
    snippet: str
    repo: str = ""

    def to_json(self) -> dict:
        return {
            "chunk_id": self.chunk_id,
            "path": self.path,
            "start_line": self.start_line,
            "end_line": self.end_line,
            "symbol": self.symbol,
            "language": self.language,
            "score": round(float(self.score), 6),
            "snippet": self.snippet,
        }
