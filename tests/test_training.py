"""The pair miner's exclusions and the training command end to end on a tiny budget."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import CHECKPOINT_MODEL, SPLADE_EXTRA, shipped_model_as_base

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # evals/ and tools/ are repo folders, not installed packages
    sys.path.insert(0, str(REPO))

from evals.mining import (  # noqa: E402
    EVAL_PACKAGES,
    STDLIB_NAMES,
    TRAIN_EXCLUDED,
    excluded_component,
    first_paragraph,
    mine,
    unit_list_hash,
)


FAKE_MODULE = '''
def parse_header(line):
    """Split an HTTP header line into its name and value.

    More words that are not part of the query.
    """
    name, _, value = line.partition(":")
    return name.strip(), value.strip()


def first(a):
    """Return the value."""
    return a[0]


def second(a):
    """Return the value."""
    return a[1]


def tiny(a):
    """Too short."""
    return a


def helper(x):
    return x * 2


class Store:
    def put(self, key, value):
        """Store a value under a key, replacing any older value."""
        self._data[key] = value

    def abstract(self):
        """An abstract method has nothing to find."""
        raise NotImplementedError
'''

VENDORED = '''
def copied(x):
    """A function copied from somewhere that must never be trained on."""
    return x + 1
'''


@pytest.fixture()
def fake_package(tmp_path: Path) -> Path:
    pkg = tmp_path / "fakepkg"
    (pkg / "_vendor" / "rich").mkdir(parents=True)
    (pkg / "_distutils").mkdir()
    (pkg / "tests").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "core.py").write_text(FAKE_MODULE)
    (pkg / "_vendor" / "rich" / "text.py").write_text(VENDORED)
    (pkg / "_distutils" / "util.py").write_text(VENDORED.replace("copied", "copied2"))
    (pkg / "tests" / "test_core.py").write_text(VENDORED.replace("copied", "copied3"))
    return pkg


def test_training_exclusions_cover_the_stdlib_and_every_eval_package():
    assert set(EVAL_PACKAGES) <= TRAIN_EXCLUDED
    assert {"os", "json", "asyncio", "email", "distutils", "_distutils"} <= STDLIB_NAMES <= TRAIN_EXCLUDED
    assert len(EVAL_PACKAGES) >= 5


def test_training_packages_are_disjoint_from_eval_packages_and_the_stdlib():
    from tools.train.data import training_packages

    names = set(training_packages())
    assert names, "no installed packages to train on"
    assert not names & set(EVAL_PACKAGES)
    assert not names & set(sys.stdlib_module_names)


def test_vendored_copies_are_found_anywhere_below_the_top_level():
    assert excluded_component("setuptools/_distutils/core.py", TRAIN_EXCLUDED) == "_distutils"
    assert excluded_component("pip/_vendor/rich/text.py", TRAIN_EXCLUDED) == "rich"
    assert excluded_component("pkg/sub/json.py", TRAIN_EXCLUDED) == "json"
    assert excluded_component("torch/nn/functional.py", TRAIN_EXCLUDED) is None


def test_mining_for_training_skips_vendored_stdlib_eval_packages_and_tests(fake_package: Path):
    mined = mine([fake_package], exclude=TRAIN_EXCLUDED)
    paths = {p.path for p in mined.corpus}
    assert paths == {"fakepkg/core.py"}


def test_training_refuses_excluded_packages(tmp_path: Path):
    from tools.train.data import training_pairs

    with pytest.raises(ValueError, match="excluded"):
        training_pairs(tmp_path, ["click", "json"])
    with pytest.raises(ValueError, match="excluded"):
        mine(["json"], exclude=TRAIN_EXCLUDED)


def test_a_pair_is_the_first_paragraph_and_the_code_without_its_docstring(fake_package: Path):
    mined = mine([fake_package], exclude=TRAIN_EXCLUDED)
    by_name = {p.qualname: p for p in mined.pairs}
    # Ambiguous ("Return the value." twice) and short ("Too short.") queries are dropped.
    assert sorted(by_name) == ["Store.put", "parse_header"]
    assert mined.dropped_ambiguous == 2 and mined.dropped_short == 1
    pair = by_name["parse_header"]
    assert pair.query == "Split an HTTP header line into its name and value."
    assert '"""' not in pair.code and pair.code.startswith("def parse_header(line):\n    name,")
    assert by_name["Store.put"].code.startswith("def put(self, key, value):")
    # Functions without a docstring are distractors; bodies that do nothing are dropped.
    assert [p.qualname for p in mined.distractors] == ["helper"]
    again = mine([fake_package], exclude=TRAIN_EXCLUDED).pairs
    assert again == mined.pairs and unit_list_hash(again) == unit_list_hash(mined.pairs)
    # Without exclusions (the eval suite's use) vendored code is mined too; tests never are.
    assert {p.qualname for p in mine([fake_package]).pairs} == {"parse_header", "Store.put", "copied", "copied2"}


def test_first_paragraph_joins_wrapped_lines():
    assert first_paragraph("\n    Do a\n    thing.\n\n    Details.\n") == "Do a thing."


