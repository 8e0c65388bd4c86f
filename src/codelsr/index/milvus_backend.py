"""Milvus as the search engine: the live chunks of many repositories in one collection.

Why: one process on one machine does not serve an organisation's repositories; a Milvus cluster
(or Zilliz Cloud) does, and the embedded engine (Milvus Lite, a local file) runs the same code
path in tests and single-user setups. ``uri`` is a local file for Milvus Lite or
``http://host:19530`` (token in ``CODELSR_MILVUS_TOKEN``, never written to disk) for a server.

What lives where. The generation folder stays the source of truth (chunk text and metadata, the
forward index, the file table): ``explain_match`` and codelsr's exact rescoring read it as with
the other backends. Milvus holds one entity per live chunk: ``pk`` (repository key + chunk id),
``repo`` (the partition key on a server), ``path`` and ``language`` (pushed-down filters) and the
sparse vector. One collection per encoder (scores of different encoders are not comparable);
every repository indexed with that encoder shares it, so a search over several repositories is
one engine query with ``repo in [...]``.

Term ids. Milvus wants integer dimensions and codelsr's terms are strings (lexical identifiers
have no fixed vocabulary). A term's dimension is a stable 32-bit hash of its text (BLAKE2b),
so no dictionary has to be shared between indexers or kept in sync. Two terms of one chunk that
collide add their weights; that can only move a candidate's engine score, and codelsr rescores
the candidates exactly from the forward index, so reported scores and ``explain_match`` are
exact. ``collisions`` measures how often it happens (docs/performance.md).

BM25 statistics. Document vectors carry no collection statistic (see ``encoders.lexical``): idf
sits on the query side and comes from codelsr's live document frequencies. A search of one
repository uses that repository's frequencies (hits equal the exact backend's); a search of
several uses the sum of theirs, i.e. BM25 over exactly the repositories searched, whatever else
shares the collection. Milvus's own BM25 function is not used: its statistics would span every
repository in the collection.

Consistency. A build upserts the new generation's new chunks before the generation is published
and deletes the dead ones after; readers map engine hits to chunks through their own generation
and drop ids it lacks. A process killed in between leaves a marker (``milvus.pending`` in the
index folder); the next build then reconciles with what the engine holds instead of trusting the
previous generation. Milvus Lite: one process opens a file at a time, and 2.5.1 cannot filter on
a partition-key field (milvus-io/milvus#43163), so there ``repo`` is a plain field.
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.metadata
import json
import os
import re
import socket
import sys
import threading
import types
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from codelsr.errors import CodelsrError
from codelsr.index.catalog import codelsr_home
from codelsr.index.layout import CHUNKS_DB, DELTA_DIR, FileTable
from codelsr.index.store import ForwardIndex, SegmentChunks, SegmentLayout

URI_ENV = "CODELSR_MILVUS_URI"
TOKEN_ENV = "CODELSR_MILVUS_TOKEN"
PENDING_FILE = "milvus.pending"
TERM_SPACE = 2**32 - 1  # Milvus sparse dimensions are uint32 below 2^32 - 1
WRITE_BATCH = 2_000  # entities per upsert call (a SPLADE chunk is ~1-2 KB on the wire)
DELETE_BATCH = 1_000
MAX_LIMIT = 16_384  # Milvus's cap on top-k
SEARCH_PARAMS = {"metric_type": "IP", "params": {"drop_ratio_search": 0.0}}  # keep every query term: exact IP
INDEX_PARAMS = {"inverted_index_algo": "DAAT_MAXSCORE"}
PATH_MAX = 65_535


class MilvusError(CodelsrError):
    """Milvus is unreachable, refused a request, or holds data this index cannot trust."""


def available() -> bool:
    try:
        _import_pymilvus()
    except ImportError:
        return False
    return True


def _import_pymilvus():
    """pymilvus, with milvus-lite imported under a stand-in ``pkg_resources`` where setuptools >= 81
    dropped it.

    milvus-lite 2.5.1 imports ``pkg_resources`` for one thing, its own version string. The stand-in
    answers that from ``importlib.metadata``, exists only while milvus-lite is imported, and is
    removed afterwards: other code (pytest, for one) takes any ``pkg_resources`` module for the real one."""
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        shim = types.ModuleType("pkg_resources")

        class DistributionNotFound(Exception):
            pass

        def get_distribution(name: str):
            try:
                return types.SimpleNamespace(version=importlib.metadata.version(name))
            except importlib.metadata.PackageNotFoundError as exc:
                raise DistributionNotFound(name) from exc

        shim.DistributionNotFound = DistributionNotFound  # type: ignore[attr-defined]
        shim.get_distribution = get_distribution  # type: ignore[attr-defined]
        sys.modules["pkg_resources"] = shim
        try:
            import milvus_lite.server_manager  # noqa: F401 - imported now, under the stand-in
        except ImportError:
            pass  # no milvus-lite: a server URI still works
        finally:
            if sys.modules.get("pkg_resources") is shim:
                del sys.modules["pkg_resources"]
    import pymilvus

    return pymilvus


# ---------------------------------------------------------------------------------------------- term ids


def term_id(term: str) -> int:
    """The Milvus dimension of a term: a stable 32-bit hash of its text (no shared dictionary)."""
    digest = hashlib.blake2b(term.encode("utf-8", "surrogatepass"), digest_size=4).digest()
    return int.from_bytes(digest, "little") % TERM_SPACE


def term_ids(terms: Sequence[str]) -> np.ndarray:
    """``term_id`` of each term, shape (len(terms),), int64."""
    return np.fromiter((term_id(t) for t in terms), dtype=np.int64, count=len(terms))


def collisions(terms: Iterable[str]) -> dict[str, int]:
    """How many distinct terms share a dimension with another: the measure of the hash's cost."""
    ids = term_ids(list(dict.fromkeys(terms)))
    _, counts = np.unique(ids, return_counts=True)
    return {"terms": int(ids.size), "dimensions": int(counts.size),
            "terms_in_collisions": int(counts[counts > 1].sum()), "largest_group": int(counts.max(initial=0))}


