"""What a chunk says about itself: a one-line header encoded in front of its text.

A function's code rarely names the file or the class it lives in, yet agents ask "where does the
session send a request?" with exactly those words. Measured on the agent-questions eval, the same
lexical encoder ranks gold functions better when each unit's file path is in its text (see
``evals/results/context/``), so the encoders see ``header + "\\n" + text``, where the header is
built here from what a chunk already has: its path and its qualified symbol.

The header is a pure function of stored fields (path, symbol, kind) and of the *scheme* the index was
built with (recorded in the manifest's ``chunking``), so an index needs no extra column: a reader
rebuilds each chunk's header from its row. Schemes:

- ``none``: no header; chunks encode their text alone (codelsr before this module).
- ``path+symbol``: the path's folders and file stem as words (``requests/sessions.py`` ->
  ``requests sessions``), then the chunk's qualified symbol (``Session.request``: the enclosing
  class and the function itself, which also names the later windows of a long function whose
  ``def`` line they do not hold). Markdown sections get their heading path
  (``Configuration > Proxies``); line windows of a file
  without a grammar (configuration, plain text) get the path alone. ``module`` chunks (imports,
  constants: the code between a file's units) get no header: every unit of the file already
  carries the path, and measured on the agent-questions dev split, giving the path to module
  chunks too lets them outrank the functions that answer (repo:lexical nDCG@10 dev 53.1 with
  it, 54.1 without; test 71.5 and 71.8; ``evals/results/context/table.md``).
"""

from __future__ import annotations

import re

NONE = "none"
PATH_SYMBOL = "path+symbol"
SCHEMES: tuple[str, ...] = (NONE, PATH_SYMBOL)
# The parts of a header, by origin (``header_parts``).
PATH_PART = "path"
SYMBOL_PART = "symbol"
DEFAULT_SCHEME = PATH_SYMBOL

# The version of the rules below. Part of the chunking options an index records, so changing
# the rules (bump it then) re-chunks every file on the next build instead of keeping rows whose
# header was made by other rules; a reader refuses an index made with other rules.
# 1: first rules; 2: path words of digits only left out (never released with 1); 3: a Markdown
# section's symbol (so its header) is its heading path.
RULES_VERSION = 3
# Chunk kinds encoded without a header (see the module docstring).
BARE_KINDS = frozenset({"module"})
# File stems that say nothing about their contents: every package has one.
_EMPTY_STEMS = frozenset({"__init__"})
# Path separators and the punctuation of file names; words are what is left.
_SEPARATORS = re.compile(r"[/\\.\-\s]+")


def check_scheme(scheme: str) -> str:
    """``scheme`` when it is a known one; otherwise a ``ValueError`` naming the choices."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown context scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
    return scheme


def path_words(path: str) -> list[str]:
    """The words of a repository-relative path: folders, then the file name without its
    extension(s) (``src/rich/_log_render.py`` -> ``src rich _log_render``).

    Identifiers are kept whole: the lexical encoder splits ``_log_render`` into ``log`` and
    ``render`` itself and also keeps the whole identifier, as it does for code. The extension is
    left out: ``py`` on every chunk of a Python repository is length without signal. So are words
    of digits only (numbered folders and files, dates: ``docs/000/00012.txt`` -> ``docs``): no
    question names them, and a learned encoder turns them into number pieces that match numbers
    in queries (crb-mbpp-500, hybrid-code-tiny: nDCG@10 98.6 with them, 99.2 without;
    ``evals/results/context/table.md``)."""
    parts = [p for p in path.replace("\\", "/").split("/") if p]
    if not parts:
        return []
    *folders, name = parts
    stem = name.split(".", 1)[0] if not name.startswith(".") else name.lstrip(".").split(".", 1)[0]
    words = [w for folder in folders for w in _SEPARATORS.split(folder)]
    if stem not in _EMPTY_STEMS:
        words.extend(_SEPARATORS.split(stem))
    return [w for w in words if w and not w.isdigit()]


def symbol_words(symbol: str | None) -> list[str]:
    """The qualified symbol as it reads in code (``Session.request``), or nothing."""
    if not symbol:
        return []
    return [" ".join(symbol.split())]


def header_parts(scheme: str, path: str, symbol: str | None, kind: str) -> dict[str, str]:
    """The header's parts by origin, in header order: ``{"path": ..., "symbol": ...}`` (empty
    parts left out; nothing for ``none`` or a ``BARE_KINDS`` chunk). ``explain`` uses it to say a
    term matched through the path or the symbol rather than a line of the text."""
    if check_scheme(scheme) == NONE or kind in BARE_KINDS:
        return {}
    parts = {PATH_PART: " ".join(path_words(path)), SYMBOL_PART: " ".join(symbol_words(symbol))}
    return {origin: words for origin, words in parts.items() if words}


def context_header(scheme: str, path: str, symbol: str | None, kind: str) -> str:
    """The header a chunk is encoded with under ``scheme`` (``""`` for none)."""
    return " ".join(header_parts(scheme, path, symbol, kind).values())

