"""The Seismic approximate inverted index (PyPI ``pyseismic-lsr``; Bruch et al., SIGIR 2024).

Terms enter Seismic as integer component ids (the generation's term ids, written as decimal
strings at query time), through the ``LV`` classes whose ids are not capped at 65,535.
The Rust core prints progress on the process's standard output; every call into it runs with
file descriptor 1 pointed at standard error, because in an MCP stdio server stdout is the protocol.
Threads: Rayon reads ``RAYON_NUM_THREADS`` once, when its pool starts; the ``num_threads``
arguments have no effect.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np

from codelsr.errors import CorruptIndexError
from codelsr.index.store import ForwardIndex

SEISMIC_FILE = "seismic"  # Seismic appends ".index.seismic"

DEFAULT_BUILD = {"centroid_fraction": 0.1, "summary_energy": 0.4, "max_fraction": 1.5, "doc_cut": 15}
DEFAULT_SEARCH = {"query_cut": 20, "heap_factor": 0.8}

_stdout_lock = threading.Lock()


def available() -> bool:
    try:
        import seismic  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def stdout_to_stderr():
    """Point fd 1 at fd 2 while native code that prints runs."""
    with _stdout_lock:
        sys.stdout.flush()
        saved = os.dup(1)
        try:
            os.dup2(2, 1)
            yield
        finally:
            os.dup2(saved, 1)
            os.close(saved)


def _import_seismic():
    os.environ.setdefault("RAYON_NUM_THREADS", str(os.cpu_count() or 1))
    import seismic

    return seismic


def default_n_postings(forward: ForwardIndex) -> int:
    """Posting-list budget per term, scaled to the collection: ~ a multiple of the mean list length."""
    n_terms = max(1, int((np.bincount(forward.indices) > 0).sum()) if forward.indices.size else 1)
    mean_list = forward.indices.size / n_terms
    return int(max(256, 8 * mean_list))


def build(forward: ForwardIndex, folder: Path, settings: dict[str, Any]) -> dict[str, Any]:
    seismic = _import_seismic()
    params = {**DEFAULT_BUILD, "n_postings": default_n_postings(forward), **settings.get("build", {})}
    dataset = seismic.SeismicDatasetLV()
    dataset.add_documents_by_id(
        [str(r) for r in range(forward.n_rows)],
        forward.indices.astype(np.int64),
        forward.data.astype(np.float32),
        forward.indptr.astype(np.int64),
    )
    with stdout_to_stderr():
        index = seismic.SeismicIndexLV.build_from_dataset(dataset, **params)
        index.save(str(folder / SEISMIC_FILE))
    return {"build": params, "search": {**DEFAULT_SEARCH, **settings.get("search", {})}}


class SeismicBackend:
    name = "seismic"

    def __init__(self, index, search_settings: dict[str, Any]):
        self._index = index
        self._search = {**DEFAULT_SEARCH, **search_settings}
        self._string = _import_seismic().get_seismic_string()

    @classmethod
    def open(cls, forward: ForwardIndex, folder: Path, settings: dict[str, Any]) -> "SeismicBackend":
        seismic = _import_seismic()
        path = folder / (SEISMIC_FILE + ".index.seismic")
        if not path.is_file():
            raise CorruptIndexError(f"index file missing: {path}; rebuild with `codelsr index --force`")
        try:
            with stdout_to_stderr():
                index = seismic.SeismicIndexLV.load(str(path))
        except BaseException as exc:  # the Rust loader panics on truncated files
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            raise CorruptIndexError(
                f"index file damaged: {path} ({exc}); rebuild with `codelsr index --force`"
            ) from exc
        return cls(index, settings.get("search", {}))

    def search(self, term_ids: np.ndarray, weights: np.ndarray, k: int) -> list[tuple[int, float]]:
        if term_ids.size == 0:
            return []
        comps = np.array([str(int(t)) for t in term_ids], dtype=self._string)
        found = self._index.search(
            "q", comps, weights.astype(np.float32), k=k,
            query_cut=int(self._search["query_cut"]), heap_factor=float(self._search["heap_factor"]),
        )
        hits = [(int(doc), float(score)) for _, score, doc in found if score > 0]
        hits.sort(key=lambda rs: (-rs[1], rs[0]))
        return hits
