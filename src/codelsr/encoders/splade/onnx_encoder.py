"""A masked-LM SPLADE checkpoint run by ONNX Runtime and ``tokenizers``: no torch, no transformers.

Why: the shipped model is small (17M parameters, int8), yet torch + transformers cost seconds to import and a
large install. The network (after the token-embedding lookup, up to the MLM head's output layer)
runs in ONNX Runtime; the lookup, that output layer and the SPLADE pooling run here in numpy, the
same computation as :class:`codelsr.encoders.splade.SpladeEncoder`:

    vector[t] = log1p(relu(max over the text's tokens of (W[t] . state) + b[t]))

for every term ``t`` of the output space (``output_vocab.json`` when the folder has one), special
tokens excluded. The bias is added after the max (``max(x + b) == max(x) + b``), as there.

An *export* is three files in the checkpoint folder, written by
``python -m tools.train.export_onnx <folder>`` (the one place torch is needed):

* ``embeddings.npz``: the token embedding table (vocabulary x hidden), which is also the MLM
  head's output layer in a tied model (BERT's is), so it is stored once; ``head_weight`` only when
  the model is not tied; ``head_bias``. Arrays whose values are all exact bfloat16 numbers are
  stored as bfloat16 bit patterns (``*_bf16``, uint16): the shipped weights are bfloat16, so this
  halves the files without changing a number.
* ``model.onnx``: inputs ``inputs_embeds`` (float32, batch x tokens x hidden: rows of the table
  above, looked up here) and ``attention_mask`` (int64), output ``hidden_states`` (float32): what
  the MLM head's output layer reads. Position and type embeddings, the transformer layers and the
  head's transform are inside (its large weights as bfloat16 + Cast, for the same reason).
* ``onnx.json``: what was exported, from which weights (``source_sha256``: config and weight
  files). An export whose source changed since is *stale* and is not used.

An *ONNX-only* folder (``python -m tools.train.package_onnx <folder> --out <dest>``; ``onnx.json``
says ``"onnx_only": true``) is a current export with the weight files left out: what a package
ships when the weights would take it past its size budget (a 3-layer int8 student's export is
18 MB, its bf16 weights another 35). It has no source to go stale against, so ``onnx.json``
carries the digest of the files it was packaged with (``packaged_sha256``), checked at load: a
damaged or swapped file makes it stale, not silently different. Its ``encoder_id`` is the source
folder's (``checkpoint_fingerprint`` recorded at packaging): the vectors are the same. Torch
cannot run it.

An *int8* export (``export_onnx --int8``; ``onnx.json`` says ``"weights": "int8"``) stores the
graph's matrix weights as int8 with one scale per output channel (ONNX Runtime's dynamic
quantisation) and the embedding table as int8 rows with one float32 scale each
(``*_int8`` + ``*_scale``). It is smaller and faster on CPUs, but its vectors are no longer the
torch encoder's to float32 rounding, so its ``encoder_id`` is its own (the fingerprint gains
``int8``): an index built with one is never searched with vectors of the other.

Vectors equal the torch encoder's to float32 rounding (tests: cosine >= 0.999, same top 10), so
both runtimes share one ``encoder_id`` and one vector cache. The checkpoint identity is computed as
``SpladeEncoder`` computes it (config bytes, names and sizes of weight and tokenizer
files, the output vocabulary's text: ``checkpoint.checkpoint_fingerprint``); ``tests/test_splade_onnx.py``
checks the two ids agree.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from codelsr.encoders.base import lines_read, prune_top_k
from codelsr.encoders.splade.checkpoint import (
    OUTPUT_VOCAB_FILE,
    WEIGHT_SUFFIXES,
    checkpoint_fingerprint,
    document_bias,
    model_family,
)
from codelsr.encoders.splade.checkpoint import read_json
from codelsr.encoders.splade.pieces import affixes, piece_cap, pooled_rows, split_pieces
from codelsr.errors import EncoderUnavailableError
from codelsr.records import SparseVector

__all__ = [
    "ONNX_EMBEDDINGS_FILE",
    "ONNX_GRAPH_FILE",
    "ONNX_MANIFEST_FILE",
    "OnnxSpladeEncoder",
    "export_state",
    "export_weights",
    "is_onnx_only",
    "load_onnx_splade",
    "packaged_sha256",
    "source_sha256",
]

ONNX_FORMAT = 1
ONNX_GRAPH_FILE = "model.onnx"
ONNX_EMBEDDINGS_FILE = "embeddings.npz"
ONNX_MANIFEST_FILE = "onnx.json"
EXPORT_COMMAND = "python -m tools.train.export_onnx"
THREADS_ENV = "CODELSR_THREADS"

_ROBERTA_LIKE = frozenset({"roberta", "xlm-roberta", "camembert"})
# Logits materialised per numpy product (tokens x output terms): ~64 MB of float32.
_LOGIT_BUDGET = 16 * 1024 * 1024


def _weight_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)


def _files_sha256(paths: Sequence[Path]) -> str:
    """SHA-256 over each file's name and content, in the order given."""
    h = hashlib.sha256()
    for p in paths:
        h.update(f"{p.name}\0".encode())
        with p.open("rb") as f:
            while block := f.read(1 << 22):
                h.update(block)
    return h.hexdigest()


