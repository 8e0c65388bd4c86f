"""Build a generation: walk the repository, re-chunk and encode what changed, write, publish.

A first build (or ``--force``, or a compaction) writes one *main* segment. A reindex finds the
changed files (``incremental``), chunks and encodes only those (vectors of chunks whose text is
already indexed anywhere are reused by content hash), links the unchanged main segment into the
new generation, and writes a small *delta* segment holding the chunks of every file changed since
the main segment was written. Chunks of those files left in the main segment become tombstones.
When delta rows plus tombstones pass ``compaction_threshold``, the run merges everything into a
new main segment instead (no re-chunking or re-encoding: rows are copied).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import os
import shutil
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import filelock
import numpy as np

import codelsr
from codelsr import git
from codelsr.chunking import ChunkingOptions, SkippedFile, chunk_file, decode_bytes
from codelsr.chunking.context import RULES_VERSION as CONTEXT_RULES
from codelsr.encoders import get_encoder, normalise_spec, window_lines
from codelsr.encoders.base import SparseEncoder
from codelsr.errors import (
    CodelsrError,
    CorruptIndexError,
    IndexBusyError,
    NotARepositoryError,
)
from codelsr.index import catalog, checksums, generations, health, milvus_backend
from codelsr.index.backends import BACKENDS, choose_backend
from codelsr.index.incremental import git_changes, scan
from codelsr.index.layout import CHUNKS_DB, DELTA, DELTA_DIR, MAIN, NEW, FileRecord, FileTable
from codelsr.index.manifest import DeltaSegment, IndexManifest, MainSegment, Segments
from codelsr.index.siblings import find_sibling
from codelsr.index.store import (
    ChunkRow,
    ForwardIndex,
    SegmentChunks,
    check_file_sizes,
    chunk_row,
    file_sizes,
    write_segment_chunks,
)
from codelsr.index.vector_store import VectorStore, open_store
from codelsr.records import SparseVector

_log = logging.getLogger(__name__)

# progress(stage, done, total); stages: "chunking", "encoding", "writing"
Progress = Callable[[str, int, int], None]

ENCODE_BATCH = 64


@dataclass
class IndexReport:
    repo: str
    index_dir: str
    generation: str
    encoder: str
    encoder_id: str
    backend: str
    files: int
    chunks: int
    skipped: dict[str, int]
    encoded_chunks: int
    reused_chunks: int
    seconds: float
    commit: str | None
    skipped_files: list[SkippedFile] = field(default_factory=list)
    changed_files: int = 0  # files re-chunked (new or modified)
    deleted_files: int = 0  # indexed files that are gone
    compacted: bool = False  # a new main segment was written (always for a first or --force build)
    delta_chunks: int = 0  # live chunks in the delta segment after this run
    tombstones: int = 0  # dead rows of the main segment after this run

    def to_json(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "skipped_files"}
        d["seconds"] = round(self.seconds, 3)
        return d


# The window every index was cut to before windows followed the encoder (manifests without
# ``window_lines``): read as "the encoder's window", so such an index re-chunks on its next build.
LEGACY_WINDOW_LINES = 80

# Compaction: when delta rows plus tombstones pass this threshold, a reindex merges the segments
# into a new main segment (rows copied, nothing re-chunked or re-encoded) and rebuilds its backend.
# Measured on the CPython standard library (66k chunks; tools/bench/reindex.py; 2 cores shared with
# other work): a one-file reindex costs 0.34 s with 2k delta rows + 2k tombstones and 0.6 s with
# 13.6k + 13k (search p50 1.4 -> 4.2 ms), while a compaction costs 1.7-1.9 s with an exact main
# segment and a whole Seismic build with a Seismic one (~15 min there). So compactions should be
# rare, but the delta, rewritten by every reindex and searched exactly, must stay bounded: a
# quarter of the live chunks, and never fewer than 5,000 rows (small repositories rarely compact).
COMPACT_MIN_ROWS = 5_000
COMPACT_FRACTION = 0.25


def compaction_threshold(live_rows: int) -> int:
    """Delta rows + tombstones beyond which the segments are merged into one new main segment."""
    return max(COMPACT_MIN_ROWS, int(COMPACT_FRACTION * live_rows))


def encoder_spec_for(requested: str | None, previous: IndexManifest | None, default: str | None = None) -> str:
    """The encoder a build uses: the one asked for, else the existing index's, else ``default``
    (``None``: the library default, lexical)."""
    if requested is not None:
        return normalise_spec(requested)
    if previous is not None:
        return normalise_spec(previous.encoder_spec)
    return normalise_spec(default)


def index_encoder(repo: Path | str, requested: str | None = None, default: str | None = None) -> str:
    """``encoder_spec_for`` the repository's last intact index (what ``build_index`` will use); a
    damaged index whose every manifest is lost raises rather than guessing."""
    root = catalog.index_root_for(Path(repo).expanduser())
    previous = health.last_good_manifest(root)
    if requested is None and previous is None and health.has_published(root):
        raise _encoder_unknown(Path(repo).expanduser().resolve())
    return encoder_spec_for(requested, previous, default)


def _encoder_unknown(repo: Path) -> CorruptIndexError:
    """A damaged index whose every manifest is lost: which encoder built it is unknown, and
    guessing (the default) would silently change the user's choice."""
    return CorruptIndexError(
        f"the index of {repo} is damaged and no intact manifest says which encoder built it: "
        f"run `codelsr index {repo} --encoder <name>` (or index_repo with encoder=...) to rebuild it"
    )


