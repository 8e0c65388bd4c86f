"""Seismic over the head of the vocabulary (compact ids), the tail scored exactly, merged exactly.

On a real index (a copy of standard-library packages, chunked and encoded by codelsr): wherever
Seismic finds the true top rows of the head part of a query, the split backend must return what
the exact backend returns, rows and scores.
"""

import shutil
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from codelsr.index import build_index
from codelsr.index.backends import BACKENDS, SEISMIC_MIN_CHUNKS, ExactBackend, choose_backend, top_k_rows
from codelsr.index.reader import open_index
from tools.bench.stdlib_index import QUERIES

pytestmark = pytest.mark.skipif(not BACKENDS["seismic"].available(), reason="pyseismic-lsr not installed")

K = 10
PACKAGES = ("json", "email", "http", "urllib", "logging", "concurrent", "importlib")


@pytest.fixture(scope="module")
def stdlib_copy(tmp_path_factory) -> Path:
    lib = Path(sysconfig.get_paths()["stdlib"])
    repo = tmp_path_factory.mktemp("stdlib-part")
    for name in PACKAGES:
        shutil.copytree(lib / name, repo / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "test*"))
    return repo


def queries(reader) -> list[tuple[np.ndarray, np.ndarray]]:
    """Natural-language queries, plus identifiers of the indexed code (rare terms: the tail)."""
    texts = list(QUERIES)
    rng = np.random.default_rng(0)
    for row in rng.choice(reader.forward.n_rows, size=60, replace=False):
        vec = reader.forward.row(int(row))
        texts.append(" ".join(sorted(vec, key=vec.get, reverse=True)[:3]))
    out = []
    for text in texts:
        ids, w = reader.to_ids(reader.query_vector(text))
        if ids.size:
            out.append((ids, w))
    return out


def exact_head_top(exact: ExactBackend, backend, ids, w) -> set[int]:
    in_head = np.isin(ids, backend.head_terms)
    if not in_head.any():
        return set()
    return {r for r, _ in top_k_rows(exact.scores(ids[in_head], w[in_head]), K)}


def assert_same_hits(got, expected):
    assert [r for r, _ in got] == [r for r, _ in expected] or _tied(got, expected)
    assert [s for _, s in got] == pytest.approx([s for _, s in expected], rel=1e-5)


def _tied(got, expected) -> bool:
    """Rows may differ only among equal scores (float32 vs float64 sums)."""
    if len(got) != len(expected):
        return False
    return all(abs(a[1] - b[1]) <= 1e-5 * max(abs(b[1]), 1e-9) for a, b in zip(got, expected))


@pytest.mark.parametrize("head_min_df", [8, 64])
def test_the_split_equals_exact_search_wherever_seismic_finds_the_head_top(stdlib_copy, monkeypatch, head_min_df):
    from codelsr.index import seismic_backend

    monkeypatch.setattr(seismic_backend, "HEAD_MIN_DF", head_min_df)
    report = build_index(stdlib_copy, backend="seismic")
    assert report.backend == "seismic" and report.chunks > 1000
    reader = open_index(stdlib_copy)
    backend, exact = reader.backend, reader.exact
    settings = reader.manifest.backend_settings
    assert settings["head_min_df"] == head_min_df and settings["tail_terms"] > 0 and settings["head_terms"] > 0

    qs = queries(reader)
    checked = mixed = 0
    for ids, w in qs:
        head_top = exact_head_top(exact, backend, ids, w)
        if not head_top <= set(backend.head_rows(ids, w, K).tolist()):
            continue  # Seismic missed part of the head's top k: approximate by design
        checked += 1
        in_head = np.isin(ids, backend.head_terms)
        mixed += bool(in_head.any() and not in_head.all())
        assert_same_hits(backend.search(ids, w, K), exact.search(ids, w, K))
    # Not vacuous: most queries qualify, and many mix head and tail terms.
    assert checked >= 0.8 * len(qs), (checked, len(qs))
    assert mixed >= 20, mixed


def test_queries_of_tail_terms_only_are_answered_exactly(stdlib_copy, monkeypatch):
    from codelsr.index import seismic_backend

    monkeypatch.setattr(seismic_backend, "HEAD_MIN_DF", 64)
    build_index(stdlib_copy, backend="seismic")
    reader = open_index(stdlib_copy)
    backend, exact = reader.backend, reader.exact
    df = reader.forward.doc_freq()
    tail = np.flatnonzero((df > 0) & (df < 64))
    rng = np.random.default_rng(3)
    for _ in range(50):
        ids = rng.choice(tail, size=4, replace=False)
        w = rng.uniform(0.5, 3.0, size=4).astype(np.float32)
        assert backend.head_rows(ids, w, K).size == 0
        assert_same_hits(backend.search(ids, w, K), exact.search(ids, w, K))


