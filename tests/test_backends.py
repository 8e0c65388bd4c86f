"""Both backends must return what a brute-force dot product returns."""

import numpy as np
import pytest

from codelsr.index.backends import BACKENDS, ExactBackend, missing_reason, top_k_rows
from codelsr.index.store import ForwardIndex


def random_forward(n_docs=400, n_terms=300, seed=7) -> ForwardIndex:
    rng = np.random.default_rng(seed)
    vectors = []
    for _ in range(n_docs):
        terms = rng.choice(n_terms, size=rng.integers(5, 40), replace=False)
        vectors.append({f"t{t}": float(w) for t, w in zip(terms, rng.gamma(1.0, 1.0, size=terms.size) + 0.01)})
    return ForwardIndex.from_vectors(vectors)


def brute_force(forward: ForwardIndex, ids, weights, k):
    dense = forward.to_csr().toarray()
    q = np.zeros(len(forward.terms))
    q[ids] = weights
    return top_k_rows((dense @ q).astype(np.float32), k)


# Milvus is synced from a generation's chunk table, not built from a bare forward index:
# tests/test_milvus.py compares it with the exact backend through whole indexes.
@pytest.mark.parametrize("backend", sorted(b for b in BACKENDS if b != "milvus"))
def test_backend_top_k_equals_brute_force(backend, tmp_path):
    if not BACKENDS[backend].available():
        pytest.skip(missing_reason(backend))
    forward = random_forward()
    # Seismic is approximate by design; with every posting kept, exact summaries and no heap
    # pruning it must agree with brute force (its default settings are measured in tools/bench).
    lossless = {"build": {"n_postings": 10_000, "summary_energy": 1.0, "max_fraction": 1.0},
                "search": {"heap_factor": 1.0, "query_cut": 100}}
    settings = BACKENDS[backend].build(forward, tmp_path, lossless)
    engine = BACKENDS[backend].open(forward, tmp_path, settings)
    rng = np.random.default_rng(1)
    for _ in range(20):
        ids = rng.choice(len(forward.terms), size=5, replace=False)
        weights = rng.uniform(0.5, 2.0, size=5).astype(np.float32)
        expected = brute_force(forward, ids, weights, 10)
        got = engine.search(ids, weights, 10)
        # Half-precision values may swap two scores closer than 0.1%; the set must still agree.
        assert {r for r, _ in got} == {r for r, _ in expected} or _boundary_tie(forward, ids, weights, 10)
        exact = {r: s for r, s in brute_force(forward, ids, weights, len(forward.terms))}
        assert all(abs(exact[r] - s) <= 1e-3 * exact[r] for r, s in got)
        # Seismic stores values at half precision; `search` rescores its candidates exactly.
        assert [s for _, s in got] == pytest.approx([s for _, s in expected], rel=1e-3)


def _boundary_tie(forward, ids, weights, k) -> bool:
    scores = [s for _, s in brute_force(forward, ids, weights, k + 1)]
    return len(scores) > k and abs(scores[k - 1] - scores[k]) <= 1e-3 * scores[k - 1]


def test_ties_are_broken_by_lower_row():
    scores = np.array([1.0, 2.0, 2.0, 0.0, 2.0], dtype=np.float32)
    assert top_k_rows(scores, 2) == [(1, 2.0), (2, 2.0)]


def test_exact_backend_ignores_non_positive_scores():
    forward = ForwardIndex.from_vectors([{"a": 1.0}, {"b": 1.0}])
    engine = ExactBackend(forward)
    assert engine.search(np.array([0]), np.array([1.0], dtype=np.float32), 10) == [(0, 1.0)]
