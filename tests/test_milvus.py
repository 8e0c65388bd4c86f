"""The Milvus backend against the real embedded engine (Milvus Lite 2.5.1): two repositories in one
collection searched in one engine query, filters pushed down, reindex as upserts and deletes,
kill -9 during a reindex, and the same hits as the exact backend."""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SAMPLE_FILES, git, make_git_repo, write
from test_incremental import QUERIES, make_repo, module_text

from codelsr.index import build_index, open_index
from codelsr.index import milvus_backend as mb
from codelsr.index import reader as reader_module
from codelsr.index.catalog import index_root_for
from codelsr.search import search, search_engine, search_index

pytestmark = pytest.mark.skipif(not mb.available(), reason="pymilvus / milvus-lite not installed (codelsr[milvus])")


@pytest.fixture(autouse=True)
def _fresh_engine():
    """Each test opens its own Milvus Lite file; the server of the last one must let go of its lock."""
    mb.close_clients()
    reader_module.forget_open_indexes()
    yield
    mb.close_clients()
    reader_module.forget_open_indexes()


def engine_rows(repo: Path) -> dict[str, tuple[str, dict]]:
    """pk -> (path, vector) of everything the engine holds for the repository."""
    reader = open_index(repo)
    target = mb.target_from_settings(reader.manifest.backend_settings)
    key = reader.manifest.backend_settings["repo"]
    c = mb.client(target)
    pks = sorted(mb.engine_pks(target, key))
    out = {}
    for lo in range(0, len(pks), 500):
        for e in c.get(target.collection, ids=pks[lo:lo + 500], output_fields=["path", "vector"]):
            out[e["pk"]] = (e["path"], {int(k): round(float(v), 5) for k, v in e["vector"].items()})
    return out


def live_ids(repo: Path) -> set[str]:
    reader_module.forget_open_indexes()
    reader = open_index(repo)
    chunks = reader.chunks.by_rows(list(range(reader.manifest.chunk_count)))
    return {c.chunk_id for c in chunks.values()}


def test_term_ids_are_stable_across_processes_and_collisions_are_counted():
    terms = ["parse", "Parse", "lex:parse", "##ing", "Ġtoken", "重试", "a" * 200]
    here = [mb.term_id(t) for t in terms]
    code = ("import sys; sys.path[:0] = sys.argv[1:2]; from codelsr.index import milvus_backend as mb; "
            f"print([mb.term_id(t) for t in {terms!r}])")
    other = subprocess.run([sys.executable, "-c", code, str(Path(mb.__file__).parents[2])], capture_output=True,
                           text=True, check=True, env={"PYTHONHASHSEED": "123", "PATH": ""}).stdout
    assert str(here) == other.strip()  # no per-process salt (Python's str hash would differ)
    assert all(0 <= i < mb.TERM_SPACE for i in here) and len(set(here)) == len(terms)
    stats = mb.collisions(f"term{i}" for i in range(200_000))
    # 200k random 32-bit ids: about n^2 / 2^33 = 4.7 colliding pairs expected; far from 0 or 100
    assert stats["terms"] == 200_000 and stats["terms_in_collisions"] < 100
    assert stats["terms"] - stats["dimensions"] <= stats["terms_in_collisions"] <= 2 * (stats["terms"] - stats["dimensions"])


def test_glob_to_like_never_drops_a_path_the_glob_matches():
    paths = ["src/a_b.py", "src/a%b.py", "src/sub/x.py", "docs/x.md", "src/[x].py", "srcx.py", 'src/q"t.py']
    globs = ["src/*.py", "src/a_b.py", "*/x.*", "src/?_b.py", "src/[ab]*", "src/[!a]*", "*%*", "src/q\"t.py",
             "docs/*", "*.py"]
    import re
    for g in globs:
        like = mb.glob_to_like(g)
        as_re = re.compile("".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in like) + r"\Z",
                           re.S)
        matches = mb.glob_matcher(g)
        for p in paths:
            if matches(p):
                assert as_re.match(p), (g, like, p)
    assert mb.glob_matcher("src/*.py")("src/sub/x.py")  # '*' crosses folders, like SQLite GLOB
    assert not mb.glob_matcher("src/*.PY")("src/a.py")  # case-sensitive, like SQLite GLOB


