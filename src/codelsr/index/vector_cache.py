"""Vectors by content hash in one SQLite file: what a learned build has encoded so far.

A learned encoder takes minutes on a large repository. Each encoded batch is committed here at
once, so a build killed half-way (the user's machine sleeps, the server stops) resumes where it
stopped: ``build_index(..., vector_store=...)`` takes these vectors instead of encoding again.
Vectors are stored as float32, which is what an index stores too, so a resumed build writes the
same numbers as an uninterrupted one. Entries are keyed by ``encoder_id`` as well: a vector is a
function of the text *and* the encoder.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import numpy as np

from codelsr.records import SparseVector

_SCHEMA = """
CREATE TABLE IF NOT EXISTS vectors (
    encoder_id TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    terms BLOB NOT NULL,     -- UTF-8 term strings joined by NUL
    weights BLOB NOT NULL,   -- float32, one per term
    PRIMARY KEY (encoder_id, content_hash)
)
"""
_QUERY_BATCH = 500


def _pack(vector: SparseVector) -> tuple[bytes, bytes]:
    return "\0".join(vector).encode("utf-8"), np.fromiter(vector.values(), np.float32, len(vector)).tobytes()


def _unpack(terms: bytes, weights: bytes) -> SparseVector:
    names = terms.decode("utf-8").split("\0") if terms else []
    return dict(zip(names, np.frombuffer(weights, dtype=np.float32).tolist()))


class VectorCache:
    """The vectors one encoder has produced, persisted batch by batch (see the module doc)."""

    def __init__(self, path: Path, encoder_id: str):
        self.path, self.encoder_id = path, encoder_id
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), timeout=60, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)
        self._db.commit()
        self._lock = threading.Lock()

    def get(self, hashes: set[str]) -> dict[str, SparseVector]:
        wanted = sorted(hashes)
        found: dict[str, SparseVector] = {}
        with self._lock:
            for start in range(0, len(wanted), _QUERY_BATCH):
                part = wanted[start:start + _QUERY_BATCH]
                rows = self._db.execute(
                    f"SELECT content_hash, terms, weights FROM vectors WHERE encoder_id = ? "
                    f"AND content_hash IN ({','.join('?' * len(part))})", [self.encoder_id, *part])
                for h, terms, weights in rows:
                    found[h] = _unpack(terms, weights)
        return found

    def put(self, vectors: dict[str, SparseVector]) -> None:
        rows = [(self.encoder_id, h, *_pack(v)) for h, v in vectors.items()]
        with self._lock, self._db:
            self._db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?)", rows)

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM vectors WHERE encoder_id = ?",
                                        [self.encoder_id]).fetchone()[0])

    def clear(self) -> None:
        """Forget every vector (they are in a published generation now, or no longer wanted)."""
        with self._lock, self._db:
            self._db.execute("DELETE FROM vectors")
        with self._lock:
            self._db.execute("VACUUM")

    def close(self) -> None:
        with self._lock:
            self._db.close()


def cached_vector_count(path: Path) -> int:
    """How many vectors the cache file at ``path`` holds (0 when there is none), without an encoder."""
    if not path.is_file():
        return 0
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return int(db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])
    except sqlite3.Error:
        return 0
    finally:
        db.close()
