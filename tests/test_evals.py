"""The eval suite: task builders on small fixtures, metrics by hand, the agent-mode path end to
end, and the CodeRAG-Bench HumanEval BM25 gate."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pytest
from conftest import EVAL_EXTRA

pytest.importorskip("ir_measures", reason=EVAL_EXTRA)

from evals.metrics import evaluate, per_query, rank, to_run
from evals.systems import make_system
from evals.systems.codelsr_systems import AgentSystem, LibrarySystem, corpus_files, hits_to_ranking
from evals.tasks import Doc, Task, build_task
from evals.tasks.beir import load_beir_folder, load_hub_task
from evals.tasks.crb import devdocs_page_files, humaneval_task, page_title

FIXTURES = Path(__file__).parent / "fixtures" / "evals"


@pytest.fixture
def shared_data(tmp_path, monkeypatch) -> Path:
    """The fixture's shared/data, with DevDocs packed as the real tarball is; caches in tmp."""
    shared = tmp_path / "shared"
    shutil.copytree(FIXTURES / "shared", shared)
    (shared / "devdocs").mkdir()
    with tarfile.open(shared / "devdocs" / "devdocs_plain.tar.xz", "w:xz") as tar:
        tar.add(FIXTURES / "devdocs" / "plain", arcname="plain")
    monkeypatch.setenv("CODELSR_SHARED_DATA", str(shared))
    monkeypatch.setenv("CODELSR_EVAL_CACHE", str(tmp_path / "cache"))
    return shared


@pytest.fixture
def tiny_task() -> Task:
    corpus = {
        "tok": Doc("tokenize", "def tokenize(text):\n    return text.lower().split()\n"),
        "lev": Doc("levenshtein", "def levenshtein(a, b):\n    # edit distance between two strings\n    return 0\n"),
        "cfg": Doc("", "def parse_config(path):\n    import json\n    return json.load(open(path))\n"),
    }
    queries = {"q1": "tokenize text into lower words", "q2": "edit distance between two strings",
               "q3": "parse_config json"}
    qrels = {"q1": {"tok": 1}, "q2": {"lev": 1}, "q3": {"cfg": 1}}
    return Task("tiny", corpus, queries, qrels, kind="code")


# ----------------------------------------------------------------------------- metrics


def test_metrics_match_hand_computed_values():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1, "c": 1}, "q3": {"z": 1}}
    results = {"q1": [("x", 2.0), ("a", 1.0)], "q2": [("b", 1.0), ("a", 1.0), ("c", 1.0)]}
    m = evaluate(qrels, results)
    # q1: hit at rank 2 -> nDCG 1/log2(3), RR 1/2. q2 (ties by id: a, b, c): hits at ranks 2, 3 ->
    # nDCG (1/log2 3 + 1/log2 4) / (1 + 1/log2 3), RR 1/2. q3: nothing returned -> 0, still counted.
    ndcg_q1 = 1 / 1.584962500721156
    ndcg_q2 = (1 / 1.584962500721156 + 0.5) / (1 + 1 / 1.584962500721156)
    assert m["nDCG@10"] == pytest.approx(100 * (ndcg_q1 + ndcg_q2) / 3, abs=1e-3)
    assert m["MRR@10"] == pytest.approx(100 * (0.5 + 0.5) / 3, abs=1e-3)
    assert m["R@10"] == pytest.approx(100 * 2 / 3, abs=1e-3)
    assert m["R@100"] == pytest.approx(100 * 2 / 3, abs=1e-3)


def test_ties_are_broken_by_doc_id_ascending_whatever_pytrec_eval_would_do():
    assert rank([("b", 1.0), ("c", 2.0), ("a", 1.0)]) == ["c", "a", "b"]
    run = to_run({"q": [("b", 1.0), ("a", 1.0)]})
    assert run["q"]["a"] > run["q"]["b"]
    # pytrec_eval alone would put "b" first (doc id descending); here "a" is first: MRR 100.
    assert evaluate({"q": {"a": 1}}, {"q": [("b", 1.0), ("a", 1.0)]})["MRR@10"] == 100.0


def test_recall_at_100_counts_hits_past_rank_10():
    results = {"q": [(f"d{i:03d}", 200.0 - i) for i in range(150)]}
    m = evaluate({"q": {"d050": 1, "d120": 1}}, results)
    assert m["R@10"] == 0.0 and m["R@100"] == 50.0
    assert per_query({"q": {"d000": 1}}, results)["q"] == 100.0


# ----------------------------------------------------------------------------- tasks