@dataclass
class _Base:
    """The published generation a reindex starts from (its segments, opened read-only)."""

    folder: Path
    manifest: IndexManifest
    table: FileTable
    delta_forward: ForwardIndex | None
    main_chunks: SegmentChunks
    delta_chunks: SegmentChunks | None
    _main_forward: ForwardIndex | None = None
    digests: dict[str, tuple[int, str]] = field(default_factory=dict)  # verified (size, digest) of its files

    @property
    def main_forward(self) -> ForwardIndex:
        """Loaded on first use: a reindex that reuses no main-segment vector never reads it."""
        if self._main_forward is None:
            self._main_forward = ForwardIndex.read(self.folder)
            if self._main_forward.n_rows != self.table.main_rows:
                raise CorruptIndexError(
                    f"index file damaged: {self.folder / 'vectors.npz'} ({self._main_forward.n_rows} vectors, "
                    f"the file table says {self.table.main_rows}); rebuild it with `codelsr index --force`"
                )
        return self._main_forward

    def vectors_for(self, hashes: set[str]) -> dict[str, SparseVector]:
        """Cached vectors by content hash, from any row of either segment (tombstones included:
        a vector depends on the encoded text alone, context header included)."""
        found: dict[str, SparseVector] = {}
        for db, is_main in ((self.delta_chunks, False), (self.main_chunks, True)):
            need = [h for h in hashes if h not in found]
            if db is None or not need:
                continue
            for row, h in db.rows_in("content_hash", need, "row, content_hash"):
                if h not in found:
                    found[h] = (self.main_forward if is_main else self.delta_forward).row(row)
        return found

    def close(self) -> None:
        self.main_chunks.close()
        if self.delta_chunks is not None:
            self.delta_chunks.close()


def _load_base(root: Path, encoder_id: str) -> _Base | None:
    """The current generation if it used the same encoder and is intact; else None (rebuild)."""
    try:
        published = catalog.published_at(root)
        gen, manifest = published.generation, published.manifest
        if manifest.encoder_id != encoder_id:
            return None
        verdict = checksums.check_generation(gen, full=True)  # a damaged segment is never reused
        if not verdict.ok:
            return None
        check_file_sizes(gen, manifest.segments.sizes)
        table = FileTable.read(gen)
        delta_forward = ForwardIndex.read(gen / DELTA_DIR) if table.delta_rows else None
        main_chunks = SegmentChunks(gen / CHUNKS_DB)
        delta_chunks = SegmentChunks(gen / DELTA_DIR / CHUNKS_DB) if table.delta_rows else None
        base = _Base(gen, manifest, table, delta_forward, main_chunks, delta_chunks, digests=verdict.digests)
        if (main_chunks.n_rows != table.main_rows
                or (table.delta_rows and (delta_forward.n_rows != table.delta_rows
                                          or delta_chunks.n_rows != table.delta_rows))):
            base.close()
            return None
        return base
    except CodelsrError:
        return None  # a damaged previous generation is rebuilt, never trusted


