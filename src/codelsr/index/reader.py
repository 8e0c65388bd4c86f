"""Open the current generation of an index for searching; reopen when a writer publishes a new one.

``open_index`` is cheap to call before every search: it reads the one-line CURRENT file and
returns the cached reader while the generation is unchanged. A server therefore picks up an index
rebuilt by another process (the CLI, a git hook) without a restart.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from codelsr.encoders import get_encoder, normalise_spec
from codelsr.encoders.base import CollectionAware, SparseEncoder
from codelsr.errors import EncoderMismatchError, NotIndexedError
from codelsr.index import generations
from codelsr.index.backends import BACKENDS, ExactBackend, SearchBackend
from codelsr.index.manifest import IndexManifest
from codelsr.index.paths import index_root_for
from codelsr.index.store import ChunkTable, ForwardIndex
from codelsr.records import SparseVector


class _DocFreq(Mapping):
    """term -> document frequency, as a view over the term table (no copy)."""

    def __init__(self, term_ids: dict[str, int], df: np.ndarray):
        self._ids, self._df = term_ids, df

    def __getitem__(self, term: str) -> int:
        return int(self._df[self._ids[term]])

    def get(self, term, default=0):
        i = self._ids.get(term)
        return default if i is None else int(self._df[i])

    def __iter__(self):
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)


class IndexReader:
    """One published generation, loaded: metadata, forward index, backend, encoder (lazily)."""

    def __init__(self, repo: Path, folder: Path):
        self.repo = repo
        self.folder = folder
        self.manifest = IndexManifest.read(folder)
        self.chunks = ChunkTable(folder)
        self.forward = ForwardIndex.read(folder)
        self.term_ids = {t: i for i, t in enumerate(self.forward.terms)}
        self._backend: SearchBackend | None = None
        self._exact: ExactBackend | None = None
        self._encoder: SparseEncoder | None = None
        self._lock = threading.Lock()

    @property
    def generation(self) -> str:
        return self.folder.name

    @property
    def backend(self) -> SearchBackend:
        with self._lock:
            if self._backend is None:
                if self.manifest.chunk_count == 0 or self.manifest.backend == "exact":
                    self._backend = self.exact
                else:
                    kind = BACKENDS[self.manifest.backend]
                    self._backend = kind.open(self.forward, self.folder, self.manifest.backend_settings)
            return self._backend

    @property
    def exact(self) -> ExactBackend:
        if self._exact is None:
            self._exact = ExactBackend(self.forward)
        return self._exact

    def encoder(self, requested: str | None = None) -> SparseEncoder:
        """The encoder that built this index; a different ``requested`` one is an error."""
        if requested is not None and normalise_spec(requested) != self.manifest.encoder_spec:
            raise EncoderMismatchError(
                f"the index of {self.repo} was built with encoder {self.manifest.encoder_spec!r}, not "
                f"{normalise_spec(requested)!r}; search without --encoder, or rebuild with "
                f"`codelsr index {self.repo} --encoder {requested}`"
            )
        if self._encoder is None:
            enc = get_encoder(self.manifest.encoder_spec)
            if enc.encoder_id != self.manifest.encoder_id:
                raise EncoderMismatchError(
                    f"the index of {self.repo} was built with {self.manifest.encoder_id}, but "
                    f"{self.manifest.encoder_spec!r} now loads as {enc.encoder_id} (model files or "
                    f"settings changed); rebuild with `codelsr index {self.repo} --force`"
                )
            if isinstance(enc, CollectionAware):
                enc = enc.bind_collection(self.forward.n_rows, _DocFreq(self.term_ids, self.forward.doc_freq()))
            self._encoder = enc
        return self._encoder

    def query_vector(self, query: str, encoder: str | None = None) -> SparseVector:
        return self.encoder(encoder).encode_queries([query])[0]

    def to_ids(self, vector: SparseVector) -> tuple[np.ndarray, np.ndarray]:
        """Query terms as this generation's term ids; terms no chunk has are dropped."""
        pairs = [(self.term_ids[t], w) for t, w in vector.items() if t in self.term_ids and w > 0]
        ids = np.array([p[0] for p in pairs], dtype=np.int64)
        weights = np.array([p[1] for p in pairs], dtype=np.float32)
        return ids, weights

    def row_scores(self, rows: list[int], term_ids: np.ndarray, weights: np.ndarray) -> list[float]:
        """Exact dot products of the query with the given rows (approximate backends may score
        with a cut query; hits report the exact score, which ``explain`` decomposes)."""
        order = np.argsort(term_ids)
        q_ids, q_w = term_ids[order], weights[order].astype(np.float64)
        fwd, out = self.forward, []
        for row in rows:
            lo, hi = fwd.indptr[row], fwd.indptr[row + 1]
            d_ids = fwd.indices[lo:hi]
            pos = np.searchsorted(d_ids, q_ids)
            pos_ok = pos < d_ids.size
            match = np.zeros(q_ids.size, dtype=bool)
            match[pos_ok] = d_ids[pos[pos_ok]] == q_ids[pos_ok]
            out.append(float(np.dot(q_w[match], fwd.data[lo:hi][pos[match]].astype(np.float64))))
        return out

    def close(self) -> None:
        self.chunks.close()


_readers: dict[Path, IndexReader] = {}
_readers_lock = threading.Lock()


def open_index(repo: Path | str) -> IndexReader:
    """The reader of the repository's current generation (cached per process)."""
    repo = Path(repo).expanduser().resolve()
    root = index_root_for(repo)
    try:
        folder = generations.current_generation(root)
    except NotIndexedError:
        raise NotIndexedError(
            f"{repo} is not indexed yet; run `codelsr index {repo}` (or the MCP tool index_repo)"
        ) from None
    with _readers_lock:
        cached = _readers.get(root)
        if cached is not None and cached.folder == folder:
            return cached
    reader = IndexReader(repo, folder)
    with _readers_lock:
        _readers[root] = reader
    return reader


def is_indexed(repo: Path | str) -> bool:
    return (index_root_for(Path(repo).expanduser().resolve()) / generations.CURRENT).is_file()
