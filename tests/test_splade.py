"""SpladeEncoder on tiny, randomly initialised checkpoints of the real architecture classes.

The models are saved with ``save_pretrained`` and loaded back through ``SpladeEncoder(path)``,
the same code path a user hits with ``naver/splade-code-06B`` or ``naver/splade-v3``.
"""

from __future__ import annotations

import inspect
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import SPLADE_EXTRA

torch = pytest.importorskip("torch", reason=SPLADE_EXTRA)
transformers = pytest.importorskip("transformers", reason=SPLADE_EXTRA)
tokenizers = pytest.importorskip("tokenizers", reason=SPLADE_EXTRA)

from codelsr.encoders.base import SparseEncoder, prune_top_k  # noqa: E402
from codelsr.errors import EncoderUnavailableError  # noqa: E402

torch.set_num_threads(1)
# peft calls a transformers API that 5.x deprecates; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")

CODE = [
    "def add(a, b):\n    return a + b",
    "class Parser:\n    def parse(self, text):\n        return [tok for tok in text.split()]",
    "for i in range(10): print(i)",
    "import os\nos.path.join(root, name)",
    "async def fetch(url): return await client.get(url)",
]
BERT_WORDS = (
    "def return class self import for in range print async await get add parse text split "
    "os path join root name url client fetch a b i tok parser the of to and is ( ) : . , = + [ ] "
    "##s ##er ##ing ##ed 10 0 1"
).split()
TEXTS = [
    "def add(a, b): return a + b",
    "print(i)",
    "class Parser: def parse(self, text): return text",
]


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *BERT_WORDS]
    (d / "vocab.txt").write_text("\n".join(vocab) + "\n")
    if "vocab" in inspect.signature(transformers.BertTokenizerFast.__init__).parameters:
        tok = transformers.BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)})  # 5.x
    else:  # pragma: no cover - transformers 4.x
        tok = transformers.BertTokenizerFast(vocab_file=str(d / "vocab.txt"))
    assert "[UNK]" not in tok.tokenize(" ".join(BERT_WORDS[:10]))
    tok.save_pretrained(str(d))
    torch.manual_seed(0)
    cfg = transformers.BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128, initializer_range=0.2,
    )  # fmt: skip
    transformers.BertForMaskedLM(cfg).save_pretrained(str(d))
    return d


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("tiny-qwen3")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=330,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(CODE * 20, trainer)
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=raw, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
        padding_side="left",
    )  # fmt: skip
    tok.save_pretrained(str(d))
    torch.manual_seed(1)
    cfg = transformers.Qwen3Config(
        vocab_size=len(tok) + 6,  # like Qwen3: embedding rows past the tokenizer
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, max_position_embeddings=256, tie_word_embeddings=True,
        initializer_range=0.2, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
    )  # fmt: skip
    transformers.Qwen3ForCausalLM(cfg).save_pretrained(str(d))
    return d


@pytest.fixture(scope="module")
def bert_enc(bert_dir):
    from codelsr.encoders.splade import SpladeEncoder

    return SpladeEncoder(str(bert_dir), device="cpu", batch_size=2)


@pytest.fixture(scope="module")
def qwen_enc(qwen_dir):
    from codelsr.encoders.splade import SpladeEncoder

    return SpladeEncoder(str(qwen_dir), device="cpu", batch_size=2)


@pytest.fixture(scope="module")
def lora_dir(qwen_dir, tmp_path_factory) -> Path:
    peft = pytest.importorskip("peft", reason=SPLADE_EXTRA)
    d = tmp_path_factory.mktemp("tiny-qwen3-lora")
    base = transformers.AutoModelForCausalLM.from_pretrained(str(qwen_dir))
    torch.manual_seed(2)
    # init_lora_weights=False: random A *and* B, so the adapter really changes the model.
    cfg = peft.LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    peft.get_peft_model(base, cfg).save_pretrained(str(d))
    return d


# ---------------------------------------------------------------- reference


def reference_vectors(logits, attention_mask, tokenizer) -> list[dict[str, float]]:
    """The SPLADE definition, applied naively: max over real tokens of log1p(relu(logits))."""
    acts = torch.log1p(torch.relu(logits.float())) * attention_mask[..., None]
    pooled = acts.max(dim=1).values
    special = set(tokenizer.all_special_ids) | {
        i for i, t in tokenizer.added_tokens_decoder.items() if t.special
    }
    out = []
    for row in pooled:
        vec = {}
        for i in torch.nonzero(row > 0).flatten().tolist():
            if i < len(tokenizer) and i not in special:
                vec[tokenizer.convert_ids_to_tokens(i)] = float(row[i])
        out.append(vec)
    return out


def assert_same_vectors(got, want, rel=1e-4, abs_=1e-6):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert w and set(g) == set(w)
        for term, weight in w.items():
            assert g[term] == pytest.approx(weight, rel=rel, abs=abs_), term


