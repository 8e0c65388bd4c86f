"""Finding a SPLADE checkpoint and saying what it is: hub name or folder -> local files, its
family (masked-LM or decoder), adapter and tokenizer folders, and a cheap fingerprint.

Nothing here imports torch; ``require`` imports a heavy module on demand with an install hint.
The checkpoint formats and the SPLADE-Code recipe are described in docs/model.md.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import os
from pathlib import Path
from typing import Any

from codelsr.errors import EncoderUnavailableError, UnknownEncoderError

INSTALL_HINT = "pip install 'codelsr[splade]'"

MLM_MODEL_TYPES = frozenset(
    {
        "bert", "distilbert", "roberta", "xlm-roberta", "camembert", "electra", "albert",
        "mpnet", "modernbert", "deberta", "deberta-v2", "ernie", "nomic_bert", "xlm",
    }
)  # fmt: skip
DECODER_MODEL_TYPES = frozenset(
    {
        "qwen3", "qwen2", "qwen3_moe", "qwen2_moe", "llama", "mistral", "mixtral", "gemma",
        "gemma2", "gemma3_text", "phi", "phi3", "olmo", "olmo2", "granite", "smollm3",
    }
)  # fmt: skip
NAVER_WRAPPER_MODEL_TYPE = "splade"  # naver's custom SpladeConfig (splade-code-06B / -8B)

WEIGHT_SUFFIXES = (".safetensors", ".bin")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json")
# A checkpoint may restrict its output space to a subset of the vocabulary (SpladeEncoder docstring).
OUTPUT_VOCAB_FILE = "output_vocab.json"
# config.json key: a number added to the MLM head's bias for documents only (``document_bias``).
DOCUMENT_BIAS_KEY = "splade_document_bias"


def require(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise EncoderUnavailableError(
            f"SPLADE encoders need torch and transformers ({module} is missing): "
            f"run {INSTALL_HINT}"
        ) from exc


def document_bias(cfg: dict[str, Any]) -> float:
    """The model's document-side bias shift (``config.json`` key :data:`DOCUMENT_BIAS_KEY`; 0 without).

    Why: ``log1p(relu(logit + bias))`` cuts a term off where its logit falls below ``-bias``; a
    student distilled into very sparse documents (22-28 terms for 128 tokens, run mini4 in
    docs/model.md) ranks better when documents keep more of their weak terms, while its queries
    should not (raising the queries' bias too hurt there). The shift is part of the model: it is
    in ``config.json``, which the fingerprint and the ONNX export's staleness check both read."""
    value = cfg.get(DOCUMENT_BIAS_KEY, 0.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise EncoderUnavailableError(f"config.json: {DOCUMENT_BIAS_KEY} must be a finite number, not {value!r}")
    return float(value)


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EncoderUnavailableError(f"cannot read {path}: {exc}") from exc


def hub_offline() -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except ImportError:  # pragma: no cover
        return True


def looks_like_path(name: str) -> bool:
    starts = ("/", "./", "../", "~", "\\")
    return name.startswith(starts) or os.path.isabs(name) or name in {".", ".."}


def resolve_checkpoint(name: str, *, weights: bool = True) -> tuple[str, Path, str | None]:
    """Map a hub name or local path to ``(identity, local directory, revision or None)``.

    A hub name is looked up in the local cache first; only when it is missing there (and the hub
    is not switched off) is it downloaded -- without weight files when ``weights`` is false.
    """
    expanded = Path(os.path.expanduser(name))
    if expanded.exists():
        if not expanded.is_dir():
            raise EncoderUnavailableError(f"SPLADE checkpoint {name!r} is a file; give its folder")
        return str(expanded.resolve()), expanded.resolve(), None
    if looks_like_path(name):
        raise EncoderUnavailableError(f"no SPLADE checkpoint folder at {name!r}")
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import (
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )
    except ImportError as exc:
        raise EncoderUnavailableError(
            f"loading {name!r} from the Hugging Face hub needs huggingface_hub: run {INSTALL_HINT}"
        ) from exc
    unreachable = (
        f"SPLADE model {name!r} is not in the local Hugging Face cache and the hub is "
        "unreachable (offline). Download it once where the hub is reachable "
        f"(`hf download {name}`), or pass the path of a local copy instead."
    )
    try:
        local = snapshot_download(name, local_files_only=True)
    except (LocalEntryNotFoundError, FileNotFoundError, ValueError):
        if hub_offline():
            raise EncoderUnavailableError(unreachable) from None
        try:
            patterns = ["*.json", "*.txt", "*.model", "lora/*"]
            local = snapshot_download(name, allow_patterns=patterns + ["*.safetensors"] * weights)
        except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
            raise UnknownEncoderError(
                f"{name!r} is neither a local folder nor a model on the Hugging Face hub"
            ) from exc
        except Exception as exc:  # connection errors come in many types
            raise EncoderUnavailableError(f"{unreachable} ({type(exc).__name__})") from exc
    path = Path(local)
    return name, path, path.name


def checkpoint_fingerprint(*dirs: Path) -> str:
    """Cheap identity of a checkpoint: config bytes plus the names and sizes of its files."""
    h = hashlib.sha1()
    for d in dirs:
        for sub in ("", "lora"):
            base = d / sub if sub else d
            for cfg in ("config.json", "adapter_config.json"):
                p = base / cfg
                if p.is_file():
                    h.update(f"{sub}/{cfg}\0".encode())
                    h.update(p.read_bytes())
            if base.is_dir():
                for p in sorted(base.iterdir()):
                    if p.is_file() and (p.suffix in WEIGHT_SUFFIXES or p.name in TOKENIZER_FILES):
                        h.update(f"{sub}/{p.name}\0{p.stat().st_size}\0".encode())
    return h.hexdigest()[:12]


def model_family(cfg: dict[str, Any]) -> str:
    model_type = str(cfg.get("model_type", "")).lower()
    if model_type in MLM_MODEL_TYPES:
        return "mlm"
    if model_type in DECODER_MODEL_TYPES:
        return "decoder"
    if model_type == NAVER_WRAPPER_MODEL_TYPE and cfg.get("archi_type", "decoder") == "decoder":
        return "decoder"
    archs = [str(a) for a in cfg.get("architectures") or []]
    if any(a.endswith("ForMaskedLM") for a in archs):
        return "mlm"
    if any(a.endswith("ForCausalLM") for a in archs):
        return "decoder"
    raise EncoderUnavailableError(
        f"unsupported SPLADE architecture (model_type={model_type!r}, architectures={archs}); "
        "expected a masked-LM (bert, distilbert, roberta, ...) or a decoder (qwen3, llama, ...)"
    )


def adapter_dir(d: Path) -> Path | None:
    for cand in (d, d / "lora"):
        if (cand / "adapter_config.json").is_file():
            return cand
    return None


def has_weights(d: Path) -> bool:
    return any(p.suffix in WEIGHT_SUFFIXES and p.is_file() for p in d.iterdir())


def has_tokenizer(d: Path) -> bool:
    return any((d / f).is_file() for f in TOKENIZER_FILES)
