"""swe-lite-files: metric math, function spans, tree paths, the missing-gold accounting, the
--mirror path (a real local git repository through git archive), and long-query handling in
codelsr (library and MCP server)."""

from __future__ import annotations

import json
from pathlib import Path

import mcp
import pytest

from codelsr.encoders.lexical import LexicalEncoder
from codelsr.index import build_index, open_index
from codelsr.queries import (LEXICAL_PIECE_CHARS, MAX_QUERY_CHARS, MAX_QUERY_TERMS, encode_query, max_pool,
                             piece_chars, split_query)
from codelsr.search import search_index
from codelsr.server import create_server
from evals.swe_lite.data import Instance, load_instances
from evals.swe_lite.scoring import (Region, aggregate, file_metrics, file_ranking, function_ranking, function_recall,
                                    function_spans, is_function_span)
from evals.swe_lite.systems import fuse, identifiers, sync_folder
from evals.swe_lite.trees import exact_tree, kept, repository_path
from tests.conftest import SPLADE_EXTRA, git, make_git_repo

# ------------------------------------------------------------------ metric math


def test_file_metrics_of_one_gold_file_at_rank_three():
    m = file_metrics(["a.py", "b.py", "gold.py", "c.py"], ["gold.py"])
    assert m == {"Acc@1": 0.0, "Acc@5": 1.0, "Acc@10": 1.0, "R@10": 1.0, "MRR@10": pytest.approx(1 / 3)}


def test_acc_at_k_needs_every_gold_file_and_recall_counts_each():
    ranked = ["x.py", "g1.py"] + [f"n{i}.py" for i in range(4)] + ["g2.py"]  # g1 at 2, g2 at 7
    m = file_metrics(ranked, ["g1.py", "g2.py"])
    assert (m["Acc@1"], m["Acc@5"], m["Acc@10"]) == (0.0, 0.0, 1.0)
    assert m["R@10"] == 1.0 and m["MRR@10"] == 0.5
    far = file_metrics([f"n{i}.py" for i in range(10)] + ["g1.py"], ["g1.py", "g2.py"])
    assert far == {"Acc@1": 0.0, "Acc@5": 0.0, "Acc@10": 0.0, "R@10": 0.0, "MRR@10": 0.0}
    assert file_metrics([], ["g.py"])["MRR@10"] == 0.0
    with pytest.raises(ValueError):
        file_metrics(["a.py"], [])


def test_a_file_counts_at_the_rank_of_its_first_hit():
    regions = [Region("a.py", 1, 5), Region("b.py", 1, 2), Region("a.py", 10, 20), Region("gold.py")]
    assert file_ranking(regions) == ["a.py", "b.py", "gold.py"]
    assert file_metrics(file_ranking(regions), ["gold.py"])["MRR@10"] == pytest.approx(1 / 3)


SOURCE = '''import os


class Request:
    """A request."""

    @property
    def url(self):
        return self._url

    def register_hook(self, event, hook):
        def check(h):
            return callable(h)
        return check(hook)


if os.name:
    def helper():
        return 1
'''


def test_function_spans_name_methods_by_class_and_include_decorators():
    spans = {name: (s, e) for name, s, e in function_spans(SOURCE)}
    assert spans["Request"] == (4, 14)
    assert spans["Request.url"] == (7, 9)  # the decorator line counts
    assert spans["Request.register_hook"] == (11, 14)
    assert spans["Request.register_hook.check"] == (12, 13)
    assert spans["helper"] == (18, 19)  # defined inside an if block
    assert function_spans("def broken(:\n") == []


def test_function_recall_ranks_the_functions_hits_overlap_innermost_first():
    spans = {"r.py": function_spans(SOURCE)}
    regions = [Region("r.py", 12, 12), Region("other.py", 1, 3), Region("r.py", 7, 8), Region("r.py")]
    ranked = function_ranking(regions, spans)
    assert ranked[:3] == [("r.py", "Request.register_hook.check"), ("r.py", "Request.register_hook"), ("r.py", "Request")]
    assert ranked[3] == ("r.py", "Request.url")
    gold = [("r.py", "Request.url"), ("r.py", "helper")]
    assert function_recall(ranked, gold) == 0.5
    assert function_recall(ranked, gold, k=3) == 0.0
    assert not is_function_span("imports") and not is_function_span("imports:5") and is_function_span("Request.url")


