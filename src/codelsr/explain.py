"""Hit -> explanation: the score decomposed into per-term contributions.

A sparse score is a dot product, so it splits exactly into ``query weight x document weight`` per
shared term. Each term is marked as literal (it occurs in both the query text and the chunk text)
or as an *expansion* (the encoder inferred it), with the chunk lines where it occurs. That lets an
agent judge a hit before opening the file: "matched on `tokenize` (literal, lines 40-44) and on
expansion terms `lexer`, `parse`".

Expansions come in three kinds, by where the term is missing from the text:

- ``query_expansion``: the chunk contains the term but the query does not (the encoder inferred it
  from the query);
- ``document_expansion``: the query contains it but the chunk does not (inferred from the chunk);
- ``inferred``: neither text contains it.

A chunk is encoded with a context header (``codelsr.chunking.context``: its path's words and its
qualified symbol) before its text. A term found in the header and in no line of the text is
marked ``via="path"`` or ``via="symbol"`` (no lines: the header is not a line of the file); a term
found in the text is ``via="text"``; an expansion found in neither has ``via=None``.

When only the top ``max_terms`` terms are listed, ``other_terms`` carries the rest, so the listed
contributions plus ``other_terms.contribution`` always add up to ``score``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from codelsr.chunking.context import PATH_PART, SYMBOL_PART, header_parts
from codelsr.encoders.hybrid import LEXICAL_PREFIX
from codelsr.encoders.identifiers import code_terms
from codelsr.errors import InvalidQueryError
from codelsr.index.reader import IndexReader, open_index
from codelsr.search import validate_query

# Sub-word markers of WordPiece (##), byte-level BPE (Ġ, Ċ) and SentencePiece (▁).
_MARKERS = re.compile(r"^(##|Ġ|▁)+|Ċ+$")

FOCUS_LINES = 5
FOCUS_LINE_CHARS = 160


def term_surface(term: str) -> str:
    """The text a vocabulary term stands for, lower-cased (``Ġparse`` -> ``parse``; a hybrid
    encoder's lexical term ``lex:parse`` -> ``parse``)."""
    return _MARKERS.sub("", term.removeprefix(LEXICAL_PREFIX)).lower()


def _occurs(surface: str, words: set[str], text_lower: str) -> bool:
    if not surface:
        return False
    if surface in words:
        return True
    # Sub-word pieces (``##ize``) and short fragments match inside identifiers.
    return len(surface) >= 3 and surface in text_lower


def term_kind(in_query: bool, in_chunk: bool) -> str:
    """``literal`` when both texts contain the term, else which side the encoder inferred it on."""
    if in_query and in_chunk:
        return "literal"
    if in_chunk:
        return "query_expansion"
    if in_query:
        return "document_expansion"
    return "inferred"


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
    kind: str = "literal"  # literal | query_expansion | document_expansion | inferred
    via: str | None = "text"  # where the chunk holds it: text | path | symbol (context header) | None


@dataclass
class OtherTerms:
    """The shared terms left out of ``terms`` by ``max_terms``, summed."""

    count: int = 0
    contribution: float = 0.0
    expansion_contribution: float = 0.0


@dataclass
class FocusLine:
    """A chunk line carrying score: the summed contributions of the matched terms it contains."""

    line: int
    text: str
    contribution: float
    terms: list[str]


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
    other_terms: OtherTerms = field(default_factory=OtherTerms)
    focus_lines: list[FocusLine] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def _focus_lines(terms: list[TermContribution], lines: list[str], start_line: int) -> list[FocusLine]:
    """The lines where the matched terms concentrate, best first: where to look in the file."""
    by_line: dict[int, list[TermContribution]] = {}
    for t in terms:
        for n in t.lines:
            by_line.setdefault(n, []).append(t)
    ranked = sorted(by_line.items(), key=lambda kv: (-sum(t.contribution for t in kv[1]), kv[0]))
    return [
        FocusLine(line=n, text=lines[n - start_line].strip()[:FOCUS_LINE_CHARS],
                  contribution=sum(t.contribution for t in ts), terms=[t.term for t in ts])
        for n, ts in ranked[:FOCUS_LINES]
    ]


def _via_note(via: str | None) -> str:
    """`` (via path)`` for a term matched only through the context header."""
    return f" (via {via})" if via in (PATH_PART, SYMBOL_PART) else ""


def _header_origin(surface: str, parts: dict[str, tuple[set[str], str]]) -> str | None:
    """The header part (``path`` or ``symbol``) holding ``surface``, or ``None``: a part holding
    it as a word wins over one holding it inside a word (``session`` is the class ``Session``,
    not a piece of the file ``sessions.py``)."""
    for origin, (words, _) in parts.items():
        if surface in words:
            return origin
    for origin, (words, lower) in parts.items():
        if _occurs(surface, words, lower):
            return origin
    return None


def _summary(score: float, share: float, terms: list[TermContribution], focus: list[FocusLine]) -> str:
    if not terms:
        return "no query term occurs in this chunk: score 0"
    top = ", ".join(f"{t.term}{'*' if t.expansion else ''}{_via_note(t.via)} {t.contribution:.2f}"
                    for t in terms[:5])
    text = f"score {score:.3f} from {len(terms)} shared terms ({share:.0%} from expansion terms*): {top}"
    if focus:
        text += f"; best lines {', '.join(str(f.line) for f in focus[:3])}"
    return text


def explain_chunk(reader: IndexReader, query: str, chunk_id: str, *, max_terms: int | None = 30,
                  max_lines_per_term: int = 20) -> Explanation:
    """Decompose the score of ``chunk_id`` for ``query`` into per-term contributions.

    ``max_terms=None`` lists every shared term; otherwise the rest are summed in ``other_terms``.
    Query weights are rounded to float32 as in search, so the contributions add up to the hit's
    score.
    """
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
    parts = header_parts(reader.manifest.context_scheme, chunk.path, chunk.symbol, chunk.kind)
    header = {origin: (set(code_terms(words, drop_stopwords=False)), words.lower()) for origin, words in parts.items()}

    terms: list[TermContribution] = []
    for term, qw in q_vec.items():
        dw = d_vec.get(term)
        if not dw or qw <= 0:
            continue
        qw, dw = float(np.float32(qw)), float(dw)  # the precision search scores with
        surface = term_surface(term)
        in_query = _occurs(surface, q_words, q_lower)
        in_text = _occurs(surface, c_words, c_lower)
        via = "text" if in_text else _header_origin(surface, header)
        in_chunk = via is not None
        where = [chunk.start_line + i for i, (w, low) in enumerate(line_words) if _occurs(surface, w, low)]
        terms.append(TermContribution(term, qw, dw, qw * dw, in_query, in_chunk, not (in_query and in_chunk),
                                      where[:max_lines_per_term], term_kind(in_query, in_chunk), via))
    terms.sort(key=lambda t: (-t.contribution, t.term))
    score = sum(t.contribution for t in terms)
    expansion = sum(t.contribution for t in terms if t.expansion)
    unmatched = sorted(
        (t for t in q_vec if t not in d_vec), key=lambda t: (-q_vec[t], t)
    )
    share = expansion / score if score > 0 else 0.0
    listed = terms if max_terms is None else terms[:max_terms]
    rest = terms[len(listed):]
    other = OtherTerms(count=len(rest), contribution=sum(t.contribution for t in rest),
                       expansion_contribution=sum(t.contribution for t in rest if t.expansion))
    focus = _focus_lines(terms, lines, chunk.start_line)
    return Explanation(
        query=query, chunk_id=chunk_id, repo=str(reader.repo), path=chunk.path, start_line=chunk.start_line,
        end_line=chunk.end_line, symbol=chunk.symbol, language=chunk.language, encoder=reader.manifest.encoder_spec,
        score=score, expansion_share=share, terms=listed,
        query_terms_unmatched=unmatched if max_terms is None else unmatched[:max_terms],
        summary=_summary(score, share, terms, focus), other_terms=other, focus_lines=focus,
    )


def explain(repo: Path | str, query: str, chunk_id: str, **kwargs) -> Explanation:
    return explain_chunk(open_index(repo), query, chunk_id, **kwargs)
