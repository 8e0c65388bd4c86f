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

import subprocess
from pathlib import Path

from codelsr.errors import CodelsrError
from codelsr.index import generations
from codelsr.index.manifest import IndexManifest
from codelsr.index.paths import indexes_home


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "--no-optional-locks", "-C", str(repo), *args], capture_output=True,
                          timeout=60, check=False)


def _head(repo: Path) -> str | None:
    out = _git(repo, "rev-parse", "-q", "--verify", "HEAD^{commit}")
    return out.stdout.decode().strip() or None if out.returncode == 0 else None


def find_sibling(repo: Path, own_root: Path, encoder_id: str) -> Path | None:
    """The index root of the best sibling of ``repo`` (see the module docstring), or None."""
    home = indexes_home()
    if not home.is_dir():
        return None
    head = _head(repo)
    if head is None:
        return None  # not a git repository (or no commit yet): nothing relates it to another index
    found: list[tuple[bool, str, Path]] = []
    for root in home.iterdir():
        if root == own_root or not root.is_dir():
            continue
        try:
            manifest = IndexManifest.read(generations.current_generation(root))
        except CodelsrError:
            continue
        if manifest.encoder_id != encoder_id or not manifest.git_commit or manifest.chunk_count == 0:
            continue
        if manifest.git_commit != head and _git(repo, "cat-file", "-e", f"{manifest.git_commit}^{{commit}}").returncode:
            continue
        found.append((manifest.git_commit == head, manifest.created_at, root))
    if not found:
        return None
    return max(found, key=lambda f: (f[0], f[1]))[2]
