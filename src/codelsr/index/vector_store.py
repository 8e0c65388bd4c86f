"""Chunk vectors by content hash, shared by every index of one encoder.

Why: a document vector depends on the chunk's text and the encoder alone (``encoders.base``), so
a chunk encoded once never needs encoding again, in whatever repository, worktree, branch or fork
it shows up. Each generation keeps its own forward index (the source of truth for search and
``explain_match``); this store only spares the encoder. It lives under the codelsr home, one
SQLite file per encoder id: ``vectors/<hash of encoder id>/vectors.sqlite``, one row per content
hash holding the vector's terms (NUL-separated UTF-8) and weights (float32, the precision the
forward index keeps, so a vector read back gives the same index as one just encoded). No shared
term table: a lookup is one primary-key read, a write one insert.

SQLite makes concurrent writers (several builds, git hooks) safe (a rollback journal: WAL would
keep a second copy of every page written in a ``-wal`` file); a write is one transaction, so
a killed build leaves the store as it was or with all of that batch. A damaged or unwritable
store never fails a build: ``open_store`` and the methods fall back to "nothing cached".
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from codelsr.index.catalog import codelsr_home
from codelsr.records import SparseVector

_log = logging.getLogger(__name__)

STORE_DIR = "vectors"
STORE_FILE = "vectors.sqlite"
_BATCH = 900  # under SQLite's bound-parameter limit

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS vectors (
    content_hash TEXT PRIMARY KEY,
    terms BLOB NOT NULL,      -- UTF-8 terms separated by NUL
    weights BLOB NOT NULL     -- float32, same order
) WITHOUT ROWID;
"""


def store_path(encoder_id: str) -> Path:
    digest = hashlib.sha1(encoder_id.encode("utf-8")).hexdigest()[:16]
    return codelsr_home() / STORE_DIR / digest / STORE_FILE


class VectorStore:
    """Content hash -> sparse vector for one encoder (see the module docstring)."""

    def __init__(self, path: Path, encoder_id: str):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), timeout=60, check_same_thread=False)
        self._db.executescript(_SCHEMA)
        row = self._db.execute("SELECT value FROM meta WHERE key = 'encoder_id'").fetchone()
        if row is None:
            with self._db:
                self._db.execute("INSERT OR IGNORE INTO meta VALUES ('encoder_id', ?)", (encoder_id,))
        elif row[0] != encoder_id:
            raise sqlite3.DatabaseError(f"{path} holds vectors of {row[0]!r}, not {encoder_id!r}")

    def get(self, hashes: Iterable[str]) -> dict[str, SparseVector]:
        """The stored vectors among ``hashes``."""
        hashes = list(dict.fromkeys(hashes))
        out: dict[str, SparseVector] = {}
        for lo in range(0, len(hashes), _BATCH):
            batch = hashes[lo:lo + _BATCH]
            for h, terms, weights in self._db.execute(
                    f"SELECT content_hash, terms, weights FROM vectors WHERE content_hash IN "
                    f"({','.join('?' * len(batch))})", batch):
                names = terms.decode("utf-8", "surrogatepass").split("\0") if terms else []
                out[h] = dict(zip(names, np.frombuffer(weights, dtype=np.float32).tolist()))
        return out

    def put(self, vectors: Mapping[str, SparseVector], replace: bool = False) -> int:
        """Add vectors; existing hashes are kept as they are unless ``replace``. Returns rows written."""
        if not vectors:
            return 0
        with self._db:  # one transaction: all of this batch or none of it
            before = self._db.total_changes
            self._db.executemany(
                f"INSERT OR {'REPLACE' if replace else 'IGNORE'} INTO vectors VALUES (?, ?, ?)",
                ((h, "\0".join(vec).encode("utf-8", "surrogatepass"),
                  np.fromiter(vec.values(), dtype=np.float32, count=len(vec)).tobytes())
                 for h, vec in vectors.items()))
            return self._db.total_changes - before

    def __len__(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM vectors").fetchone()[0])

    def close(self) -> None:
        self._db.close()


def open_store(encoder_id: str) -> VectorStore | None:
    """The store of ``encoder_id``, or None (logged) when it cannot be opened: builds go on without it."""
    path = store_path(encoder_id)
    try:
        return VectorStore(path, encoder_id)
    except (sqlite3.Error, OSError) as exc:
        _log.warning("vector store %s unusable (%s); encoding without it", path, exc)
        return None
