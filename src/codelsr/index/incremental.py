"""Change detection: which files changed since the published generation, so a reindex re-chunks
and re-encodes only those.

Every generation records a *file table* (``files.json``): for each indexed file its content hash
(sha1 of the bytes), size, mtime and where its chunks live (segment, first row, count), and for
each skipped file its reason and stat. ``scan`` lists the repository as ``walk_repository`` does
(git's tracked + untracked-not-ignored files, or a walk of a plain folder) and decides per file:

* in git, a path is examined when ``git diff <indexed commit> HEAD`` names it (commits since the
  index: rebases, resets and branch switches included), when ``git status`` reports it (staged,
  unstaged, untracked, deleted), or when it was dirty at the last index (an edit since reverted
  to HEAD no longer shows in ``git status``); in every case also when its size or mtime changed;
* "racily clean" files, modified within ``RACY_NS`` of the previous scan, are always examined: a
  write landing in the same mtime tick as the last scan could otherwise go unnoticed (git's rule);
* an examined file goes through the walker's checks (binary, size, generated...), is read and
  hashed; it is re-chunked only when its content hash differs from the table's;
* paths of the table that are no longer indexed are deletions; a rename is a deletion plus a new
  path, whose chunks then reuse their vectors by content hash.

Without git the same stat + hash rules apply. When the indexed commit is unknown to git (garbage
collected), every file is examined and content hashes decide.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from codelsr import git
from codelsr.index.layout import FileRecord, FileTable, SkipRecord

if TYPE_CHECKING:  # the chunking package (tree-sitter) loads only when a scan runs, not for searches
    from codelsr.chunking import ChunkingOptions, ReadFile, SkippedFile

RACY_NS = 2_000_000_000  # files modified this close to the last scan are re-hashed (coarse fs clocks)


@dataclass
class GitChanges:
    """What git says changed. ``since_commit`` is None when the indexed commit is unknown to git
    (garbage-collected, or no commit was indexed): then only stat and hashes decide."""

    head: str | None
    since_commit: set[str] | None
    dirty: set[str]


def git_changes(repo: Path, indexed_commit: str | None,
                current: tuple[str | None, git.Status | None] | None = None) -> GitChanges | None:
    """Paths changed between ``indexed_commit`` and HEAD, and paths dirty in the working tree.

    None when ``repo`` is not the top of a git working tree (or git is unavailable).
    ``current``: (HEAD, status) already asked of git by the caller."""
    if not git.is_worktree_root(repo):
        return None
    head, status = current if current is not None else (git.head(repo), git.status(repo))
    if status is None:
        return None
    since: set[str] | None = None
    if indexed_commit and head:
        since = set() if indexed_commit == head else git.changed_between(repo, indexed_commit, head)
    elif indexed_commit is None and head is None:
        since = set()  # still no commit: the working tree status says everything
    return GitChanges(head, since, status.paths)


@dataclass
class Scan:
    """The repository compared with the previous file table."""

    unchanged: list[FileRecord] = field(default_factory=list)  # content unchanged (stat refreshed)
    changed: list[ReadFile] = field(default_factory=list)  # new or modified: chunk and encode these
    deleted: list[str] = field(default_factory=list)  # indexed paths gone (deleted, renamed, now skipped)
    skipped: list[SkippedFile] = field(default_factory=list)  # as ``walk_repository`` reports them
    skip_records: list[SkipRecord] = field(default_factory=list)  # file skips, to reuse next time
    classified: int = 0  # files examined by the walker's checks (the others were stat-clean)
    hashed: int = 0  # files read and hashed

    @property
    def files(self) -> int:
        return len(self.unchanged) + len(self.changed)


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def scan(root: Path, options: ChunkingOptions, previous: FileTable | None, vcs: GitChanges | None) -> Scan:
    """Walk ``root`` like ``walk_repository`` and compare each file with ``previous``.

    A file whose stat matches the table and that git does not name (and that is not racily clean)
    is taken as it was, indexed or skipped, without reading it: that keeps a reindex of a large
    repository from re-reading every file. The others go through the walker's checks and are
    read and hashed; a hash equal to the table's means unchanged. With no ``previous`` table every
    file is examined and changed."""
    from codelsr.chunking import ReadFile, SkippedFile, classify, list_candidates

    root = Path(root)
    old = previous.by_path() if previous is not None else {}
    old_skips = {r.path: r for r in previous.skipped} if previous is not None else {}
    must_examine: set[str] | None = None  # None: every file
    if previous is not None and vcs is not None and vcs.since_commit is not None:
        must_examine = vcs.since_commit | vcs.dirty | set(previous.dirty)
    elif previous is not None and vcs is None:
        must_examine = set()  # a plain folder: stat decides which files to examine
    racy_after = previous.scanned_ns - RACY_NS if previous is not None else 0
    resolved_root = root.resolve()
    skipped: list[SkippedFile] = []
    out = Scan()
    indexed: set[str] = set()
    for rel in list_candidates(root, options, skipped):
        path = root / rel
        rec, skip = old.get(rel), old_skips.get(rel)
        if must_examine is not None and rel not in must_examine and (rec is not None or skip is not None):
            st = _stat(path)
            if st is not None and rec is not None and (st.st_size, st.st_mtime_ns) == (rec.size, rec.mtime_ns) \
                    and rec.mtime_ns < racy_after:
                out.unchanged.append(rec)
                indexed.add(rel)
                continue
            if st is not None and skip is not None and (st.st_size, st.st_mtime_ns) == (skip.size, skip.mtime_ns) \
                    and skip.mtime_ns < racy_after:
                skipped.append(SkippedFile(rel, skip.reason))
                out.skip_records.append(skip)
                continue
        out.classified += 1
        outcome = classify(rel, path, resolved_root, options)
        if isinstance(outcome, SkippedFile):
            skipped.append(outcome)
            st = _stat(path)
            if st is not None:
                out.skip_records.append(SkipRecord(rel, outcome.reason, st.st_size, st.st_mtime_ns))
            continue
        if not isinstance(outcome, ReadFile):
            continue  # listed by git but deleted from the working tree
        out.hashed += 1
        indexed.add(rel)
        if rec is not None and rec.sha1 == outcome.sha1 and rec.language == outcome.file.language:
            out.unchanged.append(dataclasses.replace(rec, size=outcome.size, mtime_ns=outcome.mtime_ns))
        else:
            out.changed.append(outcome)
    out.deleted = sorted(p for p in old if p not in indexed)
    out.skipped = sorted(skipped, key=lambda sk: sk.path)
    return out