def hashed_vector(ids: np.ndarray, weights: np.ndarray) -> dict[int, float]:
    """A sparse vector over hashed dimensions; colliding terms add their weights."""
    out: dict[int, float] = {}
    for i, w in zip(ids.tolist(), weights.tolist()):
        out[i] = out.get(i, 0.0) + w
    return out


# ---------------------------------------------------------------------------------------------- target


@dataclass(frozen=True)
class MilvusTarget:
    """Where a repository's entities live: the engine (``uri``) and the collection."""

    uri: str
    collection: str
    token: str | None = field(default=None, repr=False, compare=False)

    @property
    def is_local(self) -> bool:
        """A Milvus Lite file rather than a server."""
        return not re.match(r"^[a-z][a-z0-9+.-]*://", self.uri)

    def settings(self) -> dict[str, str]:
        """What the manifest records (never the token)."""
        return {"uri": self.uri, "collection": self.collection}


def default_uri() -> str:
    return str(codelsr_home() / "milvus" / "codelsr.db")


def resolve_uri(uri: str | None) -> str:
    """``uri``, else ``CODELSR_MILVUS_URI``, else a Milvus Lite file under the codelsr home; a local
    path made absolute (Milvus Lite names the file's server after it: letters, digits, ``._-``)."""
    uri = uri or os.environ.get(URI_ENV) or default_uri()
    if re.match(r"^[a-z][a-z0-9+.-]*://", uri):
        return uri
    path = Path(uri).expanduser().resolve()
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,35}", path.name):
        raise MilvusError(f"Milvus Lite file name {path.name!r} is not accepted: use at most 35 letters, digits, "
                          "'.', '_' or '-' (e.g. codelsr.db)")
    return str(path)


def collection_for(encoder_id: str) -> str:
    """One collection per encoder: scores of different encoders do not mix."""
    return "codelsr_" + hashlib.sha1(encoder_id.encode()).hexdigest()[:16]


def target_for(encoder_id: str, uri: str | None = None) -> MilvusTarget:
    return MilvusTarget(resolve_uri(uri), collection_for(encoder_id), os.environ.get(TOKEN_ENV) or None)


def target_from_settings(settings: dict) -> MilvusTarget:
    """The target a generation was synced to (the token comes from the environment)."""
    try:
        return MilvusTarget(str(settings["uri"]), str(settings["collection"]), os.environ.get(TOKEN_ENV) or None)
    except KeyError as exc:
        raise MilvusError(f"the index's Milvus settings lack {exc}; rebuild with `codelsr index --force`") from None


def repo_key(index_root: Path) -> str:
    """A repository's name in a shared collection: its index folder's name (readable name + hash of
    its path) plus a hash of the host, so two machines' checkouts at one path stay apart."""
    host = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]
    return f"{index_root.name}.{host}"


