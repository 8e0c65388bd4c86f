"""The layout of a generation on disk: file names, segment codes and the file table.

A generation holds a *main* segment (top of the generation folder) and a *delta* segment
(``delta/``), each with ``chunks.sqlite``, ``vectors.npz`` and ``terms.json``. The *file table*
(``files.json``) records for each indexed file its content hash (sha1 of the bytes), size, mtime
and where its chunks live (segment, first row, count), and for each skipped file its reason and
stat; ``incremental`` compares it with the working tree, ``store.SegmentLayout`` maps it onto the
rows readers see.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from codelsr.errors import CorruptIndexError

FILES_TABLE = "files.json"
CHUNKS_DB = "chunks.sqlite"
DELTA_DIR = "delta"  # the delta segment's chunks.sqlite, vectors.npz and terms.json
VECTORS_FILE = "vectors.npz"
TERMS_FILE = "terms.json"
FILES_TABLE_VERSION = 1

# Segment codes, as the file table records them. NEW marks chunks made by the running build,
# before it places them in the main or the delta segment (never written to disk).
MAIN, DELTA, NEW = 0, 1, 2


@dataclass(frozen=True, slots=True)
class FileRecord:
    """One indexed file: its identity on disk and where its chunks are stored."""

    path: str
    language: str
    segment: int  # MAIN or DELTA
    start: int  # first row of its chunks in that segment
    count: int  # number of chunks (0 for a blank file)
    sha1: str
    size: int
    mtime_ns: int

    def to_row(self) -> list:
        return [self.path, self.language, self.segment, self.start, self.count, self.sha1, self.size, self.mtime_ns]


@dataclass(frozen=True, slots=True)
class SkipRecord:
    """A file the walker skipped (binary, too large, ...), remembered with its stat so that an
    unchanged one is not examined again."""

    path: str
    reason: str
    size: int
    mtime_ns: int


@dataclass
class FileTable:
    """The ``files.json`` of a generation. Files are sorted by path (the order of a full walk)."""

    main_rows: int
    delta_rows: int
    files: list[FileRecord]
    git_commit: str | None = None
    dirty: list[str] = field(default_factory=list)  # paths git reported as changed when indexed
    scanned_ns: int = 0  # wall clock when the walk that produced this table started
    skipped: list[SkipRecord] = field(default_factory=list)

    def by_path(self) -> dict[str, FileRecord]:
        return {f.path: f for f in self.files}

    def write(self, folder: Path) -> None:
        payload = {
            "version": FILES_TABLE_VERSION, "main_rows": self.main_rows, "delta_rows": self.delta_rows,
            "git_commit": self.git_commit, "dirty": self.dirty, "scanned_ns": self.scanned_ns,
            "files": [f.to_row() for f in self.files],
            "skipped": [[r.path, r.reason, r.size, r.mtime_ns] for r in self.skipped],
        }
        (folder / FILES_TABLE).write_text(json.dumps(payload, ensure_ascii=False, separators=(",", ":")),
                                          encoding="utf-8")

    @classmethod
    def read(cls, folder: Path) -> FileTable:
        path = folder / FILES_TABLE
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            if raw.get("version") != FILES_TABLE_VERSION:
                raise ValueError(f"file table version {raw.get('version')}")
            files = [FileRecord(str(p), str(lang), int(seg), int(start), int(count), str(sha), int(size), int(mt))
                     for p, lang, seg, start, count, sha, size, mt in raw["files"]]
            skipped = [SkipRecord(str(p), str(why), int(size), int(mt)) for p, why, size, mt in raw.get("skipped", [])]
            table = cls(int(raw["main_rows"]), int(raw["delta_rows"]), files, raw.get("git_commit"),
                        list(raw.get("dirty", [])), int(raw.get("scanned_ns", 0)), skipped)
        except FileNotFoundError as exc:
            raise CorruptIndexError(f"index file missing: {path}; rebuild with `codelsr index --force`") from exc
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CorruptIndexError(
                f"index file damaged or unreadable: {path} ({type(exc).__name__}: {exc}); "
                "rebuild it with `codelsr index --force`"
            ) from exc
        table.validate(path)
        return table

    def validate(self, path: Path) -> None:
        """Every row of a segment belongs to at most one file, inside the segment's bounds."""
        sizes = (self.main_rows, self.delta_rows)
        for f in self.files:
            if f.segment not in (MAIN, DELTA) or f.start < 0 or f.count < 0 or f.start + f.count > sizes[f.segment]:
                raise CorruptIndexError(
                    f"index file damaged: {path} (entry {f.path!r} points outside its segment); "
                    "rebuild it with `codelsr index --force`"
                )
