"""Export a masked-LM SPLADE checkpoint folder to ONNX, so codelsr can run it without torch.

``python -m tools.train.export_onnx <checkpoint folder> [--check-texts N] [--int8]``

Writes ``model.onnx``, ``embeddings.npz`` and ``onnx.json`` into the folder (the format is described
in ``codelsr.encoders.splade.onnx_encoder``), then checks the export: it encodes real texts (codelsr's own
source files, chunked) with the torch encoder and with ONNX Runtime and fails unless every vector
pair has cosine >= 0.999 (it prints the worst). Run it again after every retraining: codelsr
refuses an export whose weights or config changed (``export_state``: "stale").

``--int8`` quantises: the graph's matrix weights (ONNX Runtime dynamic quantisation, one scale per
output channel) and the embedding table (one scale per row). For a 6-layer, 384-wide student that
halves ``model.onnx`` and ``embeddings.npz`` and encodes about a third faster on an AVX2 CPU, but
the vectors move (cosine about 0.995 to the float ones), so the check's bound is
``INT8_MIN_COSINE`` and the export gets its own ``encoder_id``. Judge an int8 model by its eval
scores, not by the cosine.

Needs the ``splade`` extra (torch, transformers) and ``onnx``; the result needs neither.
Any BERT-style masked-LM folder works (``BertForMaskedLM``, DistilBERT, RoBERTa, ...: whatever
``AutoModelForMaskedLM`` loads and ``torch.onnx`` traces); adapters (peft) and decoders are
not supported (they stay on torch).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from codelsr.encoders.splade.onnx_encoder import (
    ONNX_EMBEDDINGS_FILE,
    ONNX_FORMAT,
    ONNX_GRAPH_FILE,
    ONNX_MANIFEST_FILE,
    source_sha256,
)

OPSET = 17
INT8_MIN_COSINE = 0.97  # the worst vector of the check texts; float exports need 0.999
# Initialisers smaller than this stay float32 (constants of the graph; nothing to gain).
BF16_MIN_ELEMENTS = 1024


def _bf16_bits(values: np.ndarray) -> np.ndarray | None:
    """The bfloat16 bit patterns of float32 ``values`` if every value is exactly a bfloat16, else None."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    if np.any(bits & 0xFFFF):
        return None
    return (bits >> 16).astype(np.uint16)


def _body_module(folder: Path):
    """The checkpoint's network from input embeddings to the MLM head's output layer (cut off),
    and the arrays that stay outside it: the token embeddings, the head's weight if it is not
    those same embeddings, the head's bias."""
    import torch
    import transformers

    net = transformers.AutoModelForMaskedLM.from_pretrained(
        str(folder), dtype=torch.float32, attn_implementation="eager")
    net.eval()
    head = net.get_output_embeddings()
    if head is None or not hasattr(head, "weight"):
        raise SystemExit(f"{folder}: the model has no MLM output layer to export")
    embeddings = net.get_input_embeddings().weight.detach().float().numpy().copy()
    arrays = {"word_embeddings": embeddings}
    weight = head.weight.detach().float().numpy()
    if weight.shape != embeddings.shape or not np.array_equal(weight, embeddings):
        arrays["head_weight"] = weight.copy()
    if getattr(head, "bias", None) is not None:
        arrays["head_bias"] = head.bias.detach().float().numpy().copy()
    for name, module in net.named_modules():
        if module is head:
            parent_name, _, child = name.rpartition(".")
            setattr(net.get_submodule(parent_name) if parent_name else net, child, torch.nn.Identity())
            break

    class Body(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, inputs_embeds, attention_mask):
            out = self.inner(inputs_embeds=inputs_embeds, attention_mask=attention_mask)
            return out.logits

    # eval() on the wrapper too: the exporter restores the wrapper's training flag afterwards,
    # recursively, and a wrapper left in training mode would switch dropout on in ``net``.
    return Body(net).eval(), arrays


