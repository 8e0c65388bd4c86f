"""Hit -> explanation: the score decomposed into per-term contributions.

A sparse score is a dot product, so it splits exactly into ``query weight x document weight`` per
shared term. Each term is marked as literal (it occurs in both the query text and the chunk text)
or as an *expansion* (the encoder inferred it), with the chunk lines where it occurs. That lets an
agent judge a hit before opening the file: "matched on `tokenize` (literal, lines 40-44) and on
expansion terms `lexer`, `parse`".
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from codelsr.encoders.identifiers import code_terms
from codelsr.errors import InvalidQueryError, NotIndexedError
from codelsr.index.reader import IndexReader, open_index
from codelsr.search import validate_query

# Sub-word markers of WordPiece (##), byte-level BPE (Ġ, Ċ) and SentencePiece (▁).
_MARKERS = re.compile(r"^(##|Ġ|▁)+|Ċ+$")


def term_surface(term: str) -> str:
    """The text a vocabulary term stands for, lower-cased (``Ġparse`` -> ``parse``)."""
    return _MARKERS.sub("", term).lower()


def _occurs(surface: str, words: set[str], text_lower: str) -> bool:
    if not surface:
        return False
    if surface in words:
        return True
    # Sub-word pieces (``##ize``) and short fragments match inside identifiers.
    return len(surface) >= 3 and surface in text_lower


@dataclass
class TermContribution:
    term: str
    query_weight: float
    doc_weight: float
    contribution: float
    in_query: bool
    in_chunk: bool
    expansion: bool
    lines: list[int] = field(default_factory=list)


@dataclass
class Explanation:
    query: str
    chunk_id: str
    repo: str
    path: str
    start_line: int
    end_line: int
    symbol: str | None
    language: str
    encoder: str
    score: float
    expansion_share: float
    terms: list[TermContribution]
    query_terms_unmatched: list[str]
    summary: str

    def to_json(self) -> dict:
        return asdict(self)


def explain_chunk(reader: IndexReader, query: str, chunk_id: str, *, max_terms: int = 30,
                  max_lines_per_term: int = 20) -> Explanation:
    query = validate_query(query, 1)
    stored = reader.chunks.by_chunk_id(chunk_id)
    if stored is None:
        raise InvalidQueryError(
            f"no chunk {chunk_id!r} in the current index of {reader.repo}; chunk ids come from "
            "search_code results and change when the chunk's code changes: search again"
        )
    chunk = stored.chunk
    q_vec = reader.query_vector(query)
    d_vec = reader.forward.row(stored.row)

    q_words = set(code_terms(query, drop_stopwords=False))
    q_lower = query.lower()
    lines = chunk.text.split("\n")
    line_words = [(set(code_terms(line, drop_stopwords=False)), line.lower()) for line in lines]
    c_words = set().union(*(w for w, _ in line_words)) if line_words else set()
    c_lower = chunk.text.lower()

    terms: list[TermContribution] = []
    for term, qw in q_vec.items():
        dw = d_vec.get(term)
        if not dw:
            continue
        surface = term_surface(term)
        in_query = _occurs(surface, q_words, q_lower)
        in_chunk = _occurs(surface, c_words, c_lower)
        where = [chunk.start_line + i for i, (w, low) in enumerate(line_words) if _occurs(surface, w, low)]
        terms.append(TermContribution(term, float(qw), float(dw), float(qw) * float(dw), in_query, in_chunk,
                                      not (in_query and in_chunk), where[:max_lines_per_term]))
    terms.sort(key=lambda t: (-t.contribution, t.term))
    score = sum(t.contribution for t in terms)
    expansion = sum(t.contribution for t in terms if t.expansion)
    unmatched = sorted(
        (t for t in q_vec if t not in d_vec), key=lambda t: (-q_vec[t], t)
    )
    share = expansion / score if score > 0 else 0.0
    top = ", ".join(f"{t.term}{'*' if t.expansion else ''} {t.contribution:.2f}" for t in terms[:5])
    summary = (
        f"score {score:.3f} from {len(terms)} shared terms ({share:.0%} from expansion terms*): {top}"
        if terms else "no query term occurs in this chunk: score 0"
    )
    return Explanation(
        query=query, chunk_id=chunk_id, repo=str(reader.repo), path=chunk.path, start_line=chunk.start_line,
        end_line=chunk.end_line, symbol=chunk.symbol, language=chunk.language, encoder=reader.manifest.encoder_spec,
        score=score, expansion_share=share, terms=terms[:max_terms], query_terms_unmatched=unmatched[:max_terms],
        summary=summary,
    )


def explain(repo: Path | str, query: str, chunk_id: str, **kwargs) -> Explanation:
    return explain_chunk(open_index(repo), query, chunk_id, **kwargs)
