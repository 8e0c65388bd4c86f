"""What is indexed, with what, and whether the working tree moved on since."""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from codelsr.errors import CodelsrError, NotIndexedError
from codelsr.index import generations
from codelsr.index.manifest import IndexManifest
from codelsr.index.paths import index_root_for, indexes_home

_SKIP_DIRS = {".git", "node_modules", "__pycache__", ".venv", "venv"}


def harden_git_env(environ: dict[str, str] | None = None) -> None:
    """Switch off ``core.fsmonitor`` for every git that codelsr runs (status, diff, hooks' reindex).

    A repository's own config could name a program as its fsmonitor, which every ``git status``
    would then run: indexing someone else's checkout must not execute code from it. Config from the
    environment (``GIT_CONFIG_COUNT``/``KEY``/``VALUE``) overrides the repository's. Idempotent.
    (Filter drivers remain git's to honour; see README.)
    """
    env = os.environ if environ is None else environ
    n = int(env.get("GIT_CONFIG_COUNT", "0") or 0)
    for i in range(n):
        if env.get(f"GIT_CONFIG_KEY_{i}") == "core.fsmonitor" and env.get(f"GIT_CONFIG_VALUE_{i}") == "false":
            return
    env[f"GIT_CONFIG_KEY_{n}"] = "core.fsmonitor"
    env[f"GIT_CONFIG_VALUE_{n}"] = "false"
    env["GIT_CONFIG_COUNT"] = str(n + 1)


def worktree_fingerprint(repo: Path) -> str:
    """A hash that changes whenever the files codelsr would index change.

    In git: HEAD, plus the status of changed/untracked paths with their size and mtime (so a
    second edit to an already-modified file changes it too). Elsewhere: every file's size and mtime.
    """
    h = hashlib.sha1()
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "-q", "--verify", "HEAD"],
                              capture_output=True, text=True, timeout=30)
        status = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain=v1", "-z", "--untracked-files=all"],
            capture_output=True, timeout=60,
        )
        in_git = status.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        in_git = False
    if in_git:
        h.update(head.stdout.strip().encode())
        for entry in status.stdout.split(b"\0"):
            if len(entry) < 4:
                continue
            h.update(entry)
            try:
                st = os.stat(repo / os.fsdecode(entry[3:]))
                h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
            except OSError:
                pass
        return "git:" + h.hexdigest()
    for dirpath, dirnames, filenames in os.walk(repo):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for name in sorted(filenames):
            try:
                st = os.stat(os.path.join(dirpath, name))
            except OSError:
                continue
            h.update(f"{os.path.relpath(os.path.join(dirpath, name), repo)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return "files:" + h.hexdigest()


@dataclass
class IndexStatus:
    repo: str
    indexed: bool
    encoder: str | None = None
    encoder_id: str | None = None
    backend: str | None = None
    chunks: int = 0
    files: int = 0
    indexed_commit: str | None = None
    changed_since_index: bool | None = None
    index_bytes: int = 0
    created_at: str | None = None
    age_seconds: float | None = None
    generation: str | None = None
    index_dir: str | None = None
    # The learned index of a progressive build (``progressive.learned_status``); None for lexical ones.
    learned: dict | None = None

    def to_json(self) -> dict:
        return asdict(self)


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _status_of(repo: Path, root: Path, manifest: IndexManifest, gen: Path) -> IndexStatus:
    created = _dt.datetime.fromisoformat(manifest.created_at)
    fingerprint = manifest.extra.get("worktree_fingerprint")
    changed = None
    if fingerprint is not None and repo.is_dir():
        changed = worktree_fingerprint(repo) != fingerprint
    return IndexStatus(
        repo=str(repo), indexed=True, encoder=manifest.encoder_spec, encoder_id=manifest.encoder_id,
        backend=manifest.backend, chunks=manifest.chunk_count, files=manifest.file_count,
        indexed_commit=manifest.git_commit, changed_since_index=changed, index_bytes=_folder_bytes(gen),
        created_at=manifest.created_at,
        age_seconds=round((_dt.datetime.now(_dt.timezone.utc) - created).total_seconds(), 1),
        generation=gen.name, index_dir=str(root), learned=_learned_status(repo),
    )


def _learned_status(repo: Path) -> dict | None:
    from codelsr.index.progressive import learned_status

    return learned_status(repo)


def index_status(repo: Path | str) -> IndexStatus:
    repo = Path(repo).expanduser().resolve()
    root = index_root_for(repo)
    try:
        gen = generations.current_generation(root)
    except NotIndexedError:
        return IndexStatus(repo=str(repo), indexed=False, index_dir=str(root))
    return _status_of(repo, root, IndexManifest.read(gen), gen)


def list_indexes() -> list[IndexStatus]:
    """Every index under the codelsr home, newest first; damaged ones are skipped."""
    found = []
    home = indexes_home()
    if not home.is_dir():
        return []
    for root in sorted(home.iterdir()):
        try:
            gen = generations.current_generation(root)
            manifest = IndexManifest.read(gen)
        except CodelsrError:
            continue
        found.append(_status_of(Path(manifest.repo_path), root, manifest, gen))
    found.sort(key=lambda s: s.created_at or "", reverse=True)
    return found
