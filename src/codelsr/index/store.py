"""What a generation stores besides the search structure: chunk metadata (SQLite) and the
forward index of sparse vectors (CSR arrays plus the term table).

The forward index is the source of truth: backends are built from it, ``explain`` reads a chunk's
vector from it, and a reindex reuses unchanged chunks' vectors from it instead of re-encoding.

A generation has two segments with these files each: the main one at the top of the generation
folder and the delta one in ``delta/``. ``SegmentLayout`` maps them, with the file table, onto the
*virtual rows* readers use; ``ChunkTable`` answers by virtual row.
"""

from __future__ import annotations

import json
import sqlite3
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from codelsr.chunking.context import NONE as NO_CONTEXT
from codelsr.chunking.context import context_header
from codelsr.errors import CorruptIndexError
from codelsr.index.layout import (
    CHUNKS_DB,
    DELTA_DIR,
    DELTA,
    FILES_TABLE,
    MAIN,
    TERMS_FILE,
    VECTORS_FILE,
    FileTable,
)
from codelsr.records import Chunk, SparseVector

__all__ = ["CHUNKS_DB", "DELTA_DIR", "TERMS_FILE", "VECTORS_FILE", "ChunkRow", "ChunkTable", "ForwardIndex",
           "SegmentChunks", "SegmentLayout", "StoredChunk", "check_file_sizes", "chunk_row", "file_sizes",
           "write_chunk_rows", "write_chunks", "write_segment_chunks"]

_SCHEMA = """
CREATE TABLE chunks (
    row INTEGER PRIMARY KEY,      -- row of the chunk in the forward index and the backends
    chunk_id TEXT NOT NULL,
    path TEXT NOT NULL,
    start_line INTEGER NOT NULL,
    end_line INTEGER NOT NULL,
    symbol TEXT,
    language TEXT NOT NULL,
    kind TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    text TEXT NOT NULL
);
"""
_SCHEMA_INDEXES = """
CREATE INDEX chunks_by_id ON chunks(chunk_id);
CREATE INDEX chunks_by_path ON chunks(path);
CREATE INDEX chunks_by_hash ON chunks(content_hash);
"""


def _corrupt(path: Path, exc: BaseException) -> CorruptIndexError:
    return CorruptIndexError(
        f"index file damaged or unreadable: {path} ({type(exc).__name__}: {exc}); "
        "rebuild it with `codelsr index --force`"
    )