class ResumeVectors(Protocol):
    """Vectors kept outside any generation, by content hash: what a killed build had encoded
    (``codelsr.index.progressive``), so the next run does not encode it again."""

    def get(self, hashes: set[str]) -> dict[str, SparseVector]: ...

    def put(self, vectors: dict[str, SparseVector]) -> None: ...


def encode_with_cache(encoder: SparseEncoder, texts: list[str], hashes: list[str],
                      cache: dict[str, SparseVector], progress: Progress | None = None,
                      store: ResumeVectors | None = None) -> tuple[list[SparseVector], int]:
    """Vectors for all texts, encoding only hashes the cache lacks. Returns (vectors, n_encoded).
    Each encoded batch is handed to ``store`` as soon as it is done."""
    todo = sorted({h: i for i, h in enumerate(hashes) if h not in cache}.items(), key=lambda hi: hi[1])
    if progress and todo:
        progress("encoding", 0, len(todo))
    for start in range(0, len(todo), ENCODE_BATCH):
        batch = todo[start:start + ENCODE_BATCH]
        fresh = dict(zip((h for h, _ in batch), encoder.encode_documents([texts[i] for _, i in batch])))
        cache.update(fresh)
        if store is not None:
            store.put(fresh)
        if progress:
            progress("encoding", min(start + ENCODE_BATCH, len(todo)), len(todo))
    if progress and not todo:
        progress("encoding", 0, 0)
    return [cache[h] for h in hashes], len(todo)


def chunking_options_of(previous: IndexManifest | None) -> ChunkingOptions:
    """The chunking options the index was built with (a hook's reindex keeps ``--exclude``)."""
    if previous is None or not previous.chunking:
        return ChunkingOptions()
    names = {f.name for f in dataclasses.fields(ChunkingOptions)}
    recorded = dict(previous.chunking)
    if "window_lines" not in recorded and recorded.get("max_chunk_lines") == LEGACY_WINDOW_LINES:
        recorded["max_chunk_lines"] = None  # built when every encoder got 80 lines: now its own window
    try:
        return ChunkingOptions(**{k: tuple(v) if isinstance(v, list) else v
                                  for k, v in recorded.items() if k in names})
    except (TypeError, ValueError):
        return ChunkingOptions()


def _options_json(options: ChunkingOptions, encoder: SparseEncoder) -> dict:
    """The chunking options as the manifest records them, with the version of the context header
    rules and the window the chunks were cut to: a build only keeps the chunks of unchanged files
    when all are the same."""
    return {**json.loads(json.dumps(dataclasses.asdict(options))), "context_rules": CONTEXT_RULES,
            "window_lines": options.window_for(window_lines(encoder))}


def _stack_order(records: list[FileRecord], offsets: dict[int, int]) -> tuple[np.ndarray, list[FileRecord]]:
    """Rows (numbered across the stacked parts, ``offsets[segment]`` first) of ``records`` in
    path order, and the records renumbered to their place in the result."""
    order: list[np.ndarray] = []
    placed: list[FileRecord] = []
    at = 0
    for r in records:
        base = offsets[r.segment] + r.start
        order.append(np.arange(base, base + r.count, dtype=np.int64))
        placed.append(dataclasses.replace(r, start=at))
        at += r.count
    return (np.concatenate(order) if order else np.zeros(0, dtype=np.int64)), placed


def _sources(records: list[FileRecord], placed: list[FileRecord], segment: int) -> tuple[np.ndarray, np.ndarray]:
    """(old rows, new rows) of the records that come from ``segment``."""
    old, new = [], []
    for r, p in zip(records, placed):
        if r.segment == segment and r.count:
            old.append(np.arange(r.start, r.start + r.count))
            new.append(np.arange(p.start, p.start + p.count))
    if not old:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(old), np.concatenate(new)


