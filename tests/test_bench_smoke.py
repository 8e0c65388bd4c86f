"""A tiny run of every benchmark code path: the figures come out, and they are sane (no timing
assertions: this machine is shared)."""

from __future__ import annotations

import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import EVAL_EXTRA, skip_without_seismic

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # tools/ is a repo folder, not an installed package
    sys.path.insert(0, str(REPO))

from tools.bench import backends, corpus, peers  # noqa: E402
from tools.bench.encoders import lexical  # noqa: E402
from tools.bench.measure import PeakMemory, latencies, percentile  # noqa: E402

CODE = [
    "def parse_url(url):\n    return urllib.parse.urlsplit(url)\n",
    "class RetryPolicy:\n    def backoff(self, attempt):\n        return min(60, 2 ** attempt)\n",
    "def read_csv_rows(path):\n    with open(path) as f:\n        return list(csv.reader(f))\n",
    "def md5_of_file(path):\n    h = hashlib.md5()\n    h.update(open(path, 'rb').read())\n    return h.hexdigest()\n",
    "async def fetch_json(client, url):\n    response = await client.get(url)\n    return response.json()\n",
] * 8


@pytest.fixture
def real_like(tmp_path) -> corpus.Collection:
    from codelsr.encoders.lexical import LexicalEncoder
    from codelsr.index.store import ForwardIndex

    texts = [f"{t}# variant {i} value_{i % 7}\n" for i, t in enumerate(CODE)]
    files = []
    for i, t in enumerate(texts):
        p = tmp_path / "src" / f"m{i}.py"
        p.parent.mkdir(exist_ok=True)
        p.write_text(t)
        files.append(str(p))
    return corpus.Collection("real-like", ForwardIndex.from_vectors(LexicalEncoder().encode_documents(texts)),
                             texts, files)


def test_synthetic_vectors_look_like_splade_output(tmp_path):
    coll = corpus.synthetic_forward(400, vocab=3000, work=tmp_path, log=lambda *_: None)
    lengths = np.diff(coll.forward.indptr)
    assert 90 <= lengths.mean() <= 210
    for lo, hi in zip(coll.forward.indptr[:-1], coll.forward.indptr[1:]):
        assert np.all(np.diff(coll.forward.indices[lo:hi]) > 0)  # strictly increasing, as Seismic needs
    assert np.all(coll.forward.data > 0)
    queries = corpus.synthetic_queries(20, vocab=3000)
    assert all(5 <= ids.size <= 31 for ids, _ in queries)
    again = corpus.synthetic_forward(400, vocab=3000, work=tmp_path, log=lambda *_: None)  # from the cache
    assert np.array_equal(again.forward.indices, coll.forward.indices)


def test_backend_bench_reports_build_memory_latency_and_recall(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYON_NUM_THREADS", "1")
    coll = corpus.synthetic_forward(300, vocab=2000, work=tmp_path, log=lambda *_: None)
    queries = corpus.synthetic_queries(12, vocab=2000)
    rows: list[dict] = []
    ex_row, exact, truths = backends.bench_exact(coll, queries, rows.append)
    assert ex_row["recall10"] == 1.0 and ex_row["p50_ms"] > 0 and ex_row["forward_mb"] > 0
    assert all(t.n == 10 for t in truths)
    skip_without_seismic()
    scorer = backends.RowScorer(coll.forward)
    lossless = {"kept_fraction": 10.0, "centroid_fraction": 0.1, "summary_energy": 1.0, "max_fraction": 1.0}
    got = backends.bench_seismic(coll, queries, truths, scorer, lossless,
                                 [{"query_cut": 40, "heap_factor": 1.0}], rows.append)
    (row,) = got
    assert 0.9 <= row["recall10"] <= 1.0 and 0.9 <= row["served_recall10"] <= 1.0
    assert row["disk_mb"] > 0 and row["build_s"] > 0 and row["p99_ms"] >= row["p50_ms"] > 0
    assert row["batch_ms_per_query"] > 0
    assert "R@10" in backends.format_row(row)
    best = backends.best_setting(rows, 0.9)
    assert best is row
    cost = backends.rescore_cost(coll, queries)
    assert cost["p50_ms"] > 0


def test_recall_counts_rows_tied_with_the_tenth_exact_score():
    truth = backends.Truth(rows=list(range(10)), kth=1.0, n=10)
    assert backends.recall(truth, np.array([2.0] * 9 + [1.0])) == 1.0
    assert backends.recall(truth, np.array([2.0] * 9 + [0.5])) == 0.9


def test_peers_and_lexical_encoder_figures_come_out(real_like):
    pytest.importorskip("bm25s", reason=EVAL_EXTRA)
    rows: list[dict] = []
    enc = lexical(real_like.texts, ["parse url", "retry backoff"], rows.append)
    assert enc["docs_per_s_cpu"] > 0 and enc["query_ms_cpu"] >= 0
    nl = ["parse a url", "read csv rows", "md5 hash of a file", "fetch json from url"]
    idents = corpus.identifier_queries(real_like, 3)
    assert idents and all(len(i) >= 8 for i in idents)
    got = _peers_without_dense(real_like, nl, idents, rows)
    systems = {r["system"] for r in got}
    assert {"codelsr lexical+exact", "bm25s"} <= systems
    bm = next(r for r in got if r["system"] == "bm25s")
    assert 0 <= bm["overlap10_with_codelsr"] <= 1 and bm["ratio_to_codelsr_p50"] > 0
    if shutil.which("rg"):
        assert any(r["system"].startswith("ripgrep") for r in got)


def _peers_without_dense(coll, nl, idents, rows):
    import builtins

    real_import = builtins.__import__

    def no_dense(name, *a, **kw):  # the MiniLM model takes too long for a smoke test
        if name.startswith("sentence_transformers"):
            raise ImportError(name)
        return real_import(name, *a, **kw)

    builtins.__import__ = no_dense
    try:
        return peers.run(coll, nl, idents, rows.append)
    finally:
        builtins.__import__ = real_import


def test_measuring_helpers():
    with PeakMemory() as mem:
        block = np.ones(4_000_000)  # 32 MB
        block.sum()
    assert mem.peak >= 0
    lat = latencies(lambda x: x * 2, [1, 2, 3])
    assert lat["n"] == 3 and lat["p50_ms"] >= 0
    assert percentile([1, 2, 3, 4], 100) == 4 and math.isnan(percentile([], 50))


def test_the_cli_parses_collections_and_rejects_unknown_sections():
    from tools.bench.run import main, parse_collections

    assert parse_collections("real:1e4,synthetic:5000@30522") == [("real", 10000, corpus.QWEN3_VOCAB),
                                                                  ("synthetic", 5000, 30522)]
    with pytest.raises(SystemExit):
        main(["nonsense"])


def test_the_scale_bench_takes_list_cuts_per_kind_of_collection():
    from tools.bench.run import main
    from tools.bench.scale import parse_cap_lists

    assert parse_cap_lists("off") == {"real": (False,), "synthetic": (False,)}
    assert parse_cap_lists("on,off") == {"real": (True, False), "synthetic": (True, False)}
    assert parse_cap_lists("real:off,synthetic:on") == {"real": (False,), "synthetic": (True,)}
    with pytest.raises(ValueError, match="--cap-lists"):
        parse_cap_lists("dense:on")
    with pytest.raises(SystemExit):
        main(["scale", "--cap-lists", "maybe"])
