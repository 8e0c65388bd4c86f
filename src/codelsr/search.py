"""Query -> ranked hits: encode, retrieve from the backend, filter, merge overlapping chunks of one
file, trim snippets to a character budget."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from codelsr.errors import InvalidQueryError
from codelsr.filters import check_filters
from codelsr.index.backends import top_k_rows
from codelsr.index.reader import IndexReader, open_index
from codelsr.queries import MAX_QUERY_CHARS
from codelsr.records import Chunk, Hit

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
            "search with the issue's title and key identifiers, or the relevant part of the text"
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


def _merge_overlapping(ranked: list[tuple[Any, float, Chunk]], file_key: Callable[[Any, Chunk], Hashable] | None = None
                       ) -> list[tuple[Any, float, Chunk, int, int]]:
    """Fold chunks that overlap a better-ranked chunk of the same file into it (windows of one
    long function, say): one hit per region, ranked by its best chunk, lines widened to cover all.
    ``file_key(row, chunk)`` says which chunks share a file (default: the path)."""
    merged: list[list] = []  # [row, score, chunk, start, end]
    by_path: dict[Hashable, list[list]] = {}
    for row, score, chunk in ranked:
        key = chunk.path if file_key is None else file_key(row, chunk)
        for m in by_path.get(key, []):
            if chunk.start_line <= m[4] and chunk.end_line >= m[3]:
                m[3], m[4] = min(m[3], chunk.start_line), max(m[4], chunk.end_line)
                break
        else:
            entry = [row, score, chunk, chunk.start_line, chunk.end_line]
            merged.append(entry)
            by_path.setdefault(key, []).append(entry)
    return [tuple(m) for m in merged]


def search_index(reader: IndexReader, query: str, *, k: int = 10, offset: int = 0, path_glob: str | None = None,
                 language: str | None = None, max_chars: int = DEFAULT_SNIPPET_CHARS,
                 encoder: str | None = None, prepare_query: bool = True) -> SearchResult:
    """``prepare_query=False`` encodes the query text as it is, without :mod:`codelsr.queries`'
    long-query handling (for measuring what that handling buys)."""
    query = validate_query(query, k, offset)
    result = SearchResult(query=query, repo=str(reader.repo), encoder=reader.manifest.encoder_spec)
    if reader.manifest.backend == "milvus":
        result.hits, result.next_offset = search_engine([reader], query, k=k, offset=offset, path_glob=path_glob,
                                                        language=language, max_chars=max_chars, encoder=encoder)
        return result
    vector = reader.query_vector(query, encoder, prepare=prepare_query)
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
    reader = open_index(repo)
    check_filters([reader], kwargs.get("path_glob"), kwargs.get("language"))
    return search_index(reader, query, **kwargs)


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
    check_filters(readers, kwargs.get("path_glob"), kwargs.get("language"))
    if len(readers) == 1:
        one = search_index(readers[0], query, k=k, offset=offset, **kwargs)
        hits, next_offset = one.hits, one.next_offset
    elif one_engine(readers):
        # One Milvus collection holds them all: one engine query, idf over the repositories searched.
        hits, next_offset = search_engine(readers, query, k=k, offset=offset, **kwargs)
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


class _SummedDocFreq(Mapping):
    """term -> document frequency summed over several indexes (a view; nothing is copied)."""

    def __init__(self, parts: list[tuple[dict[str, int], np.ndarray]]):
        self._parts = parts

    def get(self, term, default=0):
        total = 0
        for ids, df in self._parts:
            i = ids.get(term)
            if i is not None:
                total += int(df[i])
        return total or default

    def __getitem__(self, term: str) -> int:
        found = self.get(term, 0)
        if not found:
            raise KeyError(term)
        return found

    def __contains__(self, term: object) -> bool:
        return isinstance(term, str) and self.get(term, 0) > 0

    def __iter__(self):
        seen: set[str] = set()
        for ids, _ in self._parts:
            for t in ids:
                if t not in seen:
                    seen.add(t)
                    yield t

    def __len__(self) -> int:
        return sum(1 for _ in self)


def shared_query_vector(readers: Sequence[IndexReader], query: str, encoder: str | None = None) -> dict[str, float]:
    """The query vector for a search over several indexes of one encoder: collection statistics
    (BM25's idf) from their live chunks together, as if they were one index."""
    from codelsr.encoders import get_encoder
    from codelsr.encoders.base import CollectionAware

    first = readers[0]
    if len(readers) == 1:
        return first.query_vector(query, encoder)
    first.encoder(encoder)  # the same checks as a one-index search (encoder mismatch, changed model)
    enc = get_encoder(first.manifest.encoder_spec)
    if isinstance(enc, CollectionAware):
        parts = [(r.term_ids, r.forward.doc_freq()) for r in readers]
        enc = enc.bind_collection(sum(r.forward.n_rows for r in readers), _SummedDocFreq(parts))
    return enc.encode_queries([query])[0]


def one_engine(readers: Sequence[IndexReader]) -> bool:
    """Whether these indexes share one Milvus collection (and encoder): one query searches them all."""
    settings = [r.manifest.backend_settings for r in readers]
    return (all(r.manifest.backend == "milvus" for r in readers)
            and len({(s.get("uri"), s.get("collection")) for s in settings}) == 1
            and len({r.manifest.encoder_id for r in readers}) == 1)


def search_engine(readers: Sequence[IndexReader], query: str, *, k: int = 10, offset: int = 0,
                  path_glob: str | None = None, language: str | None = None,
                  max_chars: int = DEFAULT_SNIPPET_CHARS, encoder: str | None = None) -> tuple[list[Hit], int | None]:
    """Search indexes synced to one Milvus collection with one engine query (per page widening).

    Repository, path and language filters run in the engine (the path glob as a LIKE superset,
    checked exactly here); candidates are rescored exactly from each index's forward index and
    merged as ``search_index`` does. Returns the page of hits and the next offset (None at the end).
    """
    from codelsr.index import milvus_backend as mb

    query = validate_query(query, k, offset)
    target = mb.target_from_settings(readers[0].manifest.backend_settings)
    keys = [str(r.manifest.backend_settings.get("repo")) for r in readers]
    vector = shared_query_vector(readers, query, encoder)
    terms = [t for t, w in vector.items() if w > 0]
    if not terms:
        return [], None
    weights = np.array([vector[t] for t in terms], dtype=np.float32)
    position = {key: i for i, key in enumerate(keys)}
    matches = mb.glob_matcher(path_glob) if path_glob else None
    want = offset + k
    fetch = want * 3 + 10
    while True:
        found = mb.engine_search(target, keys, terms, weights, fetch, path_glob, language)
        ranked: list[tuple[tuple[int, int], float, Chunk]] = []
        for ri, reader in enumerate(readers):
            ids = [h.chunk_id for h in found if position.get(h.key) == ri]
            rows = sorted(mb.rows_of(reader.chunks, ids).values())
            if not rows:
                continue
            q_ids, q_w = reader.to_ids(vector)
            chunks = reader.chunks.by_rows(rows)
            for row, score in zip(rows, reader.row_scores(rows, q_ids, q_w)):
                chunk = chunks.get(row)
                if chunk is not None and score > 0 and (matches is None or matches(chunk.path)):
                    ranked.append(((ri, row), score, chunk))
        ranked.sort(key=lambda e: (-e[1], e[0]))
        merged = _merge_overlapping(ranked, file_key=lambda origin, chunk: (origin[0], chunk.path))
        exhausted = len(found) < fetch or fetch >= mb.MAX_LIMIT
        if len(merged) >= want or exhausted:
            break
        fetch = min(fetch * 4, mb.MAX_LIMIT)
    hits = [
        Hit(chunk_id=chunk.chunk_id, path=chunk.path, start_line=start, end_line=end, symbol=chunk.symbol,
            language=chunk.language, score=score, snippet=make_snippet(chunk.text, max_chars),
            repo=str(readers[origin[0]].repo))
        for origin, score, chunk, start, end in merged[offset:want]
    ]
    return hits, (want if len(merged) > want or not exhausted else None)