def bidirectional_hf_model(path: Path):
    """Qwen3 with transformers' own switch for bidirectional attention (``config.is_causal``)."""
    if int(transformers.__version__.split(".")[0]) < 5:
        pytest.skip("config.is_causal=False needs transformers >= 5")
    auto = transformers.AutoModelForCausalLM
    model = auto.from_pretrained(str(path), attn_implementation="eager")
    model.config.is_causal = False
    return model.eval()


# --------------------------------------------------------------------- tests


def test_bert_vectors_equal_max_pooled_log1p_relu_of_the_mlm_logits_with_padding_masked(
    bert_dir, bert_enc
):
    tok = transformers.AutoTokenizer.from_pretrained(str(bert_dir))
    model = transformers.BertForMaskedLM.from_pretrained(str(bert_dir)).eval()
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    assert batch["attention_mask"].min() == 0  # the lengths differ, so padding is in play
    with torch.no_grad():
        logits = model(**batch).logits
    want = reference_vectors(logits, batch["attention_mask"], tok)
    assert_same_vectors(bert_enc.encode_documents(TEXTS), want)
    assert bert_enc.family == "mlm" and bert_enc.padding_side == "right"
    # Position embeddings are a hard limit: the 512-token default is capped to this model's 128.
    assert bert_enc.max_length_doc == 128 and ":ld128" in bert_enc.encoder_id
    assert bert_enc.encode_documents(["def add " * 300])[0]


def test_qwen3_vectors_equal_the_bidirectional_lm_head_computation(qwen_dir, qwen_enc):
    tok = transformers.AutoTokenizer.from_pretrained(str(qwen_dir))
    model = bidirectional_hf_model(qwen_dir)
    batch = tok(TEXTS, padding=True, return_tensors="pt", padding_side="left")
    assert batch["attention_mask"].min() == 0
    with torch.no_grad():
        logits = model(**batch).logits
    want = reference_vectors(logits, batch["attention_mask"], tok)
    assert_same_vectors(qwen_enc.encode_documents(TEXTS), want)
    assert qwen_enc.family == "decoder" and qwen_enc.bidirectional


@pytest.mark.parametrize("arch", ["bert", "qwen"])
def test_an_output_vocabulary_restricts_vectors_to_its_terms_and_keeps_their_weights(
    arch, bert_dir, qwen_dir, bert_enc, qwen_enc, tmp_path
):
    from codelsr.encoders.splade import SpladeEncoder

    src, full_enc = (bert_dir, bert_enc) if arch == "bert" else (qwen_dir, qwen_enc)
    d = tmp_path / "restricted"
    shutil.copytree(src, d)
    full = full_enc.encode_documents(TEXTS)
    tok = transformers.AutoTokenizer.from_pretrained(str(src))
    active = sorted({t for vec in full for t in vec})
    keep = active[::2]  # half of the active terms, so the restriction visibly drops some
    ids = tok.convert_tokens_to_ids(keep)
    (d / "output_vocab.json").write_text(json.dumps({"token_ids": ids}))
    enc = SpladeEncoder(str(d), device="cpu", batch_size=2)
    assert enc.output_vocab_size == len(ids) and enc.settings()["output_vocab"] == len(ids)
    want = [{t: w for t, w in vec.items() if t in set(keep)} for vec in full]
    assert_same_vectors(enc.encode_documents(TEXTS), want)
    # The restriction is part of the model's identity: indexes built without it are told apart.
    unrestricted = SpladeEncoder(str(d), device="cpu", output_vocab=False)
    assert unrestricted.fingerprint == full_enc.fingerprint != enc.fingerprint
    assert unrestricted.output_vocab_size is None
    # ...and can be switched off to see the full vocabulary again.
    assert_same_vectors(unrestricted.encode_documents(TEXTS), full)


def test_an_output_vocabulary_with_ids_outside_the_vocabulary_is_refused(bert_dir, tmp_path):
    from codelsr.encoders.splade import SpladeEncoder

    d = tmp_path / "bad"
    shutil.copytree(bert_dir, d)
    (d / "output_vocab.json").write_text(json.dumps({"token_ids": [5, 10**6]}))
    with pytest.raises(EncoderUnavailableError, match="outside the model's vocabulary"):
        SpladeEncoder(str(d), device="cpu")
    (d / "output_vocab.json").write_text(json.dumps({"ids": [5]}))
    with pytest.raises(EncoderUnavailableError, match="not an output vocabulary"):
        SpladeEncoder(str(d), device="cpu")


