"""The `codelsr` command as a user runs it: a real process, real files, exit codes and JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def run(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "codelsr", *args], capture_output=True, text=True, cwd=cwd,
                          env=os.environ.copy(), timeout=120)


def test_index_then_search_json_has_the_documented_schema(sample_repo):
    indexed = run("index", str(sample_repo))
    assert indexed.returncode == 0, indexed.stderr
    assert "5 files" in indexed.stdout and "encoder: lexical" in indexed.stderr

    found = run("search", "levenshtein edit distance", "--repo", str(sample_repo), "-k", "2", "--json")
    assert found.returncode == 0, found.stderr
    out = json.loads(found.stdout)
    assert set(out) == {"query", "repo", "encoder", "hits"}
    assert out["encoder"] == "lexical" and out["repo"] == str(sample_repo.resolve())
    hit = out["hits"][0]
    assert set(hit) == {"chunk_id", "path", "start_line", "end_line", "symbol", "language", "score", "snippet"}
    assert hit["path"] == "src/tokenizer.py" and hit["symbol"] == "levenshtein_distance"
    assert 1 <= hit["start_line"] <= hit["end_line"]


def test_index_json_reports_counts_skips_and_the_encoder(sample_repo):
    (sample_repo / "blob.bin").write_bytes(b"\x00\x01\x02" * 100)
    out = json.loads(run("index", str(sample_repo), "--json").stdout)
    assert out["files"] == 5 and out["skipped"] == {"binary": 1}
    assert out["encoder"] == "lexical" and out["encoder_id"].startswith("lexical-bm25")


def test_status_json_before_and_after_indexing(sample_repo):
    before = json.loads(run("status", str(sample_repo), "--json").stdout)
    assert before["indexed"] is False
    run("index", str(sample_repo))
    after = json.loads(run("status", str(sample_repo), "--json").stdout)
    assert after["indexed"] is True and after["chunks"] > 0 and after["changed_since_index"] is False
    listing = json.loads(run("status", "--all", "--json").stdout)
    assert [s["repo"] for s in listing] == [str(sample_repo.resolve())]


def test_errors_are_one_line_with_the_next_step_and_exit_status_1(sample_repo, tmp_path):
    not_indexed = run("search", "anything", "--repo", str(sample_repo))
    assert not_indexed.returncode == 1
    assert "not indexed yet" in not_indexed.stderr and "codelsr index" in not_indexed.stderr
    assert "Traceback" not in not_indexed.stderr

    missing = run("index", str(tmp_path / "nope"))
    assert missing.returncode == 1 and "does not exist" in missing.stderr

    unknown = run("index", str(sample_repo), "--encoder", "word2vec")
    assert unknown.returncode == 1 and "lexical" in unknown.stderr

    run("index", str(sample_repo))
    empty = run("search", "  ", "--repo", str(sample_repo))
    assert empty.returncode == 1 and "empty" in empty.stderr


def test_explain_prints_per_term_contributions(sample_repo):
    run("index", str(sample_repo))
    hit = json.loads(run("search", "transpose matrix", "--repo", str(sample_repo), "--json").stdout)["hits"][0]
    out = json.loads(run("explain", "transpose matrix", hit["chunk_id"], "--repo", str(sample_repo), "--json").stdout)
    assert {t["term"] for t in out["terms"]} >= {"transpose", "matrix"}
    assert abs(out["score"] - hit["score"]) < 1e-4


def test_piping_search_output_into_a_reader_that_stops_early_is_not_an_error(sample_repo):
    # More output than a pipe buffers (64 KiB), so the writer really meets the closed pipe.
    body = "\n".join(f"    total_{i} = compute_total(rows, {i})" for i in range(60))
    for n in range(40):
        (sample_repo / f"gen/totals_{n}.py").parent.mkdir(exist_ok=True)
        (sample_repo / f"gen/totals_{n}.py").write_text(f"def totals_{n}(rows):\n{body}\n")
    assert run("index", str(sample_repo)).returncode == 0
    shell = f"{sys.executable} -m codelsr search 'compute total rows' --repo {sample_repo} -k 40 --max-chars 0 | head -1"
    out = subprocess.run(shell, shell=True, capture_output=True, text=True, env=os.environ.copy(), timeout=120)
    assert out.stdout.startswith("# encoder: lexical")
    assert "Traceback" not in out.stderr and "BrokenPipe" not in out.stderr


def test_indexing_a_repository_never_runs_its_configured_fsmonitor(sample_repo, tmp_path):
    """A checkout's .git/config may name a program as core.fsmonitor; `git status` would run it."""
    marker = tmp_path / "fsmonitor-ran"
    hook = tmp_path / "monitor.sh"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    subprocess.run(["git", "-C", str(sample_repo), "config", "core.fsmonitor", str(hook)], check=True)
    # An environment without git config overrides (in-process CLI calls of other tests add one).
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_CONFIG_")}

    def codelsr(*args: str) -> int:
        return subprocess.run([sys.executable, "-m", "codelsr", *args], capture_output=True, env=env,
                              timeout=120).returncode

    # The configured program really runs under a plain `git status` (so the test can fail)...
    subprocess.run(["git", "-C", str(sample_repo), "status", "--porcelain"], capture_output=True, env=env)
    assert marker.exists()
    marker.unlink()
    # ...but not under codelsr's index (full and incremental), search or status.
    assert codelsr("index", str(sample_repo)) == 0
    (sample_repo / "src" / "new_module.py").write_text("def added():\n    return 1\n")
    assert codelsr("index", str(sample_repo)) == 0
    assert codelsr("status", str(sample_repo)) == 0
    assert codelsr("search", "levenshtein", "--repo", str(sample_repo)) == 0
    assert not marker.exists()
