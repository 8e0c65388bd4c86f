"""Chunk windows follow the encoder: a SPLADE encoder reads only its first ``max_length_doc``
tokens, so its chunks are cut to about what those hold; BM25 reads everything, so its chunks stay
whole longer. The window is recorded in the manifest, and a reindex keeps or re-cuts it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import write

from codelsr.chunking import DEFAULT_WINDOW_LINES, ChunkingOptions, chunk_file
from codelsr.encoders import get_encoder, window_lines
from codelsr.encoders.base import LEXICAL_WINDOW_LINES, lines_read
from codelsr.index import build_index, open_index
from codelsr.index.build import chunking_options_of
from codelsr.index.manifest import IndexManifest

LONG_FUNCTION = "def reconcile_ledger(entries):\n" + "".join(
    f"    total_{i} = entries[{i}] * {i} + len(entries)\n" for i in range(100)) + "    return total_0\n"


def spans(chunks) -> list[tuple[int, int]]:
    return [(c.start_line, c.end_line) for c in chunks if c.symbol == "reconcile_ledger"]


def test_each_encoder_states_its_window():
    assert window_lines(get_encoder("lexical")) == LEXICAL_WINDOW_LINES
    shipped = get_encoder("splade-code-tiny")
    assert shipped.max_length_doc == 256
    assert window_lines(shipped) == lines_read(256) == 25
    assert window_lines(get_encoder("hybrid-code-tiny")) == 25  # its SPLADE half stops reading first
    assert window_lines(object()) is None  # an encoder that says nothing: the chunker's default


def test_chunk_file_cuts_to_the_window_it_is_given_unless_the_options_set_one():
    assert spans(chunk_file("a.py", LONG_FUNCTION)) == [(1, 80), (71, 102)]  # DEFAULT_WINDOW_LINES
    assert DEFAULT_WINDOW_LINES == 80
    assert spans(chunk_file("a.py", LONG_FUNCTION, window_lines=120)) == [(1, 102)]
    windows = spans(chunk_file("a.py", LONG_FUNCTION, window_lines=25))
    assert windows[0] == (1, 25) and windows[-1][1] == 102
    assert all(end - start + 1 <= 25 + 5 for start, end in windows)  # min_chunk_lines may fold a sliver in
    fixed = ChunkingOptions(max_chunk_lines=50)
    assert spans(chunk_file("a.py", LONG_FUNCTION, options=fixed, window_lines=25)) == [(1, 50), (41, 90), (81, 102)]
    with pytest.raises(ValueError, match="window_overlap"):
        ChunkingOptions(window_overlap=20)  # must stay below the shortest window an encoder may ask for


def _chunk_spans(repo: Path) -> list[tuple[int, int]]:
    reader = open_index(repo)
    try:
        chunks = reader.chunks.by_rows(list(range(reader.manifest.chunk_count)))
        return sorted((c.start_line, c.end_line) for c in chunks.values() if c.symbol == "reconcile_ledger")
    finally:
        reader.close()


def test_an_index_is_cut_to_its_encoders_window_and_records_it(tmp_path):
    repo = tmp_path / "repo"
    write(repo, "ledger.py", LONG_FUNCTION)
    build_index(repo, "lexical")
    assert _chunk_spans(repo) == [(1, 102)]
    manifest = open_index(repo).manifest
    assert manifest.chunking["window_lines"] == LEXICAL_WINDOW_LINES
    assert manifest.chunking["max_chunk_lines"] is None

    build_index(repo, "hybrid-code-tiny")
    cut = _chunk_spans(repo)
    assert len(cut) >= 4 and all(end - start + 1 <= 30 for start, end in cut)
    assert open_index(repo).manifest.chunking["window_lines"] == 25

    # A reindex with the same encoder keeps the chunks (nothing re-chunked, nothing re-encoded).
    report = build_index(repo)
    assert report.changed_files == 0 and report.encoded_chunks == 0
    assert _chunk_spans(repo) == cut


def test_a_manifest_from_before_encoder_windows_reads_as_the_encoders_window():
    def manifest(chunking: dict) -> IndexManifest:
        return IndexManifest.model_construct(encoder_spec="lexical", chunking=chunking)

    legacy = {"max_chunk_lines": 80, "window_overlap": 10, "context": "path+symbol", "context_rules": 2}
    assert chunking_options_of(manifest(legacy)).max_chunk_lines is None
    chosen = {**legacy, "window_lines": 80}  # 80 set by the user: kept
    assert chunking_options_of(manifest(chosen)).max_chunk_lines == 80


def test_prose_is_never_cut_finer_than_the_default_window():
    page = "".join(f"Paragraph {i} of the guide, about proxies and timeouts.\n" for i in range(200))

    def spans_of(path: str, lines: int) -> list[tuple[int, int]]:
        return [(c.start_line, c.end_line) for c in chunk_file(path, page, window_lines=lines)]

    assert spans_of("docs/guide.txt", 25)[0] == (1, DEFAULT_WINDOW_LINES)  # a SPLADE encoder's window
    assert spans_of("docs/guide.rst", 25)[0] == (1, DEFAULT_WINDOW_LINES)
    assert spans_of("docs/guide.txt", 120)[0] == (1, 120)  # longer windows are kept
    assert spans_of("notes.py", 25)[0] == (1, 25)  # code is cut to the encoder's window
    assert ChunkingOptions(max_chunk_lines=30).window_for(25, prose=True) == 30  # a window set by hand wins


def test_the_cli_sets_the_window_and_status_shows_it(tmp_path, capsys):
    from codelsr.cli import main

    repo = tmp_path / "repo"
    write(repo, "ledger.py", LONG_FUNCTION)
    assert main(["index", str(repo), "--max-chunk-lines", "40", "--json"]) == 0
    assert _chunk_spans(repo) == [(1, 40), (31, 70), (61, 102)]
    capsys.readouterr()
    assert main(["status", str(repo), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["window_lines"] == 40
    assert main(["status", str(repo)]) == 0
    assert "windows 40 lines" in capsys.readouterr().out
    with pytest.raises(SystemExit) as refused:
        main(["index", str(repo), "--max-chunk-lines", "5"])
    assert refused.value.code == 2
    assert "overlap by 10 lines" in capsys.readouterr().err