def test_aggregate_reports_all_instances_and_those_with_gold_present():
    rows = {"a": {"Acc@1": 1.0, "Acc@5": 1.0, "Acc@10": 1.0, "R@10": 1.0, "MRR@10": 1.0, "FnR@10": 0.5},
            "b": {"Acc@1": 0.0, "Acc@5": 0.0, "Acc@10": 0.0, "R@10": 0.0, "MRR@10": 0.0, "FnR@10": None}}
    out = aggregate(rows, present={"a"})
    assert out["Acc@1"] == 50.0 and out["Acc@1 present"] == 100.0
    assert out["instances"] == 2 and out["gold_present"] == 1
    assert out["FnR@10"] == 50.0 and out["FnR@10 instances"] == 1


# ------------------------------------------------------------------ trees


def test_artifact_members_map_to_repository_paths():
    assert repository_path("django/django", "sdist", "Django-3.0/django/db/models/query.py") == "django/db/models/query.py"
    assert repository_path("matplotlib/matplotlib", "wheel", "matplotlib/axes/_base.py") == "lib/matplotlib/axes/_base.py"
    assert repository_path("pytest-dev/pytest", "wheel", "_pytest/python.py") == "src/_pytest/python.py"
    assert repository_path("sympy/sympy", "wheel", "sympy-1.0.dist-info/RECORD") is None
    assert kept("django/db/models/query.py") and kept("docs/ref/models.txt") and kept("README.rst")
    assert not kept("django/contrib/admin/static/admin/js/core.js")
    assert not kept("build/lib/django/x.py") and not kept("Django.egg-info/SOURCES.txt")
    for test_file in ("tests/queries/test_q.py", "testing/python/collect.py", "sympy/core/tests/test_basic.py",
                      "lib/matplotlib/tests/conftest.py", "src/pkg/test_util.py"):
        assert not kept(test_file), test_file
    assert kept("src/_pytest/python.py") and kept("sympy/utilities/misc.py")


def test_sync_folder_rewrites_only_what_changed(tmp_path):
    folder = tmp_path / "work"
    assert sync_folder({"a.py": "x = 1\n", "d/b.py": "y = 2\n"}, folder) == {"written": 2, "removed": 0}
    before = (folder / "a.py").stat().st_mtime_ns
    assert sync_folder({"a.py": "x = 1\n", "d/c.py": "z = 3\n"}, folder) == {"written": 1, "removed": 1}
    assert (folder / "a.py").stat().st_mtime_ns == before
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.py")) == ["a.py", "d/c.py"]


# ------------------------------------------------------------------ the mirror path and missing gold, end to end

ISSUE_ONE = """Session.resolve_redirects loses the cookie jar
When a redirect is followed, `resolve_redirects` builds a new request and the cookies set by the
first response are gone. Traceback (most recent call last):
  File "pkg/sessions.py", line 40, in resolve_redirects
KeyError: 'cookies'
"""
ISSUE_TWO = "Add a retry budget to the transport adapter\nThe adapter should retry idempotent requests."


