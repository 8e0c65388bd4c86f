"""The SPLADE encoder: a checkpoint (``checkpoint``) loaded as a network whose LM head we apply
ourselves, pooled by ``pooling``, as a :class:`~codelsr.encoders.base.SparseEncoder`.

Decoders run with bidirectional attention: ``config.is_causal = False``, ``is_causal = False`` on
every attention module, and an explicit 4-D additive mask that lets every token see every
non-padding token (the module flag alone is not enough: eager attention ignores it). The LM head
is detached and applied to real tokens only, so the batch x length x vocabulary logits never
exist. Terms are the tokenizer's raw vocabulary strings; special tokens and ids beyond the
tokenizer are dropped. The checkpoints' remote code is never executed. Why, with sources: docs/model.md.

No torch at import time: a missing torch/transformers surfaces as ``EncoderUnavailableError``
when an encoder is built.
"""

from __future__ import annotations

import hashlib
import importlib
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from codelsr.encoders.base import lines_read, prune_top_k
from codelsr.encoders.splade.checkpoint import (
    INSTALL_HINT,
    NAVER_WRAPPER_MODEL_TYPE,
    OUTPUT_VOCAB_FILE,
    adapter_dir,
    checkpoint_fingerprint,
    document_bias,
    has_tokenizer,
    has_weights,
    model_family,
    read_json,
    require,
    resolve_checkpoint,
)
from codelsr.encoders.splade.pieces import affixes, piece_cap, pooled_rows, split_pieces
from codelsr.encoders.splade.pooling import activate, head_max_logits
from codelsr.errors import EncoderUnavailableError
from codelsr.records import SparseVector

__all__ = ["FAMILY_DEFAULTS", "PRESETS", "SpladeEncoder", "load_splade"]

# (query_top_k, doc_top_k). "efficient" is the SPLADE-Code paper's latency setting.
PRESETS: dict[str, tuple[int | None, int | None]] = {"full": (None, None), "efficient": (10, 100)}

# Per-family defaults: max lengths in tokens (documents, queries).
FAMILY_DEFAULTS: dict[str, tuple[int, int]] = {"mlm": (512, 128), "decoder": (1024, 256)}


