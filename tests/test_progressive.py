"""Progressive indexing with real processes: lexical first, the learned index in a detached worker,
resumable after a kill, both updated after a commit; and the default-encoder switch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import codelsr
from codelsr.index.catalog import index_root_for
from codelsr.index.progressive import LEARNED_DIR, PROGRESS_FILE, VECTOR_CACHE_FILE, worker_alive
from codelsr.index.vector_cache import VectorCache, cached_vector_count
from tests.conftest import git, make_git_repo, write

SRC = Path(codelsr.__file__).parent
REPO_ROOT = SRC.parent.parent
LEARNED = "hybrid-code-tiny"


def cli(*args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """`codelsr ...` as a new process (CODELSR_HOME comes from the autouse fixture)."""
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC.parent), str(REPO_ROOT)]), **(env or {})}
    out = subprocess.run([sys.executable, "-m", "codelsr", *args], capture_output=True, text=True, env=full_env,
                         timeout=600)
    if check:
        assert out.returncode == 0, f"codelsr {' '.join(args)}: {out.stderr}"
    return out


def status(repo: Path) -> dict:
    return json.loads(cli("status", str(repo), "--json").stdout)


def search(repo: Path, query: str) -> dict:
    return json.loads(cli("search", query, "--repo", str(repo), "--json", "-k", "5").stdout)


def wait_for(predicate, timeout: float = 300, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(every)


def code_repo(path: Path, packages: tuple[str, ...]) -> Path:
    files = {f"{pkg}/{p.name}": p.read_text(encoding="utf-8") for pkg in packages
             for p in sorted((SRC / pkg).glob("*.py"))}
    return make_git_repo(path, files)


def learned_chunk_count(repo: Path) -> int:
    """How many chunks the learned index of ``repo`` holds: chunked with its encoder's window."""
    from codelsr.chunking import chunk_repository
    from codelsr.encoders import get_encoder, window_lines

    return len(chunk_repository(repo, window_lines=window_lines(get_encoder(LEARNED))).chunks)


def test_the_vector_cache_keeps_float32_vectors_per_encoder(tmp_path):
    cache = VectorCache(tmp_path / "v.sqlite", "enc-a")
    cache.put({"h1": {"parse": 1.5, "http": 0.25, "ünïcode": 3.0}, "h2": {}})
    assert cache.get({"h1", "h2", "h3"}) == {"h1": {"parse": 1.5, "http": 0.25, "ünïcode": 3.0}, "h2": {}}
    assert VectorCache(tmp_path / "v.sqlite", "enc-b").get({"h1"}) == {}
    assert cached_vector_count(tmp_path / "v.sqlite") == 2 and cache.count() == 2
    cache.clear()
    assert cache.count() == 0


def test_index_answers_with_lexical_at_once_then_the_learned_index_takes_over(tmp_path):
    repo = code_repo(tmp_path / "repo", ("chunking",))
    started = time.monotonic()
    report = json.loads(cli("index", str(repo), "--encoder", LEARNED, "--json").stdout)
    returned = time.monotonic() - started
    assert report["encoder"] == "lexical" and report["target_encoder"] == LEARNED and report["serving"] == "lexical"
    assert report["learned_state"] == "building" and report["worker"].startswith("process ")
    first = search(repo, "split camelCase identifiers into words")
    # Unless the worker already finished (it has to load a model and encode 82 chunks), lexical answered.
    assert first["encoder"] in ("lexical", LEARNED) and first["hits"]
    info = status(repo)
    assert info["learned"]["encoder"] == LEARNED
    done = wait_for(lambda: status(repo)["learned"]["state"] == "complete" and status(repo))
    # Same files; the learned index's chunks are cut to its encoder's shorter window.
    assert done["encoder"] == LEARNED and done["files"] == report["files"]
    assert done["chunks"] == learned_chunk_count(repo) > report["chunks"]
    assert search(repo, "split camelCase identifiers into words")["encoder"] == LEARNED
    assert not worker_alive(repo)
    print(f"index returned after {returned:.1f} s")


