"""Encoder benchmark: documents/s and ms per query on CPU, for the lexical encoder and SPLADE.

No SPLADE weights can be downloaded here, so SPLADE models are randomly initialised checkpoints
of the real architecture classes (``BertForMaskedLM``, ``Qwen3ForCausalLM``) saved to a temp
folder and loaded through ``SpladeEncoder``. Random weights cost the same FLOPs as trained ones,
so timings transfer; vectors do not (random models activate more terms, which only affects
post-processing). Two sizes:

* tiny (hidden 32, 2 layers): exercises the code path in seconds (``--quick``);
* Qwen3-0.6B-sized (hidden 1024, 28 layers, 16/8 heads, MLP 3072, vocabulary 151,936 -- the
  configuration of ``Qwen/Qwen3-0.6B``, the SPLADE-Code-0.6B backbone): times a few documents to
  estimate the hours SPLADE-Code-0.6B needs to index a 10k-chunk repository on this CPU.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

TINY_WORDS = ("def class return self import from for in range print async await get add parse text split "
              "value name data file path open read write list dict set int str len none true false").split()


def lexical(texts: list[str], queries: list[str], log) -> dict:
    from codelsr.encoders.lexical import LexicalEncoder

    enc = LexicalEncoder()
    t0 = time.process_time()
    w0 = time.perf_counter()
    enc.encode_documents(texts)
    cpu, wall = time.process_time() - t0, time.perf_counter() - w0
    bound = enc.bind_collection(len(texts), {})
    q0 = time.process_time()
    for q in queries:
        bound.encode_queries([q])
    q_ms = (time.process_time() - q0) * 1000 / max(1, len(queries))
    row = {"encoder": "lexical", "threads": 1, "batch": len(texts), "docs": len(texts),
           "docs_per_s_cpu": len(texts) / cpu, "docs_per_s_wall": len(texts) / wall, "query_ms_cpu": q_ms}
    log(row)
    return row


def _tokenizer_dir(d: Path):
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=2000, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    raw.train_from_iterator([" ".join(TINY_WORDS)] * 50, trainer)
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|endoftext|>",
                                               pad_token="<|endoftext|>", padding_side="left")
    tok.save_pretrained(str(d))
    return tok


def make_qwen3(d: Path, size: str) -> Path:
    """A random Qwen3 checkpoint: ``tiny`` or ``0.6b`` (Qwen3-0.6B's shape, 151,936 terms)."""
    import torch
    import transformers

    tok = _tokenizer_dir(d)
    torch.manual_seed(0)
    if size == "tiny":
        shape = dict(vocab_size=len(tok) + 6, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, head_dim=8)
    else:
        shape = dict(vocab_size=151_936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                     num_attention_heads=16, num_key_value_heads=8, head_dim=128)
    cfg = transformers.Qwen3Config(**shape, max_position_embeddings=4096, tie_word_embeddings=True,
                                   pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    transformers.Qwen3ForCausalLM(cfg).save_pretrained(str(d))
    return d


def make_bert(d: Path) -> Path:
    """A random BERT-base-shaped MLM (the splade-v3 / splade_v2_distil architecture), tiny vocab."""
    import torch
    import transformers

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *TINY_WORDS]
    (d / "vocab.txt").write_text("\n".join(vocab) + "\n")
    transformers.BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}).save_pretrained(str(d))
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=30_522, hidden_size=768, num_hidden_layers=12,
                                  num_attention_heads=12, intermediate_size=3072)
    transformers.BertForMaskedLM(cfg).save_pretrained(str(d))
    return d


def _synthetic_doc(n_words: int) -> str:
    words = [TINY_WORDS[(i * 7) % len(TINY_WORDS)] for i in range(n_words)]
    return " ".join(words)


def splade(folder: Path, name: str, n_docs: int, doc_tokens: int, batch_sizes: list[int],
           threads_list: list[int], log, n_queries: int = 8) -> list[dict]:
    """docs/s and ms/query of one checkpoint at several batch sizes and thread counts."""
    import torch

    from codelsr.encoders.splade import SpladeEncoder

    rows = []
    for threads in threads_list:
        torch.set_num_threads(threads)
        for batch in batch_sizes:
            enc = SpladeEncoder(str(folder), device="cpu", batch_size=batch, threads=threads,
                                max_length_doc=doc_tokens, max_length_query=32)
            docs = [_synthetic_doc(doc_tokens * 2) for _ in range(n_docs)]  # truncated to doc_tokens
            enc.encode_documents(docs[:1])  # warm-up
            c0, w0 = time.process_time(), time.perf_counter()
            enc.encode_documents(docs)
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            q0 = time.perf_counter()
            for i in range(n_queries):
                enc.encode_queries([_synthetic_doc(12)])
            q_ms = (time.perf_counter() - q0) * 1000 / n_queries
            row = {"encoder": name, "threads": threads, "batch": batch, "docs": n_docs, "doc_tokens": doc_tokens,
                   "docs_per_s_wall": n_docs / wall, "cpu_s_per_doc": cpu / n_docs, "query_ms_wall": q_ms}
            log(row)
            rows.append(row)
    return rows


def run(texts: list[str], queries: list[str], quick: bool, log) -> list[dict]:
    rows = [lexical(texts, queries, log)]
    tmp = Path(tempfile.mkdtemp(prefix="codelsr-bench-models-"))
    try:
        tiny = make_qwen3(_folder(tmp, "qwen3-tiny"), "tiny")
        rows += splade(tiny, "splade qwen3 tiny (random)", 64, 256, [1, 16] if quick else [1, 8, 32],
                       [1] if quick else [1, 2], log)
        if not quick:
            bert = make_bert(_folder(tmp, "bert-base"))
            rows += splade(bert, "splade bert-base shape (random)", 16, 256, [8], [1, 2], log)
            big = make_qwen3(_folder(tmp, "qwen3-0.6b"), "0.6b")
            rows += splade(big, "splade-code-0.6B shape (random)", 4, 512, [4], [2], log, n_queries=3)
            per_doc = 1 / rows[-1]["docs_per_s_wall"]
            cpu_doc = rows[-1]["cpu_s_per_doc"]
            est = {"estimate": "SPLADE-Code-0.6B shape, 10k chunks of 512 tokens, CPU, 2 threads",
                   "seconds_per_doc": per_doc, "hours_10k": per_doc * 10_000 / 3600,
                   # CPU seconds over 2 cores: what an otherwise idle 2-core machine would take
                   "hours_10k_idle_2_cores": cpu_doc * 10_000 / 3600 / 2}
            log(est)
            rows.append(est)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # the 0.6B checkpoint is 2.4 GB
    return rows


def _folder(root: Path, name: str) -> Path:
    (root / name).mkdir(parents=True)
    return root / name