def _mirror(tmp_path: Path) -> tuple[Path, str, str]:
    """A clone ``<owner>__<name>`` with two commits; returns (mirror folder, first, second commit)."""
    repo = make_git_repo(tmp_path / "mirror" / "acme__pkg", {
        "pkg/__init__.py": "",
        "pkg/sessions.py": "class Session:\n    def resolve_redirects(self, resp, cookies):\n"
                           "        jar = cookies\n        return resp, jar\n",
        "pkg/models.py": "class Request:\n    def prepare(self):\n        return self\n",
        "docs/index.rst": "Sessions keep cookies across redirects.\n",
        "pkg/static/app.js": "function f() {}\n",
    })
    first = git(repo, "rev-parse", "HEAD").strip()
    (repo / "pkg" / "adapters.py").write_text("class HTTPAdapter:\n    def send(self, request, retries=0):\n"
                                             "        return request\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "adapters")
    second = git(repo, "rev-parse", "HEAD").strip()
    return tmp_path / "mirror", first, second


def test_exact_tree_takes_the_base_commit_with_git_archive(tmp_path, monkeypatch):
    monkeypatch.setenv("CODELSR_EVAL_CACHE", str(tmp_path / "cache"))
    mirror, first, second = _mirror(tmp_path)
    old, new = exact_tree(mirror, "acme/pkg", first), exact_tree(mirror, "acme/pkg", second)
    assert old.kind == "exact" and "git archive" in old.source
    assert old.files() == ["docs/index.rst", "pkg/__init__.py", "pkg/models.py", "pkg/sessions.py"]  # no .js
    assert "pkg/adapters.py" in new.files() and "pkg/adapters.py" not in old.files()
    with pytest.raises(Exception, match="no clone of acme/other"):
        exact_tree(mirror, "acme/other", first)
    with pytest.raises(Exception, match="git archive"):
        exact_tree(mirror, "acme/pkg", "0" * 40)


def test_the_run_scores_exact_trees_and_counts_missing_gold_files_as_misses(tmp_path, monkeypatch):
    from evals.swe_lite.run import run

    monkeypatch.setenv("CODELSR_EVAL_CACHE", str(tmp_path / "cache"))
    mirror, first, _ = _mirror(tmp_path)
    found = Instance("acme__pkg-1", "acme/pkg", first, "1.0", ISSUE_ONE, ("pkg/sessions.py",),
                     {"pkg/sessions.py": ("Session.resolve_redirects", "imports")})
    # The gold file appears only in the second commit: at the first it is missing from the tree.
    missing = Instance("acme__pkg-2", "acme/pkg", first, "1.0", ISSUE_TWO, ("pkg/adapters.py",),
                       {"pkg/adapters.py": ("HTTPAdapter.send",)})
    out = run([found, missing], ["bm25s", "grep", "codelsr:lexical", "policy:lexical"], [], set(), mirror)
    assert out["scored_on"] == {"exact": 2, "no_tree": 0}
    assert out["gold_missing_from_tree"] == [{"instance_id": "acme__pkg-2", "tree": f"acme/pkg@{first[:12]}",
                                              "missing": ["pkg/adapters.py"]}]
    assert out["gold_functions_missing_from_tree"] == 1
    for name in ("bm25s", "grep", "codelsr:lexical", "policy:lexical", "policy-title:lexical", "policy-ids:lexical"):
        s = out["summary"][name]
        assert s["instances"] == 2 and s["gold_present"] == 1, name
        assert out["per_instance"][name]["acme__pkg-2"]["Acc@10"] == 0.0  # a miss, not dropped
        assert s["Acc@10"] == pytest.approx(s["Acc@10 present"] / 2), name
    lib = out["per_instance"]["codelsr:lexical"]["acme__pkg-1"]
    assert lib["top10"][0] == "pkg/sessions.py" and lib["Acc@1"] == 1.0
    assert lib["FnR@10"] == 1.0  # Session.resolve_redirects; `imports` is not a function
    assert out["per_instance"]["bm25s"]["acme__pkg-1"]["FnR@10"] is None  # whole files rank no functions
    assert out["summary"]["codelsr:lexical"]["FnR@10 instances"] == 1


def test_load_instances_reads_the_shared_file_and_quick_keeps_one_small_repository():
    try:
        rows = load_instances()
    except FileNotFoundError:
        pytest.skip("shared/data/swe-bench/lite.jsonl is not here")
    assert len(rows) == 300 and all(len(r.gold_files) == 1 for r in rows)
    quick = load_instances(quick=True)
    assert 0 < len(quick) <= 5 and len({r.repo for r in quick}) == 1
    assert quick[0].title and "\n" not in quick[0].title


# ------------------------------------------------------------------ the no-language-model policy


def test_identifiers_come_from_the_body_not_the_title():
    ids = identifiers("Fix `Foo.bar` crash\nCalling `QuerySet.filter` with a `Q()` object raises in "
                      "django/db/models/query.py; see _filter_or_exclude and resolve_expression(). "
                      "Also HTTPAdapter and http://example.com/x.y")
    assert "Foo.bar" not in ids
    for want in ("QuerySet.filter", "django/db/models/query.py", "_filter_or_exclude", "resolve_expression", "HTTPAdapter"):
        assert any(want in i for i in ids), (want, ids)
    assert not any(i.startswith("http") for i in ids)
    assert identifiers("only a title") == []


def test_fusion_rewards_hits_both_calls_agree_on():
    a, b, c = Region("a.py", 1, 2), Region("b.py", 1, 2), Region("c.py", 1, 2)
    assert fuse([a, b], [c, b]) == [b, a, c]  # b: 1/62 + 1/62 beats a: 1/61
    assert fuse([a], []) == [a]


# ------------------------------------------------------------------ long queries in codelsr


def test_split_query_cuts_at_line_ends_keeps_every_line_and_counts_what_it_drops():
    text = "\n".join(f"line {i} " + "word " * 20 for i in range(100))
    prepared = split_query(text, 400)
    assert all(len(p) <= 400 for p in prepared.pieces) and len(prepared.pieces) > 5
    lines = [line.strip() for line in "\n".join(prepared.pieces).split("\n")]
    assert lines == [line.strip() for line in text.split("\n")]  # nothing lost, nothing cut mid-line
    assert split_query("short", 400).pieces == ("short",)
    long_line = "x " * 1000
    assert all(len(p) <= 400 for p in split_query(long_line, 400).pieces)
    capped = split_query(text, 400, max_pieces=3)
    assert len(capped.pieces) == 3 and capped.dropped_chars > 0


def test_max_pool_keeps_each_terms_largest_weight():
    assert max_pool([{"a": 1.0, "b": 2.0}, {"a": 3.0, "c": 0.5}]) == {"a": 3.0, "b": 2.0, "c": 0.5}


def test_piece_size_follows_the_encoders_query_window():
    pytest.importorskip("torch", reason=SPLADE_EXTRA)
    assert piece_chars(LexicalEncoder()) == LEXICAL_PIECE_CHARS
    from codelsr.encoders import get_encoder

    splade = get_encoder("splade-code-tiny")
    assert piece_chars(splade) == (splade.max_length_query - 2) * 3
    assert piece_chars(get_encoder("hybrid-code-tiny")) == piece_chars(splade)


def _long_issue() -> str:
    traceback = "\n".join(f'  File "/usr/lib/python3/site-packages/lib/module{i}.py", line {i}, in call\n'
                          f"    result = handler(request)" for i in range(120))
    return ("Crash when saving a form\nSaving fails with the traceback below.\n" + traceback
            + "\nThe real cause is in normalize_payload_checksum, which drops the last byte.")


def test_a_long_query_is_pooled_from_pieces_saturates_repeats_and_keeps_its_tail():
    text = _long_issue()
    assert len(text) > 8000
    enc = LexicalEncoder()
    whole = enc.encode_queries([text])[0]
    pooled = encode_query(enc, text)
    assert whole["handler"] >= 100 and pooled["handler"] < whole["handler"] / 4  # repeats saturate
    assert pooled["checksum"] == whole["checksum"] == 1.0  # the tail past 4,000 characters counts
    assert len(pooled) <= MAX_QUERY_TERMS
    short = "parse the http response"
    assert encode_query(enc, short) == enc.encode_queries([short])[0]  # short queries: unchanged


def test_a_splade_query_longer_than_its_window_is_read_to_the_end():
    pytest.importorskip("torch", reason=SPLADE_EXTRA)
    from codelsr.encoders import get_encoder

    splade = get_encoder("splade-code-tiny")
    tail = "The cookie jar is lost in resolve_redirects when the server sends a checksum mismatch."
    text = "Saving a form crashes.\n" + "The widget renders the template again. " * 40 + "\n" + tail
    alone = splade.encode_queries([tail])[0]
    raw = splade.encode_queries([text])[0]
    pooled = encode_query(splade, text)
    assert {"jar", "cookie"} <= set(alone)
    assert not {"jar", "cookie"} & set(raw)  # cut at 64 word pieces: the tail is never read
    assert {"jar", "cookie"} <= set(pooled)
    # Max pooling: the tail's own window (the last piece here) counts in full. Within 2 %: the
    # shipped int8 graph quantises activations with one scale per batch, and the pieces are one batch.
    assert all(pooled[t] >= 0.98 * alone[t] for t in ("jar", "cookie"))


def test_each_half_of_a_hybrid_reads_a_long_query_in_its_own_pieces():
    pytest.importorskip("torch", reason=SPLADE_EXTRA)
    from codelsr.encoders import get_encoder
    from codelsr.encoders.hybrid import LEXICAL_PREFIX

    hybrid = get_encoder("hybrid-code-tiny")
    # 600 characters: several SPLADE pieces (186 characters), one BM25 piece (1,000).
    text = "\n".join(["The handler retries the request."] * 18)
    assert len(hybrid_pieces := text.split("\n")) == 18 and 400 < len(text) < LEXICAL_PIECE_CHARS
    vec = encode_query(hybrid, text)
    lexical_alone = encode_query(hybrid.lexical, text)
    splade_alone = encode_query(hybrid.splade, text)
    lex = {t[len(LEXICAL_PREFIX):]: w for t, w in vec.items() if t.startswith(LEXICAL_PREFIX)}
    assert lex == pytest.approx({t: w * hybrid.lexical_weight for t, w in lexical_alone.items()})
    # BM25 reads one piece: 'handler' counts all 18 times, above its count in one 186-character piece.
    one_piece = hybrid.lexical.encode_queries(["\n".join(hybrid_pieces[:5])])[0]
    assert lexical_alone["handler"] > one_piece["handler"]
    assert {t: w for t, w in vec.items() if not t.startswith(LEXICAL_PREFIX)} == pytest.approx(splade_alone)
    short = "where are retries scheduled"
    assert encode_query(hybrid, short) == pytest.approx(hybrid.encode_queries([short])[0])


async def test_search_code_answers_a_long_issue_and_finds_what_only_its_end_names(tmp_path):
    repo = make_git_repo(tmp_path / "repo", {
        "app/forms.py": "def save_form(form):\n    return handler(form)\n",
        "app/payload.py": "def normalize_payload_checksum(data):\n    return data[:-1]\n",
        "app/handlers.py": "def handler(request):\n    result = handler(request)\n    return result\n",
    })
    text = _long_issue()
    async with mcp.Client(create_server([repo]), mode="legacy") as c:
        await c.call_tool("index_repo", {"path": str(repo)})
        result = await c.call_tool("search_code", {"query": text, "repo": str(repo), "k": 3})
        too_long = await c.call_tool("search_code", {"query": "x" * (MAX_QUERY_CHARS + 1), "repo": str(repo)})
    assert not result.is_error, result.content[0].text
    paths = [h["path"] for h in result.structured_content["hits"]]
    assert "app/payload.py" in paths
    assert too_long.is_error and f"limit is {MAX_QUERY_CHARS}" in too_long.content[0].text


def test_search_index_can_skip_preparation_to_measure_what_it_buys(tmp_path):
    repo = make_git_repo(tmp_path / "repo", {"a.py": "def normalize_payload_checksum():\n    pass\n",
                                             "b.py": "def handler(request):\n    return handler\n"})
    build_index(repo, "lexical")
    reader = open_index(repo)
    text = _long_issue()
    prepared = search_index(reader, text, k=2)
    raw = search_index(reader, text, k=2, prepare_query=False)
    assert reader.query_vector(text, prepare=False) == reader.encoder().encode_queries([text])[0]
    assert reader.query_vector(text) != reader.query_vector(text, prepare=False)
    by_path = {h.path: h.score for h in prepared.hits}
    raw_by_path = {h.path: h.score for h in raw.hits}
    # Saturated repeats: the file the traceback repeats scores far less; the named one the same.
    assert by_path["b.py"] < raw_by_path["b.py"] / 4
    assert by_path["a.py"] == pytest.approx(raw_by_path["a.py"])


def test_results_json_of_the_committed_run_is_consistent():
    path = Path(__file__).resolve().parents[1] / "evals" / "results" / "swe_lite" / "results.json"
    if not path.exists():
        pytest.skip("no committed swe_lite results")
    out = json.loads(path.read_text())
    on = out["scored_on"]
    assert on.get("approximate", 0) + on.get("exact", 0) + on.get("no_tree", 0) == out["instances"]
    for name, s in out["summary"].items():
        assert s["instances"] == len(out["per_instance"][name])


def test_merging_two_parts_gives_the_results_of_one_run(tmp_path, monkeypatch):
    from evals.swe_lite.merge import merge
    from evals.swe_lite.run import run

    monkeypatch.setenv("CODELSR_EVAL_CACHE", str(tmp_path / "cache"))
    mirror, first, second = _mirror(tmp_path)
    one = Instance("acme__pkg-1", "acme/pkg", first, "1.0", ISSUE_ONE, ("pkg/sessions.py",), {})
    two = Instance("acme__pkg-2", "acme/pkg", second, "1.1", ISSUE_TWO, ("pkg/adapters.py",), {})
    three = Instance("acme__pkg-3", "acme/pkg", first, "1.0", ISSUE_TWO, ("pkg/adapters.py",), {})
    systems = ["bm25s", "grep"]
    whole = run([one, two, three], systems, [], set(), mirror)
    merged = merge([run([one, three], systems, [], set(), mirror), run([two], systems, [], set(), mirror)])
    assert merged["instances"] == 3 and merged["scored_on"] == whole["scored_on"] == {"exact": 3, "no_tree": 0}
    assert len(merged["gold_missing_from_tree"]) == 1
    for s in systems:
        assert {k: v for k, v in merged["summary"][s].items() if k != "seconds"} == \
               {k: v for k, v in whole["summary"][s].items() if k != "seconds"}
    with pytest.raises(ValueError, match="overlap"):
        merge([whole, whole])
    from evals.swe_lite.merge import drop_repo

    emptied = drop_repo(whole, "acme/pkg")
    assert emptied["instances"] == 0 and not emptied["trees"] and not emptied["per_instance"]["bm25s"]
