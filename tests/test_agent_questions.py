"""The agent-questions task: its data file (shape, splits, golds that resolve at the pinned
versions), the ast units, the task builder, and repo mode's scoring (by hand on tiny cases and end
to end through a real codelsr index of a tiny package)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from conftest import EVAL_EXTRA

pytest.importorskip("ir_measures", reason=EVAL_EXTRA)

from evals.agent_units import file_units, package_units
from evals.metrics import evaluate
from evals.mining import EVAL_PACKAGES, TRAIN_EXCLUDED, package_dir, package_version
from evals.systems import make_system
from evals.systems.repo import RepoSystem
from evals.tasks import Doc, Task, build_task
from evals.tasks.agent_questions import (
    DATA_FILE,
    HitSpan,
    QuestionFileError,
    hits_to_gold_ranking,
    load_questions,
    parse_doc_id,
    unit_doc_id,
)

QUESTIONS = load_questions()


# ----------------------------------------------------------------------------- the data file


def test_question_file_shape():
    assert len(QUESTIONS) >= 60
    assert len({q.id for q in QUESTIONS}) == len(QUESTIONS)
    assert len({q.question.strip().lower() for q in QUESTIONS}) == len(QUESTIONS)
    splits = Counter(q.split for q in QUESTIONS)
    assert 0.25 <= splits["dev"] / len(QUESTIONS) <= 0.4, splits
    assert len(set(q.style for q in QUESTIONS)) >= 4
    packages = Counter(q.package for q in QUESTIONS)
    assert packages["rich"] >= 30 and len(packages) >= 3, packages
    # Each package is an eval package, so training never sees it.
    assert all(p in EVAL_PACKAGES and p in TRAIN_EXCLUDED for p in packages)
    # Every package has questions in both splits.
    assert all({q.split for q in QUESTIONS if q.package == p} == {"dev", "test"} for p in packages)


def test_most_questions_do_not_name_their_function():
    def names_gold(q) -> bool:
        return any(g.qualname.split(".")[-1].lower() in q.question.lower() for g in q.gold)

    named = [q.id for q in QUESTIONS if names_gold(q)]
    assert len(named) <= len(QUESTIONS) // 5, named


@pytest.mark.parametrize("package", sorted({q.package for q in QUESTIONS}))
def test_every_gold_resolves_at_the_installed_version(package):
    """A gold whose file or function is gone fails; line ranges are checked when the installed
    version is the pinned one (the numbers in the file are for the pins)."""
    units = package_units(package_dir(package), package)
    by_name: dict[tuple[str, str], list] = {}
    for u in units:
        by_name.setdefault((u.path, u.qualname), []).append(u)
    exact = package_version(package) == EVAL_PACKAGES[package]
    for q in (q for q in QUESTIONS if q.package == package):
        for g in q.gold:
            found = by_name.get((g.path, g.qualname))
            assert found, f"{q.id}: {g.path}::{g.qualname} does not exist in {package} {package_version(package)}"
            if exact:
                assert any((u.start_line, u.end_line) == (g.start_line, g.end_line) for u in found), (
                    f"{q.id}: {g.qualname} is at {[(u.start_line, u.end_line) for u in found]}, "
                    f"the file says {g.start_line}-{g.end_line}")


def test_bad_question_files_are_refused_with_the_line(tmp_path):
    good = json.loads(DATA_FILE.read_text().splitlines()[0])
    cases = {
        "split": dict(good, split="train"),
        "missing field 'gold'": {k: v for k, v in good.items() if k != "gold"},
        "no gold": dict(good, gold=[]),
        "not inside package": dict(good, gold=[dict(good["gold"][0], path="click/core.py")]),
    }
    for message, row in cases.items():
        f = tmp_path / "q.jsonl"
        f.write_text(json.dumps(good | {"id": "other"}) + "\n" + json.dumps(row) + "\n")
        with pytest.raises(QuestionFileError, match=rf"q.jsonl:2: .*{message}"):
            load_questions(f)
    f.write_text(json.dumps(good) + "\n" + json.dumps(good) + "\n")
    with pytest.raises(QuestionFileError, match="duplicate id"):
        load_questions(f)


# ----------------------------------------------------------------------------- units


def test_units_are_functions_methods_and_class_headers():
    source = '''import os


@decorate
def top(a):
    def inner():
        return a
    return inner


class Box:
    """A box."""

    size = 3

    @property
    def width(self):
        return self.size

    class Lid:
        pass

    def close(self):
        pass
'''
    units = {u.qualname: u for u in file_units(source, "pkg/box.py")}
    assert list(units) == ["top", "Box", "Box.width", "Box.Lid", "Box.close"]  # `inner` belongs to `top`
    assert (units["top"].start_line, units["top"].end_line) == (4, 8)  # decorator included
    assert units["Box"].text.startswith("class Box:") and "def width" not in units["Box"].text
    assert (units["Box"].start_line, units["Box"].end_line) == (11, 14)  # up to the first member
    assert units["Box.width"].kind == "method" and units["Box.width"].start_line == 16


def test_unit_ids_carry_lines():
    doc_id = unit_doc_id("rich/console.py", "Console.size", 1004, 1043)
    assert parse_doc_id(doc_id) == ("rich/console.py", 1004, 1043)
    with pytest.raises(ValueError):
        parse_doc_id("rich/console.py::Console.size")


def test_task_splits_variants_and_quick():
    test = build_task("agent-questions")
    dev = build_task("agent-questions@dev")
    path_dev = build_task("agent-questions-path@dev")
    assert set(test.queries) == {q.id for q in QUESTIONS if q.split == "test"}
    assert set(dev.queries) == {q.id for q in QUESTIONS if q.split == "dev"}
    assert test.corpus_key == dev.corpus_key != path_dev.corpus_key  # one index per unit variant
    assert set(path_dev.corpus) == set(dev.corpus) and len(dev.corpus) > 2000
    gold = next(iter(dev.qrels[QUESTIONS[0].id]))
    assert dev.corpus[gold].title == "" and path_dev.corpus[gold].contents.startswith("# rich/console.py\n")
    quick = build_task("agent-questions", quick=True)
    assert {q.split("-")[0] for q in quick.queries} == {"click"}
    assert all(d.startswith("click/") for d in quick.corpus)
    with pytest.raises(ValueError, match="dev or all"):
        build_task("agent-questions@train")


# ----------------------------------------------------------------------------- repo-mode scoring


def test_hits_are_matched_to_golds_by_path_and_overlapping_lines():
    a = unit_doc_id("pkg/a.py", "f", 10, 20)
    b = unit_doc_id("pkg/a.py", "g", 22, 30)
    hits = [HitSpan("pkg/b.py", 10, 20),  # same lines, other file: not relevant
            HitSpan("pkg/a.py", 1, 9),  # same file, ends before the gold: not relevant
            HitSpan("pkg/a.py", 18, 25),  # overlaps both golds: answers the first still open (f)
            HitSpan("pkg/a.py", 12, 14),  # f again: a second hit on an answered gold counts nothing
            HitSpan("pkg/a.py", 30, 40)]  # touches g's last line: answers g
    ranking = hits_to_gold_ranking(hits, [a, b])
    docs = [d for d, _ in sorted(ranking, key=lambda ds: -ds[1])]
    assert docs[2] == a and docs[4] == b
    assert len(docs) == 5 and len(set(docs)) == 5 and not {docs[0], docs[1], docs[3]} & {a, b}
    m = evaluate({"q": {a: 1, b: 1}}, {"q": ranking})
    assert m["MRR@10"] == pytest.approx(100 / 3, abs=1e-3)
    assert m["Success@10"] == 100.0 and m["R@10"] == 100.0
    assert m["nDCG@10"] == pytest.approx(100 * (1 / 2 + 1 / 2.584962500721156) / (1 + 1 / 1.584962500721156), abs=1e-3)
    # Nothing overlaps: the query scores 0.
    assert evaluate({"q": {a: 1}}, {"q": hits_to_gold_ranking(hits[:2], [a])})["nDCG@10"] == 0.0
    # Only the first k hits are looked at.
    assert hits_to_gold_ranking(hits, [b], k=4)[-1][0] != b and len(hits_to_gold_ranking(hits, [b], k=4)) == 4


def _tiny_package(root: Path) -> Path:
    pkg = root / "src" / "tinypkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "retry.py").write_text('''import random


def backoff_delay(attempt, base=0.5, cap=30.0):
    """How long to sleep before the next attempt."""
    exponential = base * 2 ** attempt
    return min(cap, exponential) * random.uniform(0.5, 1.0)


def should_retry(status):
    return status in (429, 502, 503)
''')
    (pkg / "cache.py").write_text('''class ResponseCache:
    """Keeps responses in memory."""

    def is_cacheable(self, response):
        return response.method == "GET" and "no-store" not in response.headers.get("cache-control", "")
''')
    return pkg


def test_repo_mode_end_to_end_on_a_tiny_package(tmp_path, monkeypatch):
    monkeypatch.setenv("CODELSR_EVAL_CACHE", str(tmp_path / "cache"))
    pkg = _tiny_package(tmp_path)
    units = package_units(pkg, "tinypkg")
    ids = {u.qualname: unit_doc_id(u.path, u.qualname, u.start_line, u.end_line) for u in units}
    corpus = {ids[u.qualname]: Doc("", u.text) for u in units}
    queries = {"delay": "exponential backoff delay sleep attempt cap",
               "cache": "cacheable response cache-control no-store",
               "retry": "which status codes retry 429 502"}
    qrels = {"delay": {ids["backoff_delay"]: 1}, "cache": {ids["ResponseCache.is_cacheable"]: 1},
             "retry": {ids["should_retry"]: 1}}
    task = Task("tiny-agent", corpus, queries, qrels, meta={"source_dirs": {"tinypkg": str(pkg)}})
    system = make_system("repo:lexical")
    assert isinstance(system, RepoSystem)
    info = system.index(task)
    assert info["files"] == 3 and info["chunks"] >= 4
    results = system.search(task.queries)
    for qid, rel in qrels.items():
        top = max(results[qid], key=lambda ds: ds[1])[0]
        assert top == next(iter(rel)), (qid, results[qid])
    assert evaluate(qrels, results)["nDCG@10"] == 100.0
    # The same hits judged against another gold are not relevant: matching is by lines, not by file.
    wrong = {"delay": {ids["should_retry"]: 1}}
    assert evaluate(wrong, system.search({"delay": queries["delay"]}))["MRR@10"] < 100.0


def test_repo_mode_refuses_a_task_without_sources(tmp_path, monkeypatch):
    monkeypatch.setenv("CODELSR_EVAL_CACHE", str(tmp_path / "cache"))
    task = Task("plain", {"d": Doc("", "def f(): pass")}, {"q": "f"}, {"q": {"d": 1}})
    with pytest.raises(ValueError, match="source folders"):
        RepoSystem("lexical").index(task)


def test_repo_mode_scores_the_other_split_on_a_reused_index(tmp_path, monkeypatch):
    """The runner indexes agent-questions once and reuses the system for agent-questions@dev:
    the dev questions must be judged against their own golds."""
    from evals.tasks.agent_questions import agent_questions

    monkeypatch.setenv("CODELSR_EVAL_CACHE", str(tmp_path / "cache"))
    pkg = _tiny_package(tmp_path)
    units = {u.qualname: u for u in package_units(pkg, "tinypkg")}

    def row(qid, split, question, qualname):
        u = units[qualname]
        return {"id": qid, "split": split, "package": "tinypkg", "style": "question", "question": question,
                "gold": [{"path": u.path, "qualname": qualname, "start_line": u.start_line, "end_line": u.end_line}]}

    questions = tmp_path / "questions.jsonl"
    questions.write_text("\n".join(json.dumps(r) for r in [
        row("t1", "test", "exponential backoff delay before the next attempt", "backoff_delay"),
        row("d1", "dev", "is a response cacheable, cache-control no-store", "ResponseCache.is_cacheable"),
    ]) + "\n")
    test = agent_questions("agent-questions", questions_file=questions, package_dirs={"tinypkg": pkg})
    dev = agent_questions("agent-questions@dev", questions_file=questions, package_dirs={"tinypkg": pkg})
    assert test.corpus_key == dev.corpus_key and set(test.queries) == {"t1"} and set(dev.queries) == {"d1"}
    system = RepoSystem("lexical")
    system.index(test)
    assert evaluate(test.qrels, system.search(test.queries))["nDCG@10"] == 100.0
    assert evaluate(dev.qrels, system.search(dev.queries))["nDCG@10"] == 100.0


def test_report_puts_each_system_in_its_column():
    from evals.agent_report import summarise, summary_markdown

    def cell(task, system, ndcg):
        return {"task": task, "system": system, "metrics": {"nDCG@10": ndcg, "Success@10": 50.0, "MRR@10": 40.0}}

    results = {"tasks": {"agent-questions": {"queries": 54}, "agent-questions@dev": {"queries": 28}},
               "cells": [cell("agent-questions", "codelsr:lexical", 60.0), cell("agent-questions-path", "codelsr:lexical", 70.0),
                         cell("agent-questions", "repo:lexical", 55.0), cell("agent-questions@dev", "repo:lexical", 20.0),
                         cell("agent-questions", "dense", 65.0)]}
    summary = summarise(results)
    lexical = summary["test"]["rows"]["lexical (codelsr BM25)"]
    assert lexical["units, text only"]["nDCG@10"] == 0.6 and lexical["units, path + text"]["nDCG@10"] == 0.7
    assert lexical["codelsr index + search (repo)"]["nDCG@10"] == 0.55
    assert "codelsr index + search (repo)" not in summary["test"]["rows"]["dense MiniLM-L6"]
    assert summary["dev"]["rows"] == {"lexical (codelsr BM25)": {"codelsr index + search (repo)":
                                                                 {"nDCG@10": 0.2, "Success@10": 0.5, "MRR@10": 0.4}}}
    assert "| lexical (codelsr BM25) | 0.600 / 0.500 (0.400) | 0.700 / 0.500 (0.400) | 0.550 / 0.500 (0.400) |" \
        in summary_markdown(summary)