_clients: dict[str, object] = {}
_ensured: set[tuple[str, str]] = set()
_clients_lock = threading.Lock()


def client(target: MilvusTarget):
    """One ``MilvusClient`` per engine per process (Milvus Lite runs one server per file)."""
    with _clients_lock:
        found = _clients.get(target.uri)
        if found is not None:
            return found
        pymilvus = _import_pymilvus()
        if target.is_local:
            Path(target.uri).parent.mkdir(parents=True, exist_ok=True)
        try:
            made = pymilvus.MilvusClient(target.uri, token=target.token or "")
        except Exception as exc:  # noqa: BLE001 - pymilvus raises its own and grpc errors
            hint = (" A Milvus Lite file is opened by one process at a time: stop the other codelsr process "
                    "(a server, a git hook's reindex), or use a Milvus server for several processes."
                    if target.is_local else " Check the address and CODELSR_MILVUS_TOKEN.")
            raise MilvusError(f"cannot open Milvus at {target.uri}: {exc}.{hint}") from exc
        _clients[target.uri] = made
        return made


def close_clients() -> None:
    """Close every engine connection of this process (Milvus Lite then stops its server)."""
    with _clients_lock:
        for uri, c in _clients.items():
            try:
                c.close()
            except Exception:  # noqa: BLE001 - closing a dead connection
                pass
            if not re.match(r"^[a-z][a-z0-9+.-]*://", uri):
                # Closing the client leaves Milvus Lite's server running, holding the file's lock.
                from milvus_lite.server_manager import server_manager_instance

                server_manager_instance.release_server(uri)
        _clients.clear()
        _ensured.clear()


def _call(what: str, fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except CodelsrError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise MilvusError(f"Milvus {what} failed: {exc}") from exc


def ensure_collection(target: MilvusTarget) -> None:
    """Create the collection (schema, sparse index) unless it exists."""
    if (target.uri, target.collection) in _ensured:
        return
    pymilvus = _import_pymilvus()
    c = client(target)
    if not _call("has_collection", c.has_collection, target.collection):
        DataType = pymilvus.DataType
        schema = pymilvus.MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=128)
        # Milvus Lite 2.5.1 rejects filters on a partition key (milvus-io/milvus#43163): a plain
        # field there, the partition key on a server, where it keeps each repository's rows together.
        schema.add_field("repo", DataType.VARCHAR, max_length=128, is_partition_key=not target.is_local)
        schema.add_field("path", DataType.VARCHAR, max_length=PATH_MAX)
        schema.add_field("language", DataType.VARCHAR, max_length=64)
        schema.add_field("vector", DataType.SPARSE_FLOAT_VECTOR)
        index = c.prepare_index_params()
        index.add_index("vector", index_type="SPARSE_INVERTED_INDEX", metric_type="IP", params=INDEX_PARAMS)
        index.add_index("repo", index_type="INVERTED") if not target.is_local else None
        _call("create_collection", c.create_collection, target.collection, schema=schema, index_params=index,
              consistency_level="Strong")
    _ensured.add((target.uri, target.collection))


# ---------------------------------------------------------------------------------------------- filters


def _literal(value: str) -> str:
    return json.dumps(value)


def repo_filter(keys: Sequence[str]) -> str:
    return f"repo == {_literal(keys[0])}" if len(keys) == 1 else f"repo in [{', '.join(map(_literal, keys))}]"


def glob_to_like(glob: str) -> str:
    """A ``like`` pattern matching every path the glob (SQLite GLOB: ``*`` crosses folders) matches.

    A superset where LIKE cannot say it exactly: ``?``, character classes and literal ``%``/``_``
    become ``_`` (any one character); codelsr checks each hit against the glob afterwards."""
    out, i = [], 0
    while i < len(glob):
        ch = glob[i]
        if ch == "*":
            if not out or out[-1] != "%":
                out.append("%")
        elif ch == "[":
            end = glob.find("]", i + 2)
            if end < 0:
                out.append("_")  # a lone '[' matches itself: '_' covers it
            else:
                out.append("_")
                i = end
        elif ch in "?%_\\\"":
            out.append("_")
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def glob_matcher(glob: str):
    """``path -> bool`` with SQLite GLOB semantics (case-sensitive, ``*`` crosses ``/``)."""
    pattern = re.compile(fnmatch.translate(glob.replace("[^", "[!")))  # SQLite negates with ^, fnmatch with !
    return lambda path: pattern.match(path) is not None