def test_seismic_sees_compact_ids_of_the_head_terms_only(stdlib_copy, monkeypatch):
    from codelsr.index import seismic_backend

    monkeypatch.setattr(seismic_backend, "HEAD_MIN_DF", 16)
    build_index(stdlib_copy, backend="seismic")
    reader = open_index(stdlib_copy)
    backend = reader.backend
    df = reader.forward.doc_freq()
    head = backend.head_terms
    assert np.array_equal(head, np.flatnonzero(df >= 16))
    # Seismic's vocabulary width is the number of head terms, not the generation's term count.
    assert backend._index.dim == head.size < len(reader.forward.terms) // 4
    settings = reader.manifest.backend_settings
    # By default Seismic is given the head lists whole.
    assert settings["head_postings"] == int(df[head].sum()) == settings["postings_given"]
    assert settings["postings_kept"] == backend._index.nnz and settings["list_cap"] == 0


def test_cap_lists_gives_seismic_each_head_list_cut_to_what_it_may_keep(tmp_path):
    from codelsr.index import seismic_backend
    from codelsr.index.store import ForwardIndex

    rng = np.random.default_rng(5)
    n_rows, n_terms = 3000, 40
    zipf = 1 / np.arange(1, n_terms + 1)  # a few long lists, as in real collections
    rows = [np.sort(rng.choice(n_terms, size=rng.integers(3, 20), replace=False, p=zipf / zipf.sum()))
            for _ in range(n_rows)]
    indices = np.concatenate(rows).astype(np.int32)
    forward = ForwardIndex([f"t{i}" for i in range(n_terms)],
                           np.concatenate([[0], np.cumsum([r.size for r in rows])]).astype(np.int64),
                           indices, rng.lognormal(0, 1, indices.size).astype(np.float32))
    whole = seismic_backend.build(forward, tmp_path, {})
    cut = seismic_backend.build(forward, tmp_path, {"cap_lists": True})
    df = np.bincount(indices, minlength=n_terms)
    cap = cut["list_cap"]
    assert cap == int(cut["build"]["max_fraction"] * cut["build"]["n_postings"]) and (df > cap).any()
    assert whole["postings_given"] == whole["head_postings"] == int(indices.size)
    assert cut["postings_given"] == int(np.minimum(df, cap).sum()) < whole["postings_given"]  # no ties in random floats


def test_list_cap_thresholds_keep_the_heaviest_postings_of_each_long_list():
    from codelsr.index.seismic_backend import list_cap_thresholds
    from codelsr.index.store import ForwardIndex

    rng = np.random.default_rng(3)
    n_rows, n_terms, cap = 400, 30, 25
    rows = [np.sort(rng.choice(n_terms, size=rng.integers(1, 12), replace=False)) for _ in range(n_rows)]
    indices = np.concatenate(rows).astype(np.int32)
    data = rng.lognormal(0, 1, indices.size).astype(np.float32)
    indptr = np.concatenate([[0], np.cumsum([r.size for r in rows])]).astype(np.int64)
    forward = ForwardIndex([f"t{i}" for i in range(n_terms)], indptr, indices, data)
    considered = np.arange(0, n_terms, 2)  # odd terms are not Seismic's: never cut
    thresholds = list_cap_thresholds(forward, forward.doc_freq(), considered, cap)
    for t in range(n_terms):
        weights = np.sort(data[indices == t])[::-1]
        if t % 2 == 0 and weights.size > cap:
            assert thresholds[t] == weights[cap - 1]
            assert np.count_nonzero(weights >= thresholds[t]) == cap  # no ties in random floats
        else:
            assert thresholds[t] == 0
    assert (np.bincount(indices, minlength=n_terms)[considered] > cap).any()  # the test cuts something


def test_auto_switches_to_seismic_at_the_measured_size():
    assert choose_backend("auto", SEISMIC_MIN_CHUNKS - 1) == "exact"
    assert choose_backend(None, SEISMIC_MIN_CHUNKS) == "seismic"
    assert choose_backend("exact", 10 * SEISMIC_MIN_CHUNKS) == "exact"