def _write_segment(folder: Path, records: list[FileRecord], parts: dict[int, tuple[ForwardIndex, Path | None]],
                   fresh_rows: list[ChunkRow]) -> tuple[ForwardIndex, list[FileRecord]]:
    """Write one segment (chunks + vectors) holding ``records``' chunks, in path order.

    ``parts[segment] = (forward index, folder of its chunk table)`` for each source segment;
    ``NEW`` rows come from ``fresh_rows`` (their row number is their index there)."""
    folder.mkdir(exist_ok=True)
    keys = sorted(parts)
    offsets, at = {}, 0
    for key in keys:
        offsets[key] = at
        at += parts[key][0].n_rows
    order, placed = _stack_order(records, offsets)
    forward, _ = ForwardIndex.stack([parts[k][0] for k in keys], order)
    copies = []
    for key in keys:
        src = parts[key][1]
        if src is not None:
            old, new = _sources(records, placed, key)
            copies.append((src / CHUNKS_DB, old, new))
    fresh_old, fresh_new = _sources(records, placed, NEW)
    fresh = [fresh_rows[o]._replace(row=int(n)) for o, n in zip(fresh_old.tolist(), fresh_new.tolist())]
    write_segment_chunks(folder, copies, fresh)
    forward.write(folder)
    return forward, placed


def build_index(
    repo: Path | str,
    encoder: str | None = None,
    *,
    backend: str | None = None,
    force: bool = False,
    options: ChunkingOptions | None = None,
    progress: Progress | None = None,
    lock_timeout: float = 0,
    root: Path | None = None,
    vector_store: ResumeVectors | None = None,
    milvus_uri: str | None = None,
) -> IndexReport:
    """Index ``repo`` into a new generation and publish it.

    ``encoder=None`` keeps the encoder of the existing index (or the default for a new one);
    ``options=None`` keeps its chunking options likewise.
    On an indexed repository only files that changed are re-chunked (see ``incremental``), and
    unchanged chunks reuse their vectors unless ``force``. The previous generation stays
    searchable until the new one is complete; on any error nothing is published.
    ``lock_timeout``: seconds to wait for another writer of the same index (0: fail at once).
    ``root``: the index folder to build in (default: the repository's; progressive indexing builds
    its lexical and learned indexes in folders of their own). ``vector_store``: vectors found
    there are not encoded again, and every encoded batch is put there at once (resumable builds).
    ``milvus_uri`` (or ``CODELSR_MILVUS_URI`` for a new index) selects the Milvus backend and its
    engine; a reindex keeps the engine the index was synced to unless another is given.
    """
    if milvus_uri is not None:
        backend = "milvus"
    started = time.perf_counter()
    repo = Path(repo).expanduser()
    if not repo.exists():
        raise NotARepositoryError(f"{repo} does not exist")
    if not repo.is_dir():
        raise NotARepositoryError(f"{repo} is not a directory; pass the repository's root folder")
    repo = repo.resolve()
    root = catalog.index_root_for(repo) if root is None else root
    root.mkdir(parents=True, exist_ok=True)

    lock = filelock.FileLock(str(root / generations.LOCK))
    try:
        lock.acquire(timeout=lock_timeout)
    except filelock.Timeout:
        raise IndexBusyError(
            f"another codelsr process is indexing {repo} (lock {root / generations.LOCK}); "
            "wait for it to finish and try again, or pass --wait SECONDS to wait for it"
        ) from None
    try:
        generations.clean_up(root)
        previous = health.last_good_manifest(root)  # after damage: the newest intact one
        if encoder is None and previous is None and health.has_published(root):
            raise _encoder_unknown(repo)
        spec = encoder_spec_for(encoder, previous)
        enc = get_encoder(spec)
        if options is None:
            options = chunking_options_of(previous)
        base = None if force else _load_base(root, enc.encoder_id)
        # A damaged index: rebuild, reusing vectors from its intact segments (never its damaged ones).
        salvaged = None if force or base is not None else health.salvage_vectors(root, enc.encoder_id)
        sibling_lock = None
        if base is None and salvaged is None and previous is None and not force:
            base, sibling_lock = _sibling_base(repo, root, enc.encoder_id)
        if backend is None and previous is None and os.environ.get(milvus_backend.URI_ENV):
            backend = "milvus"
        try:
            report = _build(repo, root, spec, enc, base, backend, options, progress, started, salvaged,
                            vector_store, milvus_uri, reuse_vectors=not force)
        finally:
            if base is not None:
                base.close()
            if salvaged is not None:
                salvaged.close()
            if sibling_lock is not None:
                sibling_lock.release()
        generations.clean_up(root)
    finally:
        lock.release()
    return report