def test_a_later_token_changes_an_earlier_position_in_the_encoder_but_not_in_hf_causal_forward(
    qwen_dir, qwen_enc
):
    tok = transformers.AutoTokenizer.from_pretrained(str(qwen_dir))
    a = tok("def add(a, b): return a")["input_ids"]
    b = a[:-1] + [tok("print")["input_ids"][0]]
    assert a[:-1] == b[:-1] and a[-1] != b[-1]
    ids = torch.tensor([a, b])
    mask = torch.ones_like(ids)
    with torch.inference_mode():
        hidden = qwen_enc._forward_hidden(ids, mask)
    first = hidden[:, 0] @ qwen_enc._head_weight.T
    assert (first[0] - first[1]).abs().max() > 1e-4  # token 0 saw the last token

    causal = transformers.AutoModelForCausalLM.from_pretrained(str(qwen_dir)).eval()
    with torch.no_grad():
        causal_logits = causal(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(causal_logits[0, :-1], causal_logits[1, :-1])  # HF default: causal


def test_qwen3_pads_on_the_left_and_padding_leaves_vectors_unchanged(qwen_dir, qwen_enc):
    ids, mask = qwen_enc._pad([[5, 6, 7, 8], [9, 10]])
    pad = transformers.AutoTokenizer.from_pretrained(str(qwen_dir)).pad_token_id
    assert ids[1].tolist() == [pad, pad, 9, 10] and mask[1].tolist() == [0, 0, 1, 1]
    alone = [qwen_enc.encode_documents([t])[0] for t in TEXTS]
    assert_same_vectors(qwen_enc.encode_documents(TEXTS), alone, rel=1e-3, abs_=1e-5)


def test_pruning_keeps_exactly_the_top_k_weights(qwen_dir, qwen_enc):
    from codelsr.encoders.splade import SpladeEncoder

    pruned = SpladeEncoder(str(qwen_dir), device="cpu", batch_size=2, query_top_k=3, doc_top_k=7)
    full_docs, full_queries = qwen_enc.encode_documents(TEXTS), qwen_enc.encode_queries(TEXTS)
    docs, queries = pruned.encode_documents(TEXTS), pruned.encode_queries(TEXTS)
    for got, full in zip(docs, full_docs):
        assert len(full) > 7 and len(got) == 7
        assert got == prune_top_k(full, 7)
    for got, full in zip(queries, full_queries):
        assert len(got) == 3 and got == prune_top_k(full, 3)


def test_terms_are_real_vocabulary_strings_and_special_tokens_are_absent(
    bert_dir, qwen_dir, bert_enc, qwen_enc
):
    for path, enc in ((bert_dir, bert_enc), (qwen_dir, qwen_enc)):
        tok = transformers.AutoTokenizer.from_pretrained(str(path))
        vocab = tok.get_vocab()
        specials = set(tok.all_special_tokens) | {
            t.content for t in tok.added_tokens_decoder.values() if t.special
        }
        for vec in enc.encode_documents(TEXTS) + enc.encode_queries(TEXTS):
            assert vec and set(vec) <= set(vocab)
            assert not set(vec) & specials
            assert all(w > 0 for w in vec.values())
    # Byte-level BPE keys stay raw ('Ġreturn'), and ids past the tokenizer never appear.
    qwen_terms = set().union(*qwen_enc.encode_documents(TEXTS))
    assert any(t.startswith("Ġ") for t in qwen_terms)
    assert qwen_enc._terms[-1] is None and len(qwen_enc._terms) > len(qwen_enc._tokenizer)


def test_encoder_id_names_the_model_and_every_setting_that_changes_vectors(qwen_dir, qwen_enc):
    from codelsr.encoders.splade import SpladeEncoder

    efficient = SpladeEncoder(str(qwen_dir), device="cpu", preset="efficient")
    shorter = SpladeEncoder(str(qwen_dir), device="cpu", max_length_doc=64)
    ids = {qwen_enc.encoder_id, efficient.encoder_id, shorter.encoder_id}
    assert len(ids) == 3
    assert qwen_enc.encoder_id.startswith(f"splade:{qwen_dir.resolve()}@")
    assert efficient.encoder_id.endswith(":q10:d100:lq256:ld1024")
    assert isinstance(qwen_enc, SparseEncoder)
    settings = json.loads(json.dumps(efficient.settings()))
    assert settings["query_top_k"] == 10 and settings["doc_top_k"] == 100
    assert settings["family"] == "decoder" and settings["dtype"] == "float32"


def test_a_lora_adapter_folder_loads_over_its_base_and_changes_the_vectors(
    qwen_dir, lora_dir, qwen_enc
):
    from codelsr.encoders.splade import SpladeEncoder

    adapted = SpladeEncoder(str(lora_dir), device="cpu")
    assert Path(adapted.base_model).resolve() == qwen_dir.resolve()
    base_vecs, lora_vecs = qwen_enc.encode_documents(TEXTS), adapted.encode_documents(TEXTS)
    assert base_vecs != lora_vecs
    assert adapted.encoder_id != qwen_enc.encoder_id

    # Same numbers as peft's own (unmerged) adapter forward with bidirectional attention.
    peft = pytest.importorskip("peft", reason=SPLADE_EXTRA)
    model = peft.PeftModel.from_pretrained(bidirectional_hf_model(qwen_dir), str(lora_dir)).eval()
    tok = transformers.AutoTokenizer.from_pretrained(str(qwen_dir))
    batch = tok(TEXTS, padding=True, return_tensors="pt", padding_side="left")
    with torch.no_grad():
        logits = model(**batch).logits
    want = reference_vectors(logits, batch["attention_mask"], tok)
    assert_same_vectors(lora_vecs, want, rel=1e-3, abs_=1e-5)


def test_naver_style_wrapper_folders_load_like_the_plain_checkpoint(
    qwen_dir, lora_dir, qwen_enc, tmp_path
):
    """naver's hub layout: a ``"model_type": "splade"`` config naming its Qwen3 base, with the
    weights under a ``model.`` prefix (0.6B) or a LoRA adapter in ``lora/`` (8B)."""
    from safetensors.torch import load_file, save_file

    from codelsr.encoders.splade import SpladeEncoder

    def wrapper_config(d: Path, lora: bool) -> None:
        cfg = {
            "archi_type": "decoder", "architectures": ["Splade"], "model_type": "splade",
            "model_name_or_path": str(qwen_dir), "bidirectional": True, "padding_side": "left",
            "attn_implementation": "flash_attention_2", "lora": lora,
            "auto_map": {"AutoConfig": "splade.SpladeConfig",
                         "AutoModelForCausalLM": "splade.Splade"},
        }  # fmt: skip
        (d / "config.json").write_text(json.dumps(cfg))

    full = tmp_path / "splade-code-06B"
    full.mkdir()
    wrapper_config(full, lora=False)
    state = load_file(str(qwen_dir / "model.safetensors"))
    prefixed = {f"model.{k}": v.contiguous() for k, v in state.items()}
    save_file(prefixed, str(full / "model.safetensors"))
    assert_same_vectors(
        SpladeEncoder(str(full), device="cpu").encode_documents(TEXTS),
        qwen_enc.encode_documents(TEXTS),
    )

    adapter = tmp_path / "splade-code-8B"
    adapter.mkdir()
    wrapper_config(adapter, lora=True)
    shutil.copytree(lora_dir, adapter / "lora")
    assert_same_vectors(
        SpladeEncoder(str(adapter), device="cpu").encode_documents(TEXTS),
        SpladeEncoder(str(lora_dir), device="cpu").encode_documents(TEXTS),
    )


def test_an_uncached_hub_name_offline_raises_encoder_unavailable(monkeypatch):
    from codelsr.encoders.splade import SpladeEncoder

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EncoderUnavailableError) as info:
        SpladeEncoder("naver/splade-code-does-not-exist-0B")
    message = str(info.value)
    assert "naver/splade-code-does-not-exist-0B" in message
    assert "unreachable" in message and "local copy" in message


