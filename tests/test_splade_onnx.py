"""SPLADE on ONNX Runtime: same vectors and rankings as torch, no torch needed.

The shipped model is an ONNX-only package (int8, no weights for torch), so the torch/ONNX parity
checks run on a full checkpoint folder with a float export (``conftest.CHECKPOINT_MODEL``)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import codelsr
from codelsr.encoders.registry import _SHIPPED_OPTIONS, RUNTIME_ENV, SHIPPED_MODEL_DIR, SHIPPED_WINDOWS
from codelsr.encoders.splade.onnx_encoder import (
    ONNX_EMBEDDINGS_FILE,
    ONNX_GRAPH_FILE,
    ONNX_MANIFEST_FILE,
    OnnxSpladeEncoder,
    export_state,
)
from codelsr.errors import EncoderUnavailableError
from tests.conftest import CHECKPOINT_MODEL, make_git_repo

SRC = Path(codelsr.__file__).parent
REPO_ROOT = SRC.parent.parent
QUERIES = [
    "split camelCase identifiers into words", "walk a repository and skip ignored files",
    "detect the language of a file from its extension", "cut a long function into windows of lines",
    "decode bytes to text and guess the encoding", "tree-sitter parser for a language",
    "merge overlapping chunks of one file", "chunk a python file into functions and classes",
    "is this file binary", "maximum file size to index", "symbol name of a definition",
    "line numbers of a chunk",
]  # fmt: skip


def _cosine(a: dict[str, float], b: dict[str, float]) -> float:
    if not a and not b:
        return 1.0
    dot = sum(w * b.get(t, 0.0) for t, w in a.items())
    na = sum(w * w for w in a.values()) ** 0.5
    nb = sum(w * w for w in b.values()) ** 0.5
    return dot / (na * nb)


def _real_chunks() -> list[str]:
    from codelsr.chunking import chunk_file

    texts = ["", "  \n", "x", "parseHTTPResponse"]
    for path in sorted((SRC / "chunking").glob("*.py")) + sorted((SRC / "index").glob("*.py"))[:3]:
        texts += [c.text for c in chunk_file(path.name, path.read_text(encoding="utf-8"))]
    return texts


@pytest.fixture(scope="module")
def onnx_encoder() -> OnnxSpladeEncoder:
    return OnnxSpladeEncoder(CHECKPOINT_MODEL, **_SHIPPED_OPTIONS)


def test_the_shipped_model_and_the_checkpoint_have_current_exports():
    assert export_state(SHIPPED_MODEL_DIR) == "current"
    assert export_state(CHECKPOINT_MODEL) == "current"
    manifest = json.loads((CHECKPOINT_MODEL / ONNX_MANIFEST_FILE).read_text())
    assert manifest["check"]["documents_min_cosine"] >= 0.999  # a float export: torch's vectors
    assert manifest["check"]["queries_min_cosine"] >= 0.999


def test_onnx_vectors_match_torch_per_vector_and_share_the_encoder_id(onnx_encoder):
    pytest.importorskip("torch")
    from codelsr.encoders.splade import SpladeEncoder

    torch_encoder = SpladeEncoder(str(CHECKPOINT_MODEL), device="cpu", dtype="float32", **_SHIPPED_OPTIONS)
    assert onnx_encoder.encoder_id == torch_encoder.encoder_id
    texts = _real_chunks()
    assert len(texts) > 60
    for side, inputs in (("documents", texts), ("queries", QUERIES + texts[:20])):
        want = getattr(torch_encoder, f"encode_{side}")(inputs)
        got = getattr(onnx_encoder, f"encode_{side}")(inputs)
        cosines = [_cosine(a, b) for a, b in zip(want, got)]
        assert min(cosines) >= 0.999, (side, min(cosines))
        # Not only close: the same terms carry weight (bar ones within rounding of zero).
        for a, b in zip(want, got):
            assert {t for t, w in a.items() if w > 1e-3} <= set(b)
    assert onnx_encoder.encode_documents(["", "   "]) == [{}, {}]


def test_top_10_is_identical_on_a_real_repository_for_both_runtimes(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from codelsr.encoders import registry

    monkeypatch.setattr(registry, "SHIPPED_MODEL_DIR", CHECKPOINT_MODEL)  # "splade-code-tiny" with torch weights
    from codelsr.index import build_index, open_index
    from codelsr.search import search_index

    files = {f"chunking/{p.name}": p.read_text(encoding="utf-8") for p in sorted((SRC / "chunking").glob("*.py"))}
    repo = make_git_repo(tmp_path / "repo", files)
    rankings = {}
    for runtime in ("torch", "onnx"):
        monkeypatch.setenv(RUNTIME_ENV, runtime)
        monkeypatch.setenv("CODELSR_HOME", str(tmp_path / f"home-{runtime}"))
        report = build_index(repo, "splade-code-tiny", force=True)
        reader = open_index(repo)
        kind = type(reader.encoder()).__name__
        assert kind == {"torch": "SpladeEncoder", "onnx": "OnnxSpladeEncoder"}[runtime]
        rankings[runtime] = (report.encoder_id,
                             [[h.chunk_id for h in search_index(reader, q, k=10).hits] for q in QUERIES])
    assert rankings["torch"][0] == rankings["onnx"][0]
    assert sum(len(r) for r in rankings["onnx"][1]) >= 10 * len(QUERIES) // 2
    assert rankings["torch"][1] == rankings["onnx"][1]


def _run_python(code: str, env_extra: dict[str, str] | None = None, **kw) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC.parent), str(REPO_ROOT)]), **(env_extra or {})}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300, **kw)


def test_index_and_search_with_the_shipped_model_in_a_process_where_torch_cannot_be_imported(tmp_path):
    """What `pip install codelsr` without extras gives: torch and transformers absent."""
    repo = make_git_repo(tmp_path / "repo", {"net.py": "def parse_http_response(raw):\n    return raw.split(b'\\r\\n')\n",
                                             "cache.py": "class LRUCache:\n    def evict_oldest(self):\n        pass\n"})
    code = f"""
