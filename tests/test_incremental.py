"""Incremental reindexing on real git repositories: only changed files are re-chunked and
re-encoded, and after any series of edits the index answers exactly like one built from scratch."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest
from conftest import git, skip_without_seismic, write

from codelsr.chunking import ChunkingOptions, chunk_file
from codelsr.index import build, build_index, open_index
from codelsr.index import reader as reader_module
from codelsr.search import search

WORDS = ["parse", "token", "stream", "buffer", "cache", "socket", "retry", "backoff", "matrix", "vector", "index",
         "shard", "commit", "branch", "encode", "decode", "tensor", "queue", "worker", "lease", "timeout", "budget",
         "ledger", "invoice", "render", "widget"]

QUERIES = ["parse token stream", "retry backoff timeout", "matrix vector", "cache", "queue worker lease",
           "render widget", "return value", "self", "ledger invoice budget", "commit branch shard"]


def module_text(rng: random.Random, name: str, n_funcs: int) -> str:
    parts = [f'"""Module {name}."""\n\n']
    for i in range(n_funcs):
        a, b, c = rng.sample(WORDS, 3)
        parts.append(f"def {a}_{b}_{i}(value):\n    \"\"\"{a} the {b} with {c}.\"\"\"\n"
                     f"    {c} = value + {i}\n    return {c}\n\n\n")
    if rng.random() < 0.5:
        a, b = rng.sample(WORDS, 2)
        parts.append(f"class {a.title()}{b.title()}:\n    def {b}(self):\n        return self.{a}\n")
    return "".join(parts)


def make_repo(path: Path, n_files: int = 30, seed: int = 0) -> Path:
    rng = random.Random(seed)
    path.mkdir()
    git(path, "init", "-q")
    for i in range(n_files):
        write(path, f"pkg{i % 4}/mod_{i:02d}.py", module_text(rng, f"mod_{i}", rng.randint(1, 6)))
    write(path, "README.md", "# Demo\n\nParse token streams with retry and backoff.\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    return path


def snapshot(repo: Path) -> dict:
    """Everything a search can observe: chunks, hits and scores (plain and filtered)."""
    reader = open_index(repo)
    n = reader.manifest.chunk_count
    chunks = reader.chunks.by_rows(list(range(n)))
    assert len(chunks) == n == reader.forward.n_rows
    out = {"chunks": [(c.chunk_id, c.path, c.start_line, c.end_line, c.text) for _, c in sorted(chunks.items())]}
    for q in QUERIES:
        for kw in ({}, {"path_glob": "pkg1/*"}, {"language": "markdown"}):
            hits = search(repo, q, k=8, **kw).hits
            out[(q, tuple(kw.items()))] = [(h.chunk_id, h.path, h.start_line, h.end_line, h.score) for h in hits]
    return out


def from_scratch(repo: Path, home: Path, monkeypatch) -> dict:
    with monkeypatch.context() as patch:
        patch.setenv("CODELSR_HOME", str(home))
        build_index(repo, force=True)
        return snapshot(repo)


def assert_same_as_from_scratch(repo: Path, tmp_path: Path, monkeypatch, label: str):
    incremental = snapshot(repo)
    scratch = from_scratch(repo, tmp_path / f"scratch-{label}", monkeypatch)
    assert incremental["chunks"] == scratch["chunks"], label
    for key in scratch:
        assert incremental[key] == scratch[key], (label, key)


def test_a_series_of_edits_renames_deletes_and_branch_switches_matches_a_fresh_index(tmp_path, monkeypatch):
    repo = make_repo(tmp_path / "repo")
    rng = random.Random(1)
    build_index(repo)

    # commits that edit a few files
    for i in (3, 7, 11):
        write(repo, f"pkg{i % 4}/mod_{i:02d}.py", module_text(rng, f"edit_{i}", 4))
    git(repo, "commit", "-qam", "edit three files")
    report = build_index(repo)
    assert report.changed_files == 3 and report.deleted_files == 0 and not report.compacted
    assert_same_as_from_scratch(repo, tmp_path, monkeypatch, "commit")

    # rename, delete, add in one commit
    git(repo, "mv", "pkg0/mod_00.py", "pkg0/renamed.py")
    git(repo, "rm", "-q", "pkg1/mod_01.py")
    write(repo, "pkg2/new_module.py", module_text(rng, "new", 3))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "rename delete add")
    report = build_index(repo)
    assert report.changed_files == 2 and report.deleted_files == 2
    assert_same_as_from_scratch(repo, tmp_path, monkeypatch, "rename")

    # staged, unstaged and untracked edits, and an ignored file that must stay out
    write(repo, ".gitignore", "ignored.py\n")
    write(repo, "ignored.py", "def ignored_helper():\n    return 1\n")
    write(repo, "pkg3/mod_15.py", module_text(rng, "staged", 2))
    git(repo, "add", "pkg3/mod_15.py")
    write(repo, "pkg2/mod_14.py", module_text(rng, "unstaged", 2))
    write(repo, "scratch/untracked.py", module_text(rng, "untracked", 2))
    build_index(repo)
    assert "ignored.py" not in {c[1] for c in snapshot(repo)["chunks"]}
    assert_same_as_from_scratch(repo, tmp_path, monkeypatch, "worktree")

    # revert the unstaged edit: no longer in `git status`, but the index holds the edited text
    git(repo, "checkout", "--", "pkg2/mod_14.py")
    report = build_index(repo)
    assert report.changed_files == 1
    assert_same_as_from_scratch(repo, tmp_path, monkeypatch, "revert")

    # branch switches
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "worktree changes")
    git(repo, "checkout", "-qb", "feature")
    for i in range(16, 24):
        write(repo, f"pkg{i % 4}/mod_{i:02d}.py", module_text(rng, f"feature_{i}", 3))
    git(repo, "rm", "-q", "pkg0/mod_24.py")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "feature work")
    build_index(repo)
    assert_same_as_from_scratch(repo, tmp_path, monkeypatch, "feature")
    git(repo, "checkout", "-q", "main")
    build_index(repo)
    assert_same_as_from_scratch(repo, tmp_path, monkeypatch, "back-to-main")

    # rebase and reset
    write(repo, "pkg1/mod_05.py", module_text(rng, "main-side", 2))
    git(repo, "commit", "-qam", "main side")
    git(repo, "checkout", "-q", "feature")
    git(repo, "rebase", "-q", "main")
    build_index(repo)
    assert_same_as_from_scratch(repo, tmp_path, monkeypatch, "rebase")
    git(repo, "reset", "-q", "--hard", "HEAD~1")
    build_index(repo)
    assert_same_as_from_scratch(repo, tmp_path, monkeypatch, "reset")


def test_compaction_merges_the_delta_into_a_new_main_segment_with_identical_results(tmp_path, monkeypatch):
    repo = make_repo(tmp_path / "repo")
    rng = random.Random(2)
    build_index(repo)
    monkeypatch.setattr(build, "COMPACT_MIN_ROWS", 30)
    monkeypatch.setattr(build, "COMPACT_FRACTION", 0.0)
    seen_compaction = seen_delta = False
    for step in range(6):
        for i in rng.sample(range(30), 2):
            write(repo, f"pkg{i % 4}/mod_{i:02d}.py", module_text(rng, f"s{step}_{i}", rng.randint(1, 4)))
        git(repo, "commit", "-qam", f"step {step}")
        report = build_index(repo)
        seen_compaction |= report.compacted
        seen_delta |= report.delta_chunks > 0
        if report.compacted:
            assert report.delta_chunks == 0 and report.tombstones == 0
        assert_same_as_from_scratch(repo, tmp_path, monkeypatch, f"step{step}")
    assert seen_compaction and seen_delta


def test_a_one_file_commit_re_encodes_only_that_file_and_shares_the_main_segment(tmp_path):
    repo = make_repo(tmp_path / "repo")
    first = build_index(repo)
    write(repo, "pkg1/mod_09.py", "def lru_eviction_policy(capacity):\n    return capacity\n")
    git(repo, "commit", "-qam", "one file")
    second = build_index(repo)
    assert second.changed_files == 1 and second.encoded_chunks == 1
    assert second.reused_chunks == second.chunks - 1 and not second.compacted
    assert second.delta_chunks == 1 and second.tombstones > 0
    root = Path(first.index_dir)
    inode = lambda gen: os.stat(root / gen / "chunks.sqlite").st_ino
    assert inode(first.generation) == inode(second.generation)
    assert search(repo, "lru eviction policy", k=1).hits[0].path == "pkg1/mod_09.py"


def test_a_renamed_file_reencodes_its_own_chunks_only(tmp_path):
    """The context header holds the path's words, so a renamed file's headed chunks are new texts
    to the encoder (docs/performance.md); its module-level chunks (no header) and every other file
    keep their vectors."""
    repo = make_repo(tmp_path / "repo")
    first = build_index(repo)
    moved = sum(1 for c in chunk_file("pkg2/mod_02.py", (repo / "pkg2/mod_02.py").read_text()) if c.context)
    git(repo, "mv", "pkg2/mod_02.py", "pkg2/moved.py")
    git(repo, "commit", "-qm", "rename")
    report = build_index(repo)
    assert report.changed_files == 1 and report.deleted_files == 1
    assert 0 < report.encoded_chunks == moved < first.chunks


def test_renamed_files_reuse_their_vectors_without_context_headers(tmp_path):
    repo = make_repo(tmp_path / "repo")
    build_index(repo, options=ChunkingOptions(context="none"))
    git(repo, "mv", "pkg2/mod_02.py", "pkg2/moved.py")
    git(repo, "commit", "-qm", "rename")
    report = build_index(repo)
    assert report.changed_files == 1 and report.deleted_files == 1 and report.encoded_chunks == 0


def test_touching_files_without_changing_them_encodes_nothing(tmp_path):
    repo = make_repo(tmp_path / "repo")
    build_index(repo)
    for path in repo.rglob("*.py"):
        os.utime(path)
    report = build_index(repo)
    assert report.changed_files == 0 and report.encoded_chunks == 0


def test_a_plain_folder_is_updated_by_content_hashes(tmp_path, monkeypatch):
    folder = tmp_path / "plain"
    rng = random.Random(3)
    for i in range(10):
        write(folder, f"m{i}.py", module_text(rng, f"m{i}", 3))
    build_index(folder)
    write(folder, "m3.py", module_text(rng, "changed", 2))
    (folder / "m4.py").unlink()
    (folder / "m5.py").rename(folder / "m5_moved.py")
    report = build_index(folder)
    assert report.commit is None
    assert report.changed_files == 2 and report.deleted_files == 2
    assert_same_as_from_scratch(folder, tmp_path, monkeypatch, "plain")


def test_same_size_edit_within_the_same_clock_tick_is_still_seen(tmp_path):
    folder = tmp_path / "plain"
    write(folder, "a.py", "def alpha_function():\n    return 1\n")
    build_index(folder)
    stat = os.stat(folder / "a.py")
    write(folder, "a.py", "def omega_function():\n    return 1\n")
    os.utime(folder / "a.py", ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size, same mtime
    build_index(folder)
    assert search(folder, "omega", k=1).hits[0].path == "a.py"


def test_changing_the_chunking_options_or_the_encoder_rebuilds_everything(tmp_path):
    from codelsr.chunking import ChunkingOptions

    repo = make_repo(tmp_path / "repo")
    build_index(repo)
    report = build_index(repo, options=ChunkingOptions(max_chunk_lines=3, window_overlap=1))
    assert report.compacted and report.changed_files == report.files
    report = build_index(repo, force=True)
    assert report.compacted and report.encoded_chunks > 0


def test_the_seismic_main_segment_with_a_delta_finds_new_code_and_hides_deleted_code(tmp_path, monkeypatch):
    skip_without_seismic()
    repo = make_repo(tmp_path / "repo")
    build_index(repo, backend="seismic")
    write(repo, "pkg0/fresh.py", "def zebra_crossing_signal():\n    return 'walk'\n")
    git(repo, "rm", "-q", "pkg1/mod_01.py")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "add and delete")
    report = build_index(repo)
    assert report.backend == "seismic" and not report.compacted and report.tombstones > 0
    reader_module._readers.clear()
    reader = open_index(repo)
    assert reader.backend.name == "seismic+delta"
    assert search(repo, "zebra crossing signal", k=1).hits[0].path == "pkg0/fresh.py"
    for q in QUERIES:
        assert all(h.path != "pkg1/mod_01.py" for h in search(repo, q, k=20).hits)


def test_a_reindex_without_options_keeps_the_options_the_index_was_built_with(tmp_path):
    from codelsr.chunking import ChunkingOptions

    repo = make_repo(tmp_path / "repo")
    build_index(repo, options=ChunkingOptions(exclude_globs=("pkg3/*",)))
    write(repo, "pkg1/mod_01.py", "def kept_out_or_not():\n    pass\n")
    report = build_index(repo)  # what the git hooks and the MCP server call
    assert report.changed_files == 1 and not report.compacted
    assert all(not h.path.startswith("pkg3/") for h in search(repo, "cache value", k=50).hits)


def test_a_reindex_examines_only_the_files_git_or_stat_say_changed(tmp_path):
    from codelsr.chunking import ChunkingOptions
    from codelsr.index import generations
    from codelsr.index.incremental import FileTable, git_changes, scan

    repo = make_repo(tmp_path / "repo")
    report = build_index(repo)
    time.sleep(0.01)
    table = FileTable.read(generations.current_generation(Path(report.index_dir)))
    table.scanned_ns += 10 * 10**9  # as if indexed long after the files were written (not racy)
    write(repo, "pkg1/mod_05.py", "def only_this_one():\n    pass\n")
    git(repo, "commit", "-qam", "one")
    result = scan(repo, ChunkingOptions(), table, git_changes(repo, table.git_commit))
    assert result.classified == 1 and result.hashed == 1
    assert [c.file.path for c in result.changed] == ["pkg1/mod_05.py"] and result.files == report.files


def test_skipped_files_are_re_examined_when_they_change(tmp_path):
    from codelsr.chunking import ChunkingOptions

    repo = make_repo(tmp_path / "repo")
    options = ChunkingOptions(max_file_bytes=2_000)
    write(repo, "blob.py", b"\x00\x01binary")
    write(repo, "big.py", "def small_then_big():\n    pass\n")
    first = build_index(repo, options=options)
    assert first.skipped.get("binary") == 1
    write(repo, "blob.py", "def no_longer_binary():\n    pass\n")
    write(repo, "big.py", "def small_then_big():\n    pass\n" + "x = 1\n" * 1000)
    report = build_index(repo, options=options)
    assert report.skipped.get("binary") is None and report.skipped.get("too large") == 1
    assert search(repo, "no longer binary", k=1).hits[0].path == "blob.py"
    assert all(h.path != "big.py" for h in search(repo, "small then big", k=5).hits)


def test_a_reindex_without_backend_keeps_an_explicitly_chosen_backend_through_compaction(tmp_path, monkeypatch):
    skip_without_seismic()
    repo = make_repo(tmp_path / "repo")
    build_index(repo, backend="seismic")
    monkeypatch.setattr(build, "COMPACT_MIN_ROWS", 0)
    monkeypatch.setattr(build, "COMPACT_FRACTION", 0.0)
    write(repo, "pkg1/mod_01.py", "def compact_me():\n    pass\n")
    report = build_index(repo)
    assert report.compacted and report.backend == "seismic"
    report = build_index(repo, backend="auto")
    assert report.backend == "exact"
