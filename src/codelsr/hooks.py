"""Git hooks that keep an index fresh: ``codelsr hook install|uninstall [PATH]`` and
``codelsr hook run [PATH] --event E [--foreground]`` (what the hooks call).

``install`` writes post-commit, post-merge, post-checkout and post-rewrite hooks into the folder
git runs hooks from (``core.hooksPath`` respected). Each is a few lines of ``sh`` that first runs
the hook that was there before (moved aside to ``<name>.codelsr-orig``, with the same arguments
and standard input, keeping its exit status), then starts ``codelsr hook run`` in the background
with the absolute path of this Python interpreter, so hooks work without the virtual environment
activated and git never waits for a reindex. Installing twice changes nothing; ``uninstall``
removes codelsr's hooks and moves the originals back, byte for byte.

``run`` coalesces bursts (a rebase, a pull, a script making ten commits): each event touches
``hook.pending`` in the index folder; one runner at a time (``hook.lock``) waits ``SETTLE_SECONDS``
for the burst to end, clears the marker and reindexes, and loops while the marker came back
meanwhile. Events that find a runner busy just leave the marker and exit, so N events cost at most
two reindexes. Output goes to ``hook.log`` in the index folder.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shlex
import subprocess
import sys
import time
import traceback
from pathlib import Path

import filelock

from codelsr import git
from codelsr.errors import CodelsrError, NotARepositoryError

EVENTS = ("post-commit", "post-merge", "post-checkout", "post-rewrite")
MARKER = "# codelsr-hook v1"
ORIG_SUFFIX = ".codelsr-orig"
STATE_FILE = "codelsr-hooks.json"  # in the git folder: what `install` created, for `uninstall`
LOG_FILE = "hook.log"
PENDING_FILE = "hook.pending"
RUN_LOCK = "hook.lock"
SETTLE_ENV = "CODELSR_HOOK_SETTLE"
SETTLE_SECONDS = 1.0  # a burst of git operations inside this window costs one reindex
WRITE_WAIT_SECONDS = 600.0  # how long a runner waits for another writer (a `codelsr index`)
MAX_LOG_BYTES = 1_000_000

# Variables git sets for hooks that would point the reindex's own git calls at the wrong index
# file or folder (GIT_INDEX_FILE is a temporary index during `git commit -a`).
_GIT_LOCATION_VARS = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_PREFIX", "GIT_COMMON_DIR",
                      "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_NAMESPACE",
                      "GIT_QUARANTINE_PATH", "GIT_REFLOG_ACTION", "GIT_EDITOR")

_SCRIPT = """#!/bin/sh
{marker}: reindex in the background after git {event}.
# Installed by `codelsr hook install`; `codelsr hook uninstall` restores the hook that was here.
status=0
if [ -x "$0{orig}" ]; then
    "$0{orig}" "$@" || status=$?
fi
{home}nohup {python} -m codelsr hook run "$(pwd -P)" --event {event} </dev/null >/dev/null 2>&1 &
exit $status
"""


def _git(repo: Path, *args: str) -> str:
    """git's answer for ``args`` in ``repo``; a clear error when ``repo`` is not in a working tree."""
    try:
        return git.output(repo, *args)
    except git.GitUnavailableError as exc:
        raise CodelsrError(str(exc)) from exc
    except git.GitError as exc:
        raise NotARepositoryError(
            f"{repo} is not inside a git working tree ({exc}); "
            "hooks need git: run `git init` first, or keep the index fresh with `codelsr index`"
        ) from exc


def repository_top(path: Path) -> Path:
    path = Path(path).expanduser()
    if not path.is_dir():
        raise NotARepositoryError(f"{path} is not a directory; pass the repository's folder")
    return Path(_git(path, "rev-parse", "--show-toplevel")).resolve()


def hooks_dir(top: Path) -> Path:
    """The folder git runs hooks from (``core.hooksPath`` or ``.git/hooks``)."""
    found = Path(_git(top, "rev-parse", "--git-path", "hooks")).expanduser()
    return found if found.is_absolute() else (top / found)


def _state_path(top: Path) -> Path:
    common = Path(_git(top, "rev-parse", "--git-common-dir"))
    return (common if common.is_absolute() else top / common) / STATE_FILE


def is_ours(path: Path) -> bool:
    try:
        return path.is_file() and not path.is_symlink() and MARKER in path.read_text(encoding="utf-8",
                                                                                     errors="replace")
    except OSError:
        return False


def hook_script(event: str) -> str:
    home = os.environ.get("CODELSR_HOME")
    home_line = f'CODELSR_HOME="${{CODELSR_HOME:-{_sh_escape(home)}}}" ' if home else ""
    return _SCRIPT.format(marker=MARKER, event=event, orig=ORIG_SUFFIX, home=home_line,
                          python=shlex.quote(sys.executable))


def _sh_escape(text: str) -> str:
    """Text safe inside double quotes in sh."""
    return "".join("\\" + ch if ch in '"$`\\' else ch for ch in text)


