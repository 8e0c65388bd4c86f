"""Generations: every build writes a complete new folder, then one atomic rename publishes it.

Layout of an index root::

    CURRENT              name of the published generation (replaced atomically)
    write.lock           held by the one process writing
    gen-<time>-<rand>/   manifest.json, files.json (file table), and two segments:
                           main:  chunks.sqlite, vectors.npz, terms.json, backend files
                           delta/ chunks.sqlite, vectors.npz, terms.json (absent when empty)
    .tmp-<rand>/         a build in progress (or the leftovers of a killed one)
    hook.log, hook.lock, hook.pending   background reindexing by the git hooks (``codelsr.hooks``)

The main segment is immutable: a reindex hard-links its files into the new generation (a copy
where the file system has no hard links) and writes only the delta, the file table and the
manifest. Deleting an old generation then only drops links. A compaction writes a new main.

Readers read CURRENT and open that folder; they never see a partly written generation. A killed
build leaves only a ``.tmp-*`` folder, removed by the next writer. The previous generation is kept
so a reader that opened it just before the switch can finish.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path

from codelsr.errors import CorruptIndexError, NotIndexedError

CURRENT = "CURRENT"
LOCK = "write.lock"
GEN_PREFIX = "gen-"
TMP_PREFIX = ".tmp-"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    for path in folder.iterdir():
        if path.is_dir():
            _fsync_tree(path)
        elif path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    _fsync_dir(folder)


def link_or_copy(src: Path, dst: Path) -> None:
    """Share an immutable file with a new generation: a hard link, or a copy where links fail."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def new_temp_folder(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f"{TMP_PREFIX}{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    return tmp


def publish(root: Path, tmp: Path) -> Path:
    """Make a fully written temp folder the current generation, atomically. Caller holds the lock."""
    _fsync_tree(tmp)
    gen = root / f"{GEN_PREFIX}{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    os.rename(tmp, gen)
    point_current(root, gen.name)
    return gen


def point_current(root: Path, name: str) -> None:
    """Make ``root/name`` the current generation (atomically). ``name`` is a generation of this
    root, or ``<sub>/<generation>`` of a build root inside it (progressive indexing serves the
    lexical or the learned build root's generation this way). Caller holds the root's lock."""
    pointer = root / f"{CURRENT}.{uuid.uuid4().hex[:8]}.tmp"
    pointer.write_text(name + "\n", encoding="utf-8")
    with open(pointer, "rb") as f:
        os.fsync(f.fileno())
    os.replace(pointer, root / CURRENT)
    _fsync_dir(root)


def current_generation(root: Path) -> Path:
    """The published generation folder, or ``NotIndexedError``."""
    try:
        name = (root / CURRENT).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise NotIndexedError("not indexed yet") from None
    except (OSError, UnicodeDecodeError) as exc:  # unreadable, or garbage that is not even text
        raise CorruptIndexError(f"cannot read {root / CURRENT}: {exc}; rebuild with `codelsr index`") from exc
    folder = root / name
    sub, _, gen_name = name.rpartition("/")
    if not gen_name.startswith(GEN_PREFIX) or "/" in sub or sub.startswith(".") or not folder.is_dir():
        raise CorruptIndexError(
            f"{root / CURRENT} names a missing generation {name!r}; rebuild with `codelsr index --force`"
        )
    return folder


def clean_up(root: Path, keep: int = 2) -> None:
    """Remove leftovers of killed builds and all but the newest ``keep`` generations.

    The current generation is always kept. Caller holds the write lock."""
    for tmp in root.glob(f"{TMP_PREFIX}*"):
        shutil.rmtree(tmp, ignore_errors=True)
    for stray in root.glob(f"{CURRENT}.*.tmp"):
        stray.unlink(missing_ok=True)
    try:
        current = current_generation(root).name
    except (NotIndexedError, CorruptIndexError):
        current = None
    gens = sorted((p for p in root.glob(f"{GEN_PREFIX}*") if p.is_dir()), key=lambda p: p.name, reverse=True)
    others = [g for g in gens if g.name != current]
    for gen in others[max(0, keep - 1 if current else keep):]:
        shutil.rmtree(gen, ignore_errors=True)
