"""The spine end to end on real git repositories: index, search, status, reindex, bad input."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from codelsr.errors import (
    CorruptIndexError,
    EncoderMismatchError,
    InvalidQueryError,
    NotARepositoryError,
    NotIndexedError,
    UnknownEncoderError,
)
from codelsr.index import build_index, index_status, open_index
from codelsr.index import generations
from codelsr.index.manifest import IndexManifest
from codelsr.index.store import ForwardIndex
from codelsr.search import search

from conftest import git, skip_without_seismic, write


def top(repo, query, **kw):
    return search(repo, query, **kw).hits


def test_search_finds_each_language_at_the_right_file_and_lines(sample_repo):
    report = build_index(sample_repo)
    assert report.files == 5 and report.chunks >= 8 and report.encoder == "lexical"
    cases = [
        ("levenshtein edit distance between strings", "src/tokenizer.py", 21),
        ("debounce callback wait", "web/debounce.js", 3),
        ("health handler liveness probe", "server/http.go", 5),
        ("transpose matrix", "core/matrix.rs", 8),
        ("retry failed uploads exponential backoff", "docs/guide.md", 5),
        ("subscribe event listener", "web/debounce.js", 18),
    ]
    for query, path, line in cases:
        hit = top(sample_repo, query, k=3)[0]
        assert hit.path == path, query
        assert hit.start_line <= line <= hit.end_line, (query, hit)


def test_hits_carry_symbols_languages_and_snippets_within_budget(sample_repo):
    build_index(sample_repo)
    hit = top(sample_repo, "tokenize text into lower-case words", k=1, max_chars=80)[0]
    assert hit.path == "src/tokenizer.py"
    assert hit.language == "python"
    assert hit.symbol is not None and "Tokenizer" in hit.symbol
    assert len(hit.snippet) <= 80 + len("\n… (99 more lines)")
    assert hit.score > 0 and len(hit.chunk_id) == 16


def test_filters_by_glob_and_language_only_return_matching_chunks(sample_repo):
    build_index(sample_repo)
    assert {h.path for h in top(sample_repo, "token", k=10, path_glob="server/*")} == {"server/http.go"}
    assert {h.language for h in top(sample_repo, "token", k=10, language="go")} == {"go"}
    assert top(sample_repo, "token", k=10, path_glob="nowhere/*") == []


def test_paging_with_offset_continues_where_the_first_page_stopped(sample_repo):
    build_index(sample_repo)
    everything = [h.chunk_id for h in top(sample_repo, "the self data tokens listeners", k=6)]
    first = [h.chunk_id for h in top(sample_repo, "the self data tokens listeners", k=3)]
    second = [h.chunk_id for h in top(sample_repo, "the self data tokens listeners", k=3, offset=3)]
    assert first + second == everything


def test_paging_encodes_the_query_once_and_returns_fresh_vectors(sample_repo):
    build_index(sample_repo)
    reader = open_index(sample_repo)
    real = reader.encoder()
    calls: list[str] = []

    class Counting:  # a spy around the real encoder: counts, then delegates
        def __getattr__(self, name):
            return getattr(real, name)

        def encode_queries(self, texts):
            calls.extend(texts)
            return real.encode_queries(texts)

    reader._encoder = Counting()
    pages = [[h.chunk_id for h in search(sample_repo, "matrix transpose rows", k=2, offset=o).hits] for o in (0, 2, 4)]
    assert calls == ["matrix transpose rows"] and pages[0] and pages[0] != pages[1]
    # A caller changing the vector it got back does not change the next search.
    reader.query_vector("matrix transpose rows").clear()
    assert [h.chunk_id for h in search(sample_repo, "matrix transpose rows", k=2).hits] == pages[0]
    search(sample_repo, "a different question", k=2)
    assert calls == ["matrix transpose rows", "a different question"]


def test_reindexing_an_unchanged_repository_is_idempotent_and_reuses_every_vector(sample_repo):
    first = build_index(sample_repo)
    hits1 = [(h.chunk_id, h.score) for h in top(sample_repo, "matrix transpose rows", k=5)]
    second = build_index(sample_repo)
    hits2 = [(h.chunk_id, h.score) for h in top(sample_repo, "matrix transpose rows", k=5)]
    assert second.chunks == first.chunks and second.encoded_chunks == 0 and second.reused_chunks == first.chunks
    assert hits1 == hits2
    assert second.generation != first.generation


def test_an_edit_is_found_after_reindexing_and_the_reader_picks_up_the_new_generation(sample_repo):
    build_index(sample_repo)
    reader_before = open_index(sample_repo)
    write(sample_repo, "src/cache.py", "def lru_eviction_policy(capacity):\n    return capacity\n")
    report = build_index(sample_repo)
    assert report.encoded_chunks >= 1 and report.reused_chunks >= 8
    assert open_index(sample_repo) is not reader_before
    assert top(sample_repo, "lru eviction policy", k=1)[0].path == "src/cache.py"


def test_status_reports_encoder_commit_and_whether_the_tree_changed(sample_repo):
    assert index_status(sample_repo).indexed is False
    build_index(sample_repo)
    status = index_status(sample_repo)
    head = git(sample_repo, "rev-parse", "HEAD").strip()
    assert status.indexed and status.indexed_commit == head and status.encoder == "lexical"
    assert status.chunks > 0 and status.index_bytes > 0 and status.changed_since_index is False
    write(sample_repo, "src/tokenizer.py", "def changed():\n    pass\n")
    assert index_status(sample_repo).changed_since_index is True


def test_a_plain_folder_without_git_can_be_indexed(tmp_path):
    folder = tmp_path / "plain"
    write(folder, "a.py", "def compute_checksum(data):\n    return sum(data) % 256\n")
    report = build_index(folder)
    assert report.commit is None and report.chunks == 1
    assert top(folder, "checksum", k=1)[0].path == "a.py"


def test_an_empty_repository_indexes_to_nothing_and_searches_return_no_hits(tmp_path):
    repo = tmp_path / "empty"
    repo.mkdir()
    git(repo, "init", "-q")
    report = build_index(repo)
    assert report.chunks == 0 and report.files == 0
    assert top(repo, "anything", k=5) == []


def test_binary_huge_non_utf8_files_and_broken_symlinks_are_handled(sample_repo):
    from codelsr.chunking import ChunkingOptions

    write(sample_repo, "assets/logo.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00binary")
    write(sample_repo, "data/huge.py", "x = 1\n" * 50_000)
    write(sample_repo, "legacy/latin.py", "# caf\xe9\ndef gr\xfc\xdfe_sagen():\n    return 'hallo'\n".encode("latin-1"))
    os.symlink(sample_repo / "missing-target.py", sample_repo / "dangling.py")
    report = build_index(sample_repo, options=ChunkingOptions(max_file_bytes=100_000))
    assert report.skipped.get("binary") == 1
    assert report.skipped.get("too large") == 1
    assert report.skipped.get("broken symlink") == 1
    assert top(sample_repo, "sagen hallo", k=1)[0].path == "legacy/latin.py"


def test_a_path_that_is_not_a_repository_is_refused(tmp_path):
    with pytest.raises(NotARepositoryError):
        build_index(tmp_path / "does-not-exist")
    write(tmp_path, "file.txt", "hello")
    with pytest.raises(NotARepositoryError):
        build_index(tmp_path / "file.txt")


def test_an_unknown_encoder_is_refused_before_anything_is_written(sample_repo):
    with pytest.raises(UnknownEncoderError):
        build_index(sample_repo, "no-such-encoder")
    with pytest.raises(NotIndexedError, match="codelsr index"):
        open_index(sample_repo)


def test_searching_with_another_encoder_than_the_index_was_built_with_is_an_error(sample_repo, tmp_path):
    build_index(sample_repo)
    with pytest.raises(EncoderMismatchError, match="lexical"):
        search(sample_repo, "matrix", encoder=str(tmp_path))


@pytest.mark.parametrize("query, k", [("", 10), ("   ", 10), ("x" * 100_001, 10), ("matrix", 0), ("matrix", 1000)])
def test_bad_queries_get_clear_errors(sample_repo, query, k):
    build_index(sample_repo)
    with pytest.raises(InvalidQueryError):
        search(sample_repo, query, k=k)


def test_a_failed_reindex_leaves_the_previous_index_searchable(sample_repo, monkeypatch):
    build_index(sample_repo)
    before = [h.chunk_id for h in top(sample_repo, "debounce", k=3)]
    write(sample_repo, "web/new.js", "export function brandNewThing() {}\n")

    def disk_full(self, folder):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(ForwardIndex, "write", disk_full)
        with pytest.raises(OSError):
            build_index(sample_repo)
    root = open_index(sample_repo).folder.parent
    assert not list(root.glob(".tmp-*"))
    assert [h.chunk_id for h in top(sample_repo, "debounce", k=3)] == before


def test_a_truncated_index_file_names_the_file_and_the_fix(sample_repo):
    build_index(sample_repo)
    gen = generations.current_generation(open_index(sample_repo).folder.parent)
    vectors = gen / "vectors.npz"
    vectors.write_bytes(vectors.read_bytes()[:100])
    from codelsr.index import reader as reader_module

    reader_module._readers.clear()
    with pytest.raises(CorruptIndexError, match="vectors.npz.*codelsr index"):
        search(sample_repo, "matrix")


def test_the_manifest_records_encoder_version_commit_and_counts(sample_repo):
    report = build_index(sample_repo)
    manifest = IndexManifest.read(Path(report.index_dir) / report.generation)
    assert manifest.encoder_spec == "lexical" and manifest.encoder_id.startswith("lexical-bm25")
    assert manifest.git_commit == git(sample_repo, "rev-parse", "HEAD").strip()
    assert manifest.chunk_count == report.chunks and manifest.codelsr_version
    assert manifest.backend in {"exact", "seismic"}


def test_the_seismic_backend_gives_the_same_hits_as_exact_on_a_repository(sample_repo):
    skip_without_seismic()
    build_index(sample_repo, backend="exact")
    exact = [(h.chunk_id, round(h.score, 4)) for h in top(sample_repo, "matrix transpose data rows", k=5)]
    build_index(sample_repo, backend="seismic")
    assert open_index(sample_repo).manifest.backend == "seismic"
    seismic = [(h.chunk_id, round(h.score, 4)) for h in top(sample_repo, "matrix transpose data rows", k=5)]
    assert seismic == exact
