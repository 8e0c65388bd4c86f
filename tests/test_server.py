"""The MCP server in-process, over the same JSON-RPC session a client uses (``mode="legacy"``):
tools and schemas, index / search / explain / status on real git repositories, progress
notifications, builds in flight, and every error an agent can cause returned as ``is_error``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import anyio
import mcp
import pytest

import codelsr.server.app as server_app
from codelsr.index import generations, index_root_for
from codelsr.index.checksums import write_checksums
from codelsr.records import Hit
from codelsr.server import create_server

from conftest import SAMPLE_FILES, git, make_git_repo, write

LEVENSHTEIN_LINE = SAMPLE_FILES["src/tokenizer.py"].split("\n").index("def levenshtein_distance(a, b):") + 1
HIT_KEYS = set(Hit("id", "p", 1, 1, None, "python", 1.0, "s").to_json()) | {"repo"}


@pytest.fixture
def workspace(tmp_path) -> Path:
    """The server's root: two git repositories side by side, and nothing else."""
    root = tmp_path / "workspace"
    root.mkdir()
    for name, files in (("sample", SAMPLE_FILES), ("other", {"lib/retry.py": RETRY_PY})):
        make_git_repo(root / name, files)
    return root


RETRY_PY = '''"""Retries with exponential backoff."""

import time


def retry_with_backoff(operation, attempts=5, base_delay=0.1):
    """Call operation until it succeeds, doubling the delay after each failure."""
    for attempt in range(attempts):
        try:
            return operation()
        except OSError:
            time.sleep(base_delay * 2 ** attempt)
    return operation()
'''


def client(server) -> mcp.Client:
    return mcp.Client(server, mode="legacy")


async def call(c: mcp.Client, tool: str, **arguments) -> dict:
    """A successful call's structured content (and the same JSON as its text content)."""
    result = await c.call_tool(tool, arguments)
    assert not result.is_error, result.content[0].text
    text = result.content[0].text
    assert json.loads(text) == result.structured_content and "\n  " not in text  # compact JSON text
    return result.structured_content


async def error(c: mcp.Client, tool: str, **arguments) -> str:
    result = await c.call_tool(tool, arguments)
    assert result.is_error, result.structured_content
    return result.content[0].text


# ------------------------------------------------------------------ tools and schemas


async def test_the_server_lists_four_tools_with_schemas_and_annotations(workspace):
    async with client(create_server([workspace])) as c:
        tools = {t.name: t for t in (await c.list_tools()).tools}
    assert set(tools) == {"index_repo", "search_code", "explain_match", "index_status"}
    search = tools["search_code"]
    assert search.input_schema["required"] == ["query"]
    assert set(search.input_schema["properties"]) == {"query", "repo", "k", "offset", "path_glob", "language",
                                                      "max_chars"}
    k = search.input_schema["properties"]["k"]
    assert (k["default"], k["minimum"], k["maximum"]) == (10, 1, 100)
    hit_schema = search.output_schema["$defs"]["HitOut"]
    assert set(hit_schema["properties"]) == HIT_KEYS
    assert set(tools["index_repo"].input_schema["properties"]) == {"path", "encoder", "force"}
    assert {"files", "chunks", "skipped", "skipped_files", "encoder", "seconds", "commit", "joined_build"} <= set(
        tools["index_repo"].output_schema["properties"])
    assert {"terms", "other_terms", "expansion_share", "focus_lines", "score"} <= set(
        tools["explain_match"].output_schema["properties"])
    for name in ("search_code", "explain_match", "index_status"):
        a = tools[name].annotations
        assert a.read_only_hint is True and a.idempotent_hint is True, name
    assert tools["index_repo"].annotations.read_only_hint is False
    assert tools["index_repo"].annotations.destructive_hint is False
    assert all(t.description for t in tools.values())


# ------------------------------------------------------------------ the happy path