def test_a_missing_local_folder_raises_encoder_unavailable(tmp_path):
    from codelsr.encoders.splade import SpladeEncoder

    with pytest.raises(EncoderUnavailableError, match="no SPLADE checkpoint folder"):
        SpladeEncoder(str(tmp_path / "nowhere"))


def test_missing_torch_raises_encoder_unavailable_with_the_install_hint(monkeypatch, qwen_dir):
    from codelsr.encoders.splade import SpladeEncoder

    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(EncoderUnavailableError, match=r"pip install 'codelsr\[splade\]'"):
        SpladeEncoder(str(qwen_dir))


def test_empty_inputs_give_empty_results(qwen_enc, bert_enc):
    assert qwen_enc.encode_documents([]) == []
    assert qwen_enc.encode_documents([""]) == [{}]
    assert bert_enc.encode_queries(["", "  \n", "def"])[:2] == [{}, {}]


def test_load_splade_loads_each_checkpoint_once_per_process(qwen_dir):
    from codelsr.encoders import splade

    results = []
    def load() -> None:
        results.append(splade.load_splade(str(qwen_dir), device="cpu"))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and all(r is results[0] for r in results)
    assert splade.load_splade(str(qwen_dir), device="cpu", doc_top_k=5) is not results[0]


def test_importing_codelsr_encoders_imports_neither_torch_nor_the_splade_module():
    code = (
        "import sys, codelsr, codelsr.encoders, codelsr.encoders.base;"
        "assert 'torch' not in sys.modules, 'torch';"
        "assert 'codelsr.encoders.splade' not in sys.modules, 'splade';"
        "import codelsr.encoders.splade;"
        "assert 'torch' not in sys.modules, 'torch after splade'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
