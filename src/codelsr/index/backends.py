"""Search backends behind one seam.

A backend is built once from a generation's forward index (``build``), opened by readers
(``open``), and answers ``search(term_ids, weights, k) -> [(row, score)]`` best first, ties broken
by lower row. Callers only ever see this seam and the ``BACKENDS`` table; a new engine (a
distributed one, say) is one more entry, with its own files inside the generation folder.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from codelsr.index.store import ForwardIndex

_log = logging.getLogger(__name__)


class SearchBackend(Protocol):
    name: str

    def search(self, term_ids: np.ndarray, weights: np.ndarray, k: int) -> list[tuple[int, float]]: ...


@dataclass(frozen=True)
class BackendKind:
    build: Callable[[ForwardIndex, Path, dict[str, Any]], dict[str, Any]]  # returns settings used
    open: Callable[[ForwardIndex, Path, dict[str, Any]], SearchBackend]
    available: Callable[[], bool]


def top_k_rows(scores: np.ndarray, k: int, rows: np.ndarray | None = None) -> list[tuple[int, float]]:
    """The ``k`` best positive scores as (row, score), ties broken by lower row.

    ``rows`` maps positions of ``scores`` to row numbers when scores cover a subset.
    """
    n = scores.size
    if n > 4 * k and k > 0:
        # Dense scores (a query with a frequent term touches most rows): one partition over the
        # whole array finds the k-th score without gathering the positives first (3x faster at 1M
        # rows). With mostly zeros the partition degrades on ties, so that case takes the path below.
        n_positive = int(np.count_nonzero(scores > 0))
        if n_positive > n // 2:
            kth = np.partition(scores, n - k)[n - k]
            if kth > 0:
                return _order(scores, np.flatnonzero(scores >= kth), k, rows)
    positive = np.flatnonzero(scores > 0)
    if positive.size == 0:
        return []
    if positive.size > k:
        # Keep everything tied with the k-th score so the tie-break below stays exact.
        kth = np.partition(scores[positive], positive.size - k)[positive.size - k]
        positive = positive[scores[positive] >= kth]
    return _order(scores, positive, k, rows)


def _order(scores: np.ndarray, positive: np.ndarray, k: int, rows: np.ndarray | None) -> list[tuple[int, float]]:
    row_ids = positive if rows is None else rows[positive]
    order = np.lexsort((row_ids, -scores[positive]))[:k]
    return [(int(row_ids[i]), float(scores[positive[i]])) for i in order]


def rows_dot(forward: ForwardIndex, rows: np.ndarray, term_ids: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Exact dot products of the query with the given rows of ``forward``, vectorised.

    One pass over the rows' stored terms (looked up among the query's sorted terms): the cost is the
    rows' lengths, not the vocabulary, and no Python loop per row. Each row's products are summed in
    float64 in the query's term order, whatever the term numbering, so an incrementally updated
    index and one built from scratch (which number terms differently) score identically."""
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size == 0 or term_ids.size == 0:
        return np.zeros(rows.size, dtype=np.float64)
    order = np.argsort(term_ids, kind="stable")
    q_ids = np.asarray(term_ids, dtype=np.int64)[order]
    q_w = np.asarray(weights, dtype=np.float64)[order]
    starts = forward.indptr[rows]
    lengths = forward.indptr[rows + 1] - starts
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(rows.size, dtype=np.float64)
    # Positions of every stored entry of the rows, without a loop: a ramp restarted per row.
    owner = np.repeat(np.arange(rows.size), lengths)
    pos = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths) + starts[owner]
    d_ids = forward.indices[pos]
    at = np.minimum(np.searchsorted(q_ids, d_ids), q_ids.size - 1)
    hit = q_ids[at] == d_ids
    products = np.zeros((rows.size, q_ids.size), dtype=np.float64)  # shape (n_rows, n_query_terms)
    products[owner[hit], order[at[hit]]] = forward.data[pos[hit]].astype(np.float64) * q_w[at[hit]]
    return products.sum(axis=1)