def int8_rows(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A float matrix as int8 rows and one float32 scale per row (symmetric: ``row = q * scale``)."""
    values = np.asarray(values, dtype=np.float32)
    scale = np.abs(values).max(axis=1) / 127.0
    scale[scale == 0] = 1.0
    quantised = np.clip(np.rint(values / scale[:, None]), -127, 127).astype(np.int8)
    return quantised, scale.astype(np.float32)


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def _quantise_graph(graph_path: Path) -> None:
    """Replace a float32 graph by its int8 version (matrix weights only; activations are
    quantised on the fly by ONNX Runtime)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantised = graph_path.with_name("int8-" + graph_path.name)
    quantize_dynamic(str(graph_path), str(quantised), weight_type=QuantType.QInt8, per_channel=True)
    quantised.replace(graph_path)


def _store_bf16(graph_path: Path) -> tuple[int, int]:
    """Rewrite float32 initialisers that are exact bfloat16 values as bfloat16 + a Cast node.

    Returns (initialisers converted, initialisers kept). ONNX Runtime folds the casts when it
    loads the graph, so inference is unchanged; the file is half the size."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(graph_path))
    graph = model.graph
    kept, converted = [], 0
    casts = []
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT or int(np.prod(init.dims)) < BF16_MIN_ELEMENTS:
            kept.append(init)
            continue
        values = numpy_helper.to_array(init)
        bits = _bf16_bits(values)
        if bits is None:
            kept.append(init)
            continue
        stored = f"{init.name}__bf16"
        tensor = helper.make_tensor(stored, TensorProto.BFLOAT16, list(init.dims), bits.tobytes(), raw=True)
        kept.append(tensor)
        casts.append(helper.make_node("Cast", [stored], [init.name], to=TensorProto.FLOAT,
                                      name=f"{init.name}__to_float32"))
        converted += 1
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(graph_path))
    return converted, len(kept) - converted


def _check_texts(n: int) -> list[str]:
    """Real code to compare the runtimes on: codelsr's own source, chunked as indexing does."""
    from codelsr.chunking import chunk_file

    root = Path(__file__).resolve().parents[2] / "src" / "codelsr"
    texts: list[str] = ["", "   ", "def f(): pass", "parse an HTTP response header"]
    for path in sorted(root.rglob("*.py")):
        texts.extend(c.text for c in chunk_file(path.name, path.read_text(encoding="utf-8")))
        if len(texts) >= n:
            break
    return texts[:n]


def cosine(a: dict[str, float], b: dict[str, float]) -> float:
    """Cosine of two sparse vectors (1.0 for two empty ones)."""
    if not a and not b:
        return 1.0
    dot = sum(w * b.get(t, 0.0) for t, w in a.items())
    na = sum(w * w for w in a.values()) ** 0.5
    nb = sum(w * w for w in b.values()) ** 0.5
    return dot / (na * nb) if na and nb else 0.0


def top_overlap(reference: dict[str, float], candidate: dict[str, float], k: int = 10) -> float:
    """The share of ``reference``'s k heaviest terms that are among ``candidate``'s (1.0 when empty)."""
    top_ref = sorted(reference, key=lambda t: (-reference[t], t))[:k]
    if not top_ref:
        return 1.0
    top_got = set(sorted(candidate, key=lambda t: (-candidate[t], t))[:k])
    return sum(t in top_got for t in top_ref) / len(top_ref)


def export(folder: Path, *, check_texts: int = 200, min_cosine: float | None = None, int8: bool = False) -> dict:
    """Write the export into ``folder`` and verify it; returns what ``onnx.json`` records.
    ``min_cosine`` defaults to 0.999, or ``INT8_MIN_COSINE`` with ``int8``."""
    import torch
    import transformers

    folder = folder.expanduser().resolve()
    if not (folder / "config.json").is_file():
        raise SystemExit(f"{folder} is not a checkpoint folder (no config.json)")
    if (folder / "adapter_config.json").is_file() or (folder / "lora").is_dir():
        raise SystemExit(f"{folder} is a LoRA adapter: merge it into its base and save the result first")
    digest = source_sha256(folder)
    body, arrays = _body_module(folder)

    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        graph = Path(tmp) / ONNX_GRAPH_FILE
        embeds = torch.from_numpy(arrays["word_embeddings"][[[101, 2000, 2001, 2002, 102], [101, 2003, 102, 0, 0]]])
        mask = (torch.arange(5)[None, :] < torch.tensor([[5], [3]])).long()
        dynamic = {0: "batch", 1: "tokens"}
        torch.onnx.export(
            body, (embeds, mask), str(graph), dynamo=False, opset_version=OPSET,
            input_names=["inputs_embeds", "attention_mask"], output_names=["hidden_states"],
            dynamic_axes={"inputs_embeds": dynamic, "attention_mask": dynamic, "hidden_states": dynamic},
        )  # fmt: skip
        if int8:
            _quantise_graph(graph)
        converted, kept = _store_bf16(graph)
        stored: dict[str, np.ndarray] = {}
        for name, values in arrays.items():
            if int8 and values.ndim == 2:
                stored[f"{name}_int8"], stored[f"{name}_scale"] = int8_rows(values)
                continue
            bits = _bf16_bits(values)
            stored[name if bits is None else f"{name}_bf16"] = values if bits is None else bits
        np.savez(Path(tmp) / ONNX_EMBEDDINGS_FILE, **stored)
        graph.replace(folder / ONNX_GRAPH_FILE)
        (Path(tmp) / ONNX_EMBEDDINGS_FILE).replace(folder / ONNX_EMBEDDINGS_FILE)
    manifest = {
        "format": ONNX_FORMAT,
        "description": "codelsr SPLADE export: model.onnx maps input embeddings to the MLM head's "
                       "input states; embeddings.npz holds the token embeddings and the head's output "
                       "layer (see codelsr.encoders.splade.onnx_encoder)",
        "source_sha256": digest,
        "weights": "int8" if int8 else "float",
        "graph": ONNX_GRAPH_FILE,
        "embeddings": ONNX_EMBEDDINGS_FILE,
        "arrays": sorted(stored),
        "opset": OPSET,
        "initialisers_bf16": converted,
        "initialisers_float32": kept,
        "exported_with": {"torch": torch.__version__, "transformers": transformers.__version__,
                          **({"onnxruntime": _ort_version()} if int8 else {})},
        "exported_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    (folder / ONNX_MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    if min_cosine is None:
        min_cosine = INT8_MIN_COSINE if int8 else 0.999
    if check_texts:
        try:
            manifest["check"] = verify(folder, check_texts, min_cosine)
        except BaseException:
            (folder / ONNX_MANIFEST_FILE).unlink()  # an export that failed its check is never used
            raise
        (folder / ONNX_MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def verify(folder: Path, n_texts: int, min_cosine: float) -> dict:
    """Encode real texts with both runtimes; raise SystemExit when a vector pair is too far apart."""
    from codelsr.encoders.splade import SpladeEncoder
    from codelsr.encoders.splade.onnx_encoder import OnnxSpladeEncoder

    texts = _check_texts(n_texts)
    reference = SpladeEncoder(str(folder), device="cpu", dtype="float32")
    candidate = OnnxSpladeEncoder(folder)
    same_vectors = candidate.weights == "float"  # an int8 export's vectors are its own (module doc)
    if (reference.encoder_id == candidate.encoder_id) != same_vectors:
        raise SystemExit(f"encoder ids {'differ' if same_vectors else 'agree'}: torch {reference.encoder_id} "
                         f"vs onnx {candidate.encoder_id} ({candidate.weights} weights)")
    result = {"texts": len(texts)}
    for side in ("documents", "queries"):
        ref = getattr(reference, f"encode_{side}")(texts)
        got = getattr(candidate, f"encode_{side}")(texts)
        cosines = [cosine(a, b) for a, b in zip(ref, got)]
        worst = min(cosines)
        result[f"{side}_min_cosine"] = round(worst, 6)
        result[f"{side}_median_cosine"] = round(float(np.median(cosines)), 6)
        result[f"{side}_top10_overlap"] = round(float(np.mean([top_overlap(a, b) for a, b in zip(ref, got)])), 4)
        if worst < min_cosine:
            raise SystemExit(f"ONNX export of {folder} does not match torch on {side}: "
                             f"cosine {worst:.6f} < {min_cosine}")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.train.export_onnx", description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path, help="a SPLADE checkpoint folder (config.json, weights, tokenizer)")
    ap.add_argument("--check-texts", type=int, default=200,
                    help="real chunks to compare torch and ONNX Runtime on (0: skip the check)")
    ap.add_argument("--min-cosine", type=float, default=None,
                    help=f"worst cosine the check accepts (default 0.999; {INT8_MIN_COSINE} with --int8)")
    ap.add_argument("--int8", action="store_true",
                    help="quantise the weights to int8: smaller and faster, other vectors (module doc)")
    args = ap.parse_args(argv)
    manifest = export(args.folder, check_texts=args.check_texts, min_cosine=args.min_cosine, int8=args.int8)
    sizes = {name: (args.folder / name).stat().st_size for name in (ONNX_GRAPH_FILE, ONNX_EMBEDDINGS_FILE)}
    print(json.dumps({**manifest, "bytes": sizes}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
