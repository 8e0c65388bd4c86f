"""Crash safety and concurrency: kill -9 at random moments of real indexing processes, writers
racing for one index, readers searching through reindexes, damaged files."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import git, write
from test_incremental import make_repo, module_text

from codelsr.chunking import chunk_repository
from codelsr.cli import main
from codelsr.errors import IndexBusyError
from codelsr.index import build_index, open_index
from codelsr.index import reader as reader_module
from codelsr.index.paths import index_root_for
from codelsr.search import search

CHILD = """
import sys
from codelsr.index import build, build_index
build.COMPACT_MIN_ROWS = int(sys.argv[3])  # small, so that some runs compact
print("ready", flush=True)
build_index(sys.argv[1], force=sys.argv[2] == "1", lock_timeout=float(sys.argv[4]))
"""


def indexed_chunk_ids(repo: Path) -> set[str]:
    reader_module._readers.clear()
    reader = open_index(repo)
    rows = list(range(reader.manifest.chunk_count))
    chunks = reader.chunks.by_rows(rows)
    assert len(chunks) == len(rows) == reader.forward.n_rows
    assert search(repo, "parse token stream", k=5).hits is not None  # searchable
    return {c.chunk_id for c in chunks.values()}


def tree_chunk_ids(repo: Path) -> set[str]:
    return {c.chunk_id for c in chunk_repository(repo).chunks}


def start_child(repo: Path, force: bool, compact_rows: int, lock_timeout: float = 0) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(repo), "1" if force else "0", str(compact_rows),
                             str(lock_timeout)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    return proc


def mutate(repo: Path, rng: random.Random, step: int) -> None:
    files = sorted(repo.rglob("*.py"))
    for path in rng.sample(files, min(len(files), rng.randint(1, 12))):
        path.write_text(module_text(rng, f"s{step}", rng.randint(1, 5)), encoding="utf-8")
    if rng.random() < 0.3:
        rng.choice(files).unlink()
    if rng.random() < 0.3:
        write(repo, f"new/s{step}.py", module_text(rng, f"new{step}", 3))
    if rng.random() < 0.5:
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", f"step {step}")


@pytest.mark.slow
def test_kill_9_at_random_moments_never_breaks_the_index(tmp_path):
    repo = make_repo(tmp_path / "repo", n_files=120, seed=5)
    rng = random.Random(7)
    full = start_child(repo, True, 10**9)
    started = time.perf_counter()
    assert full.wait(timeout=300) == 0, full.stderr.read()
    full_seconds = time.perf_counter() - started
    published = indexed_chunk_ids(repo)
    assert published == tree_chunk_ids(repo)
    kills = mid_write = 0
    for step in range(22):
        mutate(repo, rng, step)
        target = tree_chunk_ids(repo)
        force = rng.random() < 0.3
        proc = start_child(repo, force, rng.choice([20, 200, 10**9]))
        time.sleep(rng.uniform(0, full_seconds if force else full_seconds / 2))
        if proc.poll() is None:
            proc.kill()
            kills += 1
        proc.wait(timeout=60)
        mid_write += bool(list(index_root_for(repo).glob(".tmp-*")))
        proc.stdout.close()
        proc.stderr.close()
        now = indexed_chunk_ids(repo)  # the previous or the new generation, complete and searchable
        assert now in (published, target), f"step {step}: index matches neither the old nor the new tree"
        published = now
        if rng.random() < 0.3:  # sometimes recover at once, sometimes leave leftovers for the next kill
            build_index(repo)
            published = indexed_chunk_ids(repo)
            assert published == target
    build_index(repo)
    assert indexed_chunk_ids(repo) == tree_chunk_ids(repo)
    root = index_root_for(repo)
    assert not list(root.glob(".tmp-*")) and len(list(root.glob("gen-*"))) <= 2
    print(f"{kills} kills, {mid_write} while a generation was being written; full build {full_seconds:.2f} s")
    assert kills >= 8, f"only {kills} runs were killed before finishing"


def test_two_writers_racing_serialise_on_the_lock_and_leave_a_consistent_index(tmp_path):
    repo = make_repo(tmp_path / "repo", n_files=60, seed=3)
    build_index(repo)
    mutate(repo, random.Random(1), 0)
    waiting = [start_child(repo, False, 10**9, lock_timeout=120) for _ in range(2)]
    assert [p.wait(timeout=300) for p in waiting] == [0, 0]
    assert indexed_chunk_ids(repo) == tree_chunk_ids(repo)

    mutate(repo, random.Random(2), 1)
    impatient = [start_child(repo, True, 10**9, lock_timeout=0) for _ in range(2)]
    codes = [p.wait(timeout=300) for p in impatient]
    errors = [p.stderr.read() for p in impatient]
    assert 0 in codes
    for code, err in zip(codes, errors):
        assert code == 0 or "IndexBusyError" in err, err
    assert indexed_chunk_ids(repo) == tree_chunk_ids(repo)
    for p in waiting + impatient:
        p.stdout.close()
        p.stderr.close()


def test_a_second_writer_is_told_the_index_is_busy(sample_repo, capsys):
    import filelock

    build_index(sample_repo)
    lock = filelock.FileLock(str(index_root_for(sample_repo) / "write.lock"))
    lock.acquire()
    try:
        with pytest.raises(IndexBusyError, match="another codelsr process is indexing"):
            build_index(sample_repo)
        assert main(["index", str(sample_repo)]) == 1
        assert "another codelsr process" in capsys.readouterr().err
        assert search(sample_repo, "debounce", k=1).hits  # readers never block
    finally:
        lock.release()


def test_searches_keep_working_through_reindexes_and_see_each_new_generation(tmp_path):
    repo = make_repo(tmp_path / "repo", n_files=40, seed=4)
    build_index(repo)
    errors: list[BaseException] = []
    seen: set[str] = set()
    stop = threading.Event()

    def searcher():
        while not stop.is_set():
            try:
                reader = open_index(repo)
                seen.add(reader.generation)
                assert search(repo, "matrix vector cache", k=5).hits
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)
                return

    thread = threading.Thread(target=searcher)
    thread.start()
    rng = random.Random(9)
    generations = []
    try:
        for step in range(5):
            mutate(repo, rng, step)
            generations.append(build_index(repo).generation)
            time.sleep(0.2)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not errors, errors
    assert generations[-1] in seen and len(seen) >= 3


@pytest.mark.parametrize("victim", ["manifest.json", "files.json", "vectors.npz", "terms.json", "chunks.sqlite",
                                    "delta/vectors.npz", "delta/chunks.sqlite", "CURRENT"])
def test_a_damaged_index_file_gives_one_clear_line_and_a_plain_index_repairs_it(sample_repo, victim, capsys):
    build_index(sample_repo)
    write(sample_repo, "src/tokenizer.py", "def replaced_tokenizer():\n    return 'new'\n")  # gives a delta
    report = build_index(sample_repo)
    assert report.delta_chunks > 0
    root = index_root_for(sample_repo)
    path = root / victim if victim == "CURRENT" else root / report.generation / victim
    data = path.read_bytes()
    path.unlink()  # a fresh inode: generations share main-segment files through hard links
    path.write_bytes(data[: len(data) // 3] if victim != "CURRENT" else b"gen-missing\n")
    reader_module._readers.clear()
    assert main(["search", "tokenizer", "--repo", str(sample_repo)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert Path(victim).name in err and "codelsr index" in err
    assert main(["index", str(sample_repo)]) == 0  # no --force needed: damaged files are never reused
    reader_module._readers.clear()
    assert search(sample_repo, "replaced tokenizer", k=1).hits[0].path == "src/tokenizer.py"


def test_leftovers_of_a_killed_build_are_removed_by_the_next_run(sample_repo):
    build_index(sample_repo)
    root = index_root_for(sample_repo)
    (root / ".tmp-deadbeef").mkdir()
    (root / ".tmp-deadbeef" / "vectors.npz").write_bytes(b"half")
    (root / "CURRENT.1234.tmp").write_text("gen-x")
    build_index(sample_repo)
    assert not list(root.glob(".tmp-*")) and not list(root.glob("CURRENT.*.tmp"))