def engine_filter(keys: Sequence[str], path_glob: str | None, language: str | None) -> str:
    clauses = [repo_filter(keys)]
    if path_glob:
        like = glob_to_like(path_glob)
        if like != "%":
            clauses.append(f"path like {_literal(like)}")
    if language:
        clauses.append(f"language == {_literal(language.lower())}")
    return " and ".join(clauses)


# ---------------------------------------------------------------------------------------------- a generation's live chunks


@dataclass
class LiveChunks:
    """A generation's live chunks as the engine stores them, in virtual-row order."""

    chunk_ids: list[str]
    paths: list[str]
    languages: list[str]
    forward: ForwardIndex  # live rows only, virtual order (the reader's ``forward``)

    def index_of(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.chunk_ids)}


def live_chunks(folder: Path) -> LiveChunks:
    """Read a (possibly unpublished) generation's live chunks and their vectors."""
    table = FileTable.read(folder)
    layout = SegmentLayout(table, folder)
    n = layout.n_live
    ids, paths, langs = [""] * n, [""] * n, [""] * n
    parts = [ForwardIndex.read(folder)]
    dbs = [SegmentChunks(folder / CHUNKS_DB)]
    if layout.n_delta:
        parts.append(ForwardIndex.read(folder / DELTA_DIR))
        dbs.append(SegmentChunks(folder / DELTA_DIR / CHUNKS_DB))
    try:
        for s, db in enumerate(dbs):
            found = db.query("SELECT row, chunk_id, path, language FROM chunks")
            virtual = layout.virtual(s, np.fromiter((r[0] for r in found), dtype=np.int64, count=len(found)))
            for v, r in zip(virtual.tolist(), found):
                if v >= 0:
                    ids[v], paths[v], langs[v] = r[1], r[2], r[3]
    finally:
        for db in dbs:
            db.close()
    forward = parts[0] if layout.is_pure else ForwardIndex.stack(parts, layout.stacked)[0]
    return LiveChunks(ids, paths, langs, forward)


def _entities(key: str, live: LiveChunks, rows: Sequence[int], dims: np.ndarray) -> list[dict]:
    fwd = live.forward
    out = []
    for r in rows:
        lo, hi = int(fwd.indptr[r]), int(fwd.indptr[r + 1])
        out.append({"pk": f"{key}:{live.chunk_ids[r]}", "repo": key, "path": live.paths[r][:PATH_MAX],
                    "language": live.languages[r].lower(),
                    "vector": hashed_vector(dims[fwd.indices[lo:hi]], fwd.data[lo:hi])})
    return out


def engine_pks(target: MilvusTarget, key: str) -> set[str]:
    """Every pk the engine holds for repository ``key`` (a reconciliation reads them all)."""
    c = client(target)
    it = _call("query_iterator", c.query_iterator, target.collection, batch_size=5_000,
               filter=repo_filter([key]), output_fields=["pk"])
    out: set[str] = set()
    try:
        while True:
            batch = _call("query_iterator", it.next)
            if not batch:
                break
            out.update(e["pk"] for e in batch)
    finally:
        it.close()
    return out


def engine_count(target: MilvusTarget, key: str) -> int:
    res = _call("count", client(target).query, target.collection, filter=repo_filter([key]),
                output_fields=["count(*)"])
    return int(res[0]["count(*)"]) if res else 0


@dataclass
class SyncPlan:
    """What a build wrote to the engine and what it must delete once its generation is published."""

    target: MilvusTarget
    key: str
    upserted: int
    stale: list[str]
    reconciled: bool