async def test_index_repo_indexes_a_git_repository_and_reports_progress(workspace):
    repo = workspace / "sample"
    head = git(repo, "rev-parse", "HEAD").strip()
    write(repo, "assets/logo.bin", b"\x00\x01\x02" * 100)
    notes: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress, total, message):
        notes.append((progress, total, message))

    async with client(create_server([workspace])) as c:
        result = await c.call_tool("index_repo", {"path": str(repo)}, progress_callback=on_progress)
    assert not result.is_error, result.content[0].text
    r = result.structured_content
    assert r["repo"] == str(repo.resolve()) and r["encoder"] == "lexical" and r["commit"] == head
    assert r["files"] == 5 and r["chunks"] >= 8 and r["joined_build"] is False
    assert r["skipped"] == {"binary": 1}
    assert r["skipped_files"] == [{"path": "assets/logo.bin", "reason": "binary"}]
    assert notes, "no progress notification arrived"
    values = [p for p, _, _ in notes]
    assert values == sorted(values) and values[-1] == 100 and all(t == 100 for _, t, _ in notes)
    assert all(m and str(repo.resolve()) in m for _, _, m in notes)


async def test_search_code_finds_the_function_and_hits_have_the_cli_hit_shape(workspace):
    repo = workspace / "sample"
    async with client(create_server([workspace])) as c:
        await call(c, "index_repo", path=str(repo))
        r = await call(c, "search_code", query="levenshtein edit distance between strings", max_chars=40)
    assert r["repos"] == [str(repo.resolve())] and r["encoders"] == {str(repo.resolve()): "lexical"}
    top = r["hits"][0]
    assert set(top) == HIT_KEYS
    assert (top["path"], top["symbol"], top["language"]) == ("src/tokenizer.py", "levenshtein_distance", "python")
    assert top["start_line"] <= LEVENSHTEIN_LINE < top["end_line"]
    assert top["repo"] == str(repo.resolve()) and len(top["chunk_id"]) == 16 and top["score"] > 0
    assert "more lines" in top["snippet"] and len(top["snippet"].split("\n… (")[0]) <= 40


async def test_search_code_pages_with_next_offset(workspace):
    async with client(create_server([workspace])) as c:
        await call(c, "index_repo", path="sample")  # relative to the first root
        whole = await call(c, "search_code", query="return the data", k=4)
        first = await call(c, "search_code", query="return the data", k=2)
        second = await call(c, "search_code", query="return the data", k=2, offset=first["next_offset"])
    assert first["next_offset"] == 2 and second["offset"] == 2
    ids = lambda page: [h["chunk_id"] for h in page["hits"]]  # noqa: E731
    assert ids(first) + ids(second) == ids(whole)


async def test_search_code_filters_by_glob_and_language(workspace):
    async with client(create_server([workspace])) as c:
        await call(c, "index_repo", path="sample")
        go = await call(c, "search_code", query="token", language="go")
        js = await call(c, "search_code", query="callback handler", path_glob="web/*")
        none = await call(c, "search_code", query="zzzqqq unrelatedword")
    assert go["hits"] and {h["language"] for h in go["hits"]} == {"go"}
    assert js["hits"] and {h["path"] for h in js["hits"]} == {"web/debounce.js"}
    assert none["hits"] == [] and none["next_offset"] is None and "no chunk" in none["note"]


async def test_several_repositories_are_searched_at_once_and_repo_is_required_to_choose(workspace):
    sample, other = (str((workspace / n).resolve()) for n in ("sample", "other"))
    async with client(create_server([workspace])) as c:
        await call(c, "index_repo", path=sample)
        only = await call(c, "search_code", query="retry failed uploads exponential backoff")
        await call(c, "index_repo", path=other)
        message = await error(c, "search_code", query="retry exponential backoff")
        both = await call(c, "search_code", query="retry exponential backoff", repo=[sample, other], k=5)
        deep = await call(c, "search_code", query="retry exponential backoff", repo=[sample, other], k=5, offset=98)
        pages = [await call(c, "search_code", query="retry exponential backoff", repo=[other, sample], k=2,
                            offset=o) for o in (0, 2)]
        whole = await call(c, "search_code", query="retry exponential backoff", repo=[other, sample], k=4)
        hit = next(h for h in both["hits"] if h["repo"] == other)
        # explain_match finds the hit's repository by its chunk id when repo is left out.
        explained = await call(c, "explain_match", query="retry exponential backoff", chunk_id=hit["chunk_id"])
    assert only["repos"] == [sample]
    assert "2 repositories are indexed" in message and sample in message and other in message
    assert "repo=" in message
    assert both["repos"] == [sample, other]
    assert {h["repo"] for h in both["hits"]} == {sample, other}
    assert {"lib/retry.py", "docs/guide.md"} <= {h["path"] for h in both["hits"]}
    scores = [h["score"] for h in both["hits"]]
    assert (explained["repo"], explained["path"]) == (other, hit["path"])
    assert deep["hits"] == [] and deep["next_offset"] is None and deep["offset"] == 98
    assert pages[0]["next_offset"] == 2 and pages[0]["hits"] + pages[1]["hits"] == whole["hits"]
    assert scores == sorted(scores, reverse=True)


