"""Progressive indexing: a lexical index in seconds, the learned one in the background.

A learned encoder (``hybrid-code-tiny``, any SPLADE model) encodes a large repository in minutes;
nobody should wait that long for a first search. ``index_repository`` with a learned encoder
therefore builds a lexical index first, serves it, and returns; the learned index is built after,
by a *worker* (a detached ``codelsr learn`` process for the CLI and the git hooks, a thread of the
MCP server), and served the moment it is complete. ``foreground=True`` builds both before
returning (scripts, CI, benchmarks, evals).

Layout inside the repository's index folder ``R`` (``index_root_for``)::

    R/CURRENT            the generation searches use: ``lexical/gen-...`` or ``learned/gen-...``
    R/progressive.json   the learned build wanted: encoder, request number, what is done
    R/lexical/           the lexical index's own generations (an ordinary index folder)
    R/learned/           the learned index's own generations, plus
        worker.lock        held by the one worker of this repository while it lives
        progress.json      what the worker is doing: stage, done/total, rate, ETA
        vector-cache.sqlite  vectors encoded by a build not yet published (resume after a kill)
        worker.log         the detached worker's output

Each of ``R/lexical`` and ``R/learned`` keeps its own history, so both are updated incrementally
(only changed files re-encoded). ``R/CURRENT`` (an ordinary generation pointer, so every reader,
``index_status`` and the server work unchanged) moves to the lexical index whenever that one is
newer than the learned one, and to the learned index when the worker has built it for the latest
request. Each move and each request happens under ``R``'s write lock: a worker publishes only if no
newer request came in meanwhile, and otherwise builds again (incrementally).

An index whose encoder is lexical is built in ``R`` itself, exactly as ``build_index`` does.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import filelock

from codelsr.chunking import ChunkingOptions
from codelsr.encoders import normalise_spec
from codelsr.errors import CodelsrError, IndexBusyError, NotIndexedError
from codelsr.index import catalog, generations
from codelsr.index.build import IndexReport, Progress, build_index, chunking_options_of, encoder_spec_for, index_encoder
from codelsr.index.catalog import current_manifest, index_root_for
from codelsr.index.manifest import IndexManifest
from codelsr.index.vector_cache import VectorCache, cached_vector_count

LEXICAL = "lexical"
LEXICAL_DIR = "lexical"
LEARNED_DIR = "learned"
STATE_FILE = "progressive.json"
PROGRESS_FILE = "progress.json"
WORKER_LOCK = "worker.lock"
VECTOR_CACHE_FILE = "vector-cache.sqlite"
WORKER_LOG = "worker.log"
LOCK_WAIT_SECONDS = 600.0  # a worker waits this long for a `codelsr index` writing the same folder
PROGRESS_EVERY = 0.5  # seconds between progress file updates

# How a worker is started: the CLI spawns a detached process; the server runs a thread.
StartWorker = Callable[[Path], Any]


def is_learned(spec: str) -> bool:
    """Whether an encoder is slow enough to be built in the background (anything not lexical)."""
    return normalise_spec(spec) != LEXICAL


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


@dataclass
class ProgressiveReport:
    """What ``index_repository`` did: the build it ran, what answers searches now, where the learned
    build stands."""

    encoder: str  # the encoder asked for (the target)
    report: IndexReport  # the last build this call ran (the learned one in the foreground, else the lexical one)
    serving: str | None = None  # the encoder of the index searches use now
    learned: IndexReport | None = None  # the learned build, when it ran inside this call
    learned_state: str = "complete"  # complete | building (a worker has it)
    worker: str | None = None  # "process <pid>" or "thread", when one was started
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out = self.report.to_json()
        out.update(target_encoder=self.encoder, serving=self.serving, learned_state=self.learned_state,
                   worker=self.worker)
        return out


def _lock(root: Path, timeout: float) -> filelock.FileLock:
    lock = filelock.FileLock(str(root / generations.LOCK))
    try:
        lock.acquire(timeout=timeout)
    except filelock.Timeout:
        raise IndexBusyError(f"another codelsr process is updating {root} (lock {root / generations.LOCK}); "
                             "wait for it to finish and try again") from None
    return lock


def _served(root: Path) -> tuple[str | None, IndexManifest | None]:
    """The name R/CURRENT holds and the manifest it points at (None, None when not indexed)."""
    try:
        index = catalog.published_at(root)
    except CodelsrError:
        return None, None
    return index.generation.relative_to(root).as_posix(), index.manifest


def resolve_encoder(repo: Path | str, requested: str | None = None, default: str | None = None) -> str:
    """The encoder an index run of ``repo`` builds: the one requested, else the index's (the learned
    one while it is being built and lexical answers), else ``default``, else the user's default
    (``codelsr.config``)."""
    if requested is not None:
        return normalise_spec(requested)
    root = index_root_for(Path(repo).expanduser().resolve())
    state = _read_json(root / STATE_FILE)
    if state.get("target"):
        return normalise_spec(str(state["target"]))
    return index_encoder(repo, None, default)


def index_repository(
    repo: Path | str,
    encoder: str | None = None,
    *,
    foreground: bool = False,
    backend: str | None = None,
    force: bool = False,
    options: ChunkingOptions | None = None,
    progress: Progress | None = None,
    lock_timeout: float = 0,
    start_worker: StartWorker | None = None,
    milvus_uri: str | None = None,
) -> ProgressiveReport:
    """Index ``repo`` for ``encoder``, progressively.

    ``encoder=None``: see ``resolve_encoder``. Lexical: one ``build_index`` in the index folder, as
    always. Learned: the lexical index is
    updated and served first; then either the learned build runs here (``foreground``) or a worker
    is started for it (``start_worker``; default: a detached ``codelsr learn`` process) and this
    returns at once. Arguments mean what they mean for ``build_index``.
    """
    repo = Path(repo).expanduser().resolve()  # a missing folder: build_index says so
    root = index_root_for(repo)
    target = resolve_encoder(repo, encoder)
    if not is_learned(target):
        report = build_index(repo, target, backend=backend, force=force, options=options, progress=progress,
                             lock_timeout=lock_timeout, milvus_uri=milvus_uri)
        with _lock_or_wait(root, lock_timeout):
            (root / STATE_FILE).unlink(missing_ok=True)  # no learned build is wanted any more
        return ProgressiveReport(encoder=target, report=report, serving=target)

    if options is None:  # keep the chunking of the index being replaced (a hook's reindex keeps --exclude)
        previous = current_manifest(root / LEXICAL_DIR) or current_manifest(root)
        options = chunking_options_of(previous)
    lexical = build_index(repo, LEXICAL, backend=backend, force=force, options=options, progress=progress,
                          lock_timeout=lock_timeout, root=root / LEXICAL_DIR, milvus_uri=milvus_uri)
    (root / LEARNED_DIR).mkdir(exist_ok=True)
    with _lock_or_wait(root, lock_timeout):
        state = _read_json(root / STATE_FILE)
        _, served = _served(root)
        learned_manifest = current_manifest(root / LEARNED_DIR)
        up_to_date = (
            not force and state.get("target") == target and state.get("done", 0) >= state.get("seq", 0)
            and learned_manifest is not None and learned_manifest.encoder_spec == target
            and served is not None and served.encoder_spec == target
            and learned_manifest.extra.get("worktree_fingerprint") == _fingerprint_of(root / LEXICAL_DIR)
        )
        if up_to_date:  # nothing changed since the learned index was built: it stays served
            return ProgressiveReport(encoder=target, report=lexical, serving=target, learned_state="complete",
                                     notes=["the learned index is up to date; it keeps answering"])
        seq = int(state.get("seq", 0)) + 1
        if force or state.get("target") != target:
            _clear_vector_cache(root)
        state.update(target=target, seq=seq, requested_at=_now(), lexical_generation=lexical.generation,
                     chunking=_options_json(options), backend=backend, force=force,
                     milvus_uri=milvus_uri)
        state.setdefault("done", 0)
        _write_json(root / STATE_FILE, state)
        generations.point_current(root, f"{LEXICAL_DIR}/{lexical.generation}")
        generations.clean_up(root)  # generations of an index built here before, bar the newest
    if foreground:
        learned = run_learned(repo, progress=progress, wait=True)
        status = learned_status(repo) or {}
        _, served = _served(root)
        return ProgressiveReport(encoder=target, report=learned or lexical, learned=learned,
                                 serving=served.encoder_spec if served else None,
                                 learned_state=status.get("state", "complete"))
    worker = (start_worker or spawn_worker)(repo)
    return ProgressiveReport(encoder=target, report=lexical, serving=LEXICAL, learned_state="building",
                             worker=worker)


def _fingerprint_of(root: Path) -> str | None:
    manifest = current_manifest(root)
    return manifest.extra.get("worktree_fingerprint") if manifest is not None else None


def _options_json(options: ChunkingOptions) -> dict[str, Any]:
    return json.loads(json.dumps(asdict(options)))


class _lock_or_wait:
    """R's write lock for a short critical section (waits for another holder up to ``timeout``,
    at least a few seconds: the other holder only switches a pointer or writes a small file)."""

    def __init__(self, root: Path, timeout: float):
        self.root, self.timeout = root, max(timeout, 30.0)

    def __enter__(self) -> filelock.FileLock:
        self.root.mkdir(parents=True, exist_ok=True)
        self.lock = _lock(self.root, self.timeout)
        return self.lock

    def __exit__(self, *exc: Any) -> None:
        self.lock.release()


def _clear_vector_cache(root: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        (root / LEARNED_DIR / f"{VECTOR_CACHE_FILE}{suffix}").unlink(missing_ok=True)


class _ProgressFile:
    """``build_index``'s progress callback for a worker: writes R/learned/progress.json."""

    def __init__(self, path: Path, seq: int, target: str, forward: Progress | None):
        self.path, self.forward = path, forward
        self.state: dict[str, Any] = {"pid": os.getpid(), "seq": seq, "target": target, "stage": "starting",
                                      "done": 0, "total": 0, "started_at": _now(), "updated_at": _now()}
        self._encoding_started: float | None = None
        self._encoding_first_done = 0
        self._last_write = 0.0
        self._write(force=True)

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.forward is not None:
            self.forward(stage, done, total)
        now = time.monotonic()
        if stage == "encoding" and self._encoding_started is None:
            self._encoding_started, self._encoding_first_done = now, done
        rate = eta = None
        if stage == "encoding" and self._encoding_started is not None and done > self._encoding_first_done:
            rate = (done - self._encoding_first_done) / max(now - self._encoding_started, 1e-6)
            eta = round((total - done) / rate, 1) if rate > 0 else None
        self.state.update(stage=stage, done=done, total=total, updated_at=_now(),
                          chunks_per_second=round(rate, 1) if rate else None, eta_seconds=eta)
        self._write(force=done == total)

    def _write(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_write >= PROGRESS_EVERY:
            self._last_write = now
            _write_json(self.path, self.state)

    def fail(self, exc: BaseException) -> None:
        self.state.update(stage="failed", error=f"{type(exc).__name__}: {exc}", updated_at=_now(), eta_seconds=None)
        self._write(force=True)

    def finish(self, **extra: Any) -> None:
        self.state.update(stage="done", updated_at=_now(), eta_seconds=0, **extra)
        self._write(force=True)


def run_learned(repo: Path | str, *, progress: Progress | None = None, wait: bool = False) -> IndexReport | None:
    """The worker: build the learned index for every request not done yet, serve it, repeat while
    new requests come in. Returns the last learned build's report, or None when another worker
    holds this repository (``wait=False``) or nothing was requested. Resumable: vectors encoded
    before a kill are in R/learned/vector-cache.sqlite and are not encoded again."""
    repo = Path(repo).expanduser().resolve()
    root = index_root_for(repo)
    learned_root = root / LEARNED_DIR
    learned_root.mkdir(parents=True, exist_ok=True)
    report: IndexReport | None = None
    while True:
        worker_lock = filelock.FileLock(str(learned_root / WORKER_LOCK))
        try:
            worker_lock.acquire(timeout=LOCK_WAIT_SECONDS if wait else 0)
        except filelock.Timeout:
            return report  # another worker has it; it will also take any newer request
        try:
            report = _work(repo, root, learned_root, progress) or report
        finally:
            worker_lock.release()
        # A request written while we were releasing the lock found it held and started no worker.
        state = _read_json(root / STATE_FILE)
        if int(state.get("done", 0)) >= int(state.get("seq", 0)):
            return report


def _work(repo: Path, root: Path, learned_root: Path, progress: Progress | None) -> IndexReport | None:
    report = None
    while True:
        state = _read_json(root / STATE_FILE)
        seq, target = int(state.get("seq", 0)), state.get("target")
        if not target or int(state.get("done", 0)) >= seq:
            return report
        recorder = _ProgressFile(learned_root / PROGRESS_FILE, seq, target, progress)
        options = ChunkingOptions(**{k: tuple(v) if isinstance(v, list) else v
                                     for k, v in (state.get("chunking") or {}).items()})
        from codelsr.encoders import get_encoder

        try:
            cache = VectorCache(learned_root / VECTOR_CACHE_FILE, get_encoder(target).encoder_id)
        except Exception as exc:
            recorder.fail(exc)
            raise
        try:
            report = build_index(repo, target, backend=state.get("backend"), force=bool(state.get("force")),
                                 options=options, progress=recorder, lock_timeout=LOCK_WAIT_SECONDS,
                                 root=learned_root, vector_store=cache, milvus_uri=state.get("milvus_uri"))
            with _lock_or_wait(root, LOCK_WAIT_SECONDS):
                now = _read_json(root / STATE_FILE)
                if int(now.get("seq", 0)) == seq and now.get("target") == target:
                    generations.point_current(root, f"{LEARNED_DIR}/{report.generation}")
                    now.update(done=seq, learned_generation=report.generation, completed_at=_now(),
                               last_build=report.to_json())
                    _write_json(root / STATE_FILE, now)
                    published = True
                else:
                    published = False  # a newer request came in: build again, incrementally
            recorder.finish(published=published, encoded_chunks=report.encoded_chunks,
                            reused_chunks=report.reused_chunks, seconds=round(report.seconds, 1))
            if published:
                cache.clear()
        except Exception as exc:
            recorder.fail(exc)
            raise
        finally:
            cache.close()


def worker_alive(repo: Path | str) -> bool:
    """Whether a worker holds this repository's learned build now."""
    root = index_root_for(Path(repo).expanduser().resolve())
    path = root / LEARNED_DIR / WORKER_LOCK
    if not path.parent.is_dir():
        return False
    probe = filelock.FileLock(str(path))
    try:
        probe.acquire(timeout=0)
    except filelock.Timeout:
        return True
    probe.release()
    return False


def spawn_worker(repo: Path) -> str:
    """Start ``codelsr learn <repo>`` detached from this process (it outlives the command), with its
    output in R/learned/worker.log. Returns "process <pid>"."""
    root = index_root_for(repo)
    log_path = root / LEARNED_DIR / WORKER_LOG
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a") as log:
        log.write(f"{_now()} starting a worker for {repo}\n")
        log.flush()
        proc = subprocess.Popen([sys.executable, "-m", "codelsr", "learn", str(repo)], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=log, start_new_session=True, cwd=str(root))
    return f"process {proc.pid}"


def learned_status(repo: Path | str) -> dict[str, Any] | None:
    """Where the learned index of ``repo`` stands, or None when none is wanted (a lexical index).

    ``state``: ``complete`` (it answers searches), ``building`` (a worker is encoding; ``done``,
    ``total``, ``percent``, ``eta_seconds``), or ``stopped`` (requested, but no worker runs: the last
    one was killed; the next ``codelsr index`` resumes it without re-encoding what was done)."""
    repo = Path(repo).expanduser().resolve()
    root = index_root_for(repo)
    state = _read_json(root / STATE_FILE)
    if not state.get("target"):
        return None
    pending = int(state.get("done", 0)) < int(state.get("seq", 0))
    alive = worker_alive(repo)
    info: dict[str, Any] = {"encoder": state["target"], "requested_at": state.get("requested_at"),
                            "completed_at": state.get("completed_at"), "serving": _served(root)[0]}
    for name, sub in (("lexical_index", LEXICAL_DIR), ("learned_index", LEARNED_DIR)):
        manifest = current_manifest(root / sub)
        info[name] = None if manifest is None else {
            "encoder": manifest.encoder_spec, "chunks": manifest.chunk_count, "commit": manifest.git_commit,
            "created_at": manifest.created_at}
    if not pending:
        info["state"] = "complete"
        return info
    progress = _read_json(root / LEARNED_DIR / PROGRESS_FILE)
    info["state"] = "building" if alive else "stopped"
    if progress.get("seq") == state.get("seq") or alive:
        done, total = int(progress.get("done", 0)), int(progress.get("total", 0))
        info.update(stage=progress.get("stage"), done=done, total=total,
                    percent=round(100.0 * done / total, 1) if total else None,
                    chunks_per_second=progress.get("chunks_per_second"),
                    eta_seconds=progress.get("eta_seconds") if alive else None, worker_pid=progress.get("pid"))
    info["cached_vectors"] = cached_vector_count(root / LEARNED_DIR / VECTOR_CACHE_FILE)
    if not alive:
        info["hint"] = f"run `codelsr index {repo}` to resume the learned build"
        if progress.get("error"):
            info["error"] = progress["error"]
    return info