def _sibling_base(repo: Path, root: Path, encoder_id: str) -> tuple[_Base | None, filelock.FileLock | None]:
    """A first build's starting point: the generation of another worktree/clone of this repository
    (``siblings``), held under that index's write lock so its generations stay while we link them."""
    sibling = find_sibling(repo, root, encoder_id)
    if sibling is None:
        return None, None
    lock = filelock.FileLock(str(sibling / generations.LOCK))
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        return None, None  # the sibling is being written; build on our own
    base = _load_base(sibling, encoder_id)
    if base is None:
        lock.release()
        return None, None
    return base, lock


def _cached_vectors(base: _Base | None, store: VectorStore | None, hashes: set[str]) -> dict[str, SparseVector]:
    """Vectors already computed for these chunk texts: from the index's own segments, then from the
    vector store shared by all indexes of the encoder."""
    cache = base.vectors_for(hashes) if base is not None else {}
    missing = hashes - cache.keys()
    if store is not None and missing:
        try:
            cache.update(store.get(missing))
        except sqlite3.Error as exc:
            _log.warning("vector store %s unreadable (%s); encoding without it", store.path, exc)
    return cache


def _store_new(store: VectorStore | None, cache: dict[str, SparseVector], new: set[str], replace: bool) -> None:
    if store is not None and new:
        try:
            store.put({h: cache[h] for h in new}, replace=replace)
        except sqlite3.Error as exc:
            _log.warning("vector store %s not updated (%s)", store.path, exc)


@dataclass
class _Segments:
    """What a run wrote: the records placed in their segments and the segments' sizes."""

    records: list[FileRecord]
    backend: str
    backend_settings: dict
    main_rows: int
    delta_rows: int
    tombstones: int
    main_files: list[str]
    main_terms: int
    term_count: int


def _chunk_changed(changed: list, options: ChunkingOptions, window: int | None, progress: Progress | None
                   ) -> tuple[list[FileRecord], list[ChunkRow], list[str]]:
    """Chunk the changed files: their records (segment ``NEW``), their chunks as table rows, and
    what the encoder sees of each row (its context header and text, ``Chunk.encoded_text``)."""
    records: list[FileRecord] = []
    rows: list[ChunkRow] = []
    texts: list[str] = []
    if progress:
        progress("chunking", 0, len(changed))
    for done, cf in enumerate(changed, 1):
        chunks = chunk_file(cf.file.path, decode_bytes(cf.data), cf.file.language, options, window)
        records.append(FileRecord(cf.file.path, cf.file.language, NEW, len(rows), len(chunks), cf.sha1, cf.size,
                                  cf.mtime_ns))
        rows.extend(chunk_row(len(rows) + i, c) for i, c in enumerate(chunks))
        texts.extend(c.encoded_text for c in chunks)
        if progress:
            progress("chunking", done, len(changed))
    return records, rows, texts


def _write_main(tmp: Path, records: list[FileRecord], base: _Base | None, fresh: ForwardIndex,
                fresh_rows: list[ChunkRow], backend: str | None) -> _Segments:
    """Compaction (or a first build): every live chunk into one new main segment, then its backend."""
    parts: dict[int, tuple[ForwardIndex, Path | None]] = {NEW: (fresh, None)}
    if base is not None:
        parts[MAIN] = (base.main_forward, base.folder)
        if base.delta_forward is not None:
            parts[DELTA] = (base.delta_forward, base.folder / DELTA_DIR)
    forward, placed = _write_segment(tmp, records, parts, fresh_rows)
    name = choose_backend(backend, forward.n_rows)
    settings = BACKENDS[name].build(forward, tmp, {}) if forward.n_rows else {}
    return _Segments([dataclasses.replace(r, segment=MAIN) for r in placed], name, settings, forward.n_rows, 0, 0,
                     sorted(file_sizes(tmp)), len(forward.terms), len(forward.terms))