class SpladeEncoder:
    """A SPLADE checkpoint as a :class:`~codelsr.encoders.base.SparseEncoder`.

    ``model`` is a hub name (``naver/splade-code-06B``) or a local folder (a saved model, a peft
    adapter folder with ``adapter_config.json``, or a naver ``"splade"`` wrapper folder).
    ``device=None`` picks cuda, then mps, then cpu. ``dtype="auto"`` is bfloat16 on cuda and
    float32 elsewhere. Max lengths default per family (MLM 512/128, decoder 1024/256 tokens for
    documents/queries); ``query_top_k``/``doc_top_k`` prune vectors (``None`` keeps all), and
    ``preset="efficient"`` sets them to the SPLADE-Code paper's (10, 100) unless given.
    ``threads`` sets ``torch.set_num_threads`` (process-wide). ``name`` replaces the model's
    location in ``encoder_id`` (for models shipped inside the package, whose folder moves).
    ``doc_pieces=n`` reads a document longer than ``max_length_doc`` in up to n windows and
    max-pools them (``pieces``); 1, the default, cuts it at one window.

    A checkpoint folder may hold ``output_vocab.json`` (``{"token_ids": [...]}``): the model's
    output space is then those vocabulary ids only, and only their rows of the LM head are ever
    multiplied -- for a tiny model the head is nearly all of the cost. It is part of the model
    (it changes ``encoder_id``); ``output_vocab=False`` ignores it, to see the full vocabulary.
    """

    def __init__(
        self,
        model: str,
        *,
        device: str | None = None,
        dtype: str = "auto",
        max_length_doc: int | None = None,
        max_length_query: int | None = None,
        query_top_k: int | None = None,
        doc_top_k: int | None = None,
        preset: str | None = None,
        batch_size: int = 16,
        threads: int | None = None,
        name: str | None = None,
        output_vocab: bool = True,
        doc_pieces: int = 1,
    ) -> None:
        torch = require("torch")
        transformers = require("transformers")
        if preset is not None:
            if preset not in PRESETS:
                raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
            pq, pd = PRESETS[preset]
            query_top_k = pq if query_top_k is None else query_top_k
            doc_top_k = pd if doc_top_k is None else doc_top_k
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if doc_pieces < 1:
            raise ValueError("doc_pieces must be >= 1")
        if threads is not None:
            torch.set_num_threads(int(threads))
        self._torch = torch
        self._lock = threading.Lock()

        self.model_name = model
        identity, local, revision = resolve_checkpoint(model)
        raw_cfg = read_json(local / "config.json") if (local / "config.json").is_file() else {}
        adapter = adapter_dir(local)
        base_local: Path | None = None
        base_cfg: dict[str, Any] | None = None
        base_name = None
        if adapter is not None or raw_cfg.get("model_type") == NAVER_WRAPPER_MODEL_TYPE:
            adapter_cfg = read_json(adapter / "adapter_config.json") if adapter else {}
            # naver's wrapper config names the hub base ("Qwen/Qwen3-8B"); an adapter_config may
            # hold a path from the training machine, so the wrapper's word comes first.
            wrapper_base = (
                raw_cfg.get("model_name_or_path")
                if raw_cfg.get("model_type") == NAVER_WRAPPER_MODEL_TYPE
                else None
            )
            base_name = wrapper_base or adapter_cfg.get("base_model_name_or_path")
            if not base_name:
                raise EncoderUnavailableError(
                    f"{model!r} is an adapter/wrapper checkpoint that does not name its base model"
                )
            # The 0.6B wrapper carries its full weights; from its base only config and tokenizer.
            need_weights = not (adapter is None and has_weights(local))
            try:
                _, base_local, _ = resolve_checkpoint(str(base_name), weights=need_weights)
            except EncoderUnavailableError as exc:
                raise EncoderUnavailableError(
                    f"cannot load the base model {base_name!r} of {model!r}: {exc}"
                ) from exc
            base_cfg = read_json(base_local / "config.json")
        if not raw_cfg and base_cfg is None:
            raise EncoderUnavailableError(f"{model!r} has no config.json")
        # An adapter or naver wrapper takes its architecture from the base model's config.
        self.family = model_family(base_cfg if base_cfg is not None else raw_cfg)

        self.device = self._pick_device(device)
        self.dtype_name = self._pick_dtype(dtype, self.device)
        torch_dtype = getattr(torch, self.dtype_name)
        dflt_doc, dflt_query = FAMILY_DEFAULTS[self.family]
        self.max_length_doc = int(max_length_doc or dflt_doc)
        self.max_length_query = int(max_length_query or dflt_query)
        self.query_top_k = query_top_k if query_top_k and query_top_k > 0 else None
        self.doc_top_k = doc_top_k if doc_top_k and doc_top_k > 0 else None
        self.batch_size = int(batch_size)
        self.document_bias = document_bias(raw_cfg)
        # SPLADE-Code decoders are bidirectional; a config may opt out with "bidirectional": false.
        self.bidirectional = self.family == "decoder" and raw_cfg.get("bidirectional") is not False
        self.padding_side = (
            str(raw_cfg.get("padding_side", "left")) if self.family == "decoder" else "right"
        )

        net = self._load_network(transformers, local, raw_cfg, adapter, base_local, torch_dtype)
        tok_dirs = [d for d in (local, adapter, base_local) if d is not None and has_tokenizer(d)]
        if not tok_dirs:
            raise EncoderUnavailableError(f"{model!r} ships no tokenizer files")
        self._tokenizer = transformers.AutoTokenizer.from_pretrained(str(tok_dirs[0]))
        if self._tokenizer.pad_token_id is None:
            self._tokenizer.pad_token = self._tokenizer.eos_token or self._tokenizer.unk_token
        if self._tokenizer.pad_token_id is None:
            raise EncoderUnavailableError(f"the tokenizer of {model!r} has no pad/eos/unk token")

        self._prepare_network(net)
        self._build_vocab()
        self.output_vocab_size: int | None = None
        if output_vocab and (local / OUTPUT_VOCAB_FILE).is_file():
            self._restrict_output(local / OUTPUT_VOCAB_FILE)
        if self.family == "mlm":  # absolute position embeddings: a hard limit
            limit = int(getattr(net.config, "max_position_embeddings", 512) or 512)
            if getattr(net.config, "model_type", "") in {"roberta", "xlm-roberta", "camembert"}:
                limit -= 2  # positions start after the padding index
            tok_limit = getattr(self._tokenizer, "model_max_length", None)
            if isinstance(tok_limit, int) and 0 < tok_limit < 100_000:
                limit = min(limit, tok_limit)
            self.max_length_doc = min(self.max_length_doc, limit)
            self.max_length_query = min(self.max_length_query, limit)

        fp = checkpoint_fingerprint(*(d for d in (local, base_local) if d is not None))
        if self.output_vocab_size is not None:  # a restricted output space is another model
            fp = hashlib.sha1((fp + (local / OUTPUT_VOCAB_FILE).read_text()).encode()).hexdigest()[:12]
        self.revision = revision
        self.fingerprint = fp
        self.identity = identity
        self.base_model = str(base_name) if base_name else None
        q = self.query_top_k if self.query_top_k else "all"
        d = self.doc_top_k if self.doc_top_k else "all"
        # A model shipped inside the package is named, not located: its folder moves with every
        # install, while its name and file fingerprint do not.
        label = name or identity
        self.doc_pieces = int(doc_pieces)
        probe = "x = 1"  # the special tokens around a text: only pieces need them
        self._affixes = affixes(self._tokenizer(probe)["input_ids"],
                                self._tokenizer(probe, add_special_tokens=False)["input_ids"]) if doc_pieces > 1 else ([], [])
        self.encoder_id = (
            f"splade:{label}@{fp}:q{q}:d{d}:lq{self.max_length_query}:ld{self.max_length_doc}"
            + (f":dp{self.doc_pieces}" if self.doc_pieces > 1 else "")
            + (f":db{self.document_bias:g}" if self.document_bias else "")
        )

    # ---------------------------------------------------------------- loading

    def _pick_device(self, device: str | None) -> str:
        torch = self._torch
        if device:
            return device
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"

    @staticmethod
    def _pick_dtype(dtype: str, device: str) -> str:
        if dtype == "auto":
            return "bfloat16" if device.startswith("cuda") else "float32"
        if dtype not in {"float32", "bfloat16", "float16"}:
            raise ValueError(f"dtype must be auto, float32, bfloat16 or float16, not {dtype!r}")
        return dtype

    def _load_network(
        self,
        transformers: Any,
        local: Path,
        raw_cfg: dict[str, Any],
        adapter: Path | None,
        base_local: Path | None,
        torch_dtype: Any,
    ) -> Any:
        auto = (
            transformers.AutoModelForMaskedLM
            if self.family == "mlm"
            else transformers.AutoModelForCausalLM
        )
        dtype_kw = (
            {"dtype": torch_dtype}
            if int(transformers.__version__.split(".")[0]) >= 5
            else {"torch_dtype": torch_dtype}
        )
        kw: dict[str, Any] = {**dtype_kw, "trust_remote_code": False}
        if self.family == "decoder":
            # SDPA/eager honour our explicit 4-D bidirectional mask; flash-attention would not.
            kw["attn_implementation"] = "sdpa"
        try:
            wrapper = raw_cfg.get("model_type") == NAVER_WRAPPER_MODEL_TYPE
            if wrapper and base_local is not None and has_weights(local):
                # naver's "splade" wrapper: full weights at the root, base architecture elsewhere.
                cfg = transformers.AutoConfig.from_pretrained(str(base_local))
                kw.pop("trust_remote_code")
                net = auto.from_config(cfg, **kw)
                self._load_state_dict_flex(net, local)
            elif base_local is not None:
                net = auto.from_pretrained(str(base_local), **kw)
            else:
                net = auto.from_pretrained(str(local), **kw)
            if adapter is not None:
                try:
                    peft = importlib.import_module("peft")
                except ImportError as exc:
                    raise EncoderUnavailableError(
                        f"{self.model_name!r} is a LoRA adapter; loading it needs peft: "
                        f"run {INSTALL_HINT}"
                    ) from exc
                net = peft.PeftModel.from_pretrained(net, str(adapter)).merge_and_unload()
        except EncoderUnavailableError:
            raise
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise EncoderUnavailableError(
                f"cannot load SPLADE checkpoint {self.model_name!r}: {exc}"
            ) from exc
        return net

    def _load_state_dict_flex(self, net: Any, folder: Path) -> None:
        """Load weights saved under a wrapper prefix (``model.``, ...) into ``net``."""
        torch = self._torch
        state: dict[str, Any] = {}
        for p in sorted(folder.iterdir()):
            if p.suffix == ".safetensors":
                from safetensors.torch import load_file

                state.update(load_file(str(p)))
            elif p.suffix == ".bin" and p.is_file():
                state.update(torch.load(str(p), map_location="cpu", weights_only=True))
        wanted = set(net.state_dict())
        best: tuple[int, str] = (-1, "")
        for prefix in ("", "model.", "module.", "base_model.model.", "encoder."):
            hits = sum(1 for k in state if k.startswith(prefix) and k[len(prefix):] in wanted)
            best = max(best, (hits, prefix))
        prefix = best[1]
        stripped = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        missing, _unexpected = net.load_state_dict(stripped, strict=False)
        tied = {"lm_head.weight"} if getattr(net.config, "tie_word_embeddings", False) else set()
        missing = [m for m in missing if m not in tied]
        if missing:
            raise EncoderUnavailableError(
                f"weights in {folder} do not fit the base architecture; missing {missing[:5]}"
            )
        if tied:
            net.tie_weights()

    def _prepare_network(self, net: Any) -> None:
        torch = self._torch
        net.eval()
        net.to(self.device)  # first, so a head tied to the embeddings stays one tensor
        if self.bidirectional:
            net.config.is_causal = False
            for module in net.modules():
                if hasattr(module, "is_causal"):
                    module.is_causal = False
        head = net.get_output_embeddings()
        if head is None or not hasattr(head, "weight"):
            raise EncoderUnavailableError(f"{self.model_name!r} has no LM head to read logits from")
        # Detach the V x H head: the network then returns pre-head states and we apply the head
        # ourselves to real tokens only, in chunks, with a running max.
        self._head_weight = head.weight.detach()
        bias = getattr(head, "bias", None)
        self._head_bias = bias.detach() if bias is not None else None
        # A final logit soft-cap (Gemma 2/3) is applied by the CausalLM after its head, so with
        # the head detached it would hit the hidden states: move it after our max (it is monotone).
        self._softcap = getattr(net.config, "final_logit_softcapping", None)
        if self._softcap:
            net.config.final_logit_softcapping = None
        for name, module in net.named_modules():
            if module is head:
                parent_name, _, child = name.rpartition(".")
                parent = net.get_submodule(parent_name) if parent_name else net
                setattr(parent, child, torch.nn.Identity())
                break
        self._net = net

    def _build_vocab(self) -> None:
        torch = self._torch
        tok = self._tokenizer
        vocab_size = int(self._head_weight.shape[0])
        n_tok = len(tok)
        ids = list(range(min(vocab_size, n_tok)))
        strings = tok.convert_ids_to_tokens(ids)
        special = set(tok.all_special_ids)
        for tid, added in getattr(tok, "added_tokens_decoder", {}).items():
            if getattr(added, "special", False):
                special.add(int(tid))
        terms: list[str | None] = [None] * vocab_size
        seen: dict[str, int] = {}
        for i, s in zip(ids, strings):
            if s is None or i in special:
                continue
            if s in seen:  # never let two ids share one key
                s = f"{s}#{i}"
            seen[s] = i
            terms[i] = s
        self._terms = terms
        allowed = torch.tensor([t is not None for t in terms], dtype=torch.bool)
        self._allowed = allowed.to(self.device)

    def _restrict_output(self, path: Path) -> None:
        """Keep only the LM-head rows (and terms) that ``output_vocab.json`` lists."""
        torch = self._torch
        try:
            ids = sorted({int(i) for i in read_json(path)["token_ids"]})
        except (KeyError, TypeError, ValueError) as exc:
            raise EncoderUnavailableError(f"{path} is not an output vocabulary: {exc}") from exc
        vocab = len(self._terms)
        if not ids or ids[0] < 0 or ids[-1] >= vocab:
            raise EncoderUnavailableError(
                f"{path} lists token ids outside the model's vocabulary of {vocab}"
            )
        index = torch.tensor(ids, dtype=torch.long, device=self._head_weight.device)
        # A copy, contiguous: the head of a tied model shares storage with the input embeddings.
        self._head_weight = self._head_weight.index_select(0, index).contiguous()
        if self._head_bias is not None:
            self._head_bias = self._head_bias.index_select(0, index).contiguous()
        self._terms = [self._terms[i] for i in ids]
        self._allowed = self._allowed.index_select(0, index.to(self._allowed.device))
        self.output_vocab_size = len(ids)

    # --------------------------------------------------------------- protocol

    @property
    def window_lines(self) -> int:
        """Chunks are cut to about what ``max_length_doc`` tokens hold (``encoders.base``)."""
        return lines_read(self.max_length_doc)

    def settings(self) -> dict[str, Any]:
        return {
            "kind": "splade",
            "model": self.model_name,
            "identity": self.identity,
            "fingerprint": self.fingerprint,
            "revision": self.revision,
            "base_model": self.base_model,
            "family": self.family,
            "bidirectional": self.bidirectional,
            "padding_side": self.padding_side,
            "vocab_size": len(self._terms),
            "output_vocab": self.output_vocab_size,
            "document_bias": self.document_bias,
            "max_length_doc": self.max_length_doc,
            "max_length_query": self.max_length_query,
            "query_top_k": self.query_top_k,
            "doc_top_k": self.doc_top_k,
            "doc_pieces": self.doc_pieces,
            "dtype": self.dtype_name,
            "device": self.device,
            "batch_size": self.batch_size,
        }

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVector]:
        return self._encode(texts, self.max_length_doc, self.doc_top_k, self.doc_pieces, self.document_bias)

    def encode_queries(self, texts: Sequence[str]) -> list[SparseVector]:
        return self._encode(texts, self.max_length_query, self.query_top_k)

    # --------------------------------------------------------------- encoding

    def _tokenize(self, texts: Sequence[str], max_length: int) -> list[list[int]]:
        enc = self._tokenizer(
            list(texts), truncation=True, max_length=max_length, padding=False,
            return_attention_mask=False, return_token_type_ids=False,
        )  # fmt: skip
        return [list(ids) for ids in enc["input_ids"]]

    def _pad(self, batch: list[list[int]]) -> tuple[Any, Any]:
        torch = self._torch
        width = max(len(ids) for ids in batch)
        pad = int(self._tokenizer.pad_token_id)
        input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, ids in enumerate(batch):
            n = len(ids)
            if self.padding_side == "left":
                input_ids[row, width - n :] = torch.tensor(ids, dtype=torch.long)
                mask[row, width - n :] = 1
            else:
                input_ids[row, :n] = torch.tensor(ids, dtype=torch.long)
                mask[row, :n] = 1
        return input_ids.to(self.device), mask.to(self.device)

    def _forward_hidden(self, input_ids: Any, mask: Any) -> Any:
        """Pre-head states (batch, length, hidden); the attention is bidirectional for decoders."""
        torch = self._torch
        if self.family == "decoder":
            # Every query position may attend to every non-padding key: no causal triangle.
            dtype = self._head_weight.dtype
            keep = mask[:, None, None, :].bool().expand(-1, 1, mask.shape[1], -1)
            attn = torch.zeros(keep.shape, dtype=dtype, device=mask.device)
            attn = attn.masked_fill(~keep, torch.finfo(dtype).min)
            if not self.bidirectional:
                n = mask.shape[1]
                causal = torch.ones(n, n, dtype=torch.bool, device=mask.device).tril()
                attn = attn.masked_fill(~causal, torch.finfo(dtype).min)
            out = self._net(input_ids=input_ids, attention_mask=attn, use_cache=False)
        else:
            out = self._net(input_ids=input_ids, attention_mask=mask)
        return out.logits if hasattr(out, "logits") else out[0]

    def _pool(self, hidden: Any, mask: Any, shift: float = 0.0) -> Any:
        """(batch, vocab) float32 SPLADE activations of a batch (see ``pooling``); ``shift`` is
        added to the head's bias (documents: ``document_bias``)."""
        best = head_max_logits(self._head_weight, hidden, mask)
        bias = self._head_bias
        if shift:
            bias = (bias.float() + shift) if bias is not None else self._torch.full((best.shape[-1],), shift, device=best.device)
        return activate(best, bias=bias, softcap=self._softcap, keep=self._allowed)

    def _to_sparse(self, row: Any, k: int | None) -> SparseVector:
        torch = self._torch
        if k is not None:
            nnz = int((row > 0).sum())
            if nnz > k:
                kth = torch.topk(row, k).values[-1]
                row = torch.where(row >= kth, row, torch.zeros_like(row))
        idx = torch.nonzero(row > 0).flatten()
        vals = row[idx].tolist()
        terms = self._terms
        vec = {terms[i]: float(v) for i, v in zip(idx.tolist(), vals)}
        return prune_top_k(vec, k)  # exact ties at the k-th weight: broken by term string

    def _encode(self, texts: Sequence[str], max_length: int, k: int | None, pieces: int = 1,
                shift: float = 0.0) -> list[SparseVector]:
        """Vectors of ``texts``; with ``pieces`` > 1 a longer text is read in up to that many
        windows of ``max_length`` and its activations max-pooled (``pieces`` module)."""
        torch = self._torch
        texts = list(texts)
        if not texts:
            return []
        out: list[SparseVector] = [{} for _ in texts]
        prefix, suffix = self._affixes
        with self._lock, torch.inference_mode():
            ids = self._tokenize(texts, piece_cap(max_length, len(prefix) + len(suffix), pieces))
            # Blank texts get empty vectors (a BERT would still "expand" its bare [CLS] [SEP]).
            rows = [(i, piece) for i in range(len(ids)) if ids[i] and texts[i].strip()
                    for piece in split_pieces(ids[i], prefix, suffix, max_length, pieces)]

            def activations(batch: list[list[int]]) -> Any:
                input_ids, mask = self._pad(batch)
                return self._pool(self._forward_hidden(input_ids, mask), mask, shift).cpu()

            for i, row in pooled_rows(rows, self.batch_size, activations, torch.maximum):
                out[i] = self._to_sparse(row, k)
        return out

    def __repr__(self) -> str:
        where = f"device={self.device!r}, dtype={self.dtype_name!r}"
        return f"SpladeEncoder({self.encoder_id!r}, {where})"


_CACHE: dict[tuple[str, tuple[tuple[str, Any], ...]], SpladeEncoder] = {}
_CACHE_LOCK = threading.Lock()


def load_splade(model: str, **kw: Any) -> SpladeEncoder:
    """The process-wide :class:`SpladeEncoder` for ``model`` and these settings (loaded once)."""
    key = (model, tuple(sorted(kw.items())))
    enc = _CACHE.get(key)
    if enc is not None:
        return enc
    with _CACHE_LOCK:
        enc = _CACHE.get(key)
        if enc is None:
            enc = SpladeEncoder(model, **kw)
            _CACHE[key] = enc
        return enc