def tiny_run(tmp_path: Path, name: str, steps: int, *extra: str) -> tuple[Path, Path, Path, list[str]]:
    """(base, run dir, model folder, argv) of a training run on 8 pairs of three small packages,
    from a SPLADE-tiny checkpoint as the base (the test is skipped without it)."""
    if not (CHECKPOINT_MODEL / "model.safetensors").is_file():
        pytest.skip("checkpoint model missing (tools/train/teachers/distill1)")
    base = tmp_path / "base"
    if not base.is_dir():
        shipped_model_as_base(base)
    run, out = tmp_path / "runs" / name, tmp_path / "model"
    argv = ["--run-dir", str(run), "--base-dir", str(base), "--out", str(out),
            "--packages", "idna", "yaml", "packaging", "--max-pairs", "8", "--batch-size", "4",
            "--max-steps", str(steps), "--no-split-identifiers", "--max-length-doc", "64", "--eval-length-doc", "64",
            "--save-dtype", "float32", *extra]  # fmt: skip
    return base, run, out, argv


@pytest.mark.slow
def test_the_training_command_runs_end_to_end_on_a_tiny_budget(tmp_path: Path):
    pytest.importorskip("torch", reason=SPLADE_EXTRA)
    from tools.train.train import main

    _, _, out, argv = tiny_run(tmp_path, "t", 2, "--ckpt-every", "1")
    rc = main(argv)
    assert rc == 0
    info = json.loads((out / "training.json").read_text())
    assert info["steps"] == 2 and info["train_pairs"] == 8
    assert info["valid_after"] is not None
    assert (tmp_path / "runs" / "t" / "checkpoint.pt").is_file()
    # A second run with a larger step budget resumes from the checkpoint instead of restarting.
    rc = main(tiny_run(tmp_path, "t", 3, "--output-vocab-pairs", "4")[3])
    assert json.loads((out / "training.json").read_text())["steps"] == 3

    from codelsr.encoders.splade import SpladeEncoder

    enc = SpladeEncoder(str(out), device="cpu")
    vec = enc.encode_queries(["parse a header line"])[0]
    assert vec and all(w > 0 for w in vec.values())
    # The output vocabulary: the terms the model activated on a sample of 4 of its 8 training pairs.
    ov = json.loads((out / "output_vocab.json").read_text())
    info = json.loads((out / "training.json").read_text())
    assert ov["terms_kept"] == len(ov["token_ids"]) == enc.output_vocab_size
    assert 0 < ov["terms_kept"] < 30_522 and ov["vectors_counted"] == 8 and ov["train_pairs"] == 4
    assert info["output_vocab"]["terms_kept"] == ov["terms_kept"] and info["valid_output_vocab"]
    kept = set(enc._tokenizer.convert_ids_to_tokens(ov["token_ids"]))
    assert set(vec) <= kept
    full = SpladeEncoder(str(out), device="cpu", output_vocab=False).encode_queries(["parse a header line"])[0]
    assert {t: w for t, w in full.items() if t in kept} == pytest.approx(vec, rel=1e-5)


def test_the_output_vocabulary_sample_is_seeded_spread_and_in_order():
    from tools.train.data import Pair
    from tools.train.output_vocab import sample_pairs

    pairs = [Pair(query=f"q{i}", code=f"c{i}", package=f"pkg{i // 100}", qualname=f"f{i}", path="m.py") for i in range(1000)]
    a = sample_pairs(pairs, 50, seed=13)
    assert len(a) == 50 and a == sample_pairs(pairs, 50, seed=13) != sample_pairs(pairs, 50, seed=14)
    idx = [int(p.query[1:]) for p in a]
    assert idx == sorted(idx)  # the pairs' own order
    assert len({p.package for p in a}) >= 8  # not the first 50 (one package): spread over all ten
    assert sample_pairs(pairs, 0) == pairs and sample_pairs(pairs, 5000) == pairs


