"""The SPLADE code model shipped inside the package: an ONNX-only folder that loads offline
without torch, whose vectors are the SPLADE formula over its own graph, and the hybrid on top."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import codelsr

MODEL = Path(codelsr.__file__).parent / "models" / "splade-code-tiny"
TEXTS = [
    "def parseHTTPResponse(raw: bytes) -> dict:\n    head, _, body = raw.partition(b'\\r\\n\\r\\n')\n    return {'head': head, 'body': body}\n",
    "class LRUCache:\n    def get(self, key):\n        return self._data.move_to_end(key)\n",
]
QUERY = "parse an http response into headers and body"
OUTPUT_IDS = json.loads((MODEL / "output_vocab.json").read_text())["token_ids"]


@pytest.fixture(scope="module")
def encoder():
    from codelsr.encoders.registry import _SHIPPED_OPTIONS
    from codelsr.encoders.splade.onnx_encoder import OnnxSpladeEncoder

    return OnnxSpladeEncoder(MODEL, **_SHIPPED_OPTIONS)


def test_the_shipped_model_is_an_onnx_only_package_small_and_documented():
    from codelsr.encoders.splade.onnx_encoder import export_state, is_onnx_only

    files = {p.name for p in MODEL.iterdir()}
    assert {"config.json", "model.onnx", "embeddings.npz", "onnx.json", "tokenizer.json", "tokenizer_config.json",
            "README.md", "output_vocab.json", "training.json"} <= files
    assert not files & {"model.safetensors", "pytorch_model.bin"}  # the weights torch reads stay out (size)
    assert is_onnx_only(MODEL) and export_state(MODEL) == "current"
    assert sum(p.stat().st_size for p in MODEL.iterdir()) <= 50 * 1024 * 1024  # issue 13's budget
    manifest = json.loads((MODEL / "onnx.json").read_text())
    assert manifest["weights"] == "int8"
    # The int8 export was checked against its float weights when written (tools.train.export_onnx).
    assert manifest["check"]["documents_min_cosine"] >= 0.99 and manifest["check"]["queries_min_cosine"] >= 0.99
    assert manifest["check"]["documents_top10_overlap"] >= 0.95
    card = (MODEL / "README.md").read_text()
    for needed in ("all-MiniLM-L6-v2", "soup", "python -m tools.train", "nDCG@10", "Apache-2.0", "MS MARCO"):
        assert needed in card, needed


def test_the_shipped_model_serves_offline_in_a_process_without_torch():
    import subprocess
    import sys

    code = f"""
import sys
for name in ("torch", "transformers", "safetensors"):
    sys.modules[name] = None  # import raises ImportError, as when the package is not installed