def file_sizes(folder: Path) -> dict[str, int]:
    """Size of every file under ``folder``, by path relative to it (recorded in the manifest)."""
    return {p.relative_to(folder).as_posix(): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


def check_file_sizes(folder: Path, sizes: dict[str, int]) -> None:
    """Refuse a generation whose files are missing or do not have their recorded sizes (a
    truncated copy, a disk that filled up): the error names the file and the fix."""
    for name, size in sizes.items():
        path = folder / name
        try:
            actual = path.stat().st_size
        except OSError as exc:
            raise _corrupt(path, exc) from exc
        if actual != size:
            raise _corrupt(path, ValueError(f"{actual} bytes where {size} were written; truncated?"))


class ChunkRow(NamedTuple):
    """One row of a segment's ``chunks`` table, columns in table order (``SegmentChunks.COLUMNS``)."""

    row: int
    chunk_id: str
    path: str
    start_line: int
    end_line: int
    symbol: str | None
    language: str
    kind: str
    content_hash: str
    text: str


def chunk_row(row: int, c: Chunk) -> ChunkRow:
    """A chunk as a row of the ``chunks`` table."""
    return ChunkRow(row, c.chunk_id, c.path, c.start_line, c.end_line, c.symbol, c.language, c.kind, c.content_hash,
                    c.text)


def write_chunk_rows(folder: Path, rows: Iterable[tuple]) -> None:
    """Write a segment's chunk table from rows in table order (see ``chunk_row``)."""
    db = sqlite3.connect(folder / CHUNKS_DB)
    try:
        # The file is fsynced when its generation is published; a killed build is thrown away.
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        db.executescript(_SCHEMA)
        db.executemany("INSERT INTO chunks VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
        db.executescript(_SCHEMA_INDEXES)  # after the inserts: faster than maintaining them row by row
        db.commit()
    finally:
        db.close()


def write_segment_chunks(folder: Path, copies: Sequence[tuple[Path, np.ndarray, np.ndarray]],
                         fresh: Iterable[tuple]) -> None:
    """Write a segment's chunk table: rows copied from other segments' tables (source file, old
    rows, new rows), plus ``fresh`` rows (see ``chunk_row``). Copies run inside SQLite, so a
    compaction moves the chunk texts without loading them into Python."""
    db = sqlite3.connect(f"file:{folder / CHUNKS_DB}", uri=True, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=OFF")  # fsynced at publish; a killed build is thrown away
        db.execute("PRAGMA synchronous=OFF")
        db.executescript(_SCHEMA)
        for src, old, new in copies:
            if len(old) == 0:
                continue
            db.execute("ATTACH DATABASE ? AS src", (f"file:{src}?mode=ro",))
            db.execute("CREATE TEMP TABLE moved (old INTEGER PRIMARY KEY, new INTEGER NOT NULL)")
            db.execute("BEGIN")
            db.executemany("INSERT INTO temp.moved VALUES (?, ?)", zip(np.asarray(old).tolist(), np.asarray(new).tolist()))
            db.execute(
                "INSERT INTO main.chunks SELECT m.new, c.chunk_id, c.path, c.start_line, c.end_line, c.symbol, "
                "c.language, c.kind, c.content_hash, c.text FROM src.chunks AS c JOIN temp.moved AS m ON c.row = m.old"
            )
            db.execute("COMMIT")
            db.execute("DROP TABLE temp.moved")
            db.execute("DETACH DATABASE src")
        db.execute("BEGIN")
        db.executemany("INSERT INTO chunks VALUES (?,?,?,?,?,?,?,?,?,?)", fresh)
        db.execute("COMMIT")
        db.executescript(_SCHEMA_INDEXES)
    except sqlite3.DatabaseError as exc:
        raise _corrupt(folder / CHUNKS_DB, exc) from exc
    finally:
        db.close()


def write_chunks(folder: Path, chunks: Sequence[Chunk]) -> None:
    write_chunk_rows(folder, (chunk_row(row, c) for row, c in enumerate(chunks)))


@dataclass(frozen=True, slots=True)
class StoredChunk:
    row: int
    chunk: Chunk


class SegmentChunks:
    """The chunk table of one segment (physical rows), read-only."""

    COLUMNS = "row, chunk_id, path, start_line, end_line, symbol, language, kind, content_hash, text"

    def __init__(self, path: Path):
        self.path = path
        if not self.path.is_file():
            raise _corrupt(self.path, FileNotFoundError("missing"))
        try:
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            self.n_rows = self._db.execute("SELECT count(*) FROM chunks").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise _corrupt(self.path, exc) from exc

    def query(self, sql: str, args: Iterable = ()) -> list[tuple]:
        try:
            return self._db.execute(sql, tuple(args)).fetchall()
        except sqlite3.DatabaseError as exc:
            raise _corrupt(self.path, exc) from exc

    def rows_in(self, column: str, values: Sequence, what: str = "*") -> list[tuple]:
        """Rows whose ``column`` is one of ``values`` (batched under SQLite's parameter limit)."""
        out: list[tuple] = []
        values = list(values)
        for lo in range(0, len(values), 900):
            batch = values[lo:lo + 900]
            marks = ",".join("?" * len(batch))
            out.extend(self.query(f"SELECT {what} FROM chunks WHERE {column} IN ({marks})", batch))
        return out

    def raw_rows(self) -> list[tuple]:
        """Every row, in row order, with all columns (``COLUMNS``)."""
        return self.query(f"SELECT {self.COLUMNS} FROM chunks ORDER BY row")

    def close(self) -> None:
        self._db.close()


def _to_chunk(raw: tuple, where: Path, context: str = NO_CONTEXT) -> Chunk:
    """A ``Chunk`` from a row with the columns of ``SegmentChunks.COLUMNS``, its header derived
    again under the index's ``context`` scheme, checked against its stored id (a hash of path,
    lines, header and text): a damaged row is an error, never a served hit, even where the file is
    too large for the checksum check on open."""
    r = ChunkRow(*raw)
    chunk = Chunk(path=r.path, start_line=r.start_line, end_line=r.end_line, symbol=r.symbol, language=r.language,
                  kind=r.kind, text=r.text, context=context_header(context, r.path, r.symbol, r.kind))
    if chunk.chunk_id != r.chunk_id:
        raise _corrupt(where, ValueError(f"row {r.row} does not match its chunk id"))
    return chunk


class SegmentLayout:
    """How a generation's live chunks map onto its segments.

    A generation has a *main* segment (immutable between compactions; its files are shared with
    earlier generations through hard links) and a small *delta* segment rewritten by each reindex.
    The file table says which segment rows hold each file's chunks; main rows no file points at
    are *tombstones* (chunks of files since changed or deleted).

    Readers see *virtual rows*: the live chunks numbered in the order a full build would give them
    (files by path, chunks in file order). Search results therefore equal those of an index built
    from scratch, ties included. ``seg[v]`` / ``phys[v]`` locate virtual row ``v``;
    ``stacked`` numbers rows as main rows followed by delta rows.
    """

    def __init__(self, table: FileTable, where: Path | None = None):
        self.table = table
        self.n_main, self.n_delta = table.main_rows, table.delta_rows
        files = sorted(table.files, key=lambda f: f.path)
        counts = np.fromiter((f.count for f in files), dtype=np.int64, count=len(files))
        starts = np.fromiter((f.start for f in files), dtype=np.int64, count=len(files))
        segs = np.fromiter((f.segment for f in files), dtype=np.int64, count=len(files))
        total = int(counts.sum())
        first_virtual = np.cumsum(counts) - counts
        self.seg = np.repeat(segs, counts).astype(np.int8)  # shape (n_live,)
        self.phys = np.repeat(starts - first_virtual, counts) + np.arange(total, dtype=np.int64)  # shape (n_live,)
        self.stacked = self.phys + (self.seg == DELTA).astype(np.int64) * self.n_main  # shape (n_live,)
        self.main_virtual = np.full(self.n_main, -1, dtype=np.int64)  # shape (n_main,), -1 = tombstone
        self.delta_virtual = np.full(self.n_delta, -1, dtype=np.int64)  # shape (n_delta,)
        in_main = self.seg == MAIN
        self.main_virtual[self.phys[in_main]] = np.flatnonzero(in_main)
        self.delta_virtual[self.phys[~in_main]] = np.flatnonzero(~in_main)
        live_main = int(np.count_nonzero(self.main_virtual >= 0))
        live_delta = int(np.count_nonzero(self.delta_virtual >= 0))
        if live_main + live_delta != total:
            raise _corrupt(where or Path(FILES_TABLE), ValueError("two files claim the same rows"))
        self.tombstones = self.n_main - live_main
        self.n_live = total

    @property
    def is_pure(self) -> bool:
        """Main segment only, no tombstones, rows already in full-build order."""
        return self.n_delta == 0 and self.tombstones == 0 and bool(np.all(self.phys == np.arange(self.n_live)))

    def virtual(self, seg: int, rows: np.ndarray) -> np.ndarray:
        """Virtual rows of physical ``rows`` of segment ``seg`` (-1 where dead)."""
        table = self.main_virtual if seg == MAIN else self.delta_virtual
        return table[np.asarray(rows, dtype=np.int64)]


class ChunkTable:
    """Read access to a generation's chunk metadata, by virtual row (see ``SegmentLayout``).

    SQLite connections opened with ``check_same_thread=False`` are safe for our read-only use.
    ``context`` is the index's context scheme (``IndexManifest.context_scheme``): chunks read
    back carry the header they were encoded with."""

    def __init__(self, folder: Path, layout: SegmentLayout | None = None, context: str = NO_CONTEXT):
        self.folder = folder
        self.context = context
        self.path = folder / CHUNKS_DB
        self.layout = layout if layout is not None else SegmentLayout(FileTable.read(folder), folder / FILES_TABLE)
        self.segments = [SegmentChunks(self.path)]
        if self.layout.n_delta:
            self.segments.append(SegmentChunks(folder / DELTA_DIR / CHUNKS_DB))
        for seg, expected in zip(self.segments, (self.layout.n_main, self.layout.n_delta)):
            if seg.n_rows != expected:
                raise _corrupt(seg.path, ValueError(f"{seg.n_rows} chunks where the file table says {expected}"))

    def _by_virtual(self, rows: Sequence[int], what: str) -> list[tuple[int, tuple]]:
        rows = np.asarray(list(rows), dtype=np.int64)
        rows = rows[(rows >= 0) & (rows < self.layout.n_live)]
        out: list[tuple[int, tuple]] = []
        for s, db in enumerate(self.segments):
            mine = rows[self.layout.seg[rows] == s]
            if mine.size:
                for r in db.rows_in("row", self.layout.phys[mine].tolist(), what):
                    out.append((int(self.layout.virtual(s, [r[0]])[0]), r))
        return out

    def by_rows(self, rows: Sequence[int]) -> dict[int, Chunk]:
        return {v: _to_chunk(r, self.path, self.context) for v, r in self._by_virtual(rows, SegmentChunks.COLUMNS)}

    def by_chunk_id(self, chunk_id: str) -> StoredChunk | None:
        for s, db in enumerate(self.segments):
            for r in db.query(f"SELECT {SegmentChunks.COLUMNS} FROM chunks WHERE chunk_id = ?", (chunk_id,)):
                v = int(self.layout.virtual(s, [r[0]])[0])
                if v >= 0:
                    return StoredChunk(v, _to_chunk(r, db.path, self.context))
        return None

    def _live(self, sql: str, args: Iterable = ()) -> list[tuple[int, tuple]]:
        """(virtual row, result row) of live chunks; ``sql`` selects ``row`` first."""
        out = []
        args = tuple(args)
        for s, db in enumerate(self.segments):
            found = db.query(sql, args)
            if found:
                virtual = self.layout.virtual(s, np.fromiter((r[0] for r in found), dtype=np.int64, count=len(found)))
                out.extend((int(v), r) for v, r in zip(virtual, found) if v >= 0)
        return out

    def filter_rows(self, path_glob: str | None, language: str | None) -> np.ndarray:
        """Rows whose path matches the glob (SQLite GLOB: ``*`` crosses folders) and language."""
        clauses, args = [], []
        if path_glob:
            clauses.append("path GLOB ?")
            args.append(path_glob)
        if language:
            clauses.append("lower(language) = lower(?)")
            args.append(language)
        where = " AND ".join(clauses) or "1"
        rows = [v for v, _ in self._live(f"SELECT row FROM chunks WHERE {where}", args)]
        return np.array(sorted(rows), dtype=np.int64)

    def rows_with_hashes(self) -> list[tuple[int, str]]:
        return sorted((v, r[1]) for v, r in self._live("SELECT row, content_hash FROM chunks"))

    def languages(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _, r in self._live("SELECT row, language FROM chunks"):
            counts[r[1]] = counts.get(r[1], 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def close(self) -> None:
        for db in self.segments:
            db.close()


@dataclass
class ForwardIndex:
    """Sparse vectors of all chunks as CSR arrays over the generation's own term ids."""

    terms: list[str]
    indptr: np.ndarray  # shape (n_chunks + 1,), int64
    indices: np.ndarray  # shape (nnz,), int32, sorted within each row
    data: np.ndarray  # shape (nnz,), float32

    @property
    def n_rows(self) -> int:
        return len(self.indptr) - 1

    def row(self, row: int) -> SparseVector:
        lo, hi = self.indptr[row], self.indptr[row + 1]
        return {self.terms[t]: float(w) for t, w in zip(self.indices[lo:hi], self.data[lo:hi])}

    def doc_freq(self) -> np.ndarray:
        return np.bincount(self.indices, minlength=len(self.terms))

    def to_csr(self):
        import scipy.sparse as sp

        return sp.csr_matrix((self.data, self.indices, self.indptr), shape=(self.n_rows, len(self.terms)))

    @classmethod
    def stack(cls, parts: Sequence[ForwardIndex], order: np.ndarray) -> tuple[ForwardIndex, np.ndarray]:
        """The rows of ``parts`` (numbered one part after the other) picked in ``order``.

        Terms: those of the first part keep their ids, new terms of later parts follow; terms no
        picked row uses are then dropped, so document frequencies and the term count equal those
        of an index built from the picked rows alone. Returns the index and, per kept term, its id
        in the first part (-1 for terms the first part lacks)."""
        import scipy.sparse as sp

        ids: dict[str, int] = {}
        mats = []
        for i, part in enumerate(parts):
            if i == 0:
                ids = {t: j for j, t in enumerate(part.terms)}
                mats.append((part.data, part.indices, part.indptr, part.n_rows))
                continue
            remap = np.fromiter((ids.setdefault(t, len(ids)) for t in part.terms), dtype=np.int64,
                                count=len(part.terms))
            mats.append((part.data, remap[part.indices] if part.indices.size else part.indices, part.indptr,
                         part.n_rows))
        n_terms = len(ids)
        stacked = sp.vstack([sp.csr_matrix((d, i, p), shape=(n, n_terms)) for d, i, p, n in mats], format="csr")
        picked = stacked[np.asarray(order, dtype=np.int64)]
        picked.sort_indices()  # rows of later parts were remapped
        indices = picked.indices
        used = np.bincount(indices, minlength=n_terms) > 0
        kept = np.flatnonzero(used)  # shape (n_kept,): id before dropping, per kept term
        if kept.size < n_terms:
            new_id = np.full(n_terms, -1, dtype=np.int64)
            new_id[kept] = np.arange(kept.size)
            indices = new_id[indices]
        terms = list(ids)
        first = len(parts[0].terms) if parts else 0
        fwd = cls([terms[t] for t in kept.tolist()], picked.indptr.astype(np.int64), indices.astype(np.int32),
                  picked.data.astype(np.float32))
        return fwd, np.where(kept < first, kept, -1)

    @classmethod
    def from_vectors(cls, vectors: Sequence[SparseVector]) -> ForwardIndex:
        term_ids: dict[str, int] = {}
        indptr = np.zeros(len(vectors) + 1, dtype=np.int64)
        idx_parts: list[np.ndarray] = []
        val_parts: list[np.ndarray] = []
        for i, vec in enumerate(vectors):
            ids = np.fromiter((term_ids.setdefault(t, len(term_ids)) for t in vec), dtype=np.int32, count=len(vec))
            vals = np.fromiter(vec.values(), dtype=np.float32, count=len(vec))
            order = np.argsort(ids, kind="stable")
            idx_parts.append(ids[order])
            val_parts.append(vals[order])
            indptr[i + 1] = indptr[i] + len(vec)
        indices = np.concatenate(idx_parts) if idx_parts else np.zeros(0, dtype=np.int32)
        data = np.concatenate(val_parts) if val_parts else np.zeros(0, dtype=np.float32)
        return cls(list(term_ids), indptr, indices, data)

    def write(self, folder: Path) -> None:
        with open(folder / VECTORS_FILE, "wb") as f:
            np.savez(f, indptr=self.indptr, indices=self.indices, data=self.data)
        (folder / TERMS_FILE).write_text(json.dumps(self.terms, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def read(cls, folder: Path) -> ForwardIndex:
        vec_path, terms_path = folder / VECTORS_FILE, folder / TERMS_FILE
        try:
            with np.load(vec_path, allow_pickle=False) as z:
                indptr, indices, data = z["indptr"], z["indices"], z["data"]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
            raise _corrupt(vec_path, exc) from exc
        try:
            terms = json.loads(terms_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise _corrupt(terms_path, exc) from exc
        fwd = cls(terms, indptr, indices, data)
        if (len(indptr) == 0 or indptr[-1] != len(indices) or len(indices) != len(data)
                or (len(indices) and int(indices.max()) >= len(terms))):
            raise _corrupt(vec_path, ValueError("arrays do not agree with each other"))
        return fwd
