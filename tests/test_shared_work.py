"""Work shared across worktrees, clones and copies: a second worktree of an indexed repository
encodes nothing and adds little disk; the vector store shared by all indexes of one encoder spares
the encoder for any chunk text it has seen."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from conftest import git
from test_incremental import make_repo, module_text

from codelsr.index import build_index, open_index
from codelsr.index import reader as reader_module
from codelsr.index.catalog import index_root_for
from codelsr.index.vector_store import VectorStore, open_store, store_path
from codelsr.search import search


def disk_usage(home: Path) -> dict[tuple[int, int], int]:
    """Bytes on disk per inode under ``home`` (hard links counted once)."""
    out = {}
    for dirpath, _, files in os.walk(home):
        for name in files:
            st = os.lstat(os.path.join(dirpath, name))
            out[(st.st_dev, st.st_ino)] = st.st_blocks * 512
    return out


def added(before: dict, after: dict) -> int:
    """Disk a step added: new inodes, plus growth of files that were there."""
    return sum(max(0, size - before.get(ino, 0)) for ino, size in after.items())


def hits_of(repo: Path, query: str, **kw) -> list[tuple]:
    return [(h.chunk_id, h.path, h.start_line, h.end_line, round(h.score, 6)) for h in search(repo, query, k=8, **kw).hits]


def test_a_second_worktree_encodes_nothing_and_adds_under_a_tenth_of_the_disk(tmp_path, codelsr_home):
    repo = make_repo(tmp_path / "repo", n_files=60, seed=3)
    empty = disk_usage(codelsr_home)
    first = build_index(repo)
    after_first = disk_usage(codelsr_home)
    first_added = added(empty, after_first)
    assert first.encoded_chunks > 100  # every distinct chunk text encoded once

    worktree = tmp_path / "worktree"
    git(repo, "worktree", "add", "-q", "-b", "feature", str(worktree))
    second = build_index(worktree)
    second_added = added(after_first, disk_usage(codelsr_home))
    print(f"first index added {first_added} bytes ({first.chunks} chunks, {first.seconds:.2f} s); second "
          f"worktree added {second_added} bytes, encoded {second.encoded_chunks}, {second.seconds:.2f} s")
    assert second.chunks == first.chunks and second.encoded_chunks == 0 and second.reused_chunks == second.chunks
    assert second_added < first_added / 10
    assert index_root_for(worktree) != index_root_for(repo)
    for q in ("parse token stream", "retry backoff"):
        assert hits_of(worktree, q) == hits_of(repo, q)
        assert {h.repo for h in search(worktree, q, k=5).hits} == {str(worktree.resolve())}

    # The worktree goes its own way: one commit there re-encodes only the changed file, and the
    # first repository's index is untouched.
    (worktree / "pkg1" / "mod_01.py").write_text(module_text(__import__("random").Random(2), "wt", 3),
                                                 encoding="utf-8")
    git(worktree, "commit", "-qam", "change in the worktree")
    third = build_index(worktree)
    assert third.changed_files == 1 and 0 < third.encoded_chunks <= 4
    reader_module.forget_open_indexes()
    assert open_index(repo).manifest.chunk_count == first.chunks
    assert hits_of(repo, "parse token stream") == hits_of(repo, "parse token stream")


def test_a_clone_with_a_changed_file_encodes_only_that_file(tmp_path):
    repo = make_repo(tmp_path / "repo", n_files=40, seed=8)
    build_index(repo)
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo), str(clone))
    (clone / "pkg0" / "mod_00.py").write_text("def freshly_written_function():\n    return 42\n", encoding="utf-8")
    report = build_index(clone)
    assert report.encoded_chunks == 1 and report.reused_chunks == report.chunks - 1
    assert search(clone, "freshly written function", k=1).hits[0].path == "pkg0/mod_00.py"


def test_the_vector_store_spares_the_encoder_for_a_copy_that_is_no_git_repository(tmp_path):
    repo = make_repo(tmp_path / "repo", n_files=20, seed=6)
    first = build_index(repo)
    copy = tmp_path / "copy"
    shutil.copytree(repo, copy, ignore=shutil.ignore_patterns(".git"))
    report = build_index(copy)  # no git: no sibling index, only the shared vector store
    assert report.encoded_chunks == 0 and report.chunks == first.chunks
    assert hits_of(copy, "retry backoff") == hits_of(repo, "retry backoff")
    forced = build_index(copy, force=True)  # --force re-encodes, whatever the store holds
    assert forced.encoded_chunks == forced.chunks


def test_vector_store_round_trip_keeps_float32_weights_and_refuses_another_encoder(tmp_path, codelsr_home):
    store = open_store("enc-a")
    vectors = {"h1": {"parse": 1.0 / 3.0, "token": 2.5}, "h2": {"lex:重试": 0.125}}
    assert store.put(vectors) == 2 and store.put(vectors) == 0 and len(store) == 2
    got = store.get(["h1", "h2", "missing"])
    assert set(got) == {"h1", "h2"}
    assert got["h1"]["parse"] == float(__import__("numpy").float32(1.0 / 3.0)) and got["h2"] == {"lex:重试": 0.125}
    store.close()
    other = store_path("enc-a")
    try:
        VectorStore(other, "enc-b")
    except Exception as exc:  # sqlite3.DatabaseError
        assert "enc-a" in str(exc)
    else:
        raise AssertionError("a store opened for another encoder")
