"""Every git command codelsr runs, in one place, run the same hardened way.

Each call switches off ``core.fsmonitor`` (a repository's config could name a program that every
``git status`` would run: indexing someone else's checkout must not execute code from it) and
passes ``--no-optional-locks`` (never take ``.git/index.lock``, so a background reindex cannot make
the user's next git command fail with "index.lock exists"). Filter drivers remain git's to honour
(see README).

The helpers answer ``None`` (or raise ``GitError`` where noted) rather than leaking
``CalledProcessError``: a folder that is not a git working tree is an ordinary input.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

# Plain folders are fingerprinted by a walk that leaves these out.
_FINGERPRINT_SKIP_DIRS = {".git", "node_modules", "__pycache__", ".venv", "venv"}


class GitError(Exception):
    """git failed; the message is git's own."""


class GitUnavailableError(GitError):
    """git could not be started, or ran past its time limit."""


def harden_env(environ: dict[str, str] | None = None) -> None:
    """Switch off ``core.fsmonitor`` for every git run from this process (and its children).

    For the git a reindex runs through other tools' code paths too (hooks, subprocesses):
    config from the environment (``GIT_CONFIG_COUNT``/``KEY``/``VALUE``) overrides the
    repository's. Idempotent. ``run`` passes the same setting on its own command line.
    """
    env = os.environ if environ is None else environ
    n = int(env.get("GIT_CONFIG_COUNT", "0") or 0)
    for i in range(n):
        if env.get(f"GIT_CONFIG_KEY_{i}") == "core.fsmonitor" and env.get(f"GIT_CONFIG_VALUE_{i}") == "false":
            return
    env[f"GIT_CONFIG_KEY_{n}"] = "core.fsmonitor"
    env[f"GIT_CONFIG_VALUE_{n}"] = "false"
    env["GIT_CONFIG_COUNT"] = str(n + 1)


def run(repo: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``git -C repo args`` with the hardening above; output as bytes, never raises on exit status.

    Raises ``GitUnavailableError`` when git cannot be started or runs past ``timeout``."""
    cmd = ["git", "--no-optional-locks", "-C", str(repo), "-c", "core.quotepath=off", "-c", "core.fsmonitor=false",
           *args]
    try:
        return subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GitUnavailableError(f"could not run git in {repo}: {exc}") from exc


def output(repo: Path, *args: str, timeout: float = 60) -> str:
    """The stripped text git prints for ``args``; ``GitError`` (with git's message) when it fails."""
    out = run(repo, *args, timeout=timeout)
    if out.returncode != 0:
        raise GitError(os.fsdecode(out.stderr).strip() or "git failed")
    return os.fsdecode(out.stdout).strip()


def _split_z(raw: bytes) -> list[str]:
    return [os.fsdecode(p) for p in raw.split(b"\0") if p]


def top_level(path: Path) -> Path | None:
    """The top of the working tree ``path`` is in (resolved), or None (not in one, or no git)."""
    try:
        return Path(output(path, "rev-parse", "--show-toplevel")).resolve()
    except GitError:
        return None


def is_worktree_root(root: Path) -> bool:
    """Whether ``root`` is the top of a git working tree (not a bare repo, not a subfolder).

    A folder inside a repository counts as a plain folder: keeping the root equal to the working
    tree keeps every path relative to the same place."""
    top = top_level(root)
    return top is not None and top == Path(root).resolve()


def head(repo: Path) -> str | None:
    """The commit sha of HEAD; None outside git or in a repository with no commits yet."""
    try:
        out = run(repo, "rev-parse", "-q", "--verify", "HEAD^{commit}", timeout=30)
    except GitError:
        return None
    return (out.stdout.decode().strip() or None) if out.returncode == 0 else None


def listed_files(repo: Path) -> list[str]:
    """Tracked plus untracked-but-not-ignored paths, sorted and deduplicated (merge conflicts
    repeat). ``GitError`` when git refuses (e.g. "dubious ownership" of the repository)."""
    out = run(repo, "ls-files", "--cached", "--others", "--exclude-standard", "-z")
    if out.returncode != 0:
        raise GitError(os.fsdecode(out.stderr).strip() or "git ls-files failed")
    return sorted(set(_split_z(out.stdout)))


@dataclass(frozen=True)
class Status:
    """``git status --porcelain=v1 -z --untracked-files=all --no-renames``: one raw entry per
    changed path (``XY path``), staged, unstaged, untracked or deleted."""

    entries: tuple[bytes, ...]

    @property
    def paths(self) -> set[str]:
        return {os.fsdecode(e[3:]) for e in self.entries if len(e) > 3}


def status(repo: Path) -> Status | None:
    """The working tree's status, or None (not in git, or git failed)."""
    try:
        out = run(repo, "status", "--porcelain=v1", "-z", "--untracked-files=all", "--no-renames", timeout=60)
    except GitError:
        return None
    if out.returncode != 0:
        return None
    return Status(tuple(e for e in out.stdout.split(b"\0") if e))


def changed_between(repo: Path, old: str, new: str) -> set[str] | None:
    """Paths that differ between commits ``old`` and ``new``; None when git cannot tell (``old``
    garbage-collected)."""
    try:
        out = run(repo, "diff", "--name-only", "--no-renames", "-z", old, new, "--")
    except GitError:
        return None
    return set(_split_z(out.stdout)) if out.returncode == 0 else None


def worktree_fingerprint(repo: Path, current: tuple[str | None, Status | None] | None = None) -> str:
    """A hash that changes whenever the files codelsr would index change.

    In git: HEAD, plus the status of changed/untracked paths with their size and mtime (so a
    second edit to an already-modified file changes it too). Elsewhere: every file's size and
    mtime. ``current``: (HEAD, status) already asked of git, so a build asks only once.
    """
    h = hashlib.sha1()
    commit, st = current if current is not None else (head(repo), status(repo))
    if st is not None:
        h.update((commit or "").encode())
        for entry in st.entries:
            if len(entry) < 4:
                continue
            h.update(entry)
            try:
                info = os.stat(repo / os.fsdecode(entry[3:]))
                h.update(f"{info.st_size}:{info.st_mtime_ns}".encode())
            except OSError:
                pass
        return "git:" + h.hexdigest()
    for dirpath, dirnames, filenames in os.walk(repo):
        dirnames[:] = sorted(d for d in dirnames if d not in _FINGERPRINT_SKIP_DIRS)
        for name in sorted(filenames):
            try:
                info = os.stat(os.path.join(dirpath, name))
            except OSError:
                continue
            h.update(f"{os.path.relpath(os.path.join(dirpath, name), repo)}:{info.st_size}:{info.st_mtime_ns}\n"
                     .encode())
    return "files:" + h.hexdigest()
