"""Files -> chunks: walk a repository, cut each file into functions, classes and windows.

``walk_repository`` decides which files to index (and reports the rest with a reason), in two
public steps that ``index.incremental`` reuses: ``list_candidates`` (git's list or a folder walk,
excluded folders reported) and ``classify`` (one file's checks, returning its bytes and hash);
``chunk_file`` cuts one file's text into ``Chunk`` records with tree-sitter, falling back to
line windows; ``chunk_repository`` does both for a whole tree. Language rules live as data in
``languages.py``; the coverage and windowing policy is described in ``windows.py``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from codelsr.chunking.context import context_header
from codelsr.chunking.languages import (
    TEXT,
    detect_language,
    grammar_languages,
    language_from_shebang,
    spec_for,
)
from codelsr.chunking.treesitter import extract_units
from codelsr.chunking.walk import (
    DEFAULT_WINDOW_LINES,
    ChunkingOptions,
    ReadFile,
    RepoFile,
    SkippedFile,
    WalkResult,
    classify,
    decode_bytes,
    git_head,
    is_git_repository,
    list_candidates,
    read_text,
    walk_repository,
)
from codelsr.chunking.windows import ChunkBuilder, Sizing
from codelsr.records import Chunk

__all__ = [
    "DEFAULT_WINDOW_LINES",
    "ChunkingOptions",
    "ChunkingResult",
    "ReadFile",
    "RepoFile",
    "SkippedFile",
    "WalkResult",
    "chunk_file",
    "chunk_repository",
    "context_header",
    "classify",
    "decode_bytes",
    "detect_language",
    "git_head",
    "grammar_languages",
    "is_git_repository",
    "list_candidates",
    "read_text",
    "walk_repository",
    "with_context",
]

_log = logging.getLogger(__name__)
_DEFAULT_OPTIONS = ChunkingOptions()


@dataclass
class ChunkingResult:
    """Everything one pass over a repository produced: files indexed, chunks, skips."""

    files: list[RepoFile] = field(default_factory=list)
    chunks: list[Chunk] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)

    def skipped_by_reason(self) -> dict[str, int]:
        """How many files (or folders) were skipped for each reason, most common first."""
        return dict(Counter(s.reason for s in self.skipped).most_common())


def chunk_file(
    rel_path: str,
    text: str,
    language: str | None = None,
    options: ChunkingOptions = _DEFAULT_OPTIONS,
    window_lines: int | None = None,
) -> list[Chunk]:
    """The chunks of one file, in line order.

    ``window_lines``: the encoder's window (``codelsr.encoders.window_lines``; ``None``:
    ``DEFAULT_WINDOW_LINES``), used unless ``options.max_chunk_lines`` sets one.

    ``language`` defaults to ``detect_language(rel_path)`` (refined by a ``#!`` line). Files
    with a grammar give units plus ``"module"`` chunks for the code between them; files
    without one, or whose parse fails, give ``"window"`` chunks. Line endings are normalised
    to ``\\n`` so that line numbers match what editors show. Blank files give no chunks.
    Each chunk carries the header of ``options.context`` (``chunking.context``).
    """
    rel_path = rel_path.replace("\\", "/")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        return []
    if language is None:
        language = detect_language(rel_path)
        if language == TEXT:
            language = language_from_shebang(text.split("\n", 1)[0]) or TEXT
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    spec = spec_for(language)
    window = options.window_for(window_lines, prose=spec is not None and spec.prose)
    sizing = Sizing(window, options.window_overlap, options.min_chunk_lines)
    builder = ChunkBuilder(rel_path, language, lines, sizing)
    units = None
    if spec is not None and spec.grammar:
        try:
            units = extract_units(text.encode("utf-8", "surrogatepass"), spec)
        except Exception:  # a grammar crash must not lose the file: fall back to windows
            _log.warning(
                "could not parse %s as %s; indexing it as line windows",
                rel_path,
                language,
                exc_info=True,
            )
    if units is None:
        builder.add(1, len(lines), "window", None)
    else:
        builder.add_units(units)
    return with_context(builder.chunks, options.context)


def with_context(chunks: list[Chunk], scheme: str) -> list[Chunk]:
    """The chunks with the header ``scheme`` gives each (``chunking.context``)."""
    return [dataclasses.replace(c, context=context_header(scheme, c.path, c.symbol, c.kind)) for c in chunks]


def chunk_repository(
    root: Path,
    options: ChunkingOptions = _DEFAULT_OPTIONS,
    progress: Callable[[int, int], None] | None = None,
    window_lines: int | None = None,
) -> ChunkingResult:
    """Walk ``root`` and chunk every file it keeps; ``progress(done, total)`` after each file.

    A file that cannot be read at this point (deleted or locked since the walk) is reported
    as "unreadable" instead of failing the whole run.
    """
    walked = walk_repository(root, options)
    result = ChunkingResult(skipped=list(walked.skipped))
    total = len(walked.files)
    if progress is not None:
        progress(0, total)
    for done, repo_file in enumerate(walked.files, start=1):
        try:
            text = read_text(repo_file.abs_path)
        except OSError:
            result.skipped.append(SkippedFile(repo_file.path, "unreadable"))
        else:
            result.files.append(repo_file)
            result.chunks.extend(chunk_file(repo_file.path, text, repo_file.language, options, window_lines))
        if progress is not None:
            progress(done, total)
    result.skipped.sort(key=lambda s: s.path)
    return result
