"""What is indexed, with what, and whether the working tree moved on since."""

from __future__ import annotations

import datetime as _dt
from dataclasses import asdict, dataclass, field
from pathlib import Path

from codelsr.errors import CodelsrError, NotIndexedError
from codelsr.git import worktree_fingerprint
from codelsr.index import catalog, health


@dataclass
class IndexStatus:
    repo: str
    indexed: bool
    encoder: str | None = None
    encoder_id: str | None = None
    backend: str | None = None
    context: str | None = None  # the chunks' context header scheme (``chunking.context``)
    window_lines: int | None = None  # the window long units were cut to (``chunking.window_lines``)
    chunks: int = 0
    files: int = 0
    indexed_commit: str | None = None
    changed_since_index: bool | None = None
    index_bytes: int = 0
    created_at: str | None = None
    age_seconds: float | None = None
    generation: str | None = None
    index_dir: str | None = None
    state: str = health.OK  # ok, damaged, unverified (built before checksums) or not indexed
    checked: str = "none"  # how its files were checked: quick (sizes + small files), full (every byte), none
    problems: list[str] = field(default_factory=list)  # damaged files, "<file>: <what is wrong>"
    fix: str | None = None  # what to run when damaged
    # The learned index of a progressive build (``progressive.learned_status``); None for lexical ones.
    learned: dict | None = None

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
        backend=manifest.backend, context=manifest.context_scheme, window_lines=manifest.chunking.get("window_lines"),
        chunks=manifest.chunk_count, files=manifest.file_count,
        indexed_commit=manifest.git_commit, changed_since_index=changed, index_bytes=_folder_bytes(gen),
        created_at=manifest.created_at,
        age_seconds=round((_dt.datetime.now(_dt.timezone.utc) - created).total_seconds(), 1),
        generation=gen.name, index_dir=str(index.root), learned=_learned_status(repo),
    )


def _learned_status(repo: Path) -> dict | None:
    from codelsr.index.progressive import learned_status

    return learned_status(repo)


def _with_health(status: IndexStatus, found: health.IndexHealth) -> IndexStatus:
    status.state, status.checked, status.problems, status.fix = found.state, found.checked, found.problems, found.fix
    return status


def index_status(repo: Path | str, verify: bool = False) -> IndexStatus:
    """What is indexed and whether it can be trusted: every file is checked against its checksum
    (sizes and small files; ``verify``: every byte). A damaged index says which file and the fix."""
    repo = Path(repo).expanduser().resolve()
    root = catalog.index_root_for(repo)
    found = health.check_index(repo, full=verify)
    if found.state == health.NOT_INDEXED:
        return IndexStatus(repo=str(repo), indexed=False, index_dir=str(root), state=health.NOT_INDEXED)
    try:
        status = _status_of(repo, catalog.published_at(root))
    except NotIndexedError:
        status = IndexStatus(repo=str(repo), indexed=True, index_dir=str(root))
    except CodelsrError as exc:
        status = IndexStatus(repo=str(repo), indexed=True, index_dir=str(root))
        if found.state != health.DAMAGED:  # unreadable though its checksums match (or it predates them)
            found = health.IndexHealth(repo, health.DAMAGED, found.checked, [str(exc)], found.generation)
    if found.state == health.DAMAGED:
        status.changed_since_index = None
    return _with_health(status, found)


def damaged_roots() -> list[tuple[Path, Path]]:
    """(index root, repository) of indexes whose current generation cannot be opened at all
    (``list_published`` cannot list them); the repository comes from the newest intact manifest,
    else the folder name."""
    home = catalog.indexes_home()
    if not home.is_dir():
        return []
    out = []
    for root in sorted(home.iterdir()):
        if not root.is_dir() or not health.has_published(root):
            continue
        try:
            catalog.published_at(root)
            continue
        except CodelsrError:
            pass
        manifest = health.last_good_manifest(root)
        out.append((root, Path(manifest.repo_path) if manifest is not None else root))
    return out


def list_indexes(verify: bool = False) -> list[IndexStatus]:
    """Every index under the codelsr home, newest first, damaged ones included (last)."""
    statuses = [index_status(index.repo, verify) if index.belongs_here else _status_of(index.repo, index)
                for index in catalog.list_published()]
    for root, repo in damaged_roots():
        if catalog.index_root_for(repo) == root:
            statuses.append(index_status(repo, verify))
        else:
            statuses.append(IndexStatus(repo=str(repo), indexed=True, index_dir=str(root), state=health.DAMAGED,
                                        problems=[f"{root}: no intact manifest says which repository it indexes"],
                                        fix=f"delete {root}, then index the repository again"))
    return statuses
