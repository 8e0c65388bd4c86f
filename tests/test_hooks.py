"""Git hooks fire on real git commands, reindex in the background, chain existing hooks, respect
core.hooksPath, coalesce bursts and uninstall cleanly."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import filelock
import pytest
from conftest import git, write

from codelsr import hooks
from codelsr.cli import main
from codelsr.index import build_index, index_status
from codelsr.index.paths import index_root_for
from codelsr.search import search


@pytest.fixture(autouse=True)
def quick_settle(monkeypatch):
    monkeypatch.setenv(hooks.SETTLE_ENV, "0.3")


def head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD").strip()


def wait_for_hooks(repo: Path, timeout: float = 90) -> None:
    """Until the index holds HEAD and no hook run is pending or running."""
    root = index_root_for(repo)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.2)
        status = index_status(repo)
        if not status.indexed or status.indexed_commit != head(repo) or (root / hooks.PENDING_FILE).exists():
            continue
        lock = filelock.FileLock(str(root / hooks.RUN_LOCK))
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            continue
        lock.release()
        if not (root / hooks.PENDING_FILE).exists():
            return
    log = root / hooks.LOG_FILE
    pytest.fail(f"hooks did not bring the index to HEAD in {timeout} s; log:\n"
                f"{log.read_text() if log.exists() else '(none)'}")


def log_text(repo: Path) -> str:
    return (index_root_for(repo) / hooks.LOG_FILE).read_text()


def wait_for_log(repo: Path, text: str, timeout: float = 90) -> None:
    """Until ``text`` is in the hook log: a hook's background process has started and written it.

    Needed where another event's reindex can bring the index to HEAD before that process has even
    started (a rebase: its post-checkout run may index the rebased HEAD), so ``wait_for_hooks``
    alone could return before the event was seen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log_text(repo):
            return
        time.sleep(0.2)
    pytest.fail(f"{text!r} not in the hook log after {timeout} s; log:\n{log_text(repo)}")


def test_commit_checkout_merge_and_rebase_each_reindex_in_the_background(sample_repo, capsys):
    assert main(["hook", "install", str(sample_repo)]) == 0
    assert "post-commit" in capsys.readouterr().out

    write(sample_repo, "src/cache.py", "def lru_eviction_policy(capacity):\n    return capacity\n")
    git(sample_repo, "add", "-A")
    started = time.perf_counter()
    git(sample_repo, "commit", "-qm", "add cache")
    assert time.perf_counter() - started < 5  # the hook only starts a background process
    wait_for_hooks(sample_repo)
    assert search(sample_repo, "lru eviction policy", k=1).hits[0].path == "src/cache.py"
    assert "post-commit: done" in log_text(sample_repo)

    git(sample_repo, "checkout", "-qb", "feature")
    write(sample_repo, "src/feature.py", "def quantum_flux_capacitor():\n    return 88\n")
    git(sample_repo, "add", "-A")
    git(sample_repo, "commit", "-qm", "feature")
    wait_for_hooks(sample_repo)
    git(sample_repo, "checkout", "-q", "main")
    wait_for_hooks(sample_repo)
    assert "post-checkout" in log_text(sample_repo)
    assert all(h.path != "src/feature.py" for h in search(sample_repo, "quantum flux capacitor", k=5).hits)

    git(sample_repo, "merge", "-q", "--no-ff", "--no-edit", "feature")
    wait_for_hooks(sample_repo)
    assert "post-merge" in log_text(sample_repo)
    assert search(sample_repo, "quantum flux capacitor", k=1).hits[0].path == "src/feature.py"

    git(sample_repo, "checkout", "-qb", "topic", "HEAD~1")
    write(sample_repo, "src/topic.py", "def heliotrope_gradient():\n    return 'sun'\n")
    git(sample_repo, "add", "-A")
    git(sample_repo, "commit", "-qm", "topic")
    git(sample_repo, "rebase", "-q", "main")
    wait_for_log(sample_repo, "post-rewrite")
    wait_for_hooks(sample_repo)
    assert "post-rewrite" in log_text(sample_repo)
    assert search(sample_repo, "quantum flux capacitor", k=1).hits[0].path == "src/feature.py"
    assert search(sample_repo, "heliotrope gradient", k=1).hits[0].path == "src/topic.py"