def install(path: Path) -> list[str]:
    """Install the hooks; returns one line per hook saying what was done."""
    top = repository_top(path)
    folder = hooks_dir(top)
    state_path = _state_path(top)
    state = _read_state(state_path)
    if not folder.exists():
        folder.mkdir(parents=True)
        state.setdefault("created_dirs", []).append(str(folder))
    lines = []
    for event in EVENTS:
        hook, orig = folder / event, folder / (event + ORIG_SUFFIX)
        if is_ours(hook):
            note = "already installed; refreshed"
        elif hook.exists() or hook.is_symlink():
            if orig.exists() or orig.is_symlink():
                raise CodelsrError(
                    f"{hook} is not codelsr's hook, but {orig.name} from an earlier install is still there; "
                    f"move one of them away and run `codelsr hook install` again"
                )
            os.rename(hook, orig)
            note = f"chains the existing hook (kept as {orig.name})"
        else:
            note = "installed"
        tmp = folder / f".{event}.codelsr-tmp"
        tmp.write_text(hook_script(event), encoding="utf-8")
        tmp.chmod(0o755)
        os.replace(tmp, hook)
        lines.append(f"{hook}: {note}")
    state_path.write_text(json.dumps(state), encoding="utf-8")
    return lines


def uninstall(path: Path) -> list[str]:
    """Remove codelsr's hooks and put back what was there before."""
    top = repository_top(path)
    folder = hooks_dir(top)
    state_path = _state_path(top)
    lines = []
    for event in EVENTS:
        hook, orig = folder / event, folder / (event + ORIG_SUFFIX)
        if is_ours(hook):
            hook.unlink()
            if orig.exists() or orig.is_symlink():
                os.rename(orig, hook)
                lines.append(f"{hook}: removed; the original hook is back")
            else:
                lines.append(f"{hook}: removed")
        elif orig.exists() or orig.is_symlink():
            lines.append(f"{hook}: not codelsr's hook any more; left it, and {orig.name}, as they are")
    state = _read_state(state_path)
    for created in state.get("created_dirs", []):
        try:
            Path(created).rmdir()  # only when empty: never remove what someone put there since
        except OSError:
            pass
    state_path.unlink(missing_ok=True)
    if not lines:
        lines.append(f"no codelsr hooks in {folder}")
    return lines


def _read_state(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


class _Log:
    """Appends timestamped lines to ``hook.log`` (rotated to ``hook.log.1`` past 1 MB)."""

    def __init__(self, root: Path):
        self.path = root / LOG_FILE
        try:
            if self.path.stat().st_size > MAX_LOG_BYTES:
                os.replace(self.path, self.path.with_name(LOG_FILE + ".1"))
        except OSError:
            pass

    def __call__(self, message: str) -> None:
        stamp = _dt.datetime.now().isoformat(timespec="milliseconds")
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(f"{stamp} [{os.getpid()}] {message}\n")


def _clean_git_environment() -> None:
    for name in _GIT_LOCATION_VARS:
        os.environ.pop(name, None)
    os.environ["GIT_OPTIONAL_LOCKS"] = "0"  # never take .git/index.lock behind the user's back


def run(path: Path, event: str, *, settle: float | None = None) -> int:
    """Reindex ``path`` for a git ``event``, coalescing with any run already going (see module)."""
    from codelsr.index import build_index
    from codelsr.index.catalog import index_root_for

    _clean_git_environment()
    repo = Path(path).expanduser().resolve()
    root = index_root_for(repo)
    root.mkdir(parents=True, exist_ok=True)
    log = _Log(root)
    pending = root / PENDING_FILE
    settle = float(os.environ.get(SETTLE_ENV, SETTLE_SECONDS)) if settle is None else settle
    pending.write_text(event + "\n", encoding="utf-8")  # before trying the lock: see the module docstring
    lock = filelock.FileLock(str(root / RUN_LOCK))
    status = 0
    while True:
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            log(f"{event}: a reindex is already running; it will run once more")
            return status
        try:
            while pending.exists():
                time.sleep(settle)
                pending.unlink(missing_ok=True)
                status = _reindex(repo, event, log, build_index) or status
        finally:
            lock.release()
        if not pending.exists():  # an event that came between the last check and the release
            return status


def _reindex(repo: Path, event: str, log: _Log, build_index) -> int:
    log(f"{event}: reindexing {repo}")
    try:
        report = build_index(repo, lock_timeout=WRITE_WAIT_SECONDS)
    except CodelsrError as exc:
        log(f"{event}: error: {exc}")
        return 1
    except Exception:  # noqa: BLE001 - a background process has no one else to tell
        log(f"{event}: unexpected error\n{traceback.format_exc()}")
        return 1
    log(f"{event}: done in {report.seconds:.2f} s: {report.files} files, {report.chunks} chunks, "
        f"{report.changed_files} changed, {report.deleted_files} deleted, {report.encoded_chunks} encoded, "
        f"generation {report.generation}{' (compacted)' if report.compacted else ''}")
    return 0


def spawn(path: Path, event: str) -> None:
    """Start ``codelsr hook run --foreground`` detached from this process and its terminal."""
    subprocess.Popen(
        [sys.executable, "-m", "codelsr", "hook", "run", str(Path(path).expanduser().resolve()), "--event", event,
         "--foreground"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        close_fds=True,
    )


def hook_command(args: argparse.Namespace) -> int:
    """Entry point of ``codelsr hook`` (wired in ``cli.py``)."""
    if args.hook_command == "install":
        for line in install(args.path):
            print(line)
        return 0
    if args.hook_command == "uninstall":
        for line in uninstall(args.path):
            print(line)
        return 0
    if args.hook_command == "run":
        if not Path(args.path).expanduser().is_dir():
            raise NotARepositoryError(f"{args.path} is not a directory")
        if args.foreground:
            return run(args.path, args.event)
        spawn(args.path, args.event)
        return 0
    raise CodelsrError(f"unknown hook command {args.hook_command!r}: use install, uninstall or run")
