"""Search backends behind one seam.

A backend is built once from a generation's forward index (``build``), opened by readers
(``open``), and answers ``search(term_ids, weights, k) -> [(row, score)]`` best first, ties broken
by lower row. Callers only ever see this seam and the ``BACKENDS`` table; a new engine (a
distributed one, say) is one more entry, with its own files inside the generation folder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from codelsr.index.store import ForwardIndex


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
    positive = np.flatnonzero(scores > 0)
    if positive.size == 0:
        return []
    if positive.size > k:
        # Keep everything tied with the k-th score so the tie-break below stays exact.
        kth = np.partition(scores[positive], positive.size - k)[positive.size - k]
        positive = positive[scores[positive] >= kth]
    row_ids = positive if rows is None else rows[positive]
    order = np.lexsort((row_ids, -scores[positive]))[:k]
    return [(int(row_ids[i]), float(scores[positive[i]])) for i in order]


class ExactBackend:
    """Brute-force dot products over a term-major copy of the forward index (scipy CSR).

    Exact by construction; fast enough for the collections most repositories make."""

    name = "exact"

    def __init__(self, forward: ForwardIndex):
        self._by_term = forward.to_csr().T.tocsr()  # shape (n_terms, n_chunks)
        self.n_rows = forward.n_rows

    def scores(self, term_ids: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Dense scores of every row, shape (n_chunks,)."""
        if term_ids.size == 0:
            return np.zeros(self.n_rows, dtype=np.float32)
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


def _build_seismic(forward: ForwardIndex, folder: Path, settings: dict[str, Any]) -> dict[str, Any]:
    from codelsr.index import seismic_backend

    return seismic_backend.build(forward, folder, settings)


def _open_seismic(forward: ForwardIndex, folder: Path, settings: dict[str, Any]) -> SearchBackend:
    from codelsr.index import seismic_backend

    return seismic_backend.SeismicBackend.open(forward, folder, settings)


BACKENDS: dict[str, BackendKind] = {
    "exact": BackendKind(_build_exact, _open_exact, lambda: True),
    "seismic": BackendKind(_build_seismic, _open_seismic, _seismic_available),
}

# Below this many chunks exact search is both exact and fast enough; above it Seismic wins.
# Chosen from measurements: see docs/performance.md.
SEISMIC_MIN_CHUNKS = 50_000


def choose_backend(requested: str | None, n_chunks: int) -> str:
    from codelsr.errors import CodelsrError

    if requested in (None, "", "auto"):
        if n_chunks >= SEISMIC_MIN_CHUNKS and BACKENDS["seismic"].available():
            return "seismic"
        return "exact"
    if requested not in BACKENDS:
        raise CodelsrError(f"unknown backend {requested!r}: use auto, {', '.join(sorted(BACKENDS))}")
    if not BACKENDS[requested].available():
        raise CodelsrError(
            f"backend {requested!r} is not available on this platform (pyseismic-lsr has wheels for "
            "Linux x86_64, CPython 3.11 only); use --backend exact"
        )
    return requested
