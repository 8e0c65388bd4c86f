"""Build a generation: walk and chunk the repository, encode what changed, write, publish."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import filelock

import codelsr
from codelsr.chunking import ChunkingOptions, SkippedFile, chunk_repository, git_head
from codelsr.encoders import get_encoder, normalise_spec
from codelsr.encoders.base import SparseEncoder
from codelsr.errors import CodelsrError, IndexBusyError, NotARepositoryError, NotIndexedError
from codelsr.index import generations
from codelsr.index.backends import BACKENDS, choose_backend
from codelsr.index.manifest import IndexManifest
from codelsr.index.paths import index_root_for
from codelsr.index.status import worktree_fingerprint
from codelsr.index.store import ChunkTable, ForwardIndex, write_chunks
from codelsr.records import SparseVector

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

    def to_json(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "skipped_files"}
        d["seconds"] = round(self.seconds, 3)
        return d


def _git_dirty(repo: Path) -> bool:
    try:
        import git

        return git.Repo(repo).is_dirty(untracked_files=True)
    except Exception:  # a plain folder, or git unavailable: "dirty" has no meaning there
        return False


def previous_manifest(root: Path) -> IndexManifest | None:
    try:
        return IndexManifest.read(generations.current_generation(root))
    except (NotIndexedError, CodelsrError):
        return None


def _reusable_vectors(root: Path, encoder_id: str) -> dict[str, SparseVector]:
    """content hash -> vector from the current generation, when it used the same encoder."""
    try:
        gen = generations.current_generation(root)
        manifest = IndexManifest.read(gen)
        if manifest.encoder_id != encoder_id:
            return {}
        forward = ForwardIndex.read(gen)
        table = ChunkTable(gen)
        try:
            return {h: forward.row(row) for row, h in table.rows_with_hashes()}
        finally:
            table.close()
    except CodelsrError:
        return {}  # a damaged previous generation is rebuilt, never trusted


def encode_with_cache(encoder: SparseEncoder, texts: list[str], hashes: list[str],
                      cache: dict[str, SparseVector], progress: Progress | None = None) -> tuple[list[SparseVector], int]:
    """Vectors for all texts, encoding only hashes the cache lacks. Returns (vectors, n_encoded)."""
    todo = sorted({h: i for i, h in enumerate(hashes) if h not in cache}.items(), key=lambda hi: hi[1])
    for start in range(0, len(todo), ENCODE_BATCH):
        batch = todo[start:start + ENCODE_BATCH]
        for (h, _), vec in zip(batch, encoder.encode_documents([texts[i] for _, i in batch])):
            cache[h] = vec
        if progress:
            progress("encoding", min(start + ENCODE_BATCH, len(todo)), len(todo))
    if progress and not todo:
        progress("encoding", 0, 0)
    return [cache[h] for h in hashes], len(todo)


def build_index(
    repo: Path | str,
    encoder: str | None = None,
    *,
    backend: str | None = None,
    force: bool = False,
    options: ChunkingOptions | None = None,
    progress: Progress | None = None,
    lock_timeout: float = 0,
) -> IndexReport:
    """Index ``repo`` into a new generation and publish it.

    ``encoder=None`` keeps the encoder of the existing index (or the default for a new one).
    Unchanged chunks reuse their vectors unless ``force``. The previous generation stays
    searchable until the new one is complete; on any error nothing is published.
    """
    started = time.perf_counter()
    repo = Path(repo).expanduser()
    if not repo.exists():
        raise NotARepositoryError(f"{repo} does not exist")
    if not repo.is_dir():
        raise NotARepositoryError(f"{repo} is not a directory; pass the repository's root folder")
    repo = repo.resolve()
    root = index_root_for(repo)
    root.mkdir(parents=True, exist_ok=True)
    options = options or ChunkingOptions()

    lock = filelock.FileLock(str(root / generations.LOCK))
    try:
        lock.acquire(timeout=lock_timeout)
    except filelock.Timeout:
        raise IndexBusyError(
            f"another codelsr process is indexing {repo} (lock {root / generations.LOCK}); "
            "wait for it to finish and try again"
        ) from None
    try:
        generations.clean_up(root)
        previous = previous_manifest(root)
        spec = normalise_spec(encoder if encoder is not None else (previous.encoder_spec if previous else None))
        enc = get_encoder(spec)
        cache = {} if force else _reusable_vectors(root, enc.encoder_id)

        def chunk_progress(done: int, total: int) -> None:
            if progress:
                progress("chunking", done, total)

        fingerprint = worktree_fingerprint(repo)
        result = chunk_repository(repo, options, progress=chunk_progress)
        chunks = result.chunks
        vectors, n_encoded = encode_with_cache(
            enc, [c.text for c in chunks], [c.content_hash for c in chunks], cache, progress
        )
        if progress:
            progress("writing", 0, 1)
        forward = ForwardIndex.from_vectors(vectors)
        backend_name = choose_backend(backend, len(chunks))
        tmp = generations.new_temp_folder(root)
        try:
            write_chunks(tmp, chunks)
            forward.write(tmp)
            backend_settings = BACKENDS[backend_name].build(forward, tmp, {}) if chunks else {}
            manifest = IndexManifest(
                codelsr_version=codelsr.__version__,
                repo_path=str(repo),
                encoder_spec=spec,
                encoder_id=enc.encoder_id,
                encoder_settings=enc.settings(),
                backend=backend_name,
                backend_settings=backend_settings,
                git_commit=git_head(repo),
                git_dirty=_git_dirty(repo),
                chunk_count=len(chunks),
                file_count=len(result.files),
                term_count=len(forward.terms),
                skipped=result.skipped_by_reason(),
                created_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                build_seconds=round(time.perf_counter() - started, 3),
                chunking=dataclasses.asdict(options),
                extra={"worktree_fingerprint": fingerprint},
            )
            manifest.write(tmp)
            gen = generations.publish(root, tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if progress:
            progress("writing", 1, 1)
        generations.clean_up(root)
    finally:
        lock.release()

    return IndexReport(
        repo=str(repo), index_dir=str(root), generation=gen.name, encoder=spec, encoder_id=enc.encoder_id,
        backend=backend_name, files=len(result.files), chunks=len(chunks), skipped=result.skipped_by_reason(),
        encoded_chunks=n_encoded, reused_chunks=len(chunks) - n_encoded,
        seconds=time.perf_counter() - started, commit=manifest.git_commit, skipped_files=result.skipped,
    )