def test_two_repositories_one_collection_one_query_with_a_path_filter(tmp_path, monkeypatch):
    uri = str(tmp_path / "m.db")
    a = make_repo(tmp_path / "alpha", n_files=24, seed=1)
    b = make_repo(tmp_path / "beta", n_files=24, seed=2)
    ra = build_index(a, milvus_uri=uri)
    rb = build_index(b, milvus_uri=uri)
    assert ra.backend == rb.backend == "milvus"
    readers = [open_index(a), open_index(b)]
    sa, sb = (r.manifest.backend_settings for r in readers)
    assert sa["collection"] == sb["collection"] and sa["repo"] != sb["repo"] and sa["uri"] == uri
    target = mb.target_from_settings(sa)
    assert mb.engine_count(target, sa["repo"]) == ra.chunks and mb.engine_count(target, sb["repo"]) == rb.chunks

    calls = []
    real = mb.engine_search

    def counting(*args, **kwargs):
        calls.append(kwargs.get("path_glob", args[5] if len(args) > 5 else None))
        return real(*args, **kwargs)

    monkeypatch.setattr(mb, "engine_search", counting)
    hits, _ = search_engine(readers, "parse token stream retry", k=10, path_glob="pkg1/*")
    assert len(calls) == 1 and calls[0] == "pkg1/*"  # one engine query, the filter pushed down
    assert {h.repo for h in hits} == {str(a), str(b)}
    assert hits and all(h.path.startswith("pkg1/") for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)

    # The page equals brute force over both repositories with idf from both (one shared query vector).
    from codelsr.search import shared_query_vector

    vector = shared_query_vector(readers, "parse token stream retry")
    pooled = []
    for ri, reader in enumerate(readers):
        ids, w = reader.to_ids(vector)
        rows = reader.chunks.filter_rows("pkg1/*", None)
        scores = reader.exact.scores(ids, w)[rows]
        chunks = reader.chunks.by_rows(rows.tolist())
        pooled += [(-float(s), ri, int(r), chunks[int(r)].chunk_id) for r, s in zip(rows, scores) if s > 0]
    pooled.sort()
    assert [h.chunk_id for h in hits[:3]] == [p[3] for p in pooled[:3]]
    for h, p in zip(hits[:3], pooled[:3]):
        assert h.score == pytest.approx(-p[0], rel=1e-5)

    # The language filter runs in the engine too, and the repository filter keeps each search to its own rows.
    md, _ = search_engine(readers, "parse token streams retry backoff", k=5, language="Markdown")
    assert md and {h.path for h in md} == {"README.md"} and {h.repo for h in md} == {str(a), str(b)}
    only_a = search(a, "parse token stream retry", k=20).hits
    assert only_a and {h.repo for h in only_a} == {str(a)}


def test_reindex_after_a_commit_changes_only_that_files_rows(tmp_path):
    repo = make_repo(tmp_path / "repo", n_files=30, seed=4)
    build_index(repo, milvus_uri=str(tmp_path / "m.db"))
    before = engine_rows(repo)
    assert {pk.split(":")[-1] for pk in before} == live_ids(repo)

    target = repo / "pkg2" / "mod_06.py"
    target.write_text(module_text(random.Random(9), "changed", 4), encoding="utf-8")
    git(repo, "commit", "-qam", "change one file")
    report = build_index(repo)
    assert report.changed_files == 1 and report.backend == "milvus" and report.encoded_chunks > 0
    after = engine_rows(repo)

    removed = set(before) - set(after)
    added = set(after) - set(before)
    assert removed and added
    assert {before[pk][0] for pk in removed} == {"pkg2/mod_06.py"}
    assert {after[pk][0] for pk in added} == {"pkg2/mod_06.py"}
    assert all(after[pk] == before[pk] for pk in set(before) & set(after))  # untouched rows: same vectors
    assert {pk.split(":")[-1] for pk in after} == live_ids(repo)
    assert not (index_root_for(repo) / mb.PENDING_FILE).exists()

    # A deleted file's rows go too; a search no longer returns it.
    (repo / "pkg2" / "mod_06.py").unlink()
    git(repo, "commit", "-qam", "delete it")
    build_index(repo)
    assert not any(p == "pkg2/mod_06.py" for p, _ in engine_rows(repo).values())


CHILD = """
import sys
from codelsr.index import build_index
print("ready", flush=True)
build_index(sys.argv[1], milvus_uri=sys.argv[2], force=sys.argv[3] == "1")
"""