async def test_explain_match_decomposes_the_hit_score_into_literal_terms(workspace):
    query = "levenshtein edit distance between strings"
    async with client(create_server([workspace])) as c:
        await call(c, "index_repo", path="sample")
        hit = (await call(c, "search_code", query=query))["hits"][0]
        e = await call(c, "explain_match", query=query, chunk_id=hit["chunk_id"])
        short = await call(c, "explain_match", query=query, chunk_id=hit["chunk_id"], repo=hit["repo"], max_terms=1)
    assert (e["path"], e["start_line"], e["repo"]) == (hit["path"], hit["start_line"], hit["repo"])
    total = sum(t["contribution"] for t in e["terms"]) + e["other_terms"]["contribution"]
    assert total == pytest.approx(hit["score"], rel=1e-5) and e["score"] == pytest.approx(hit["score"], rel=1e-5)
    contributions = [t["contribution"] for t in e["terms"]]
    assert contributions == sorted(contributions, reverse=True)
    for t in e["terms"]:
        assert t["contribution"] == pytest.approx(t["query_weight"] * t["doc_weight"], abs=1e-5)
        # The lexical encoder never expands: every matched term is in both texts.
        assert (t["in_query"], t["in_chunk"], t["expansion"], t["kind"]) == (True, True, False, "literal")
        assert all(e["start_line"] <= n <= e["end_line"] for n in t["lines"]) and t["lines"]
    assert "levenshtein" in {t["term"] for t in e["terms"]} and e["expansion_share"] == 0
    # The docstring ("Edit distance between two strings.") carries most of the score, then the def line.
    best, second = e["focus_lines"][:2]
    assert (best["line"], second["line"]) == (LEVENSHTEIN_LINE + 1, LEVENSHTEIN_LINE)
    assert "levenshtein" in second["terms"] and second["text"] == "def levenshtein_distance(a, b):"
    assert best["contribution"] > second["contribution"]
    assert len(short["terms"]) == 1 and short["other_terms"]["count"] == len(e["terms"]) - 1
    assert short["terms"][0]["contribution"] + short["other_terms"]["contribution"] == pytest.approx(e["score"])


async def test_index_status_lists_repositories_and_sees_a_changed_working_tree(workspace):
    repo = workspace / "sample"
    async with client(create_server([workspace])) as c:
        before = await call(c, "index_status", repo=str(repo))
        await call(c, "index_repo", path=str(repo))
        fresh = (await call(c, "index_status"))["repositories"]
        write(repo, "src/new_module.py", "def brand_new():\n    return 1\n")
        stale = (await call(c, "index_status", repo=str(repo)))["repositories"][0]
    assert before["roots"] == [str(workspace.resolve())]
    assert before["repositories"][0]["indexed"] is False and "index_repo" in before["repositories"][0]["hint"]
    assert [s["repo"] for s in fresh] == [str(repo.resolve())]
    s = fresh[0]
    assert s["indexed"] and s["encoder"] == "lexical" and s["chunks"] >= 8 and s["files"] == 5
    assert s["indexed_commit"] == git(repo, "rev-parse", "HEAD").strip()
    assert s["changed_since_index"] is False and s["index_bytes"] > 0 and s["age_seconds"] >= 0
    assert s["created_at"] and s["indexing"] is None and s["hint"] is None
    assert stale["changed_since_index"] is True and "index_repo" in stale["hint"]


