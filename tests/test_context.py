"""Context headers (issue 18): what a chunk says about itself, encoded in front of its text.

The header (path words, qualified symbol) must reach the encoder, be covered by the content hash
(so no cached vector is reused for another header), be recorded in the manifest, come back
identically when a reader rebuilds it from stored fields, and show in ``explain`` as a match
through the path or the symbol rather than a line of the file.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from codelsr.chunking import ChunkingOptions, chunk_file
from codelsr.chunking.context import (
    NONE,
    PATH_SYMBOL,
    RULES_VERSION,
    check_scheme,
    context_header,
    header_parts,
    path_words,
)
from codelsr.cli import main as cli_main
from codelsr.errors import CorruptIndexError
from codelsr.explain import explain
from codelsr.index import build_index, index_status, open_index
from codelsr.index import build as build_module
from codelsr.index import reader as reader_module
from codelsr.index.manifest import IndexManifest
from codelsr.index.reader import check_context_rules
from codelsr.index.store import ChunkTable
from codelsr.search import search

from conftest import make_git_repo

SESSIONS = '''"""HTTP things."""

import os


class Session:
    """Keeps cookies."""

    def request(self, method, url):
        return send(method, url)


def merge_setting(a, b):
    return a or b
'''

GUIDE = """# Guide

Intro.

## Install