import sys, json
for name in ("torch", "transformers", "safetensors"):
    sys.modules[name] = None  # import raises ImportError, as when the package is not installed
from codelsr.cli import main
assert main(["index", {str(repo)!r}, "--encoder", "hybrid-code-tiny", "--foreground", "--json"]) == 0
assert main(["search", "parse an http response", "--repo", {str(repo)!r}, "--json", "-k", "1"]) == 0
"""
    out = _run_python(code)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout[out.stdout.index('{\n  "query"'):])
    assert result["hits"][0]["path"] == "net.py"
    assert result["encoder"] == "hybrid-code-tiny"


def test_a_search_process_imports_neither_torch_nor_transformers(tmp_path):
    repo = make_git_repo(tmp_path / "repo", {"a.py": "def add_numbers(a, b):\n    return a + b\n"})
    out = _run_python(f"from codelsr.cli import main; main(['index', {str(repo)!r}, '--encoder', 'splade-code-tiny', '--foreground'])")
    assert out.returncode == 0, out.stderr
    code = f"""
import sys
from codelsr.cli import main
rc = main(["search", "sum of two numbers", "--repo", {str(repo)!r}])
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers"))
print("HEAVY", heavy, "ORT", "onnxruntime" in sys.modules)
sys.exit(rc)
"""
    out = _run_python(code)
    assert out.returncode == 0, out.stderr
    assert "HEAVY [] ORT True" in out.stdout
    assert "a.py" in out.stdout


def _copy_checkpoint(dst: Path) -> Path:
    shutil.copytree(CHECKPOINT_MODEL, dst)
    return dst


def _checkpoint_without_export(dst: Path) -> Path:
    """The checkpoint's weights, config, tokenizer and output vocabulary, without its export."""
    dst.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "output_vocab.json"):
        shutil.copy(CHECKPOINT_MODEL / name, dst / name)
    return dst


