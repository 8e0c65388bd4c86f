"""An index to start from when a repository has none yet: another worktree, clone or fork of it.

Why: ``git worktree add`` (or a second clone) gives a new path, hence a new index folder, and
without this a first build re-reads, re-chunks and re-stores every file. Starting from a sibling's
published generation, a build treats the sibling's file table as "the previous index": files
whose content hash matches keep the sibling's chunks, and the sibling's immutable main segment is
hard-linked into the new generation (as a reindex does with its own). A second worktree of an
indexed commit then encodes nothing and adds a file table and a manifest to the disk.

A sibling is an index built with the same encoder whose indexed commit exists in this
repository's git object store (worktrees share it; a clone or fork that fetched the commit has
it); one indexed at this repository's HEAD is preferred, then the newest.
"""

from __future__ import annotations

from pathlib import Path

from codelsr import git
from codelsr.index import catalog


def _has_commit(repo: Path, commit: str) -> bool:
    try:
        return git.run(repo, "cat-file", "-e", f"{commit}^{{commit}}", timeout=30).returncode == 0
    except git.GitError:
        return False


def find_sibling(repo: Path, own_root: Path, encoder_id: str) -> Path | None:
    """The index root of the best sibling of ``repo`` (see the module docstring), or None."""
    head = git.head(repo)
    if head is None:
        return None  # not a git repository (or no commit yet): nothing relates it to another index
    found: list[tuple[bool, str, Path]] = []
    for index in catalog.list_published():
        manifest = index.manifest
        if index.root == own_root or manifest.encoder_id != encoder_id or not manifest.git_commit \
                or manifest.chunk_count == 0:
            continue
        if manifest.git_commit != head and not _has_commit(repo, manifest.git_commit):
            continue
        found.append((manifest.git_commit == head, manifest.created_at, index.root))
    if not found:
        return None
    return max(found, key=lambda f: (f[0], f[1]))[2]