def test_a_training_vocabulary_scores_only_its_rows_and_bounds_the_output_space(tmp_path: Path):
    pytest.importorskip("torch", reason=SPLADE_EXTRA)
    import torch

    from tools.train.train import Encoder, main

    base, run, out, argv = tiny_run(tmp_path, "v", 2, "--train-vocab-min-df", "1")
    # The restricted head is the full head's columns: same numbers, fewer of them.
    full = Encoder(base, "cpu", bf16=False)
    rows = full.tok.convert_tokens_to_ids(["the", "to", "return", "header", "hello", "zebra"])
    narrow = Encoder(base, "cpu", bf16=False, vocab_ids=rows)
    with torch.no_grad():
        wide = full.encode(["return the header line", "hello"], 32)
        cut = narrow.encode(["return the header line", "hello"], 32)
    assert cut.shape == (2, len(rows))
    assert torch.allclose(cut, wide[:, sorted(rows)], atol=1e-5)  # columns in token-id order

    assert main(argv) == 0
    vocab = json.loads((run / "train_vocab.json").read_text())
    ids = set(vocab["token_ids"])
    assert vocab["terms"] == len(ids) and 50 < len(ids) < 5_000  # the words of 8 pairs, not 30,522
    assert not ids & {0, 100, 101, 102, 103}  # [PAD] [UNK] [CLS] [SEP] [MASK] are never terms
    info = json.loads((out / "training.json").read_text())
    assert info["train_vocab"]["terms_kept"] == len(ids)
    kept = json.loads((out / "output_vocab.json").read_text())["token_ids"]
    assert kept and set(kept) <= ids  # the output pass chose among the trained rows only
    from codelsr.encoders.splade import SpladeEncoder

    enc = SpladeEncoder(str(out), device="cpu")
    terms = set(enc._tokenizer.convert_ids_to_tokens(kept))
    vec = enc.encode_documents(["def parse(line): return line.split(':')"])[0]
    assert vec and set(vec) <= terms
    # A snapshot of the run's checkpoint is the model the run wrote, bounded by the trained rows.
    from tools.train.snapshot import write_snapshot

    snap = tmp_path / "snap"
    assert write_snapshot(run, snap)["step"] == 2 and json.loads((snap / "snapshot.json").read_text())["step"] == 2
    assert json.loads((snap / "output_vocab.json").read_text())["token_ids"] == sorted(ids)
    text = ["def parse(line): return line.split(':')"]
    whole = SpladeEncoder(str(out), device="cpu", output_vocab=False).encode_documents(text)[0]
    assert SpladeEncoder(str(snap), device="cpu", output_vocab=False).encode_documents(text)[0] == pytest.approx(whole, rel=1e-5)
    assert set(SpladeEncoder(str(snap), device="cpu").encode_documents(text)[0]) >= set(vec)
    with pytest.raises(FileExistsError):
        write_snapshot(run, snap)
    with pytest.raises(FileNotFoundError):
        write_snapshot(tmp_path / "runs" / "none", tmp_path / "snap2")
    assert not (tmp_path / "snap2").exists()
    # A resumed run trains the same rows: the saved vocabulary is read back, not rebuilt.
    (run / "train_vocab.json").write_text(json.dumps({**vocab, "token_ids": sorted(ids)[:60], "terms": 60}))
    assert main([*argv[:argv.index("--max-steps") + 1], "3", *argv[argv.index("--max-steps") + 2:]]) == 0
    assert set(json.loads((out / "output_vocab.json").read_text())["token_ids"]) <= set(sorted(ids)[:60])


def test_long_query_pairs_take_the_whole_docstring_of_functions_that_have_a_page():
    from tools.train.data import Pair
    from tools.train.prose import long_query, long_query_pairs

    code = [Pair(query=f"do thing {i}", code=f"def f{i}(): pass", package="pkg", qualname=f"f{i}", path="pkg/m.py")
            for i in range(6)]
    pages = [Pair(query=f"Do thing {i}.", code=f"f{i}()\n\nIt does thing {i} with care and returns nothing at all.",
                  package="pkg", qualname=f"f{i}", path="pkg/m.py") for i in (0, 2, 3, 4, 5)]
    pages.append(Pair(query="Bare.", code="f1()", package="pkg", qualname="f1", path="pkg/m.py"))  # no body
    pages.append(Pair(query="Elsewhere.", code="g()\n\nSame name, other module, never matched.",
                      package="pkg", qualname="f1", path="pkg/other.py"))
    assert long_query(pages[0]) == "Do thing 0.\n\nIt does thing 0 with care and returns nothing at all."
    assert long_query(pages[-2]) is None
    pairs = long_query_pairs(code, pages)
    assert [p.qualname for p in pairs] == ["f0", "f2", "f3", "f4", "f5"]  # f1's page has no body
    assert pairs[1].query == long_query(pages[1]) and pairs[1].code == "def f2(): pass"
    sample = long_query_pairs(code, pages, limit=3, seed=7)
    assert len(sample) == 3 and sample == long_query_pairs(code, pages, limit=3, seed=7)
    order = [p.qualname for p in sample]
    assert order == sorted(order)  # the pairs' own order


@pytest.mark.slow
def test_long_query_pairs_join_training_and_stale_hard_negatives_are_mined_again(tmp_path: Path):
    pytest.importorskip("torch", reason=SPLADE_EXTRA)
    from tools.train.train import main

    _, run, out, argv = tiny_run(tmp_path, "l", 1, "--output-vocab-pairs", "4")
    assert main(argv) == 0
    assert len(json.loads((run / "hard_negatives.json").read_text())) == 8
    assert main([*argv, "--fresh", "--long-queries", "3", "--max-length-long-query", "96"]) == 0
    info = json.loads((out / "training.json").read_text())
    assert 0 < info["long_query_pairs"] <= 3 and info["train_pairs"] == 8 + info["long_query_pairs"]
    # Mined again for the longer pair list, not indexed past its end.
    assert len(json.loads((run / "hard_negatives.json").read_text())) == info["train_pairs"]
    assert "long query" in (out / "README.md").read_text()
