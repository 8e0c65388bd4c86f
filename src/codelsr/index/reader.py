"""Open the current generation of an index for searching; reopen when a writer publishes a new one.

``open_index`` is cheap to call before every search: it reads the one-line CURRENT file and
returns the cached reader while the generation is unchanged. A server therefore picks up an index
rebuilt by another process (the CLI, a git hook) without a restart.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from codelsr.chunking.context import NONE as NO_CONTEXT
from codelsr.chunking.context import RULES_VERSION as CONTEXT_RULES
from codelsr.encoders import get_encoder, normalise_spec
from codelsr.encoders.base import CollectionAware, SparseEncoder
from codelsr.errors import CorruptIndexError, EncoderMismatchError, NotIndexedError
from codelsr.index import catalog, health
from codelsr.index.backends import BACKENDS, ExactBackend, SearchBackend, missing_reason, rows_dot, top_k_rows
from codelsr.index.layout import DELTA, DELTA_DIR, FILES_TABLE, MAIN, VECTORS_FILE, FileTable
from codelsr.index.manifest import IndexManifest
from codelsr.index.store import (
    ChunkTable,
    ForwardIndex,
    SegmentLayout,
    check_file_sizes,
)
from codelsr.queries import encode_query
from codelsr.records import SparseVector

QUERY_CACHE_SIZE = 256  # query vectors kept per open generation

_log = logging.getLogger(__name__)


class DocFreq(Mapping):
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


def check_context_rules(manifest: IndexManifest, repo: Path) -> None:
    """Refuse chunks whose context headers were made by rules this codelsr does not know: their
    ids would not match (every row would read as damaged); a build re-chunks them."""
    if manifest.context_scheme != NO_CONTEXT and manifest.context_rules != CONTEXT_RULES:
        raise CorruptIndexError(
            f"the index of {repo} was built with context header rules {manifest.context_rules}, this codelsr "
            f"makes rules {CONTEXT_RULES}: run `codelsr index {repo}` (or index_repo) to update it"
        )


class SegmentedBackend:
    """Search over an immutable main segment (any backend), minus its tombstones, plus the delta
    segment searched exactly. Rows in and out are virtual rows (see ``SegmentLayout``)."""

    def __init__(self, main: SearchBackend, layout: SegmentLayout, main_term: np.ndarray, forward: ForwardIndex):
        self.name = f"{main.name}+delta"
        self._main, self._layout, self._main_term = main, layout, main_term
        self._delta_rows = np.flatnonzero(layout.seg == DELTA)  # shape (n_delta_live,), virtual rows
        self._delta_by_term = forward.to_csr()[self._delta_rows].T.tocsr()  # shape (n_terms, n_delta_live)

    def search(self, term_ids: np.ndarray, weights: np.ndarray, k: int) -> list[tuple[int, float]]:
        hits: list[tuple[int, float]] = []
        main_ids = self._main_term[term_ids]
        keep = main_ids >= 0
        if keep.any():
            # Over-fetch past the tombstones the main backend may return; a tombstone can only
            # take the place of a live row, so k + tombstones always suffices.
            most = k + self._layout.tombstones
            fetch = min(most, k + min(self._layout.tombstones, max(k, 16)))
            while True:
                found = self._main.search(main_ids[keep], weights[keep], fetch)
                virtual = self._layout.virtual(MAIN, [r for r, _ in found]) if found else np.zeros(0, np.int64)
                live = [(int(v), s) for v, (_, s) in zip(virtual, found) if v >= 0]
                if len(live) >= k or len(found) < fetch or fetch >= most:
                    break
                fetch = min(most, fetch * 4)
            hits.extend(live)
        if self._delta_rows.size and term_ids.size:
            scores = np.asarray(self._delta_by_term[term_ids].T @ weights.astype(np.float32)).ravel()
            hits.extend(top_k_rows(scores, k, self._delta_rows))
        hits.sort(key=lambda rs: (-rs[1], rs[0]))
        return hits[:k]


class IndexReader:
    """One published generation, loaded: metadata, forward index, backend, encoder (lazily).

    Rows are virtual rows: the live chunks of the main and delta segments, in full-build order.
    ``forward`` holds exactly the live chunks' vectors over the live terms, so document
    frequencies (idf) and every score equal those of an index built from scratch."""

    def __init__(self, repo: Path, folder: Path):
        self.repo = repo
        self.folder = folder
        health.raise_if_damaged(folder, repo)  # checksums: sizes, and every byte of the small files
        self.manifest = IndexManifest.read(folder)
        check_context_rules(self.manifest, repo)
        check_file_sizes(folder, self.manifest.segments.sizes)
        self.layout = SegmentLayout(FileTable.read(folder), folder / FILES_TABLE)
        self.chunks = ChunkTable(folder, self.layout, self.manifest.context_scheme)
        self._main_forward = ForwardIndex.read(folder)
        delta = ForwardIndex.read(folder / DELTA_DIR) if self.layout.n_delta else None
        for fwd, rows, where in ((self._main_forward, self.layout.n_main, folder),
                                 (delta, self.layout.n_delta, folder / DELTA_DIR)):
            if fwd is not None and fwd.n_rows != rows:
                raise CorruptIndexError(
                    f"index file damaged: {where / VECTORS_FILE} ({fwd.n_rows} vectors where the file table "
                    f"says {rows}); rebuild it with `codelsr index --force`"
                )
        if self.layout.is_pure:
            self.forward = self._main_forward
            self._main_term = np.arange(len(self.forward.terms), dtype=np.int64)
        else:
            parts = [self._main_forward] + ([delta] if delta is not None else [])
            self.forward, self._main_term = ForwardIndex.stack(parts, self.layout.stacked)
        self.term_ids = {t: i for i, t in enumerate(self.forward.terms)}
        self._backend: SearchBackend | None = None
        self._exact: ExactBackend | None = None
        self._encoder: SparseEncoder | None = None
        # Recent query vectors: paging through hits (offset=10, 20, ...) asks for the same query
        # again, and a neural encoder would run its network each time.
        self._query_vectors: OrderedDict[str, SparseVector] = OrderedDict()
        self._query_lock = threading.Lock()
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
                elif not BACKENDS[self.manifest.backend].available():
                    # An index built under another Python (Seismic has wheels for 3.11 only): exact
                    # search over the same vectors answers too, exactly, only slower at 1M+ chunks.
                    _log.warning("%s: the index was built with the %s backend, searched exactly here. %s",
                                 self.repo, self.manifest.backend, missing_reason(self.manifest.backend))
                    self._backend = self.exact
                elif self.manifest.backend == "milvus":
                    from codelsr.index import milvus_backend as mb

                    self._backend = mb.MilvusBackend(
                        mb.target_from_settings(self.manifest.backend_settings),
                        str(self.manifest.backend_settings.get("repo")), self.forward.terms,
                        lambda ids: mb.rows_of(self.chunks, ids))
                else:
                    kind = BACKENDS[self.manifest.backend]
                    main = kind.open(self._main_forward, self.folder, self.manifest.backend_settings)
                    if self.layout.is_pure:
                        self._backend = main
                    else:
                        self._backend = SegmentedBackend(main, self.layout, self._main_term, self.forward)
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
                enc = enc.bind_collection(self.forward.n_rows, DocFreq(self.term_ids, self.forward.doc_freq()))
            self._encoder = enc
        return self._encoder

    def query_vector(self, query: str, encoder: str | None = None, *, prepare: bool = True) -> SparseVector:
        """The query's vector (cached): long queries go through :func:`codelsr.queries.encode_query`;
        ``prepare=False`` hands the text to the encoder as it is (its own truncation applies)."""
        enc = self.encoder(encoder)
        key = query if prepare else "\0raw\0" + query
        with self._query_lock:
            vec = self._query_vectors.get(key)
            if vec is not None:
                self._query_vectors.move_to_end(key)
                return dict(vec)
        vec = encode_query(enc, query) if prepare else enc.encode_queries([query])[0]
        with self._query_lock:
            self._query_vectors[key] = vec
            while len(self._query_vectors) > QUERY_CACHE_SIZE:
                self._query_vectors.popitem(last=False)
        return dict(vec)

    def to_ids(self, vector: SparseVector) -> tuple[np.ndarray, np.ndarray]:
        """Query terms as this generation's term ids; terms no chunk has are dropped."""
        pairs = [(self.term_ids[t], w) for t, w in vector.items() if t in self.term_ids and w > 0]
        ids = np.array([p[0] for p in pairs], dtype=np.int64)
        weights = np.array([p[1] for p in pairs], dtype=np.float32)
        return ids, weights

    def row_scores(self, rows: list[int], term_ids: np.ndarray, weights: np.ndarray) -> list[float]:
        """Exact dot products of the query with the given rows (approximate backends may score
        with a cut query; hits report the exact score, which ``explain`` decomposes)."""
        # rows_dot sums in the query's term order, whatever the term numbering: an incrementally
        # updated index and one built from scratch number terms differently but must score identically.
        return rows_dot(self.forward, np.asarray(rows, dtype=np.int64), np.asarray(term_ids),
                        np.asarray(weights)).tolist()

    def close(self) -> None:
        self.chunks.close()


_readers: dict[Path, IndexReader] = {}
_readers_lock = threading.Lock()


def open_index(repo: Path | str) -> IndexReader:
    """The reader of the repository's current generation (cached per process)."""
    repo = Path(repo).expanduser().resolve()
    root = catalog.index_root_for(repo)
    try:
        folder = catalog.current_generation(repo)
    except (NotIndexedError, CorruptIndexError):
        found = health.check_index(repo)
        if found.state == health.DAMAGED:  # CURRENT lost or garbage beside published generations
            raise CorruptIndexError(found.message()) from None
        raise
    with _readers_lock:
        cached = _readers.get(root)
        if cached is not None and cached.folder == folder:
            return cached
    reader = IndexReader(repo, folder)
    with _readers_lock:
        _readers[root] = reader
    return reader


def forget_open_indexes() -> None:
    """Drop the per-process cache of open readers (benchmarks time a cold open with it)."""
    with _readers_lock:
        _readers.clear()


is_indexed = catalog.is_indexed
