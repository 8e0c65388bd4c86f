"""What a generation stores besides the search structure: chunk metadata (SQLite) and the
forward index of sparse vectors (CSR arrays plus the term table).

The forward index is the source of truth: backends are built from it, ``explain`` reads a chunk's
vector from it, and a reindex reuses unchanged chunks' vectors from it instead of re-encoding.
"""

from __future__ import annotations

import json
import sqlite3
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from codelsr.errors import CorruptIndexError
from codelsr.records import Chunk, SparseVector

CHUNKS_DB = "chunks.sqlite"
VECTORS_FILE = "vectors.npz"
TERMS_FILE = "terms.json"

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
CREATE INDEX chunks_by_id ON chunks(chunk_id);
CREATE INDEX chunks_by_path ON chunks(path);
CREATE INDEX chunks_by_hash ON chunks(content_hash);
"""


def _corrupt(path: Path, exc: BaseException) -> CorruptIndexError:
    return CorruptIndexError(
        f"index file damaged or unreadable: {path} ({type(exc).__name__}: {exc}); "
        "rebuild it with `codelsr index --force`"
    )


def write_chunks(folder: Path, chunks: Sequence[Chunk]) -> None:
    db = sqlite3.connect(folder / CHUNKS_DB)
    try:
        db.executescript(_SCHEMA)
        db.executemany(
            "INSERT INTO chunks VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                (row, c.chunk_id, c.path, c.start_line, c.end_line, c.symbol, c.language, c.kind,
                 c.content_hash, c.text)
                for row, c in enumerate(chunks)
            ),
        )
        db.commit()
    finally:
        db.close()


@dataclass(frozen=True, slots=True)
class StoredChunk:
    row: int
    chunk: Chunk


class ChunkTable:
    """Read access to a generation's chunk metadata. One connection per thread is not needed:
    SQLite connections opened with ``check_same_thread=False`` are safe for our read-only use."""

    def __init__(self, folder: Path):
        self.path = folder / CHUNKS_DB
        if not self.path.is_file():
            raise _corrupt(self.path, FileNotFoundError("missing"))
        try:
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            self._db.execute("SELECT count(*) FROM chunks").fetchone()
        except sqlite3.DatabaseError as exc:
            raise _corrupt(self.path, exc) from exc

    _COLUMNS = "row, chunk_id, path, start_line, end_line, symbol, language, kind, text"

    @staticmethod
    def _to_chunk(r: tuple) -> StoredChunk:
        return StoredChunk(r[0], Chunk(path=r[2], start_line=r[3], end_line=r[4], symbol=r[5],
                                       language=r[6], kind=r[7], text=r[8]))

    def _query(self, sql: str, args: Iterable = ()) -> list[tuple]:
        try:
            return self._db.execute(sql, tuple(args)).fetchall()
        except sqlite3.DatabaseError as exc:
            raise _corrupt(self.path, exc) from exc

    def by_rows(self, rows: Sequence[int]) -> dict[int, Chunk]:
        if not rows:
            return {}
        marks = ",".join("?" * len(rows))
        found = self._query(f"SELECT {self._COLUMNS} FROM chunks WHERE row IN ({marks})", rows)
        return {r[0]: self._to_chunk(r).chunk for r in found}

    def by_chunk_id(self, chunk_id: str) -> StoredChunk | None:
        found = self._query(f"SELECT {self._COLUMNS} FROM chunks WHERE chunk_id = ?", (chunk_id,))
        return self._to_chunk(found[0]) if found else None

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
        return np.array([r[0] for r in self._query(f"SELECT row FROM chunks WHERE {where}", args)], dtype=np.int64)

    def rows_with_hashes(self) -> list[tuple[int, str]]:
        return [(r[0], r[1]) for r in self._query("SELECT row, content_hash FROM chunks")]

    def languages(self) -> dict[str, int]:
        return {r[0]: r[1] for r in self._query("SELECT language, count(*) FROM chunks GROUP BY language")}

    def close(self) -> None:
        self._db.close()


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
    def from_vectors(cls, vectors: Sequence[SparseVector]) -> "ForwardIndex":
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
    def read(cls, folder: Path) -> "ForwardIndex":
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