def _run_export_tool(folder: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tools.train.export_onnx", str(folder), "--check-texts", "40", *flags],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=600)


def test_an_export_whose_weights_changed_is_stale_and_not_used(tmp_path, monkeypatch):
    from codelsr.encoders.registry import load_splade_model

    folder = _copy_checkpoint(tmp_path / "model")
    assert export_state(folder) == "current"
    config = json.loads((folder / "config.json").read_text())
    config["layer_norm_eps"] = 1e-6  # a retrained/edited model: the export no longer describes it
    (folder / "config.json").write_text(json.dumps(config))
    assert export_state(folder).startswith("stale")
    with pytest.raises(EncoderUnavailableError, match="export_onnx"):
        OnnxSpladeEncoder(folder)
    monkeypatch.setenv(RUNTIME_ENV, "onnx")
    with pytest.raises(EncoderUnavailableError, match="stale"):
        load_splade_model(str(folder))
    (folder / ONNX_GRAPH_FILE).unlink()
    assert export_state(folder).startswith("stale")
    (folder / ONNX_MANIFEST_FILE).unlink()
    assert export_state(folder) == "missing"


def test_a_missing_export_under_auto_falls_back_to_torch(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from codelsr.encoders.registry import load_splade_model
    from codelsr.encoders.splade import SpladeEncoder

    folder = _copy_checkpoint(tmp_path / "model")
    for name in (ONNX_MANIFEST_FILE, ONNX_GRAPH_FILE, ONNX_EMBEDDINGS_FILE):
        (folder / name).unlink()
    monkeypatch.delenv(RUNTIME_ENV, raising=False)
    assert isinstance(load_splade_model(str(folder)), SpladeEncoder)
    assert isinstance(load_splade_model(str(SHIPPED_MODEL_DIR)), OnnxSpladeEncoder)


@pytest.mark.slow
def test_the_export_tool_writes_a_verified_export_for_a_checkpoint_folder(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    folder = _checkpoint_without_export(tmp_path / "model")
    assert export_state(folder) == "missing"
    out = _run_export_tool(folder)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout)
    assert report["check"]["documents_min_cosine"] >= 0.999 and report["check"]["texts"] == 40
    assert export_state(folder) == "current"
    # The same numbers as the export kept with the checkpoint.
    mine = OnnxSpladeEncoder(folder, **_SHIPPED_OPTIONS).encode_documents(_real_chunks()[:30])
    kept = OnnxSpladeEncoder(CHECKPOINT_MODEL, **_SHIPPED_OPTIONS).encode_documents(_real_chunks()[:30])
    assert mine == kept


def test_split_pieces_wraps_each_window_in_the_models_special_tokens():
    from codelsr.encoders.splade.pieces import affixes, piece_cap, split_pieces

    assert affixes([101, 7, 8, 102], [7, 8]) == ([101], [102])
    assert affixes([7, 8, 2], [7, 8]) == ([], [2])
    with pytest.raises(ValueError, match="changes"):
        affixes([101, 9, 102], [7, 8])
    ids = [101, *range(1, 11), 102]  # ten word pieces
    assert split_pieces(ids, [101], [102], 6, 8) == [[101, 1, 2, 3, 4, 102], [101, 5, 6, 7, 8, 102], [101, 9, 10, 102]]
    assert split_pieces(ids, [101], [102], 6, 2) == [[101, 1, 2, 3, 4, 102], [101, 5, 6, 7, 8, 102]]
    assert split_pieces(ids, [101], [102], 12, 8) == [ids]  # fits one window: as it is
    assert piece_cap(6, 2, 3) == 14


def test_doc_pieces_reads_a_long_document_whole_on_both_runtimes(onnx_encoder):
    """A document past the window gains the terms of its later part; one that fits is unchanged;
    both runtimes agree, and the option is part of the encoder id (another index)."""
    long_doc = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")[:9000]
    tail_only = "Seismic inverted index quantisation: summaries of postings blocks for pruning."
    doc = long_doc + "\n\n" + tail_only
    pieced = OnnxSpladeEncoder(CHECKPOINT_MODEL, **_SHIPPED_OPTIONS, doc_pieces=16)
    assert pieced.encoder_id == onnx_encoder.encoder_id + ":dp16"
    short = [t for t in _real_chunks() if 40 < len(t) < 500][:8]  # well inside 256 word pieces
    assert len(short) == 8
    assert pieced.encode_documents(short) == onnx_encoder.encode_documents(short)
    (whole,), (first,) = pieced.encode_documents([doc]), onnx_encoder.encode_documents([doc])
    (tail,) = onnx_encoder.encode_documents([tail_only])
    assert all(whole.get(t, 0.0) >= w - 1e-5 for t, w in first.items())  # max over more windows
    new_terms = set(whole) - set(first)
    assert {t for t, w in tail.items() if w > 0.5} & new_terms  # the tail is read at last
    pytest.importorskip("torch")
    from codelsr.encoders.splade import SpladeEncoder

    torch_pieced = SpladeEncoder(str(CHECKPOINT_MODEL), device="cpu", dtype="float32", **_SHIPPED_OPTIONS,
                                 doc_pieces=16)
    assert torch_pieced.encoder_id == pieced.encoder_id
    assert _cosine(torch_pieced.encode_documents([doc])[0], whole) >= 0.999
    with pytest.raises(ValueError, match="doc_pieces"):
        OnnxSpladeEncoder(CHECKPOINT_MODEL, **_SHIPPED_OPTIONS, doc_pieces=0)


def test_int8_rows_round_trip_within_half_a_step_and_read_back_as_float32(tmp_path):
    import numpy as np

    from codelsr.encoders.splade.onnx_encoder import _float32
    from tools.train.export_onnx import int8_rows

    rng = np.random.default_rng(0)
    values = rng.normal(size=(50, 16)).astype(np.float32)
    values[3] = 0.0  # an all-zero row must not divide by zero
    quantised, scale = int8_rows(values)
    assert quantised.dtype == np.int8 and scale.shape == (50,)
    np.savez(tmp_path / "a.npz", w_int8=quantised, w_scale=scale)
    back = _float32(np.load(tmp_path / "a.npz"), "w")
    assert back.dtype == np.float32 and back.shape == values.shape
    assert np.all(np.abs(back - values) <= scale[:, None] / 2 + 1e-7)
    assert np.all(back[3] == 0.0)


@pytest.mark.slow
def test_an_int8_export_is_smaller_close_to_float_and_has_its_own_encoder_id(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from codelsr.encoders.splade import SpladeEncoder
    from codelsr.encoders.splade.onnx_encoder import export_weights

    folder = _checkpoint_without_export(tmp_path / "model")
    out = _run_export_tool(folder, "--int8")
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout)
    assert report["weights"] == "int8" and export_weights(folder) == "int8" and export_weights(CHECKPOINT_MODEL) == "float"
    assert export_state(folder) == "current"
    for name in (ONNX_GRAPH_FILE, ONNX_EMBEDDINGS_FILE):
        assert (folder / name).stat().st_size < 0.6 * (CHECKPOINT_MODEL / name).stat().st_size, name
    int8 = OnnxSpladeEncoder(folder, **_SHIPPED_OPTIONS)
    floats = OnnxSpladeEncoder(CHECKPOINT_MODEL, **_SHIPPED_OPTIONS)
    torch_same_folder = SpladeEncoder(str(folder), device="cpu", dtype="float32", **_SHIPPED_OPTIONS)
    # Other vectors, so another id than both the float export and torch reading the same folder.
    assert int8.encoder_id != floats.encoder_id and int8.encoder_id != torch_same_folder.encoder_id
    assert int8.settings()["weights"] == "int8"
    texts = _real_chunks()
    docs = {"int8": int8.encode_documents(texts), "float": floats.encode_documents(texts)}
    for got, ref in zip(docs["int8"], docs["float"]):
        assert _cosine(got, ref) >= 0.97

    def best(which: str, enc: OnnxSpladeEncoder, query: str) -> int:
        q = enc.encode_queries([query])[0]
        return max(range(len(texts)), key=lambda i: sum(w * docs[which][i].get(t, 0.0) for t, w in q.items()))

    # The same best chunk for (nearly) every question.
    agree = sum(best("int8", int8, q) == best("float", floats, q) for q in QUERIES)
    assert agree >= len(QUERIES) - 2, agree


def _package(folder: Path, out: Path) -> dict:
    from tools.train.package_onnx import package

    return package(folder, out)


def test_an_onnx_only_package_has_no_weights_and_serves_the_same_vectors_under_the_same_id(tmp_path):
    from codelsr.encoders.registry import load_splade_model

    out = tmp_path / "pkg" / "model"
    manifest = _package(CHECKPOINT_MODEL, out)
    assert manifest["onnx_only"] and export_state(out) == "current"
    assert not [p for p in out.iterdir() if p.suffix in (".safetensors", ".bin", ".pt")]
    size = sum(p.stat().st_size for p in out.iterdir())
    assert size < 0.6 * sum(p.stat().st_size for p in CHECKPOINT_MODEL.iterdir() if p.is_file())
    assert [p.name for p in out.parent.iterdir()] == ["model"]  # the staging folder is gone
    packaged = load_splade_model(str(out), **_SHIPPED_OPTIONS)
    shipped = load_splade_model(str(CHECKPOINT_MODEL), **_SHIPPED_OPTIONS)
    assert isinstance(packaged, OnnxSpladeEncoder)
    assert packaged.encoder_id == shipped.encoder_id  # indexes built with either stay valid
    assert packaged.encode_queries(QUERIES) == shipped.encode_queries(QUERIES)
    chunks = _real_chunks()[:20]
    assert packaged.encode_documents(chunks) == shipped.encode_documents(chunks)
    # What a package without torch runs: load and encode with torch, transformers and safetensors absent.
    code = f"""
import sys
for name in ("torch", "transformers", "safetensors"):
    sys.modules[name] = None
from codelsr.encoders.registry import load_splade_model
enc = load_splade_model({str(out)!r}, max_length_query=64, max_length_doc=256)
print("TERMS", len(enc.encode_queries(["parse an http response"])[0]))
"""
    run = _run_python(code)
    assert run.returncode == 0, run.stderr
    assert int(run.stdout.split("TERMS")[1]) > 0


def test_an_onnx_only_folder_that_gained_weights_or_was_damaged_is_stale_and_torch_is_refused(tmp_path, monkeypatch):
    from codelsr.encoders.registry import load_splade_model

    out = tmp_path / "model"
    _package(CHECKPOINT_MODEL, out)
    shutil.copy(CHECKPOINT_MODEL / "model.safetensors", out / "model.safetensors")
    assert "weight files (model.safetensors)" in export_state(out)
    with pytest.raises(EncoderUnavailableError, match="no usable ONNX export"):
        OnnxSpladeEncoder(out)
    (out / "model.safetensors").unlink()
    assert export_state(out) == "current"
    data = bytearray((out / ONNX_EMBEDDINGS_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the embedding table
    (out / ONNX_EMBEDDINGS_FILE).write_bytes(bytes(data))
    assert export_state(out).startswith("stale: a file changed since the folder was packaged")
    data[len(data) // 2] ^= 0xFF
    (out / ONNX_EMBEDDINGS_FILE).write_bytes(bytes(data))
    assert export_state(out) == "current"
    monkeypatch.setenv(RUNTIME_ENV, "torch")
    with pytest.raises(EncoderUnavailableError, match="ships only an ONNX export"):
        load_splade_model(str(out))


def test_the_package_tool_refuses_a_folder_without_a_current_export_and_an_existing_destination(tmp_path):
    bare = _checkpoint_without_export(tmp_path / "bare")
    with pytest.raises(SystemExit, match="no current ONNX export"):
        _package(bare, tmp_path / "a")
    taken = tmp_path / "taken"
    taken.mkdir()
    with pytest.raises(SystemExit, match="exists"):
        _package(CHECKPOINT_MODEL, taken)
    assert not (tmp_path / "a").exists() and list(taken.iterdir()) == []


@pytest.mark.slow
def test_a_document_bias_in_config_densifies_documents_only_on_both_runtimes_under_its_own_id(tmp_path):
    pytest.importorskip("torch")
    from codelsr.encoders.splade import SpladeEncoder

    folder = _checkpoint_without_export(tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    config["splade_document_bias"] = 1.0
    (folder / "config.json").write_text(json.dumps(config))
    run = _run_export_tool(folder)  # its check compares torch and ONNX Runtime, documents shifted
    assert run.returncode == 0, run.stderr
    chunks = _real_chunks()[:30]
    shifted = {"torch": SpladeEncoder(str(folder), device="cpu", dtype="float32", **SHIPPED_WINDOWS),
               "onnx": OnnxSpladeEncoder(folder, **SHIPPED_WINDOWS)}
    plain = SpladeEncoder(str(CHECKPOINT_MODEL), device="cpu", dtype="float32", **SHIPPED_WINDOWS)
    plain_docs = plain.encode_documents(chunks)
    for runtime, enc in shifted.items():
        assert enc.document_bias == 1.0 and enc.encoder_id.endswith(":db1")
        assert enc.encoder_id.split("@")[1] != plain.encoder_id.split("@")[1]
        docs = enc.encode_documents(chunks)
        # Every term the plain model keeps is kept, and more are added (the cut-off moved down).
        assert all(set(p) <= set(d) for p, d in zip(plain_docs, docs)), runtime
        assert sum(map(len, docs)) > 1.3 * sum(map(len, plain_docs)), runtime
        queries = enc.encode_queries(QUERIES)
        for got, want in zip(queries, plain.encode_queries(QUERIES)):
            assert set(got) == set(want) and _cosine(got, want) > 0.9999, runtime
    for a, b in zip(shifted["torch"].encode_documents(chunks), shifted["onnx"].encode_documents(chunks)):
        assert _cosine(a, b) > 0.999


def test_a_document_bias_that_is_not_a_number_is_refused(tmp_path):
    pytest.importorskip("torch")
    from codelsr.encoders.splade import SpladeEncoder
    from codelsr.encoders.splade.checkpoint import document_bias

    folder = _checkpoint_without_export(tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    config["splade_document_bias"] = "1.0"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(EncoderUnavailableError, match="splade_document_bias must be a finite number, not '1.0'"):
        SpladeEncoder(str(folder), device="cpu")
    assert document_bias({}) == 0.0 and document_bias({"splade_document_bias": -0.5}) == -0.5
    with pytest.raises(EncoderUnavailableError, match="finite"):
        document_bias({"splade_document_bias": float("nan")})