@pytest.mark.slow
def test_kill_9_during_a_reindex_loses_nothing(tmp_path):
    repo = make_repo(tmp_path / "repo", n_files=80, seed=5)
    uri = str(tmp_path / "m.db")
    started = time.perf_counter()
    build_index(repo, milvus_uri=uri)
    full_seconds = time.perf_counter() - started
    rng = random.Random(11)
    kills = 0
    for step in range(8):
        mb.close_clients()  # the child needs the Milvus Lite file to itself
        files = sorted(repo.rglob("*.py"))
        for path in rng.sample(files, rng.randint(1, 10)):
            path.write_text(module_text(rng, f"s{step}", rng.randint(1, 5)), encoding="utf-8")
        if rng.random() < 0.5:
            write(repo, f"new/s{step}.py", module_text(rng, f"new{step}", 3))
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", f"step {step}")
        proc = subprocess.Popen([sys.executable, "-c", CHILD, str(repo), uri, "1" if rng.random() < 0.3 else "0"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.2, 0.5 + full_seconds))
        if proc.poll() is None:
            proc.kill()
            kills += 1
        proc.wait(timeout=60)
        proc.stdout.close()
        proc.stderr.close()
        # Whatever generation is published, every one of its chunks is in the engine and findable.
        time.sleep(0.5)
        live = live_ids(repo)
        held = {pk.split(":")[-1] for pk in engine_rows(repo)}
        assert live <= held, f"step {step}: {len(live - held)} published chunks missing from Milvus"
        hits = search(repo, "parse token stream", k=5).hits
        assert all(h.chunk_id in live for h in hits)
    mb.close_clients()
    build_index(repo)  # reconciles what a killed run left behind
    assert {pk.split(":")[-1] for pk in engine_rows(repo)} == live_ids(repo)
    assert not (index_root_for(repo) / mb.PENDING_FILE).exists()
    assert kills >= 3, f"only {kills} runs were killed before finishing"


def test_same_hits_as_the_exact_backend(tmp_path):
    src = make_git_repo(tmp_path / "src", SAMPLE_FILES)
    exact_repo = tmp_path / "exact" / "sample"
    milvus_repo = tmp_path / "milvus" / "sample"
    for dst in (exact_repo, milvus_repo):
        shutil.copytree(src, dst)
    build_index(exact_repo, backend="exact")
    build_index(milvus_repo, milvus_uri=str(tmp_path / "m.db"))
    ex, mv = open_index(exact_repo), open_index(milvus_repo)
    assert mv.manifest.backend == "milvus" and mv.manifest.chunk_count == ex.manifest.chunk_count
    queries = [*QUERIES, "levenshtein edit distance", "debounce timer", "retry uploads with exponential backoff",
               "Tokenizer lowercase words"]
    compared = 0
    for q in queries:
        for kw in ({}, {"path_glob": "src/*"}, {"path_glob": "*.js"}, {"language": "markdown"}, {"offset": 2}):
            want = search_index(ex, q, k=5, **kw)
            got = search_index(mv, q, k=5, **kw)
            assert [(h.chunk_id, h.start_line, h.end_line) for h in got.hits] == \
                   [(h.chunk_id, h.start_line, h.end_line) for h in want.hits], (q, kw)
            assert [h.score for h in got.hits] == pytest.approx([h.score for h in want.hits], rel=1e-6)
            assert (got.next_offset is None) == (want.next_offset is None)
            compared += len(want.hits)
    assert compared >= 30  # the comparison covered real hits, not empty pages
    # explain_match reads the forward index, as with every backend
    from codelsr.explain import explain_chunk

    hit = search_index(mv, "levenshtein edit distance", k=1).hits[0]
    assert explain_chunk(mv, "levenshtein edit distance", hit.chunk_id).score == pytest.approx(hit.score, rel=1e-6)


async def test_the_mcp_server_with_milvus_indexes_into_one_collection_and_searches_both_in_one_query(
        tmp_path, monkeypatch):
    import json as _json

    import mcp

    from codelsr.server import create_server

    root = tmp_path / "workspace"
    root.mkdir()
    make_git_repo(root / "sample", SAMPLE_FILES)
    make_repo(root / "other", n_files=12, seed=3)
    monkeypatch.setenv(mb.URI_ENV, str(tmp_path / "served.db"))  # what `codelsr serve --milvus URI` sets
    calls = []
    real = mb.engine_search
    monkeypatch.setattr(mb, "engine_search", lambda *a, **kw: calls.append(a[1]) or real(*a, **kw))

    async with mcp.Client(create_server([root]), mode="legacy") as c:
        for name in ("sample", "other"):
            res = await c.call_tool("index_repo", {"path": str(root / name)})
            assert not res.is_error, res.content[0].text
            assert res.structured_content["backend"] == "milvus"
        calls.clear()
        res = await c.call_tool("search_code", {"query": "parse token retry backoff", "k": 10, "path_glob": "*.md",
                                                "repo": [str(root / "sample"), str(root / "other")]})
        assert not res.is_error, res.content[0].text
        out = _json.loads(res.content[0].text)
        assert len(calls) == 1 and len(calls[0]) == 2  # one engine query over both repositories
        assert {h["repo"] for h in out["hits"]} == {str(root / "sample"), str(root / "other")}
        assert all(h["path"].endswith(".md") for h in out["hits"])
        hit = out["hits"][0]
        res = await c.call_tool("explain_match", {"query": "parse token retry backoff", "chunk_id": hit["chunk_id"],
                                                  "repo": hit["repo"]})
        assert not res.is_error and res.structured_content["terms"]