def test_existing_hooks_are_chained_and_restored_exactly(sample_repo, tmp_path):
    hooks_folder = sample_repo / ".git" / "hooks"
    calls = tmp_path / "calls.txt"
    original = f'#!/bin/sh\necho "$(basename "$0") $*" >> {calls}\ncat >> {calls}\nexit 3\n'
    for event in ("post-commit", "post-rewrite"):
        write(sample_repo, f".git/hooks/{event}", original)
        (hooks_folder / event).chmod(0o750)
    before = {p.name: (p.read_bytes(), stat.S_IMODE(p.stat().st_mode)) for p in hooks_folder.iterdir()}

    hooks.install(sample_repo)
    hooks.install(sample_repo)  # idempotent: the original is not wrapped twice
    assert (hooks_folder / "post-commit.codelsr-orig").read_text() == original
    assert not (hooks_folder / "post-commit.codelsr-orig.codelsr-orig").exists()

    write(sample_repo, "extra.py", "def chained_hooks_still_run():\n    pass\n")
    git(sample_repo, "add", "-A")
    git(sample_repo, "commit", "-qm", "extra")
    wait_for_hooks(sample_repo)
    git(sample_repo, "commit", "-q", "--amend", "-m", "extra, amended")
    wait_for_hooks(sample_repo)
    text = calls.read_text()
    assert "post-commit.codelsr-orig" in text and "post-rewrite.codelsr-orig amend" in text
    assert head(sample_repo) in text  # post-rewrite's standard input reached the original hook

    hooks.uninstall(sample_repo)
    after = {p.name: (p.read_bytes(), stat.S_IMODE(p.stat().st_mode)) for p in hooks_folder.iterdir()}
    assert after == before
    assert not (sample_repo / ".git" / hooks.STATE_FILE).exists()


def test_core_hooks_path_is_respected_and_a_created_folder_is_removed_again(sample_repo):
    git(sample_repo, "config", "core.hooksPath", ".githooks")
    hooks.install(sample_repo)
    assert all((sample_repo / ".githooks" / e).is_file() for e in hooks.EVENTS)
    assert not (sample_repo / ".git" / "hooks" / "post-commit").exists()
    write(sample_repo, "more.py", "def hooks_path_honoured():\n    pass\n")
    git(sample_repo, "add", "more.py")
    git(sample_repo, "commit", "-qm", "more")
    wait_for_hooks(sample_repo)
    hooks.uninstall(sample_repo)
    assert not (sample_repo / ".githooks").exists()


def test_a_burst_of_commits_coalesces_into_fewer_reindexes(sample_repo):
    build_index(sample_repo)
    hooks.install(sample_repo)
    names = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]
    for i, name in enumerate(names):
        write(sample_repo, f"burst/f{i}.py", f"def burst_{name}():\n    return {i}\n")
        git(sample_repo, "add", "-A")
        git(sample_repo, "commit", "-qm", f"burst {i}")
    wait_for_hooks(sample_repo)
    runs = log_text(sample_repo).count(": reindexing ")
    assert 1 <= runs < 6
    assert search(sample_repo, "burst foxtrot", k=1).hits[0].path == "burst/f5.py"


def test_an_event_during_a_run_leaves_a_marker_that_the_running_one_picks_up(sample_repo):
    build_index(sample_repo)
    root = index_root_for(sample_repo)
    busy = filelock.FileLock(str(root / hooks.RUN_LOCK))
    busy.acquire()
    try:
        assert hooks.run(sample_repo, "post-commit", settle=0) == 0  # returns at once
        assert (root / hooks.PENDING_FILE).exists()
    finally:
        busy.release()
    write(sample_repo, "late.py", "def late_arrival():\n    pass\n")
    assert hooks.run(sample_repo, "post-commit", settle=0) == 0
    assert not (root / hooks.PENDING_FILE).exists()
    assert search(sample_repo, "late arrival", k=1).hits[0].path == "late.py"


def test_hooks_need_a_git_repository(tmp_path, capsys):
    assert main(["hook", "install", str(tmp_path)]) == 1
    assert "not inside a git working tree" in capsys.readouterr().err


def test_uninstall_without_hooks_says_so_and_changes_nothing(sample_repo, capsys):
    before = sorted(p.name for p in (sample_repo / ".git" / "hooks").iterdir())
    assert main(["hook", "uninstall", str(sample_repo)]) == 0
    assert "no codelsr hooks" in capsys.readouterr().out
    assert sorted(p.name for p in (sample_repo / ".git" / "hooks").iterdir()) == before


def test_the_hook_script_uses_this_interpreter_and_runs_without_the_venv(sample_repo):
    hooks.install(sample_repo)
    script = (sample_repo / ".git" / "hooks" / "post-commit").read_text()
    assert os.path.realpath(script.split("nohup ", 1)[1].split(" ", 1)[0].strip("'")) == os.path.realpath(
        __import__("sys").executable)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = "/usr/bin:/bin"
    import subprocess

    subprocess.run(["git", "-c", "user.email=t@e.com", "-c", "user.name=T", "commit", "-q", "--allow-empty", "-m",
                    "empty"], cwd=sample_repo, env=env, check=True)
    wait_for_hooks(sample_repo)