def sync(target: MilvusTarget, key: str, index_root: Path, new_folder: Path,
         previous_folder: Path | None, previous_chunks: int | None) -> SyncPlan:
    """Upsert the chunks of ``new_folder`` the engine lacks; return the dead ones to delete later.

    ``previous_folder``: the published generation of the same repository synced to the same
    target, whose live chunks the engine is trusted to hold, unless a ``milvus.pending`` marker
    says an earlier build died mid-way or the engine's count disagrees; then the engine's own
    list of pks is read (a reconciliation). Call before publishing; ``finish`` after."""
    ensure_collection(target)
    live = live_chunks(new_folder)
    marker = index_root / PENDING_FILE
    old: set[str] | None = None
    if previous_folder is not None and not marker.exists():
        if engine_count(target, key) == previous_chunks:
            old = {f"{key}:{c}" for c in live_chunks(previous_folder).chunk_ids}
    reconciled = old is None
    if old is None:
        old = engine_pks(target, key)
    marker.write_text(json.dumps({**target.settings(), "repo": key}), encoding="utf-8")
    new = [f"{key}:{c}" for c in live.chunk_ids]
    add = [i for i, pk in enumerate(new) if pk not in old]
    stale = sorted(old - set(new))
    if add:
        dims = term_ids(live.forward.terms)
        c = client(target)
        # Milvus does not enforce unique pks on insert: insert only what the engine was just seen
        # to lack (a reconciliation, e.g. a first build); upsert (delete + insert, slower) otherwise.
        write = c.insert if reconciled else c.upsert
        for lo in range(0, len(add), WRITE_BATCH):
            _call("write", write, target.collection, _entities(key, live, add[lo:lo + WRITE_BATCH], dims))
    return SyncPlan(target, key, len(add), stale, reconciled)


def finish(plan: SyncPlan, index_root: Path) -> None:
    """After publishing: delete the dead chunks' entities, then clear the marker."""
    c = client(plan.target)
    for lo in range(0, len(plan.stale), DELETE_BATCH):
        batch = plan.stale[lo:lo + DELETE_BATCH]
        _call("delete", c.delete, plan.target.collection, ids=batch)
    (index_root / PENDING_FILE).unlink(missing_ok=True)


def drop_repository(target: MilvusTarget, key: str) -> None:
    """Delete every entity of one repository (e.g. before re-syncing it to another collection)."""
    ensure_collection(target)
    _call("delete", client(target).delete, target.collection, filter=repo_filter([key]))


# ---------------------------------------------------------------------------------------------- search


@dataclass(frozen=True)
class EngineHit:
    key: str
    chunk_id: str
    score: float  # the engine's (hashed-dimension) score; codelsr rescores exactly


def engine_search(target: MilvusTarget, keys: Sequence[str], terms: Sequence[str], weights: np.ndarray,
                  limit: int, path_glob: str | None = None, language: str | None = None) -> list[EngineHit]:
    """One engine query over the repositories ``keys``, filters pushed down."""
    if not terms or not keys:
        return []
    ensure_collection(target)
    vector = hashed_vector(term_ids(terms), np.asarray(weights, dtype=np.float64))
    res = _call("search", client(target).search, target.collection, data=[vector], anns_field="vector",
                limit=min(limit, MAX_LIMIT), filter=engine_filter(keys, path_glob, language),
                output_fields=["repo"], search_params=SEARCH_PARAMS)
    hits = []
    for h in res[0] if res else []:
        pk = str(h["id"])
        key, _, chunk_id = pk.rpartition(":")
        hits.append(EngineHit(key, chunk_id, float(h["distance"])))
    return hits


def rows_of(chunks, chunk_ids: Sequence[str]) -> dict[str, int]:
    """Virtual rows of the live chunks among ``chunk_ids`` in a reader's ``ChunkTable``."""
    out: dict[str, int] = {}
    if not chunk_ids:
        return out
    for s, db in enumerate(chunks.segments):
        found = db.rows_in("chunk_id", list(chunk_ids), "row, chunk_id")
        if found:
            virtual = chunks.layout.virtual(s, np.fromiter((r[0] for r in found), dtype=np.int64, count=len(found)))
            out.update((cid, int(v)) for v, (_, cid) in zip(virtual.tolist(), found) if v >= 0)
    return out


class MilvusBackend:
    """The ``SearchBackend`` seam over the engine for one reader: rows in and out are the reader's
    virtual rows (engine hits the generation lacks, mid-sync, are dropped)."""

    name = "milvus"

    def __init__(self, target: MilvusTarget, key: str, terms: Sequence[str], rows_of):
        self.target, self.key = target, key
        self._terms = terms
        self._rows_of = rows_of  # chunk ids -> {chunk id: virtual row}

    def search(self, term_ids_: np.ndarray, weights: np.ndarray, k: int) -> list[tuple[int, float]]:
        if term_ids_.size == 0:
            return []
        hits = engine_search(self.target, [self.key], [self._terms[int(t)] for t in term_ids_], weights, k)
        rows = self._rows_of([h.chunk_id for h in hits])
        out = [(rows[h.chunk_id], h.score) for h in hits if h.chunk_id in rows]
        out.sort(key=lambda rs: (-rs[1], rs[0]))
        return out