def _write_delta(tmp: Path, records: list[FileRecord], base: _Base, fresh: ForwardIndex,
                 fresh_rows: list[ChunkRow]) -> _Segments:
    """A reindex: share the main segment's files, write a new delta with every file not in main."""
    main = base.manifest.segments.main
    for name in main.files:
        generations.link_or_copy(base.folder / name, tmp / name)
    in_delta = [r for r in records if r.segment != MAIN]
    unchanged = all(r.segment == DELTA for r in in_delta) and len(in_delta) == sum(
        1 for r in base.table.files if r.segment == DELTA)
    delta = None
    if in_delta and not unchanged:
        parts: dict[int, tuple[ForwardIndex, Path | None]] = {NEW: (fresh, None)}
        if base.delta_forward is not None:
            parts[DELTA] = (base.delta_forward, base.folder / DELTA_DIR)
        delta, placed = _write_segment(tmp / DELTA_DIR, in_delta, parts, fresh_rows)
        moved = {p.path: dataclasses.replace(p, segment=DELTA) for p in placed}
        records = [moved.get(r.path, r) for r in records]
    elif in_delta:  # the delta is unchanged: share its files too
        (tmp / DELTA_DIR).mkdir()
        for path in (base.folder / DELTA_DIR).iterdir():
            generations.link_or_copy(path, tmp / DELTA_DIR / path.name)
        delta = base.delta_forward
    live_main = sum(r.count for r in records if r.segment == MAIN)
    delta_rows = sum(r.count for r in in_delta)
    # Terms of the main segment plus the delta's own: exact after each compaction, an upper bound
    # in between (counting the live terms exactly would mean reading the whole main segment).
    main_terms = main.terms
    return _Segments(records, base.manifest.backend, base.manifest.backend_settings, base.table.main_rows,
                     delta_rows, base.table.main_rows - live_main, list(main.files), main_terms,
                     main_terms + (len(delta.terms) if delta is not None else 0))


def _milvus_target(enc: SparseEncoder, base: _Base | None, milvus_uri: str | None) -> milvus_backend.MilvusTarget:
    """The engine a Milvus build writes to: the one asked for, else the index's, else the default."""
    if milvus_uri is None and base is not None and base.manifest.backend == "milvus":
        milvus_uri = base.manifest.backend_settings.get("uri")
    return milvus_backend.target_for(enc.encoder_id, milvus_uri)


