"""Searching several repositories at once: the library's ``search_repos`` and ``codelsr search
--repo A --repo B`` give one ranking by score whose pages match the per-repository rankings."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import make_git_repo

from codelsr.index import build_index
from codelsr.search import search, search_repos

MATH = {"geometry.py": "def triangle_area(base, height):\n    return base * height / 2\n",
        "stats.py": "def mean_of_values(values):\n    return sum(values) / len(values)\n"}
TEXT = {"words.py": "def count_words(text):\n    return len(text.split())\n",
        "area.py": "def area_of_text_box(width, height):\n    return width * height\n"}


def _two_repos(tmp_path):
    a = make_git_repo(tmp_path / "math", MATH)
    b = make_git_repo(tmp_path / "text", TEXT)
    build_index(a)
    build_index(b)
    return a, b


def test_search_repos_interleaves_by_score_and_pages_like_one_index(tmp_path):
    a, b = _two_repos(tmp_path)
    everything = search_repos([a, b], "area height", k=10)
    singles = search(a, "area height", k=10).hits + search(b, "area height", k=10).hits
    assert {(h.repo, h.path) for h in everything.hits} == {(h.repo, h.path) for h in singles}
    scores = [h.score for h in everything.hits]
    assert scores == sorted(scores, reverse=True)
    assert {h.repo for h in everything.hits[:2]} == {str(a.resolve()), str(b.resolve())}
    first, second = search_repos([a, b], "area height", k=1), search_repos([a, b], "area height", k=1, offset=1)
    assert [first.hits[0].chunk_id, second.hits[0].chunk_id] == [h.chunk_id for h in everything.hits[:2]]
    assert first.next_offset == 1 and not first.mixed_encoders


def test_cli_search_takes_repo_twice(tmp_path):
    a, b = _two_repos(tmp_path)
    out = subprocess.run([sys.executable, "-m", "codelsr", "search", "area height", "--repo", str(a), "--repo", str(b),
                          "--json"], capture_output=True, text=True, env=os.environ.copy(), timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["repos"] == [str(a.resolve()), str(b.resolve())]
    assert {h["repo"] for h in result["hits"]} == {str(a.resolve()), str(b.resolve())}
    text = subprocess.run([sys.executable, "-m", "codelsr", "search", "area height", "--repo", str(a), "--repo",
                           str(b)], capture_output=True, text=True, env=os.environ.copy(), timeout=120)
    assert text.returncode == 0 and f"in {b.resolve()}" in text.stdout and f"in {a.resolve()}" in text.stdout
