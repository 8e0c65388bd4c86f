"""Sparse vectors (term -> weight) as a SciPy CSR matrix, for exact scoring outside an index: the
``page:`` eval system and the trainer's evaluator. Needs only NumPy and SciPy (no eval extra), so
the trainer's tools import it on every Python leg."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def sparse_rows(vectors: Sequence[dict[str, float]], columns: dict[str, int], grow: bool) -> Any:
    """A CSR matrix of ``vectors`` over ``columns`` (term -> column); with ``grow`` new terms get
    new columns, without it terms outside ``columns`` are dropped (they cannot score)."""
    from scipy import sparse

    rows, cols, vals = [], [], []
    for i, vector in enumerate(vectors):
        for term, weight in vector.items():
            j = columns.get(term)
            if j is None:
                if not grow:
                    continue
                j = columns[term] = len(columns)
            rows.append(i)
            cols.append(j)
            vals.append(weight)
    return sparse.csr_matrix((np.asarray(vals, dtype=np.float32), (rows, cols)),
                             shape=(len(vectors), max(1, len(columns))))