def _build(repo: Path, root: Path, spec: str, enc: SparseEncoder, base: _Base | None, backend: str | None,
           options: ChunkingOptions, progress: Progress | None, started: float,
           salvaged: health.SalvagedVectors | None = None,
           vector_store: ResumeVectors | None = None,
           milvus_uri: str | None = None, reuse_vectors: bool = True) -> IndexReport:
    scanned_ns = time.time_ns()
    state = git.head(repo), git.status(repo)  # asked once: the fingerprint and the scan share it
    fingerprint = git.worktree_fingerprint(repo, state)
    # Incremental only when the chunks of unchanged files would come out the same.
    incremental = base is not None and base.manifest.chunking == _options_json(options, enc)
    table = base.table if incremental else None
    vcs = git_changes(repo, table.git_commit if table is not None else None, state)
    changes = scan(repo, options, table, vcs)

    new_records, fresh_rows, fresh_texts = _chunk_changed(changes.changed, options, window_lines(enc), progress)
    records = sorted([*changes.unchanged, *new_records], key=lambda r: r.path)
    hashes = [r.content_hash for r in fresh_rows]
    source = base if base is not None else salvaged
    store = open_store(enc.encoder_id)
    try:
        # --force re-encodes everything: it neither reads the store nor keeps its old vectors
        cache = _cached_vectors(source, store if reuse_vectors else None, set(hashes))
        if vector_store is not None:
            cache.update(vector_store.get(set(hashes) - cache.keys()))
        known = set(cache)
        vectors, n_encoded = encode_with_cache(enc, fresh_texts, hashes, cache, progress,
                                               vector_store)
        _store_new(store, cache, set(hashes) - known, replace=not reuse_vectors)
    finally:
        if store is not None:
            store.close()
    fresh = ForwardIndex.from_vectors(vectors)
    if progress:
        progress("writing", 0, 1)

    n_live = sum(r.count for r in records)
    live_main = sum(r.count for r in records if r.segment == MAIN)
    dead_and_new = (table.main_rows - live_main if table is not None else 0) + (n_live - live_main)
    # ``backend=None`` keeps what the index was built with: an explicit backend stays, auto stays auto.
    requested = backend if backend is not None else (
        base.manifest.segments.main.backend_requested if base is not None else None)
    compact = (table is None or dead_and_new > compaction_threshold(n_live)
               or choose_backend(requested, n_live) != base.manifest.backend)

    tmp = generations.new_temp_folder(root)
    try:
        if compact:
            written = _write_main(tmp, records, base if table is not None else None, fresh, fresh_rows, requested)
        else:
            written = _write_delta(tmp, records, base, fresh, fresh_rows)
        records = written.records
        synced = None
        if written.backend == "milvus":
            target = _milvus_target(enc, base, milvus_uri)
            written.backend_settings = {**target.settings(), "repo": milvus_backend.repo_key(root)}
        now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        FileTable(written.main_rows, written.delta_rows, records, vcs.head if vcs is not None else None,
                  sorted(vcs.dirty) if vcs is not None else [], scanned_ns, changes.skip_records).write(tmp)
        manifest = IndexManifest(
            codelsr_version=codelsr.__version__,
            repo_path=str(repo),
            encoder_spec=spec,
            encoder_id=enc.encoder_id,
            encoder_settings=enc.settings(),
            backend=written.backend,
            backend_settings=written.backend_settings,
            git_commit=vcs.head if vcs is not None else None,
            git_dirty=bool(vcs.dirty) if vcs is not None else False,
            chunk_count=n_live,
            file_count=len(records),
            term_count=written.term_count,
            skipped=dict(Counter(s.reason for s in changes.skipped).most_common()),
            created_at=now,
            build_seconds=round(time.perf_counter() - started, 3),
            chunking=_options_json(options, enc),
            segments=Segments(
                main=MainSegment(rows=written.main_rows, files=written.main_files, terms=written.main_terms,
                                 backend_requested=requested or "auto",
                                 created_at=now if compact else base.manifest.segments.main.created_at),
                delta=DeltaSegment(rows=written.delta_rows),
                tombstones=written.tombstones,
                compacted=compact,
                sizes=file_sizes(tmp),
            ),
            extra={"worktree_fingerprint": fingerprint},
            checksums=checksums.ALGORITHM,
        )
        manifest.write(tmp)
        if written.backend == "milvus":
            # The engine gets the new chunks before the generation is published, loses the dead
            # ones after: readers of either generation find all of theirs (milvus_backend doc).
            same = (base is not None and base.folder.parent == root and base.manifest.backend == "milvus"
                    and base.manifest.backend_settings == written.backend_settings)
            synced = milvus_backend.sync(target, written.backend_settings["repo"], root, tmp,
                                         base.folder if same else None, base.manifest.chunk_count if same else None)
        checksums.write_checksums(tmp, base.folder if base is not None else None,
                                  base.digests if base is not None else None)
        gen = generations.publish(root, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if synced is not None:
        try:
            milvus_backend.finish(synced, root)
        except milvus_backend.MilvusError as exc:
            # Published and correct: readers drop entities their generation lacks, and the marker
            # left behind makes the next build reconcile.
            _log.warning("%s: dead chunks stay in Milvus until the next build (%s)", repo, exc)
    if progress:
        progress("writing", 1, 1)
    return IndexReport(
        repo=str(repo), index_dir=str(root), generation=gen.name, encoder=spec, encoder_id=enc.encoder_id,
        backend=written.backend, files=len(records), chunks=n_live, skipped=manifest.skipped,
        encoded_chunks=n_encoded, reused_chunks=n_live - n_encoded,
        seconds=time.perf_counter() - started, commit=manifest.git_commit, skipped_files=changes.skipped,
        changed_files=len(changes.changed), deleted_files=len(changes.deleted), compacted=compact,
        delta_chunks=written.delta_rows, tombstones=written.tombstones,
    )