def test_humaneval_task_is_built_as_coderag_bench_builds_it():
    task = humaneval_task()
    assert len(task.queries) == len(task.corpus) == 164
    assert task.qrels["HumanEval/0_doc"] == {"HumanEval/0_code": 1}
    doc = task.corpus["HumanEval/0_code"]
    assert doc.title == "has_close_elements"
    assert doc.text.startswith(task.queries["HumanEval/0_doc"] + "\n")


def test_humaneval_bm25_gate_scores_100_as_published():
    task = humaneval_task()
    system = make_system("bm25")
    system.index(task)
    assert evaluate(task.qrels, system.search(task.queries))["nDCG@10"] == 100.0


def test_mbpp_task_uses_the_rows_gold_doc(shared_data):
    task = build_task("crb-mbpp-500")
    assert set(task.queries) == {"11_doc", "12_doc"}
    assert task.qrels["12_doc"] == {"12_code": 1}
    assert task.corpus["12_code"].title == "sort_matrix"
    assert task.corpus["12_code"].text.startswith("# Write a function to sort")


def test_page_titles_drop_the_version_and_use_dots():
    assert page_title("pandas~1/reference/api/pandas.dataframe.where.txt") == "pandas.reference.api.pandas.dataframe.where"
    assert page_title("scikit_learn/modules/generated/sklearn.svm.SVR.txt") == \
        "sklearn.modules.generated.sklearn.svm.svr"
    pages = devdocs_page_files(FIXTURES / "devdocs" / "plain")
    assert pages["pytorch.amp"].parent.name == "pytorch"  # two versions of one title: first in path order


def test_devdocs_tasks_add_anchor_docs_and_score_only_problems_with_gold(shared_data):
    ds = build_task("crb-ds1000-devdocs")
    odex = build_task("crb-odex-devdocs")
    assert ds.corpus_key == odex.corpus_key == "devdocs-full"  # one shared corpus
    assert set(ds.corpus) == set(odex.corpus)
    assert set(ds.queries) == {"ds1000_0", "ds1000_1"}  # problem 2 has no gold docs
    anchor = "sklearn.modules.generated.sklearn.svm.svr#sklearn.svm.SVR.fit"
    assert ds.qrels["ds1000_1"] == {anchor: 1, "sklearn.modules.generated.sklearn.svm.svr": 1}
    # The anchor is a document of its own, holding the gold paragraph; the page stays whole.
    assert ds.corpus[anchor].text.startswith("fit(X, y, sample_weight=None)")
    assert "Epsilon-Support" in ds.corpus["sklearn.modules.generated.sklearn.svm.svr"].text
    # ODEX: several intents of one post get distinct ids; an ODEX anchor is in the shared corpus.
    assert set(odex.queries) == {"odex_22676_0", "odex_22676_1", "odex_5_0"}
    assert "python.library.urllib.request#urllib.request.urlopen" in ds.corpus
    assert ds.meta["pages"] == 4 and ds.meta["anchor_docs"] == 3
    assert (shared_data.parent / "cache" / "devdocs" / ".complete").exists()


def test_mined_docstrings_pairs_distractors_and_dropped_ambiguous_queries(monkeypatch):
    monkeypatch.syspath_prepend(str(FIXTURES))
    from evals.tasks.mined import mined_docstrings

    task = mined_docstrings(packages={"minipkg": "0"})
    assert sorted(task.queries.values()) == ["Add two numbers and return the sum.",
                                              "Reverse the order of the words in a sentence."]
    # The docstring-less function stays as a distractor; the miner drops ambiguous units whole.
    assert len(task.corpus) == 3
    for qid, rel in task.qrels.items():
        (doc_id,) = rel
        assert '"""' not in task.corpus[doc_id].text
    assert task.meta["dropped_ambiguous"] == 2 and len(task.meta["unit_list_hash"]) == 16
    assert task.meta["packages"] == {"minipkg": None}


def test_beir_folder_loader_keeps_only_queries_with_qrels():
    task = load_beir_folder(FIXTURES / "beir")
    assert set(task.queries) == {"q1", "q2"}
    assert task.corpus["d1"] == Doc("tokenize", "def tokenize(text):\n    return text.lower().split()")


def test_hub_loader_reads_code_rag_bench_rows_through_load_dataset():
    calls = []

    def fake_load_dataset(name, split):
        calls.append((name, split))
        return [{"task_id": 7, "intent": "open a url", "docs": [{"title": "python.library.urllib", "text": "t"}]},
                {"task_id": 8, "intent": "no gold", "docs": []}]

    task = load_hub_task("odex", load_dataset=fake_load_dataset)
    assert calls == [("code-rag-bench/odex", "train")]
    assert list(task.queries.values()) == ["open a url"]
    assert list(task.qrels.values()) == [{"python.library.urllib": 1}]


def test_task_rejects_qrels_that_name_missing_documents():
    with pytest.raises(ValueError, match="not in the corpus"):
        Task("bad", {"a": Doc("", "x")}, {"q": "x"}, {"q": {"b": 1}})


