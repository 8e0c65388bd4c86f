"""Where indexes live and what each one holds now: repository -> index root -> current
generation -> manifest, spelled out once.

One folder per repository under the codelsr home (``CODELSR_HOME`` overrides the platform's user
data folder; tests and CI set it), named after the repository plus a hash of its resolved path.
Inside it, ``generations`` keeps the published generation; its ``manifest.json`` says how it was
built. Reader, status, build, server and CLI all find indexes through here.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from codelsr.errors import CodelsrError, NotIndexedError
from codelsr.index import generations
from codelsr.index.manifest import IndexManifest


def codelsr_home() -> Path:
    env = os.environ.get("CODELSR_HOME")
    return Path(env).expanduser() if env else Path(platformdirs.user_data_dir("codelsr", appauthor=False))


def indexes_home() -> Path:
    return codelsr_home() / "indexes"


def index_root_for(repo: Path) -> Path:
    """The index folder of a repository: readable name plus a hash of its resolved path."""
    resolved = Path(repo).expanduser().resolve()
    digest = hashlib.sha1(str(resolved).encode("utf-8", "surrogatepass")).hexdigest()[:12]
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", resolved.name or "root")[:40]
    return indexes_home() / f"{name}-{digest}"


def is_indexed(repo: Path | str) -> bool:
    """Whether the repository has a published generation (cheap: one file's existence)."""
    return (index_root_for(Path(repo).expanduser().resolve()) / generations.CURRENT).is_file()


@dataclass(frozen=True)
class PublishedIndex:
    """An index's current generation and its manifest."""

    root: Path  # the index folder (one per repository)
    generation: Path  # the published generation folder inside it
    manifest: IndexManifest

    @property
    def repo(self) -> Path:
        """The repository as it was indexed (resolved path)."""
        return Path(self.manifest.repo_path)

    @property
    def belongs_here(self) -> bool:
        """Whether the repository's path still maps to this folder (not a copied or moved index)."""
        return index_root_for(self.repo) == self.root


def current_generation(repo: Path) -> Path:
    """The published generation folder of ``repo`` (resolved path), or ``NotIndexedError`` saying
    how to index it."""
    try:
        return generations.current_generation(index_root_for(repo))
    except NotIndexedError:
        raise NotIndexedError(
            f"{repo} is not indexed yet; run `codelsr index {repo}` (or the MCP tool index_repo)"
        ) from None


def published_at(root: Path) -> PublishedIndex:
    """The current generation of the index folder ``root``; ``NotIndexedError`` when there is none,
    ``CorruptIndexError`` when it cannot be read."""
    gen = generations.current_generation(root)
    return PublishedIndex(root, gen, IndexManifest.read(gen))


def current_manifest(root: Path) -> IndexManifest | None:
    """The manifest of the current generation of ``root``; None when there is none or it is damaged."""
    try:
        return published_at(root).manifest
    except CodelsrError:
        return None


def list_published() -> list[PublishedIndex]:
    """Every index under the codelsr home, newest first; damaged ones are skipped."""
    home = indexes_home()
    if not home.is_dir():
        return []
    found = []
    for root in sorted(home.iterdir()):
        try:
            found.append(published_at(root))
        except CodelsrError:
            continue
    found.sort(key=lambda p: p.manifest.created_at or "", reverse=True)
    return found