Run pip.
"""

NONE_OPTIONS = ChunkingOptions(context=NONE)


def _by_symbol(chunks):
    return {c.symbol: c for c in chunks}


def test_a_method_is_headed_by_its_path_words_and_qualified_name():
    chunks = _by_symbol(chunk_file("requests/sessions.py", SESSIONS))
    assert chunks["Session.request"].context == "requests sessions Session.request"
    assert chunks["merge_setting"].context == "requests sessions merge_setting"
    assert chunks["Session"].context == "requests sessions Session"
    assert chunks[None].kind == "module" and chunks[None].context == ""  # imports: the units carry the path
    method = chunks["Session.request"]
    assert method.encoded_text == "requests sessions Session.request\n" + method.text
    assert method.text.startswith("    def request")  # the stored text stays the file's lines


def test_a_markdown_section_is_headed_by_its_heading_path():
    chunks = _by_symbol(chunk_file("docs/user-guide.md", GUIDE))
    assert chunks["Guide > Install"].kind == "section"
    assert chunks["Guide > Install"].context == "docs user guide Guide > Install"
    assert chunks["Guide"].context == "docs user guide Guide"


@pytest.mark.parametrize("path, words", [
    ("requests/sessions.py", ["requests", "sessions"]),
    ("src/rich/_log_render.py", ["src", "rich", "_log_render"]),
    ("pkg/__init__.py", ["pkg"]),
    ("Makefile", ["Makefile"]),
    ("a/b.test.ts", ["a", "b"]),
    (".github/workflows/ci.yml", ["github", "workflows", "ci"]),
    ("docs/000/00012.py", ["docs"]),
    ("blog/2024/01/v2-notes.md", ["blog", "v2", "notes"]),
    ("migrations/0012_auto.py", ["migrations", "0012_auto"]),
])
def test_path_words_keep_folders_and_stem_and_drop_extensions(path, words):
    assert path_words(path) == words


def test_scheme_none_gives_no_header_and_the_old_text_hash():
    for c in chunk_file("requests/sessions.py", SESSIONS, options=NONE_OPTIONS):
        assert c.context == "" and c.encoded_text == c.text
        assert c.content_hash == hashlib.sha1(c.text.encode()).hexdigest()
    assert context_header(NONE, "a/b.py", "X.y", "method") == ""
    assert header_parts(NONE, "a/b.py", "X.y", "method") == {}


def test_a_file_without_a_grammar_is_headed_by_its_path():
    (window,) = chunk_file(".github/workflows/ci.yml", "on: push\njobs:\n  test: {}\n")
    assert window.kind == "window" and window.context == "github workflows ci"


def test_the_hash_covers_the_header_so_a_rename_changes_it():
    """Same text, other file: another header, so another hash (and no reused vector)."""
    here = _by_symbol(chunk_file("requests/sessions.py", SESSIONS))["merge_setting"]
    there = _by_symbol(chunk_file("requests/utils.py", SESSIONS))["merge_setting"]
    assert here.text == there.text and here.content_hash != there.content_hash
    plain_here = _by_symbol(chunk_file("requests/sessions.py", SESSIONS, options=NONE_OPTIONS))["merge_setting"]
    plain_there = _by_symbol(chunk_file("requests/utils.py", SESSIONS, options=NONE_OPTIONS))["merge_setting"]
    assert plain_here.content_hash == plain_there.content_hash
    assert plain_here.content_hash != here.content_hash


def test_unknown_schemes_are_refused():
    with pytest.raises(ValueError, match="path\\+symbol"):
        ChunkingOptions(context="path")
    assert check_scheme(PATH_SYMBOL) == PATH_SYMBOL


@pytest.fixture
def requests_repo(tmp_path):
    return make_git_repo(tmp_path / "repo", {"requests/sessions.py": SESSIONS, "docs/guide.md": GUIDE})


def test_the_manifest_records_the_scheme_and_status_shows_it(requests_repo):
    build_index(requests_repo)
    reader = open_index(requests_repo)
    assert reader.manifest.chunking["context"] == PATH_SYMBOL and reader.manifest.context_scheme == PATH_SYMBOL
    assert index_status(requests_repo).context == PATH_SYMBOL
    build_index(requests_repo, options=NONE_OPTIONS)
    assert open_index(requests_repo).manifest.context_scheme == NONE
    assert index_status(requests_repo).context == NONE


def test_a_manifest_written_before_headers_reads_as_scheme_none(requests_repo):
    build_index(requests_repo)
    raw = json.loads((open_index(requests_repo).folder / "manifest.json").read_text())
    del raw["chunking"]["context"]
    assert IndexManifest.model_validate(raw).context_scheme == NONE


def test_the_header_reaches_the_encoder_a_path_word_finds_the_file_only_with_it(requests_repo):
    """``sessions`` is in no line of the file: only the header can match it."""
    build_index(requests_repo)
    hits = search(requests_repo, "sessions").hits
    assert hits and {h.path for h in hits} == {"requests/sessions.py"}
    build_index(requests_repo, options=NONE_OPTIONS)
    assert search(requests_repo, "sessions").hits == []


def test_a_scheme_change_rechunks_and_reencodes_every_file(requests_repo):
    first = build_index(requests_repo)
    assert first.encoded_chunks == first.chunks
    again = build_index(requests_repo)
    assert again.encoded_chunks == 0 and again.changed_files == 0
    plain = build_index(requests_repo, options=NONE_OPTIONS)
    assert plain.changed_files == plain.files and plain.compacted
    headed = sum(1 for rel in ("requests/sessions.py", "docs/guide.md")
                 for c in chunk_file(rel, (requests_repo / rel).read_text()) if c.context)
    assert plain.encoded_chunks == headed > 0  # no vector of a headed chunk serves a plain one
    kept = build_index(requests_repo)  # no options: the index keeps its scheme (a hook's reindex)
    assert kept.changed_files == 0 and open_index(requests_repo).manifest.context_scheme == NONE
    back = build_index(requests_repo, options=ChunkingOptions())  # every file re-chunked, vectors reused by hash
    assert back.changed_files == back.files and back.encoded_chunks == 0


def test_chunks_read_back_carry_their_header_and_a_wrong_scheme_is_caught(requests_repo):
    build_index(requests_repo)
    reader = open_index(requests_repo)
    hit = search(requests_repo, "request url method").hits[0]
    stored = reader.chunks.by_chunk_id(hit.chunk_id)
    assert stored.chunk.context == "requests sessions Session.request"
    # Rebuilt under another scheme, the stored chunk ids no longer match: damage, not a wrong hit.
    wrong = ChunkTable(reader.folder, reader.layout, NONE)
    with pytest.raises(CorruptIndexError, match="chunk id"):
        wrong.by_rows([stored.row])


def test_explain_marks_terms_matched_only_through_the_header(requests_repo):
    build_index(requests_repo)
    query = "sessions Session request url"
    hit = search(requests_repo, query).hits[0]
    assert hit.symbol == "Session.request"
    e = explain(requests_repo, query, hit.chunk_id, max_terms=None)
    terms = {t.term: t for t in e.terms}
    assert terms["sessions"].via == "path" and terms["sessions"].lines == [] and terms["sessions"].in_chunk
    assert terms["sessions"].kind == "literal"
    assert terms["url"].via == "text" and terms["url"].lines == [hit.start_line, hit.start_line + 1]
    assert "sessions (via path)" in e.summary
    assert sum(t.contribution for t in e.terms) == pytest.approx(hit.score, rel=1e-6)


def test_explain_marks_a_class_name_matched_through_the_symbol(requests_repo):
    build_index(requests_repo)
    hit = next(h for h in search(requests_repo, "session send", k=10).hits if h.symbol == "Session.request")
    e = explain(requests_repo, "session send", hit.chunk_id, max_terms=None)
    assert {t.term: t.via for t in e.terms}["session"] == "symbol"


def test_cli_context_switch_and_status(requests_repo, capsys):
    assert cli_main(["index", str(requests_repo), "--context", "none"]) == 0
    assert open_index(requests_repo).manifest.context_scheme == NONE
    capsys.readouterr()
    assert cli_main(["status", str(requests_repo)]) == 0
    assert "context none" in capsys.readouterr().out
    assert cli_main(["index", str(requests_repo)]) == 0
    assert open_index(requests_repo).manifest.context_scheme == PATH_SYMBOL


def test_the_eval_repo_system_can_name_a_scheme():
    pytest.importorskip("ir_measures", reason="the eval extra")
    from evals.systems import make_system

    before = make_system("repo@none:lexical")
    assert before.name == "repo@none:lexical" and before.context == NONE and before.encoder == "lexical"
    product = make_system("repo:hybrid-code-tiny")
    assert product.name == "repo:hybrid-code-tiny" and product.context is None
    library = make_system("codelsr@none:hybrid-code-tiny")
    assert library.name == "codelsr@none:hybrid-code-tiny" and library.context == NONE
    assert make_system("codelsr:lexical").context is None


def test_chunks_made_by_other_header_rules_are_rechunked_not_kept(requests_repo):
    """A codelsr whose header rules differ (``RULES_VERSION``) must not keep the old rows: their
    ids hold the old headers. Readers refuse such an index with a hint; the next build re-chunks."""
    build_index(requests_repo)
    folder = open_index(requests_repo).folder
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["chunking"]["context_rules"] == RULES_VERSION
    older = IndexManifest.model_validate(manifest | {"chunking": manifest["chunking"] | {"context_rules": 0}})
    with pytest.raises(CorruptIndexError, match="context header rules 0"):
        check_context_rules(older, requests_repo)
    check_context_rules(older.model_copy(update={"chunking": older.chunking | {"context": NONE}}), requests_repo)


def test_a_build_after_the_header_rules_change_rechunks_every_file(requests_repo, monkeypatch):
    first = build_index(requests_repo)
    monkeypatch.setattr(build_module, "CONTEXT_RULES", RULES_VERSION + 1)
    monkeypatch.setattr(reader_module, "CONTEXT_RULES", RULES_VERSION + 1)
    with pytest.raises(CorruptIndexError, match="context header rules"):
        search(requests_repo, "request")
    report = build_index(requests_repo)
    assert report.changed_files == report.files == first.files
    assert open_index(requests_repo).manifest.context_rules == RULES_VERSION + 1
    assert search(requests_repo, "request url").hits