class ExactBackend:
    """Brute-force dot products over a term-major copy of the forward index (scipy CSR).

    Exact by construction. A query touches only its terms' posting lists (rows of the term-major
    matrix); the cost grows with the rows those lists cover, plus one pass over all rows to pick
    the top k. docs/performance.md measures where Seismic overtakes it."""

    name = "exact"

    def __init__(self, forward: ForwardIndex):
        self._by_term = forward.to_csr().T.tocsr()  # shape (n_terms, n_chunks)
        self.n_rows = forward.n_rows

    def scores(self, term_ids: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Dense scores of every row, shape (n_chunks,)."""
        if term_ids.size == 0:
            return np.zeros(self.n_rows, dtype=np.float32)
        # Slicing the query's posting lists, then one sparse mat-vec in C: 8x faster than numpy
        # scatter-adds per term (0.8 vs 6 ms per query, 100k SPLADE-like rows).
        return np.asarray(self._by_term[term_ids].T @ weights.astype(np.float32)).ravel()

    def search(self, term_ids: np.ndarray, weights: np.ndarray, k: int) -> list[tuple[int, float]]:
        return top_k_rows(self.scores(term_ids, weights), k)


def _build_exact(forward: ForwardIndex, folder: Path, settings: dict[str, Any]) -> dict[str, Any]:
    return {}  # the forward index is all it needs


def _open_exact(forward: ForwardIndex, folder: Path, settings: dict[str, Any]) -> SearchBackend:
    return ExactBackend(forward)


def _seismic_available() -> bool:
    from codelsr.index import seismic_backend

    return seismic_backend.available()


def missing_reason(name: str) -> str:
    """Why backend ``name`` cannot run in this environment, and what to do instead."""
    if name == "seismic":
        from codelsr.index import seismic_backend

        return seismic_backend.missing_reason()
    return f"backend {name!r} is not available here"


def _build_seismic(forward: ForwardIndex, folder: Path, settings: dict[str, Any]) -> dict[str, Any]:
    from codelsr.index import seismic_backend

    return seismic_backend.build(forward, folder, settings)


def _open_seismic(forward: ForwardIndex, folder: Path, settings: dict[str, Any]) -> SearchBackend:
    from codelsr.index import seismic_backend

    return seismic_backend.SeismicBackend.open(forward, folder, settings)


def _milvus_available() -> bool:
    from codelsr.index import milvus_backend

    return milvus_backend.available()


def _open_milvus(forward: ForwardIndex, folder: Path, settings: dict[str, Any]) -> SearchBackend:
    from codelsr.errors import CodelsrError

    raise CodelsrError("a Milvus-backed index is searched through its reader (IndexReader.backend)")


BACKENDS: dict[str, BackendKind] = {
    "exact": BackendKind(_build_exact, _open_exact, lambda: True),
    "seismic": BackendKind(_build_seismic, _open_seismic, _seismic_available),
    # Nothing to build inside the generation: the build syncs the engine (index.milvus_backend).
    "milvus": BackendKind(_build_exact, _open_milvus, _milvus_available),
}

# Below this many chunks ``auto`` picks exact search: it is exact, builds in about a second, and
# its served latency (search + rescoring 40 candidates) stays a few ms up to 1M chunks on an idle
# 2-core machine: 1.28 ms at 100k real lexical chunks, 1.74 ms at 471k, 3.74 ms at 1M; 9.7 ms at
# 1M SPLADE-like chunks. Seismic answers in ~0.5 ms at 100k real chunks (build 4.9 s), but at 1M
# its head grows to ~68k lexical terms and its build to 17 minutes, and at 1M SPLADE-like chunks
# to 7 minutes: minutes that every compaction of the main segment would pay again for a few ms a
# query. docs/performance.md, "auto".
SEISMIC_MIN_CHUNKS = 1_000_000


def choose_backend(requested: str | None, n_chunks: int) -> str:
    from codelsr.errors import CodelsrError

    if requested in (None, "", "auto"):
        if n_chunks >= SEISMIC_MIN_CHUNKS:
            if BACKENDS["seismic"].available():
                return "seismic"
            _log.warning("%d chunks: `auto` would pick Seismic from %d chunks, but searches exactly "
                         "instead. %s", n_chunks, SEISMIC_MIN_CHUNKS, missing_reason("seismic"))
        return "exact"
    if requested not in BACKENDS:
        raise CodelsrError(f"unknown backend {requested!r}: use auto, {', '.join(sorted(BACKENDS))}")
    if requested == "milvus" and not BACKENDS[requested].available():
        raise CodelsrError("backend 'milvus' needs pymilvus and milvus-lite: pip install 'codelsr[milvus]'")
    if not BACKENDS[requested].available():
        raise CodelsrError(f"backend {requested!r} is not available: {missing_reason(requested)}")
    return requested
