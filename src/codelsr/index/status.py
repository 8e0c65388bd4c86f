"""What is indexed, with what, and whether the working tree moved on since."""

from __future__ import annotations

import datetime as _dt
from dataclasses import asdict, dataclass
from pathlib import Path

from codelsr.errors import NotIndexedError
from codelsr.git import worktree_fingerprint
from codelsr.index import catalog


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

    def to_json(self) -> dict:
        return asdict(self)


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _status_of(repo: Path, index: catalog.PublishedIndex) -> IndexStatus:
    manifest, gen = index.manifest, index.generation
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
        generation=gen.name, index_dir=str(index.root),
    )


def index_status(repo: Path | str) -> IndexStatus:
    repo = Path(repo).expanduser().resolve()
    root = catalog.index_root_for(repo)
    try:
        index = catalog.published_at(root)
    except NotIndexedError:
        return IndexStatus(repo=str(repo), indexed=False, index_dir=str(root))
    return _status_of(repo, index)


def list_indexes() -> list[IndexStatus]:
    """Every index under the codelsr home, newest first; damaged ones are skipped."""
    return [_status_of(index.repo, index) for index in catalog.list_published()]