# ----------------------------------------------------------------------------- systems


def test_unknown_system_lists_what_exists():
    with pytest.raises(ValueError, match="bm25, grep, dense"):
        make_system("tfidf")


def test_chunks_of_one_file_count_once_at_their_best_rank():
    files = {"docs/000/00000.py": "a", "docs/000/00001.py": "b"}
    ranking = hits_to_ranking(["docs/000/00001.py", "docs/000/00000.py", "docs/000/00001.py", "other.py"], files, 10)
    assert [d for d, _ in ranking] == ["b", "a"]


def test_grep_counts_distinct_query_words(tiny_task):
    system = make_system("grep")
    system.index(tiny_task)
    results = system.search({"q": "the edit distance of strings"})
    assert results["q"][0][0] == "lev"


def test_agent_mode_scores_what_search_code_returns_over_mcp(tiny_task, tmp_path, monkeypatch):
    monkeypatch.setenv("CODELSR_EVAL_CACHE", str(tmp_path / "cache"))
    agent = AgentSystem("lexical")
    info = agent.index(tiny_task)
    assert info["files"] == 3 and info["encoder_id"].startswith("lexical")
    results = agent.search(tiny_task.queries)
    assert {q: r[0][0] for q, r in results.items()} == {"q1": "tok", "q2": "lev", "q3": "cfg"}
    assert evaluate(tiny_task.qrels, results)["nDCG@10"] == 100.0
    # The library path over the same corpus ranks the same way.
    library = LibrarySystem("lexical")
    library.index(tiny_task)
    assert library.search(tiny_task.queries) == results
    assert sorted(corpus_files(tiny_task).values()) == sorted(tiny_task.corpus)


def test_the_grid_writes_json_table_and_chart(tmp_path, monkeypatch):
    monkeypatch.setenv("CODELSR_EVAL_CACHE", str(tmp_path / "cache"))
    from evals.run import main

    out = tmp_path / "results"
    assert main(["--tasks", f"beir:{FIXTURES / 'beir'}", "--systems", "bm25,grep,codelsr:lexical",
                 "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert [c["system"] for c in results["cells"]] == ["bm25", "grep", "codelsr:lexical"]
    assert all("metrics" in c for c in results["cells"])
    table = (out / "table.md").read_text()
    assert "| beir-beir |" in table and "`codelsr:lexical`" in table
    assert (out / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_readme_table_is_replaced_between_its_markers(tmp_path):
    from evals.report import update_readme

    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- results:begin -->\nold\n<!-- results:end -->\nafter\n")
    assert update_readme(readme, "| new |\n")
    assert readme.read_text() == "# x\n<!-- results:begin -->\n| new |\n<!-- results:end -->\nafter\n"
    readme.write_text("no markers\n")
    assert not update_readme(readme, "| new |\n")


def test_dense_cache_does_not_wait_for_a_writer_that_died(tmp_path):
    from evals.systems.dense import _wait_for_other_writer

    cached = tmp_path / "emb.npy"
    cached.with_suffix(".pid").write_text("999999999")  # no such process
    _wait_for_other_writer(cached, poll=0.01)  # returns at once
    assert not cached.exists()


def test_page_system_scores_one_vector_per_document_like_dense(tiny_task):
    system = make_system("page:lexical")
    info = system.index(tiny_task)
    assert system.name == "page:lexical" and info["docs"] == 3 and info["encoder_id"].startswith("lexical")
    results = system.search(tiny_task.queries)
    assert {q: rank(r)[0] for q, r in results.items()} == {"q1": "tok", "q2": "lev", "q3": "cfg"}
    assert evaluate(tiny_task.qrels, results)["nDCG@10"] == 100.0
    # Documents that share no term with the query are not returned at all.
    assert [d for d, _ in system.search({"q": "levenshtein"})["q"]] == ["lev"]


def test_page_system_reads_only_the_first_characters_dense_reads():
    from evals.systems.dense import MAX_CHARS

    filler = "plain words about nothing in particular\n" * (MAX_CHARS // 40 + 5)
    corpus = {"head": Doc("", "zanzibar quokka\n" + filler), "tail": Doc("", filler + "zanzibar marmot\n")}
    task = Task("cut", corpus, {"q": "zanzibar marmot"}, {"q": {"tail": 1}}, kind="text")
    page = make_system("page:lexical")
    page.index(task)
    assert rank(page.search(task.queries)["q"]) == ["head"]  # the tail's words were never read
    # The product's chunks read the whole document and find it.
    library = LibrarySystem("lexical")
    library.index(task)
    assert rank(library.search(task.queries)["q"])[0] == "tail"
