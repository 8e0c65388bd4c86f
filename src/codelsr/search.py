"""Query -> ranked hits: encode, retrieve from the backend, filter, merge overlapping chunks of one
file, trim snippets to a character budget."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from codelsr.errors import InvalidQueryError
from codelsr.index.backends import top_k_rows
from codelsr.index.reader import IndexReader, open_index
from codelsr.records import Chunk, Hit

MAX_QUERY_CHARS = 4000
MAX_K = 100
DEFAULT_SNIPPET_CHARS = 600


@dataclass
class SearchResult:
    query: str
    repo: str
    encoder: str
    hits: list[Hit] = field(default_factory=list)
    next_offset: int | None = None

    def to_json(self) -> dict:
        return {
            "query": self.query,
            "repo": self.repo,
            "encoder": self.encoder,
            "hits": [h.to_json() for h in self.hits],
        }


def validate_query(query: str, k: int, offset: int = 0) -> str:
    if query is None or not query.strip():
        raise InvalidQueryError("the query is empty; describe the code you are looking for")
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidQueryError(
            f"the query has {len(query)} characters; the limit is {MAX_QUERY_CHARS}: "
            "search with the key identifiers or a short description instead"
        )
    if not 1 <= k <= MAX_K:
        raise InvalidQueryError(f"k must be between 1 and {MAX_K}, got {k}")
    if offset < 0:
        raise InvalidQueryError(f"offset must be 0 or more, got {offset}")
    return query.strip()


def make_snippet(text: str, max_chars: int) -> str:
    """The chunk's first lines within ``max_chars``, cut at a line end, saying what was left out."""
    if max_chars <= 0 or len(text) <= max_chars:
        return text
    cut = text.rfind("\n", 0, max_chars)
    head = text[: cut if cut > 0 else max_chars]
    rest = text[len(head):].count("\n") + (0 if text.endswith("\n") else 1)
    return f"{head}\n… ({rest} more lines)" if cut > 0 else f"{head}…"


def _merge_overlapping(ranked: list[tuple[int, float, Chunk]]) -> list[tuple[int, float, Chunk, int, int]]:
    """Fold chunks that overlap a better-ranked chunk of the same file into it (windows of one
    long function, say): one hit per region, ranked by its best chunk, lines widened to cover all."""
    merged: list[list] = []  # [row, score, chunk, start, end]
    by_path: dict[str, list[list]] = {}
    for row, score, chunk in ranked:
        for m in by_path.get(chunk.path, []):
            if chunk.start_line <= m[4] and chunk.end_line >= m[3]:
                m[3], m[4] = min(m[3], chunk.start_line), max(m[4], chunk.end_line)
                break
        else:
            entry = [row, score, chunk, chunk.start_line, chunk.end_line]
            merged.append(entry)
            by_path.setdefault(chunk.path, []).append(entry)
    return [tuple(m) for m in merged]


def search_index(reader: IndexReader, query: str, *, k: int = 10, offset: int = 0, path_glob: str | None = None,
                 language: str | None = None, max_chars: int = DEFAULT_SNIPPET_CHARS,
                 encoder: str | None = None) -> SearchResult:
    query = validate_query(query, k, offset)
    result = SearchResult(query=query, repo=str(reader.repo), encoder=reader.manifest.encoder_spec)
    vector = reader.query_vector(query, encoder)
    term_ids, weights = reader.to_ids(vector)
    if term_ids.size == 0:
        return result
    want = offset + k
    fetch = want * 3 + 10  # merging folds some candidates away
    filtered = bool(path_glob or language)
    if filtered:
        # Scored once: widening the fetch below only takes more of the same ranking.
        rows = reader.chunks.filter_rows(path_glob, language)
        scores = reader.exact.scores(term_ids, weights)[rows] if rows.size else np.zeros(0)
    while True:
        if filtered:
            candidates = top_k_rows(scores, fetch, rows)
        else:
            candidates = reader.backend.search(term_ids, weights, fetch)
            exact = reader.row_scores([r for r, _ in candidates], term_ids, weights)
            candidates = sorted(((r, s) for (r, _), s in zip(candidates, exact)), key=lambda rs: (-rs[1], rs[0]))
        chunks = reader.chunks.by_rows([r for r, _ in candidates])
        merged = _merge_overlapping([(r, s, chunks[r]) for r, s in candidates if r in chunks])
        exhausted = len(candidates) < fetch
        if len(merged) >= want or exhausted:
            break
        fetch *= 4
    page = merged[offset:want]
    result.hits = [
        Hit(chunk_id=chunk.chunk_id, path=chunk.path, start_line=start, end_line=end, symbol=chunk.symbol,
            language=chunk.language, score=score, snippet=make_snippet(chunk.text, max_chars),
            repo=str(reader.repo))
        for _, score, chunk, start, end in page
    ]
    result.next_offset = want if len(merged) > want or not exhausted else None
    return result