async def test_an_index_rebuilt_by_another_process_is_picked_up_without_a_restart(workspace):
    repo = workspace / "sample"
    async with client(create_server([workspace])) as c:
        await call(c, "index_repo", path=str(repo))
        assert (await call(c, "search_code", query="quaternion slerp"))["hits"] == []
        write(repo, "core/quat.py", "def quaternion_slerp(a, b, t):\n    return a\n")
        subprocess.run([sys.executable, "-m", "codelsr", "index", str(repo)], check=True, capture_output=True,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        hits = (await call(c, "search_code", query="quaternion slerp"))["hits"]
    assert hits[0]["path"] == "core/quat.py" and hits[0]["symbol"] == "quaternion_slerp"


# ------------------------------------------------------------------ builds in flight


async def test_a_second_index_repo_call_joins_the_build_in_flight_and_search_stays_fast(workspace, monkeypatch):
    sample, other = workspace / "sample", workspace / "other"
    release, started, builds = threading.Event(), threading.Event(), []
    real_build = server_app.index_repository

    def held_build(repo, *args, **kwargs):
        builds.append(repo)
        if Path(repo) == sample.resolve():
            kwargs["progress"]("chunking", 1, 5)
            started.set()
            assert release.wait(30)
        return real_build(repo, *args, **kwargs)

    monkeypatch.setattr(server_app, "index_repository", held_build)
    results: dict[str, dict] = {}
    notes: list[float] = []

    async def on_progress(progress, total, message):
        notes.append(progress)

    async with client(create_server([workspace])) as c:
        await call(c, "index_repo", path=str(other))

        async def index(name):
            r = await c.call_tool("index_repo", {"path": str(sample)}, progress_callback=on_progress)
            results[name] = r.structured_content or {"error": r.content[0].text}

        async with anyio.create_task_group() as tg:
            tg.start_soon(index, "first")
            await anyio.to_thread.run_sync(started.wait, 10)
            await anyio.sleep(0.3)
            tg.start_soon(index, "second")
            t0 = time.perf_counter()
            found = await call(c, "search_code", query="retry backoff", repo=str(other))
            search_seconds = time.perf_counter() - t0
            status = (await call(c, "index_status", repo=str(sample)))["repositories"][0]
            refused = await error(c, "index_repo", path=str(sample), force=True)
            busy = await error(c, "search_code", query="token", repo=str(sample))
            release.set()
    assert found["hits"][0]["path"] == "lib/retry.py" and search_seconds < 5
    assert status["indexed"] is False and status["indexing"]["stage"] == "chunking"
    assert status["indexing"]["done"] == 1 and status["indexing"]["total"] == 5
    assert "already being indexed" in refused and "force=true" in refused
    assert "being indexed right now" in busy
    assert builds.count(sample.resolve()) == 1
    assert results["first"]["joined_build"] is False and results["second"]["joined_build"] is True
    assert results["first"]["generation"] == results["second"]["generation"]
    assert 100 in notes and min(notes) < 100


# ------------------------------------------------------------------ errors an agent can cause


async def test_paths_outside_the_roots_are_refused_including_through_symlinks_and_dotdot(workspace, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    git(outside, "init", "-q")
    (workspace / "link").symlink_to(outside, target_is_directory=True)
    async with client(create_server([workspace / "sample"])) as c:
        for path in (str(outside), str(workspace / "sample" / ".." / "other"), str(workspace / "link"), "../other",
                     "/"):
            message = await error(c, "index_repo", path=path)
            assert "outside the folders this server may read" in message and "--root" in message, path
        assert "outside" in await error(c, "search_code", query="x", repo=str(outside))
        assert "outside" in await error(c, "explain_match", query="x", chunk_id="0" * 16, repo=str(outside))
        assert "outside" in await error(c, "index_status", repo=str(workspace / "other"))
        assert "outside" in await error(c, "search_code", query="x", repo=[str(workspace / "sample"), str(outside)])
    assert not any(index_root_for(p.resolve()).exists() for p in (outside, workspace / "other"))


async def test_a_repository_that_is_not_indexed_says_to_call_index_repo(workspace):
    async with client(create_server([workspace])) as c:
        nothing = await error(c, "search_code", query="token")
        one = await error(c, "search_code", query="token", repo=str(workspace / "sample"))
        explained = await error(c, "explain_match", query="token", chunk_id="0" * 16, repo=str(workspace / "sample"))
        await call(c, "index_repo", path="sample")
        inner = await error(c, "search_code", query="token", repo=str(workspace / "sample" / "src"))
    assert "no repository" in nothing and "index_repo" in nothing
    assert "not indexed yet" in one and f"index_repo(path='{(workspace / 'sample').resolve()}')" in one
    assert "index_repo" in explained
    assert "inside the indexed repository" in inner and "path_glob" in inner


@pytest.mark.parametrize("arguments, expected", [
    ({"query": ""}, "the query is empty"),
    ({"query": "   "}, "the query is empty"),
    ({"query": "x" * 100_001}, "limit is 100000"),
    ({"query": "token", "k": 0}, "greater than or equal to 1"),
    ({"query": "token", "k": 101}, "less than or equal to 100"),
    ({"query": "token", "offset": -1}, "offset"),
    ({"query": "token", "max_chars": -5}, "max_chars"),
])
async def test_bad_search_arguments_are_tool_errors_that_say_what_is_wrong(workspace, arguments, expected):
    async with client(create_server([workspace])) as c:
        await call(c, "index_repo", path="sample")
        message = await error(c, "search_code", **arguments)
    assert expected in message


async def test_explain_errors_name_the_problem(workspace):
    async with client(create_server([workspace])) as c:
        await call(c, "index_repo", path="sample")
        unknown = await error(c, "explain_match", query="token", chunk_id="0123456789abcdef")
        empty = await error(c, "explain_match", query=" ", chunk_id="0123456789abcdef")
    assert "no chunk '0123456789abcdef'" in unknown and "search again" in unknown
    assert "the query is empty" in empty


async def test_encoder_problems_are_tool_errors_with_the_fix(workspace):
    repo = workspace / "sample"
    async with client(create_server([workspace])) as c:
        unknown = await error(c, "index_repo", path=str(repo), encoder="word2vec")
        missing = await error(c, "index_repo", path=str(workspace / "nope"))
        no_status = await error(c, "index_status", repo=str(workspace / "nope"))
        await call(c, "index_repo", path=str(repo))
        # The index was built by an encoder that now loads differently (settings or model files changed).
        gen = generations.current_generation(index_root_for(repo.resolve()))
        manifest = json.loads((gen / "manifest.json").read_text())
        manifest["encoder_id"] = "lexical-from-an-older-codelsr"
        (gen / "manifest.json").write_text(json.dumps(manifest))
        write_checksums(gen)  # an intact index of an older encoder, not a damaged one
        mismatch = await error(c, "search_code", query="token")
        status = await call(c, "index_status")
    assert "unknown encoder 'word2vec'" in unknown and "lexical" in unknown
    assert "not an existing folder" in missing and "not an existing folder" in no_status
    assert "lexical-from-an-older-codelsr" in mismatch and "force=true" in mismatch
    assert status["repositories"][0]["indexed"] is True  # the server survived every error


async def test_an_encoder_loading_a_model_folder_outside_the_roots_is_refused(workspace, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    async with client(create_server([workspace])) as c:
        message = await error(c, "index_repo", path="sample", encoder=f"splade:{model}")
    assert "outside the server's roots" in message and "--encoder" in message


async def test_a_build_locked_by_another_process_is_a_tool_error_and_the_server_carries_on(workspace, monkeypatch):
    import filelock

    repo = (workspace / "sample").resolve()
    monkeypatch.setattr(server_app, "LOCK_WAIT_SECONDS", 0.2)
    root = index_root_for(repo)
    root.mkdir(parents=True)
    async with client(create_server([workspace])) as c:
        with filelock.FileLock(str(root / generations.LOCK)):
            busy = await error(c, "index_repo", path=str(repo))
            status = (await call(c, "index_status", repo=str(repo)))["repositories"][0]
        indexed = await call(c, "index_repo", path=str(repo))
    assert "another codelsr process is indexing" in busy and "try again" in busy
    assert status["indexing"] is None and status["indexed"] is False
    assert indexed["chunks"] >= 8