def source_sha256(folder: Path) -> str:
    """Digest of what an export is made from: ``config.json`` and the weight files, by content."""
    return _files_sha256([folder / "config.json", *_weight_files(folder)])


def packaged_sha256(folder: Path) -> str:
    """Digest of what an ONNX-only folder runs on: config, graph, embeddings and tokenizer files, by content."""
    names = ("config.json", ONNX_GRAPH_FILE, ONNX_EMBEDDINGS_FILE, "tokenizer.json", "tokenizer_config.json",
             OUTPUT_VOCAB_FILE)
    return _files_sha256([folder / n for n in names if (folder / n).is_file()])


def _manifest(folder: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((folder / ONNX_MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def is_onnx_only(folder: Path | str) -> bool:
    """Whether ``folder`` was packaged as an ONNX-only folder (module doc): no weights, no torch."""
    return bool(_manifest(Path(folder)).get("onnx_only"))


def export_state(folder: Path | str) -> str:
    """``"current"``, ``"missing"`` or ``"stale: <why>"`` for the ONNX export in ``folder``."""
    folder = Path(folder)
    manifest_path = folder / ONNX_MANIFEST_FILE
    if not manifest_path.is_file():
        return "missing"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"stale: {manifest_path} is unreadable ({exc})"
    if manifest.get("format") != ONNX_FORMAT:
        return f"stale: export format {manifest.get('format')!r}, this codelsr reads {ONNX_FORMAT}"
    for name in (ONNX_GRAPH_FILE, ONNX_EMBEDDINGS_FILE, "config.json"):
        if not (folder / name).is_file():
            return f"stale: {folder / name} is missing"
    if manifest.get("onnx_only"):
        weights = [p.name for p in _weight_files(folder)]
        if weights:
            return (f"stale: {folder} was packaged ONNX-only, yet holds weight files ({', '.join(weights)}); "
                    "remove them, or package it again from the full checkpoint")
        if not manifest.get("checkpoint_fingerprint"):
            return f"stale: {folder / ONNX_MANIFEST_FILE} names no source checkpoint (checkpoint_fingerprint)"
        if manifest.get("packaged_sha256") != packaged_sha256(folder):
            return "stale: a file changed since the folder was packaged (config, graph, embeddings or tokenizer)"
        return "current"
    if manifest.get("source_sha256") != source_sha256(folder):
        return "stale: the weights or config.json changed since the export"
    return "current"


def _has(arrays: Any, name: str) -> bool:
    return any(f"{name}{suffix}" in arrays.files for suffix in ("", "_bf16", "_int8"))


def _float32(arrays: Any, name: str) -> np.ndarray:
    """An array of an ``.npz`` as float32, whether stored as float32, as bfloat16 bit patterns, or
    as int8 rows with one scale per row."""
    if f"{name}_bf16" in arrays.files:  # bfloat16 is the upper half of a float32
        return (arrays[f"{name}_bf16"].astype(np.uint32) << 16).view(np.float32)
    if f"{name}_int8" in arrays.files:
        rows = arrays[f"{name}_int8"].astype(np.float32)  # a matrix: one scale per row
        return rows * np.asarray(arrays[f"{name}_scale"], dtype=np.float32)[:, None]
    return np.ascontiguousarray(arrays[name], dtype=np.float32)


def _weights_kind(manifest: dict[str, Any]) -> str:
    return "int8" if manifest.get("weights") == "int8" else "float"


def export_weights(folder: Path | str) -> str:
    """``"int8"`` or ``"float"``: how the ONNX export in ``folder`` stores its weights (module doc)."""
    return _weights_kind(_manifest(Path(folder)))


def _special_ids(tokenizer: Any, tok_config: dict[str, Any]) -> set[int]:
    """Ids of the special tokens (never terms): those the tokenizer config names, and added
    tokens marked special."""
    names: list[str] = []
    for key, value in tok_config.items():
        if key.endswith("_token") and value:
            names.append(value["content"] if isinstance(value, dict) else str(value))
    for key in ("additional_special_tokens", "extra_special_tokens"):
        extra = tok_config.get(key) or []
        values = extra.values() if isinstance(extra, dict) else extra
        names += [v["content"] if isinstance(v, dict) else str(v) for v in values]
    ids = {i for i in (tokenizer.token_to_id(n) for n in names) if i is not None}
    for tid, added in tokenizer.get_added_tokens_decoder().items():
        if getattr(added, "special", False):
            ids.add(int(tid))
    return ids


class OnnxSpladeEncoder:
    """A masked-LM SPLADE folder with a current ONNX export, as a ``SparseEncoder`` (module doc).

    Options mean what they mean for ``SpladeEncoder`` (max lengths default to 512/128 tokens,
    ``query_top_k``/``doc_top_k`` prune, ``name`` replaces the folder in ``encoder_id``,
    ``doc_pieces`` reads a long document in several windows);
    ``threads`` is ONNX Runtime's intra-op thread count (default: ``CODELSR_THREADS``, else
    ONNX Runtime's own choice, one per physical core).
    """

    def __init__(
        self,
        model: str | Path,
        *,
        max_length_doc: int | None = None,
        max_length_query: int | None = None,
        query_top_k: int | None = None,
        doc_top_k: int | None = None,
        batch_size: int = 16,
        threads: int | None = None,
        name: str | None = None,
        output_vocab: bool = True,
        doc_pieces: int = 1,
    ) -> None:
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as exc:  # pragma: no cover - both are core dependencies
            raise EncoderUnavailableError(
                f"running SPLADE with ONNX Runtime needs onnxruntime and tokenizers ({exc}): "
                "pip install onnxruntime tokenizers"
            ) from exc
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if doc_pieces < 1:
            raise ValueError("doc_pieces must be >= 1")
        folder = Path(model).expanduser().resolve()
        if (folder / "adapter_config.json").is_file() or (folder / "lora").is_dir():
            raise EncoderUnavailableError(f"{folder} is a LoRA adapter; ONNX exports are made from merged models")
        state = export_state(folder)
        if state != "current":
            raise EncoderUnavailableError(
                f"no usable ONNX export in {folder} ({state}); write one with `{EXPORT_COMMAND} {folder}`"
            )
        self.model_name = str(model)
        self._lock = threading.Lock()
        config = read_json(folder / "config.json")
        if model_family(config) != "mlm":
            raise EncoderUnavailableError(f"{folder}: ONNX exports are for masked-LM SPLADE models; this one runs on torch")
        if not (folder / "tokenizer.json").is_file():
            raise EncoderUnavailableError(f"{folder} has no tokenizer.json (ONNX Runtime needs a fast tokenizer)")
        tok_config = read_json(folder / "tokenizer_config.json") if (folder / "tokenizer_config.json").is_file() else {}
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tokenizer.no_padding()
        pad = tok_config.get("pad_token") or tok_config.get("unk_token")
        pad = pad["content"] if isinstance(pad, dict) else pad
        self._pad_id = self._tokenizer.token_to_id(pad) if pad else None
        if self._pad_id is None:
            self._pad_id = int(config.get("pad_token_id") or 0)

        arrays = np.load(folder / ONNX_EMBEDDINGS_FILE)
        self._embeddings = _float32(arrays, "word_embeddings")
        weight = _float32(arrays, "head_weight") if _has(arrays, "head_weight") else self._embeddings
        bias = _float32(arrays, "head_bias") if _has(arrays, "head_bias") else None

        vocab_size = weight.shape[0]
        n_tok = self._tokenizer.get_vocab_size(with_added_tokens=True)
        special = _special_ids(self._tokenizer, tok_config)
        terms: list[str | None] = [None] * vocab_size
        seen: set[str] = set()
        for i in range(min(vocab_size, n_tok)):
            s = self._tokenizer.id_to_token(i)
            if s is None or i in special:
                continue
            if s in seen:  # never let two ids share one key
                s = f"{s}#{i}"
            seen.add(s)
            terms[i] = s
        manifest = _manifest(folder)
        # An ONNX-only folder is its source checkpoint without the weights: the source's identity.
        fingerprint = (str(manifest["checkpoint_fingerprint"]) if manifest.get("onnx_only")
                       else checkpoint_fingerprint(folder))
        self.weights = _weights_kind(manifest)
        if self.weights == "int8":  # other vectors than torch's: never the same id (module doc)
            fingerprint = hashlib.sha1((fingerprint + ":int8").encode()).hexdigest()[:12]
        self.output_vocab_size: int | None = None
        if output_vocab and (folder / OUTPUT_VOCAB_FILE).is_file():
            vocab_text = (folder / OUTPUT_VOCAB_FILE).read_text()
            try:
                ids = sorted({int(i) for i in json.loads(vocab_text)["token_ids"]})
            except (KeyError, TypeError, ValueError) as exc:
                raise EncoderUnavailableError(f"{folder / OUTPUT_VOCAB_FILE} is not an output vocabulary: {exc}") from exc
            if not ids or ids[0] < 0 or ids[-1] >= vocab_size:
                raise EncoderUnavailableError(
                    f"{folder / OUTPUT_VOCAB_FILE} lists token ids outside the model's vocabulary of {vocab_size}")
            index = np.asarray(ids, dtype=np.int64)
            weight, terms = weight[index], [terms[i] for i in ids]
            bias = bias[index] if bias is not None else None
            self.output_vocab_size = len(ids)
            fingerprint = hashlib.sha1((fingerprint + vocab_text).encode()).hexdigest()[:12]
        self._weight = np.ascontiguousarray(weight)
        self._bias = bias
        self._allowed = np.array([t is not None for t in terms], dtype=bool)
        self._terms = terms

        limit = int(config.get("max_position_embeddings", 512) or 512)
        if str(config.get("model_type", "")).lower() in _ROBERTA_LIKE:
            limit -= 2  # positions start after the padding index
        tok_limit = tok_config.get("model_max_length")
        if isinstance(tok_limit, int) and 0 < tok_limit < 100_000:
            limit = min(limit, tok_limit)
        self.max_length_doc = min(int(max_length_doc or 512), limit)
        self.max_length_query = min(int(max_length_query or 128), limit)
        self.query_top_k = query_top_k if query_top_k and query_top_k > 0 else None
        self.doc_top_k = doc_top_k if doc_top_k and doc_top_k > 0 else None
        self.batch_size = int(batch_size)
        self.document_bias = document_bias(config)

        options = ort.SessionOptions()
        threads = threads or int(os.environ.get(THREADS_ENV) or 0)
        if threads:
            options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(str(folder / ONNX_GRAPH_FILE), options,
                                                 providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own exception types
            raise EncoderUnavailableError(f"ONNX Runtime cannot load {folder / ONNX_GRAPH_FILE}: {exc}") from exc
        self.runtime = f"onnxruntime {ort.__version__}"
        self.threads = threads or None

        self.identity = str(folder)
        self.fingerprint = fingerprint
        q = self.query_top_k if self.query_top_k else "all"
        d = self.doc_top_k if self.doc_top_k else "all"
        label = name or str(folder)
        self.doc_pieces = int(doc_pieces)
        probe = "x = 1"  # the special tokens around a text: only pieces need them
        self._affixes = affixes(self._tokenizer.encode(probe, add_special_tokens=True).ids,
                                self._tokenizer.encode(probe, add_special_tokens=False).ids) if doc_pieces > 1 else ([], [])
        self.encoder_id = (f"splade:{label}@{fingerprint}:q{q}:d{d}:lq{self.max_length_query}:ld{self.max_length_doc}"
                           + (f":dp{self.doc_pieces}" if self.doc_pieces > 1 else "")
                           + (f":db{self.document_bias:g}" if self.document_bias else ""))

    # --------------------------------------------------------------- protocol

    @property
    def window_lines(self) -> int:
        """Chunks are cut to about what ``max_length_doc`` tokens hold (``encoders.base``)."""
        return lines_read(self.max_length_doc)

    def settings(self) -> dict[str, Any]:
        return {
            "kind": "splade",
            "runtime": self.runtime,
            "model": self.model_name,
            "identity": self.identity,
            "fingerprint": self.fingerprint,
            "family": "mlm",
            "vocab_size": len(self._terms),
            "output_vocab": self.output_vocab_size,
            "document_bias": self.document_bias,
            "max_length_doc": self.max_length_doc,
            "max_length_query": self.max_length_query,
            "query_top_k": self.query_top_k,
            "doc_top_k": self.doc_top_k,
            "doc_pieces": self.doc_pieces,
            "dtype": "float32",
            "weights": self.weights,
            "device": "cpu",
            "batch_size": self.batch_size,
        }

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVector]:
        return self._encode(texts, self.max_length_doc, self.doc_top_k, self.doc_pieces, self.document_bias)

    def encode_queries(self, texts: Sequence[str]) -> list[SparseVector]:
        return self._encode(texts, self.max_length_query, self.query_top_k)

    # --------------------------------------------------------------- encoding

    def _tokenize(self, texts: list[str], max_length: int) -> list[list[int]]:
        self._tokenizer.enable_truncation(max_length=max_length)
        return [e.ids for e in self._tokenizer.encode_batch(texts, add_special_tokens=True)]

    def _hidden(self, batch: list[list[int]]) -> np.ndarray:
        width = max(len(ids) for ids in batch)
        input_ids = np.full((len(batch), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, ids in enumerate(batch):
            input_ids[row, : len(ids)] = ids
            mask[row, : len(ids)] = 1
        feeds = {"inputs_embeds": self._embeddings[input_ids], "attention_mask": mask}
        (hidden,) = self._session.run(["hidden_states"], feeds)
        return hidden

    def _pool(self, hidden: np.ndarray, lengths: list[int], shift: float = 0.0) -> np.ndarray:
        """SPLADE activations (rows x output terms) of the texts whose token states are ``hidden``;
        ``shift`` is added to the head's bias (documents: ``document_bias``)."""
        weight = self._weight
        vocab = weight.shape[0]
        max_tokens = max(1, _LOGIT_BUDGET // vocab)
        pooled = np.empty((len(lengths), vocab), dtype=np.float32)
        start = 0
        while start < len(lengths):
            # As many texts as fit the budget (at least one; a longer text is cut in column blocks).
            end, tokens = start + 1, lengths[start]
            while end < len(lengths) and tokens + lengths[end] <= max_tokens:
                tokens += lengths[end]
                end += 1
            states = np.concatenate([hidden[b, : lengths[b]] for b in range(start, end)])
            offsets = np.cumsum([0] + [lengths[b] for b in range(start, end - 1)])
            if end - start == 1 and tokens > max_tokens:
                best = np.full(vocab, -np.inf, dtype=np.float32)
                for col in range(0, tokens, max_tokens):
                    np.maximum(best, (weight @ states[col : col + max_tokens].T).max(axis=1), out=best)
                pooled[start] = best
            else:
                # Term-major logits: each text's max runs along contiguous memory.
                logits = weight @ states.T
                pooled[start:end] = np.maximum.reduceat(logits, offsets, axis=1).T
            start = end
        if self._bias is not None:
            pooled += self._bias
        if shift:
            pooled += np.float32(shift)
        np.maximum(pooled, 0.0, out=pooled)
        np.log1p(pooled, out=pooled)
        pooled[:, ~self._allowed] = 0.0
        return pooled

    def _to_sparse(self, row: np.ndarray, k: int | None) -> SparseVector:
        idx = np.flatnonzero(row > 0)
        if k is not None and idx.size > k:
            kth = np.partition(row[idx], idx.size - k)[idx.size - k]
            idx = idx[row[idx] >= kth]
        terms = self._terms
        vec = {terms[i]: v for i, v in zip(idx.tolist(), row[idx].tolist())}
        return prune_top_k(vec, k)  # exact ties at the k-th weight: broken by term string

    def _encode(self, texts: Sequence[str], max_length: int, k: int | None, pieces: int = 1,
                shift: float = 0.0) -> list[SparseVector]:
        """Vectors of ``texts``; with ``pieces`` > 1 a longer text is read in up to that many
        windows of ``max_length`` and its activations max-pooled (``pieces`` module)."""
        texts = list(texts)
        if not texts:
            return []
        out: list[SparseVector] = [{} for _ in texts]
        prefix, suffix = self._affixes
        # Only the tokenizer's truncation setting is shared state: ONNX Runtime sessions may run
        # from several threads at once, so a query need not wait behind a batch of documents
        # being encoded in the background (the server's learned build).
        with self._lock:
            ids = self._tokenize(texts, piece_cap(max_length, len(prefix) + len(suffix), pieces))
        # Blank texts get empty vectors (a BERT would still "expand" its bare [CLS] [SEP]).
        rows = [(i, piece) for i in range(len(ids)) if ids[i] and texts[i].strip()
                for piece in split_pieces(ids[i], prefix, suffix, max_length, pieces)]

        def activations(batch: list[list[int]]) -> np.ndarray:
            return self._pool(self._hidden(batch), [len(b) for b in batch], shift)

        for i, row in pooled_rows(rows, self.batch_size, activations, np.maximum):
            out[i] = self._to_sparse(row, k)
        return out

    def __repr__(self) -> str:
        return f"OnnxSpladeEncoder({self.encoder_id!r}, {self.runtime})"


_CACHE: dict[tuple[str, tuple[tuple[str, Any], ...]], OnnxSpladeEncoder] = {}
_CACHE_LOCK = threading.Lock()


def load_onnx_splade(model: str | Path, **kw: Any) -> OnnxSpladeEncoder:
    """The process-wide :class:`OnnxSpladeEncoder` for ``model`` and these settings (loaded once)."""
    key = (str(Path(model).expanduser().resolve()), tuple(sorted(kw.items())))
    enc = _CACHE.get(key)
    if enc is not None:
        return enc
    with _CACHE_LOCK:
        enc = _CACHE.get(key)
        if enc is None:
            enc = OnnxSpladeEncoder(model, **kw)
            _CACHE[key] = enc
        return enc