def search(repo: Path | str, query: str, **kwargs) -> SearchResult:
    """Search one indexed repository. See ``search_index`` for the keyword arguments."""
    return search_index(open_index(repo), query, **kwargs)


@dataclass
class MultiSearchResult:
    """One page of the hits of several repositories, interleaved by score.

    ``encoders`` maps each repository to the encoder its index was built with: scores of different
    encoders are not on one scale, so ``mixed_encoders`` says when the interleaving is approximate."""

    query: str
    repos: list[str]
    encoders: dict[str, str]
    hits: list[Hit] = field(default_factory=list)
    offset: int = 0
    next_offset: int | None = None

    @property
    def mixed_encoders(self) -> bool:
        return len(set(self.encoders.values())) > 1

    def to_json(self) -> dict:
        return {
            "query": self.query,
            "repos": self.repos,
            "encoders": self.encoders,
            "hits": [{**h.to_json(), "repo": h.repo} for h in self.hits],
            "next_offset": self.next_offset,
        }


def best_hits(reader: IndexReader, query: str, n: int, **kwargs) -> tuple[list[Hit], bool]:
    """The best ``n`` hits of one index (in pages of at most ``MAX_K``), and whether more exist."""
    hits: list[Hit] = []
    while len(hits) < n:
        page = search_index(reader, query, k=min(MAX_K, n - len(hits)), offset=len(hits), **kwargs)
        hits += page.hits
        if page.next_offset is None:
            return hits, False
    return hits, True


def search_readers(readers: Sequence[IndexReader], query: str, *, k: int = 10, offset: int = 0,
                   **kwargs) -> MultiSearchResult:
    """Search open indexes and interleave their hits by score (ties: reader order, then rank).

    Each index gives its best ``offset + k``, so the page is exact, as if it were one index. See
    ``search_index`` for the keyword arguments."""
    query = validate_query(query, k, offset)
    if len(readers) == 1:
        one = search_index(readers[0], query, k=k, offset=offset, **kwargs)
        hits, next_offset = one.hits, one.next_offset
    else:
        pooled: list[tuple[float, int, int, Hit]] = []
        more = False
        for ri, reader in enumerate(readers):
            top, has_more = best_hits(reader, query, offset + k, **kwargs)
            more = more or has_more
            pooled += [(-h.score, ri, hi, h) for hi, h in enumerate(top)]
        pooled.sort(key=lambda t: t[:3])
        hits = [t[3] for t in pooled[offset:offset + k]]
        next_offset = offset + k if more or len(pooled) > offset + k else None
    return MultiSearchResult(query=query, repos=[str(r.repo) for r in readers],
                             encoders={str(r.repo): r.manifest.encoder_spec for r in readers},
                             hits=hits, offset=offset, next_offset=next_offset)


def search_repos(repos: Sequence[Path | str], query: str, **kwargs) -> MultiSearchResult:
    """Search several indexed repositories at once; see ``search_readers``."""
    return search_readers([open_index(r) for r in repos], query, **kwargs)