@pytest.mark.slow
def test_a_killed_worker_leaves_search_answering_and_the_next_run_does_not_re_encode_its_work(tmp_path):
    repo = code_repo(tmp_path / "repo", ("index", "chunking", "encoders"))
    root = index_root_for(repo)
    cache_file = root / LEARNED_DIR / VECTOR_CACHE_FILE
    json.loads(cli("index", str(repo), "--encoder", LEARNED, "--json").stdout)
    total = learned_chunk_count(repo)
    assert total > 300
    # Kill the worker once it has committed some batches but not all.
    wait_for(lambda: cached_vector_count(cache_file) >= 64, every=0.05)
    pid = json.loads((root / LEARNED_DIR / PROGRESS_FILE).read_text())["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not worker_alive(repo), timeout=30)
    kept = cached_vector_count(cache_file)
    assert 64 <= kept < total, (kept, total)
    info = status(repo)
    assert info["encoder"] == "lexical"
    assert info["learned"]["state"] == "stopped" and info["learned"]["cached_vectors"] == kept
    assert "codelsr index" in info["learned"]["hint"]
    found = search(repo, "write a segment of vectors to disk")
    assert found["encoder"] == "lexical" and found["hits"]
    assert "stopped" in cli("status", str(repo)).stdout
    # The next run resumes: it encodes only what the killed worker had not stored.
    resumed = json.loads(cli("index", str(repo), "--foreground", "--json").stdout)
    assert resumed["encoder"] == LEARNED and resumed["learned_state"] == "complete"
    learned = resumed  # the report of the build that ran last: the learned one
    assert learned["chunks"] == total
    unique = learned["encoded_chunks"] + kept
    assert learned["encoded_chunks"] <= total - kept and learned["reused_chunks"] >= kept, (learned, kept)
    assert unique <= total
    assert search(repo, "write a segment of vectors to disk")["encoder"] == LEARNED
    assert cached_vector_count(cache_file) == 0  # published: the cache is emptied
    assert status(repo)["learned"]["state"] == "complete"


def test_foreground_builds_both_and_a_commit_updates_both(tmp_path):
    repo = code_repo(tmp_path / "repo", ("chunking",))
    first = json.loads(cli("index", str(repo), "--encoder", LEARNED, "--foreground", "--json").stdout)
    assert first["encoder"] == LEARNED and first["learned_state"] == "complete" and first["worker"] is None
    assert first["serving"] == LEARNED
    assert search(repo, "binary file detection")["encoder"] == LEARNED
    # Nothing changed: the learned index stays served, nothing is encoded.
    again = json.loads(cli("index", str(repo), "--json").stdout)
    assert again["learned_state"] == "complete" and again["encoded_chunks"] == 0 and again["serving"] == LEARNED
    assert search(repo, "binary file detection")["encoder"] == LEARNED
    # A commit: the lexical index is updated and answers with the new code at once ...
    write(repo, "chunking/quaternion.py", "def rotate_by_quaternion(vector, quaternion):\n"
                                          "    '''Rotate a 3-d vector by a unit quaternion.'''\n"
                                          "    return quaternion * vector * quaternion.conjugate()\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "quaternions")
    update = json.loads(cli("index", str(repo), "--json").stdout)
    assert update["target_encoder"] == LEARNED and update["changed_files"] == 1
    hit = search(repo, "rotate_by_quaternion")
    assert hit["hits"][0]["path"] == "chunking/quaternion.py"
    # ... and the learned index catches up, encoding only the new chunk.
    wait_for(lambda: status(repo)["learned"]["state"] == "complete")
    after = search(repo, "rotate a vector by a quaternion")
    assert after["encoder"] == LEARNED and after["hits"][0]["path"] == "chunking/quaternion.py"
    state = json.loads((index_root_for(repo) / "progressive.json").read_text())
    assert state["last_build"]["encoded_chunks"] == 1 and state["last_build"]["changed_files"] == 1


def test_the_default_encoder_setting_switches_new_indexes_to_learned_and_lexical_stays_one_word_away(tmp_path):
    a = make_git_repo(tmp_path / "a", {"m.py": "def mean(xs):\n    return sum(xs) / len(xs)\n"})
    b = make_git_repo(tmp_path / "b", {"m.py": "def median(xs):\n    return sorted(xs)[len(xs) // 2]\n"})
    assert "default_encoder = lexical" in cli("config").stdout
    refused = cli("config", "default_encoder", "no-such-encoder", check=False)
    assert refused.returncode == 1 and "unknown encoder" in refused.stderr
    cli("config", "default_encoder", LEARNED)
    shown = json.loads(cli("config", "default_encoder", "--json").stdout)
    assert shown["default_encoder"]["value"] == LEARNED
    assert json.loads(cli("index", str(a), "--json", "--foreground").stdout)["encoder"] == LEARNED
    # The environment variable wins over the file: the documented way to keep lexical.
    kept = json.loads(cli("index", str(b), "--json", env={"CODELSR_DEFAULT_ENCODER": "lexical"}).stdout)
    assert kept["encoder"] == "lexical" and kept["target_encoder"] == "lexical" and kept["worker"] is None
    assert status(b)["learned"] is None
    # An existing index keeps its encoder whatever the default says.
    cli("config", "default_encoder", "--unset")
    assert json.loads(cli("index", str(a), "--json").stdout)["target_encoder"] == LEARNED
    assert "built-in default" in cli("config", "default_encoder").stdout
