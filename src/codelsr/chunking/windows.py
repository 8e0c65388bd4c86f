"""Turn units and line ranges into chunks: coverage gaps, class remainders, line windows.

Policy, in one place:

- Every unit that is not a container is one chunk (split into windows when long).
- A container (class, impl, namespace, Markdown section) does not repeat its members' text:
  its own chunk runs from its first line (decorators and doc comment included) to the line
  before its first member: the header, docstring and fields. Any later stretch of the
  container that no member covers (fields between methods, a trailing nested enum) becomes
  another chunk with the container's symbol and kind, unless it is only closing punctuation
  (``}``, ``end``). Members are chunks of their own, with symbols like ``Class.method``.
- Lines outside every unit that hold text (imports, constants, ``if __name__ == ...``) become
  ``"module"`` chunks, so no code vanishes from the index (a stretch holding only closing
  punctuation, like the ``}`` ending a C++ namespace, is dropped).
- Edges are trimmed of blank lines; a stretch of blank lines produces nothing.
- A stretch longer than ``max_lines`` becomes overlapping windows of ``max_lines`` lines that
  keep the symbol and kind. A last window that would add fewer than ``min_lines`` new lines is
  folded into the one before it (which may then exceed ``max_lines`` by that little).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from codelsr.chunking.treesitter import Unit
from codelsr.records import Chunk

# Lines that close a block and say nothing on their own, maybe with a trailing comment
# (``}  // namespace ns``).
_TRIVIAL_LINE = re.compile(
    r"^\s*(?:(?:[\]\)\}>;,]+|end|fi|done|esac|endif)\s*[;,]?\s*(?://.*|#.*|/\*.*)?)?$"
)


@dataclass(frozen=True)
class Sizing:
    """Window sizes, taken from ``ChunkingOptions`` (kept separate to avoid an import cycle)."""

    max_lines: int
    overlap: int
    min_lines: int


def line_windows(start: int, end: int, sizing: Sizing) -> list[tuple[int, int]]:
    """Split lines ``start..end`` (inclusive) into overlapping windows of ``max_lines``."""
    if end - start + 1 <= sizing.max_lines:
        return [(start, end)]
    step = max(1, sizing.max_lines - sizing.overlap)
    windows: list[tuple[int, int]] = []
    begin = start
    while True:
        stop = min(begin + sizing.max_lines - 1, end)
        windows.append((begin, stop))
        if stop >= end:
            break
        begin += step
    if len(windows) > 1 and windows[-1][1] - windows[-2][1] < sizing.min_lines:
        last = windows.pop()
        windows[-1] = (windows[-1][0], last[1])
    return windows


class ChunkBuilder:
    """Accumulates the chunks of one file; lines are the file's lines without newlines."""

    def __init__(self, path: str, language: str, lines: list[str], sizing: Sizing) -> None:
        self.path = path
        self.language = language
        self.lines = lines
        self.sizing = sizing
        self.chunks: list[Chunk] = []

    def add(
        self, start: int, end: int, kind: str, symbol: str | None, *, skip_trivial: bool = False
    ) -> None:
        """Add lines ``start..end`` (trimmed of blank edges, windowed when long)."""
        start, end = self._trim(start, end)
        if start > end:
            return
        if skip_trivial and self._trivial(start, end):
            return
        for begin, stop in line_windows(start, end, self.sizing):
            text = "\n".join(self.lines[begin - 1 : stop])
            self.chunks.append(Chunk(self.path, begin, stop, self.language, symbol, kind, text))

    def add_units(self, units: list[Unit]) -> None:
        """Chunks for the units and for the text between them (``"module"`` chunks)."""
        for gap_start, gap_end in _gaps(1, len(self.lines), units):
            self.add(gap_start, gap_end, "module", None, skip_trivial=True)
        for unit in units:
            self._add_unit(unit)
        self.chunks.sort(key=lambda c: (c.start_line, c.end_line))

    def _add_unit(self, unit: Unit) -> None:
        if not unit.members:
            self.add(unit.start, unit.end, unit.kind, unit.symbol)
            return
        for index, (gap_start, gap_end) in enumerate(_gaps(unit.start, unit.end, unit.members)):
            header = index == 0 and gap_start == unit.start
            self.add(gap_start, gap_end, unit.kind, unit.symbol, skip_trivial=not header)
        for member in unit.members:
            self._add_unit(member)

    def _trim(self, start: int, end: int) -> tuple[int, int]:
        lines = self.lines
        end = min(end, len(lines))
        while start <= end and not lines[start - 1].strip():
            start += 1
        while end >= start and not lines[end - 1].strip():
            end -= 1
        return start, end

    def _trivial(self, start: int, end: int) -> bool:
        return all(_TRIVIAL_LINE.match(line) for line in self.lines[start - 1 : end])


def _gaps(start: int, end: int, units: list[Unit]) -> Iterator[tuple[int, int]]:
    """The stretches of ``start..end`` that no unit covers, in order."""
    cursor = start
    for unit in sorted(units, key=lambda u: u.start):
        if unit.start > cursor:
            yield cursor, min(unit.start - 1, end)
        cursor = max(cursor, unit.end + 1)
    if cursor <= end:
        yield cursor, end
