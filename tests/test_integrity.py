"""A bad file never blocks a repository, damage is never reported healthy, and every error names
the argument and says what to do (issue 14). The damage matrix is in test_fault_injection.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import filelock
import mcp
import pytest
from conftest import EVAL_EXTRA, SAMPLE_FILES, make_git_repo, write

from codelsr.chunking import ChunkingOptions, walk
from codelsr.cli import main
from codelsr.errors import CorruptIndexError, IndexBusyError
from codelsr.index import build_index, generations, index_root_for, index_status
from codelsr.index import reader as reader_module
from codelsr.server import create_server


def _loop_repo(root: Path) -> Path:
    repo = make_git_repo(root, SAMPLE_FILES)
    os.symlink("b", repo / "a")
    os.symlink("a", repo / "b")
    os.symlink("loop", repo / "src" / "loop")  # a link to itself, in a folder
    return repo


def test_a_symlink_loop_is_a_counted_skip_and_the_repository_indexes(tmp_path, capsys):
    repo = _loop_repo(tmp_path / "loops")
    assert main(["index", str(repo), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["skipped"]["symlink loop"] == 3 and report["files"] == len(SAMPLE_FILES)
    assert main(["index", str(repo)]) == 0  # a reindex meets the loops again, still fine
    out = capsys.readouterr().out
    assert "3 symlink loop" in out
    assert main(["search", "levenshtein", "--repo", str(repo)]) == 0


async def test_a_symlink_loop_over_mcp_is_listed_with_its_reason(tmp_path):
    repo = _loop_repo(tmp_path / "ws" / "loops")
    async with mcp.Client(create_server([tmp_path / "ws"]), mode="legacy") as c:
        result = await c.call_tool("index_repo", {"path": str(repo)})
    assert not result.is_error, result.content[0].text
    r = result.structured_content
    assert r["skipped"] == {"symlink loop": 3}
    assert {(s["path"], s["reason"]) for s in r["skipped_files"]} == {
        ("a", "symlink loop"), ("b", "symlink loop"), ("src/loop", "symlink loop")}


def test_a_plain_folder_with_a_folder_link_loop_and_a_self_link_indexes(tmp_path):
    folder = tmp_path / "plain"
    write(folder, "lib/ok.py", "def fine():\n    return 1\n")
    os.symlink("..", folder / "lib" / "up")  # a folder loop: never followed
    os.symlink("self", folder / "self")
    report = build_index(folder)
    assert report.files == 1 and report.skipped.get("symlink loop") == 1


def test_a_file_vanishing_between_listing_and_reading_is_a_counted_skip(tmp_path, monkeypatch):
    repo = make_git_repo(tmp_path / "repo", SAMPLE_FILES)
    real_open = open

    def open_after_deleting(path, *args, **kwargs):  # the file is really gone when it is read
        if str(path).endswith("debounce.js"):
            os.unlink(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(walk, "open", open_after_deleting, raising=False)
    report = build_index(repo)
    assert report.skipped == {"vanished": 1} and report.files == len(SAMPLE_FILES) - 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode: permission denied cannot "
                                               "be provoked for the user the tests run as")
def test_a_file_without_read_permission_is_a_counted_skip(tmp_path):
    repo = make_git_repo(tmp_path / "repo", SAMPLE_FILES)
    (repo / "docs" / "guide.md").chmod(0)
    report = build_index(repo)
    assert report.skipped == {"permission denied": 1}


# ------------------------------------------------------------------ validation that names the argument


def test_filters_that_cannot_match_name_the_argument(sample_repo, capsys):
    build_index(sample_repo)
    assert main(["search", "token", "--repo", str(sample_repo), "--lang", "pyton"]) == 1
    err = capsys.readouterr().err
    assert "unknown language 'pyton'" in err and "python" in err and "rust" in err
    assert main(["search", "token", "--repo", str(sample_repo), "--glob", "[["]) == 1
    err = capsys.readouterr().err
    assert "'[['" in err and "never closed" in err
    assert main(["search", "token", "--repo", str(sample_repo), "--glob", "src/[a-z]*.py", "--lang", "Python"]) == 0


def test_a_path_that_does_not_exist_is_never_sent_to_be_indexed(tmp_path, capsys):
    for args in (["status", str(tmp_path / "nope")], ["search", "x", "--repo", str(tmp_path / "nope")],
                 ["index", str(tmp_path / "nope")]):
        assert main(args) == 1
        err = capsys.readouterr().err
        assert "does not exist" in err and "run `codelsr index" not in err, err


async def test_mcp_argument_errors_are_plain_words(sample_repo):
    async with mcp.Client(create_server([sample_repo.parent]), mode="legacy") as c:
        await c.call_tool("index_repo", {"path": str(sample_repo)})
        bad_k = await c.call_tool("search_code", {"query": "token", "k": "many"})
        missing = await c.call_tool("search_code", {"k": 3})
        glob = await c.call_tool("search_code", {"query": "token", "path_glob": "[["})
        lang = await c.call_tool("search_code", {"query": "token", "language": "klingon"})
    texts = [r.content[0].text for r in (bad_k, missing, glob, lang)]
    assert all(r.is_error for r in (bad_k, missing, glob, lang))
    assert "argument k" in texts[0] and "'many'" in texts[0] and "validation error" not in texts[0]
    assert "argument query is required" in texts[1] and "type=" not in texts[1]
    assert "path glob '[['" in texts[2] and "unknown language 'klingon'" in texts[3]


def test_the_writer_lock_message_names_wait(sample_repo):
    build_index(sample_repo)
    with filelock.FileLock(str(index_root_for(sample_repo) / generations.LOCK)):
        with pytest.raises(IndexBusyError, match="--wait"):
            build_index(sample_repo)


def test_the_eval_suite_checks_its_data_before_any_work(tmp_path):
    pytest.importorskip("ir_measures", reason=EVAL_EXTRA)
    env = {**os.environ, "CODELSR_SHARED_DATA": str(tmp_path / "no-data"), "CODELSR_EVAL_CACHE": str(tmp_path / "c")}
    done = subprocess.run([sys.executable, "-m", "evals", "--quick", "--out", str(tmp_path / "out")], env=env,
                          capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 2
    assert "mbpp_solutions.jsonl is missing" in done.stderr and "CODELSR_SHARED_DATA" in done.stderr
    assert "nothing was run" in done.stderr and not (tmp_path / "out").exists()


# ------------------------------------------------------------------ damage and the encoder


async def test_a_server_meeting_garbage_in_current_keeps_the_index_encoder(tmp_path):
    repo = make_git_repo(tmp_path / "ws" / "repo", SAMPLE_FILES)
    server = create_server([tmp_path / "ws"], default_encoder="splade-code-tiny")
    async with mcp.Client(server, mode="legacy") as c:
        first = await c.call_tool("index_repo", {"path": str(repo), "encoder": "lexical"})
        assert first.structured_content["encoder"] == "lexical"
        (index_root_for(repo) / generations.CURRENT).write_bytes(b"\x00garbage\xff")
        reader_module.forget_open_indexes()
        status = (await c.call_tool("index_status", {})).structured_content["repositories"]
        found = await c.call_tool("search_code", {"query": "levenshtein", "repo": str(repo)})
        repaired = await c.call_tool("index_repo", {"path": str(repo)})
    assert [s["state"] for s in status] == ["damaged"] and "CURRENT" in status[0]["problems"][0]
    assert found.is_error and "CURRENT" in found.content[0].text and "not indexed" not in found.content[0].text
    assert not repaired.is_error, repaired.content[0].text
    assert repaired.structured_content["encoder"] == "lexical"  # not the server's default
    assert repaired.structured_content["reused_chunks"] == repaired.structured_content["chunks"]


def test_when_no_manifest_survives_the_encoder_is_asked_for(sample_repo, capsys):
    report = build_index(sample_repo)
    (index_root_for(sample_repo) / report.generation / "manifest.json").unlink()
    with pytest.raises(CorruptIndexError, match="--encoder"):
        build_index(sample_repo)
    assert index_status(sample_repo).state == "damaged"
    assert main(["index", str(sample_repo), "--encoder", "lexical"]) == 0
    assert main(["status", str(sample_repo)]) == 0
    assert "integrity: ok" in capsys.readouterr().out


def test_a_reindex_after_a_same_size_flip_reencodes_only_the_damaged_segment(sample_repo, monkeypatch):
    from codelsr.index import build as build_module

    # Without the shared vector store (which would give back every vector: see the next test), the
    # repair must salvage the intact segment's vectors and encode only the damaged one's chunks.
    monkeypatch.setattr(build_module, "open_store", lambda encoder_id: None)
    build_index(sample_repo)
    write(sample_repo, "src/tokenizer.py", "def replaced_tokenizer():\n    return 'new'\n")
    report = build_index(sample_repo)
    vectors = index_root_for(sample_repo) / report.generation / "vectors.npz"
    data = bytearray(vectors.read_bytes())
    data[len(data) // 2] ^= 0x10
    vectors.unlink()  # a fresh inode: the previous generation shares the main segment by hard link
    vectors.write_bytes(bytes(data))
    assert index_status(sample_repo).state == "damaged"
    repaired = build_index(sample_repo)  # no force
    assert repaired.compacted and repaired.reused_chunks == report.delta_chunks
    assert repaired.encoded_chunks == repaired.chunks - report.delta_chunks
    assert index_status(sample_repo, verify=True).state == "ok"


def test_a_repair_takes_intact_vectors_from_the_shared_store(sample_repo):
    build_index(sample_repo)
    report = build_index(sample_repo, force=True)
    vectors = index_root_for(sample_repo) / report.generation / "vectors.npz"
    data = bytearray(vectors.read_bytes())
    data[len(data) // 2] ^= 0x10
    vectors.unlink()
    vectors.write_bytes(bytes(data))
    assert index_status(sample_repo).state == "damaged"
    repaired = build_index(sample_repo)
    assert repaired.encoded_chunks == 0 and repaired.reused_chunks == repaired.chunks
    assert index_status(sample_repo, verify=True).state == "ok"


def test_status_all_lists_a_damaged_index(sample_repo, capsys):
    build_index(sample_repo)
    (index_root_for(sample_repo) / generations.CURRENT).write_text("gen-nothing\n")
    assert main(["status", "--all"]) == 1
    out = capsys.readouterr().out
    assert str(sample_repo.resolve()) in out and "DAMAGED" in out and "CURRENT" in out


def test_a_flipped_chunk_text_in_a_file_too_large_for_the_open_check_is_never_served(sample_repo, monkeypatch):
    from codelsr.index import checksums
    from codelsr.search import search

    report = build_index(sample_repo)
    monkeypatch.setattr(checksums, "QUICK_MAX_BYTES", 0)  # as for a large index: sizes only on open
    db = index_root_for(sample_repo) / report.generation / "chunks.sqlite"
    data = db.read_bytes()
    at = data.index(b"Edit distance between two strings")
    db.unlink()
    db.write_bytes(data[:at] + b"E" + b"x" + data[at + 2:])  # same size, one chunk's text changed
    reader_module.forget_open_indexes()
    assert index_status(sample_repo).state == "ok"  # the quick check cannot see it...
    with pytest.raises(CorruptIndexError, match="chunks.sqlite"):
        search(sample_repo, "levenshtein distance strings")  # ...but the hit is checked before it is served
    assert index_status(sample_repo, verify=True).state == "damaged"  # and the full check finds it