from codelsr.encoders import get_encoder
enc = get_encoder("splade-code-tiny")
vec = enc.encode_queries([{QUERY!r}])[0]
print(type(enc).__name__, "http" in vec, "response" in vec)
"""
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": "/usr/bin:/bin",
           "PYTHONPATH": str(Path(codelsr.__file__).parents[1])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["OnnxSpladeEncoder", "True", "True"]


def test_the_tokenizer_splits_camel_case_identifiers():
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(MODEL / "tokenizer.json"))
    assert tok.encode("parseHTTPResponse").tokens[1:-1] == ["par", "##se", "http", "response"]


def test_vectors_equal_a_direct_computation_over_the_graph(encoder):
    """max over tokens of log(1 + ReLU(head logits)), special tokens and terms outside
    output_vocab.json dropped: the SPLADE formula, computed here from the package's own files
    (the graph gives the head's input states; the head is the int8 embedding table plus a bias)."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(MODEL / "tokenizer.json"))
    tok.enable_truncation(max_length=256)
    arrays = np.load(MODEL / "embeddings.npz")
    table = arrays["word_embeddings_int8"].astype(np.float32) * arrays["word_embeddings_scale"][:, None]
    bias = (arrays["head_bias_bf16"].astype(np.uint32) << 16).view(np.float32)
    session = ort.InferenceSession(str(MODEL / "model.onnx"), providers=["CPUExecutionProvider"])
    special = {tok.token_to_id(t) for t in ("[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]")}
    keep = np.zeros(table.shape[0], dtype=bool)
    keep[OUTPUT_IDS] = True
    keep[sorted(special)] = False
    assert encoder.output_vocab_size == len(OUTPUT_IDS) < 30_522 // 2
    for text in TEXTS:
        # One text at a time: the int8 graph quantises its activations with one scale per batch,
        # so a text's vector moves slightly with its batch-mates (and their padding).
        (vec,) = encoder.encode_documents([text])
        ids = np.array([tok.encode(text).ids], dtype=np.int64)
        (hidden,) = session.run(["hidden_states"], {"inputs_embeds": table[ids], "attention_mask": np.ones_like(ids)})
        acts = np.log1p(np.maximum((hidden[0] @ table.T + bias).max(axis=0), 0.0))
        acts[~keep] = 0.0
        want = {tok.id_to_token(int(i)): float(acts[i]) for i in np.flatnonzero(acts > 0)}
        assert set(vec) == set(want)
        for term, w in want.items():
            assert math.isclose(vec[term], w, rel_tol=1e-4, abs_tol=1e-5), term


def test_the_hybrid_dot_product_is_splade_plus_weighted_bm25(encoder):
    from codelsr.encoders.base import document_frequencies
    from codelsr.encoders.hybrid import LEXICAL_PREFIX, HybridEncoder
    from codelsr.encoders.lexical import LexicalEncoder

    hybrid = HybridEncoder(encoder, lexical_weight=0.5)
    docs = hybrid.encode_documents(TEXTS)
    bound = hybrid.bind_collection(len(docs), document_frequencies(docs))
    q = bound.encode_queries([QUERY])[0]

    lex = LexicalEncoder()
    lex_docs = lex.encode_documents(TEXTS)
    lq = lex.bind_collection(len(TEXTS), document_frequencies(lex_docs)).encode_queries([QUERY])[0]
    sq = encoder.encode_queries([QUERY])[0]
    sdocs = encoder.encode_documents(TEXTS)

    def dot(a, b):
        return sum(w * b.get(t, 0.0) for t, w in a.items())

    for hd, ld, sd in zip(docs, lex_docs, sdocs):
        assert math.isclose(dot(q, hd), dot(sq, sd) + 0.5 * dot(lq, ld), rel_tol=1e-6)
    # The two term spaces never collide, and the id records the weight and both parts.
    assert all(t.startswith(LEXICAL_PREFIX) for t in q if t not in sq)
    assert "w=0.5" in hybrid.encoder_id and encoder.encoder_id in hybrid.encoder_id


def test_the_registry_serves_the_shipped_model_under_a_location_free_encoder_id(tmp_path):
    import shutil

    from codelsr.encoders import get_encoder
    from codelsr.encoders.registry import _SHIPPED_OPTIONS, SHIPPED_MODEL_DIR
    from codelsr.encoders.splade.onnx_encoder import OnnxSpladeEncoder

    shipped = get_encoder("splade-code-tiny")
    assert shipped.encoder_id.startswith("splade:splade-code-tiny@")
    assert str(SHIPPED_MODEL_DIR) not in shipped.encoder_id
    moved = tmp_path / "elsewhere"
    shutil.copytree(SHIPPED_MODEL_DIR, moved)
    # Reinstalled at another path, the same files keep the same id, so existing indexes still open.
    assert OnnxSpladeEncoder(moved, **_SHIPPED_OPTIONS).encoder_id == shipped.encoder_id
    hybrid = get_encoder("hybrid-code-tiny")
    assert shipped.encoder_id in hybrid.encoder_id and "lexical-bm25" in hybrid.encoder_id
