"""Search filters checked before a search runs: a filter that cannot match says so, naming the
argument, instead of returning zero hits that look like the query's fault."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from codelsr.errors import InvalidQueryError

if TYPE_CHECKING:
    from codelsr.index.reader import IndexReader


def glob_problem(pattern: str) -> str | None:
    """What makes ``pattern`` an invalid glob (SQLite GLOB: ``*``, ``?``, ``[...]``), or None."""
    i = 0
    while i < len(pattern):
        if pattern[i] == "[":
            j = i + 1
            if j < len(pattern) and pattern[j] == "^":
                j += 1
            if j < len(pattern) and pattern[j] == "]":  # a leading ] is a literal member
                j += 1
            close = pattern.find("]", j)
            if close < 0:
                return f"the '[' at position {i + 1} is never closed by ']'"
            i = close + 1
            continue
        i += 1
    return None


def _is_a_language(name: str) -> bool:
    """Whether codelsr knows ``name`` as a language (one this index merely lacks gives no hits,
    not an error: a search over several repositories may find it in another)."""
    from codelsr.chunking.languages import TEXT, spec_for

    return name.lower() == TEXT or spec_for(name.lower()) is not None


def check_filters(readers: Sequence[IndexReader], path_glob: str | None, language: str | None) -> None:
    """``InvalidQueryError`` naming the argument when ``path_glob`` is not a glob or ``language`` is
    neither a language codelsr knows nor one the indexes hold (the message lists those)."""
    if path_glob is not None:
        problem = glob_problem(path_glob)
        if problem is not None:
            raise InvalidQueryError(
                f"the path glob {path_glob!r} (--glob, path_glob) is not valid: {problem}; use * (any characters, "
                "across folders), ? (one character) or [abc] (one of a set), e.g. 'src/*.py'"
            )
    if language:
        held: dict[str, int] = {}
        for reader in readers:
            for name, n in reader.chunks.languages().items():
                held[name] = held.get(name, 0) + n
        if language.lower() not in {name.lower() for name in held} and not _is_a_language(language):
            known = ", ".join(sorted(held)) or "none (the index is empty)"
            raise InvalidQueryError(
                f"unknown language {language!r}: the indexed chunks are in {known}; pass one of these, "
                "or omit the language filter"
            )
