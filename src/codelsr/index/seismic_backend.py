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
import platform
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np

from codelsr.errors import CorruptIndexError
from codelsr.index.store import ForwardIndex

SEISMIC_FILE = "seismic"  # Seismic appends ".index.seismic"

# Chosen from tools/bench/backends.py sweeps; the numbers are in docs/performance.md.
# Build: Seismic's own defaults for the clustering and summaries; n_postings scaled to the
# collection by default_n_postings.
DEFAULT_BUILD = {"centroid_fraction": 0.1, "summary_energy": 0.4, "max_fraction": 1.5, "doc_cut": 15}
# Search: the fastest setting with recall@10 >= 0.95 on real and SPLADE-like collections of 10k
# and 100k chunks (0.983-0.995 alone, 0.990-1.0 after codelsr's exact rescoring of 40
# candidates); query_cut 5 drops to 0.92-0.93; heap_factor 0.7-1.0 moves less than the noise.
DEFAULT_SEARCH = {"query_cut": 10, "heap_factor": 1.0}
DEFAULT_KEPT_FRACTION = 0.5  # share of all postings Seismic keeps (see default_n_postings)
MIN_N_POSTINGS = 256
ADD_BATCH_ROWS = 100_000

_stdout_lock = threading.Lock()


# The release codelsr depends on, and where it has wheels (pyproject.toml's marker says the same).
REQUIREMENT = "pyseismic-lsr==0.5.4"
WHEEL_PLATFORM = "CPython 3.11 on Linux x86_64"


def available() -> bool:
    try:
        import seismic  # noqa: F401
    except ImportError:
        return False
    return True


def has_wheels_here() -> bool:
    """Whether pip can install Seismic's wheels into this interpreter."""
    return (sys.implementation.name == "cpython" and sys.version_info[:2] == (3, 11)
            and sys.platform == "linux" and platform.machine() == "x86_64")


def missing_reason() -> str:
    """Why Seismic is not importable here and what to do, in words fit for an error or a test skip."""
    here = f"{platform.python_implementation()} {platform.python_version()} on {platform.system()} {platform.machine()}"
    if has_wheels_here():
        return (f"Seismic ({REQUIREMENT}) is not installed in this environment ({sys.prefix}); "
                f"`pip install '{REQUIREMENT}'` adds it, or use exact search (--backend exact)")
    return (f"Seismic ({REQUIREMENT}) has wheels for {WHEEL_PLATFORM} only, and this is {here}, so "
            "codelsr was installed without it: use exact search (--backend exact; `auto` picks it below "
            "1M chunks), or install codelsr with Python 3.11 on Linux x86_64, which brings Seismic along")


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


THREADS_ENV = "CODELSR_THREADS"


def _import_seismic():
    """Import Seismic with its thread count settled first.

    Rayon sizes its global pool once, from ``RAYON_NUM_THREADS``, the first time Seismic runs in
    parallel; the ``num_threads`` arguments of the Python API have no effect. ``CODELSR_THREADS``
    sets it; otherwise all cores (see docs/performance.md, "Threads").
    """
    threads = os.environ.get(THREADS_ENV)
    if threads:
        os.environ.setdefault("RAYON_NUM_THREADS", threads)
    os.environ.setdefault("RAYON_NUM_THREADS", str(os.cpu_count() or 1))
    import seismic

    return seismic


def vocabulary_size(forward: ForwardIndex) -> int:
    """The dimension Seismic sees: the largest term id plus one."""
    return int(forward.indices.max()) + 1 if forward.indices.size else 1


def default_n_postings(forward: ForwardIndex, kept_fraction: float | None = None) -> int:
    """Seismic's ``n_postings`` for this collection.

    Seismic keeps about ``n_postings * dim`` postings in all (``dim``: the vocabulary size it sees),
    at most ``max_fraction * n_postings`` in one list. Scaling by the vocabulary turns the setting
    into the share of the forward index's postings kept: ``kept_fraction * nnz / dim``. A fixed
    ``n_postings`` (the library default 3,500 was tuned for MS MARCO on BERT's 30,522 terms)
    keeps far too much or too little as the vocabulary and collection change.
    """
    frac = DEFAULT_KEPT_FRACTION if kept_fraction is None else kept_fraction
    return max(MIN_N_POSTINGS, int(round(frac * forward.indices.size / vocabulary_size(forward))))


def build_params(forward: ForwardIndex, settings: dict[str, Any]) -> dict[str, Any]:
    """Build parameters: the defaults, ``n_postings`` scaled to this collection, then overrides."""
    return {**DEFAULT_BUILD, "n_postings": default_n_postings(forward), **settings.get("build", {})}


def build_in_memory(forward: ForwardIndex, params: dict[str, Any]):
    """A Seismic index over ``forward`` (not saved)."""
    seismic = _import_seismic()
    dataset = seismic.SeismicDatasetLV()
    # In slices, so the int64 copy of the ids Seismic wants exists for one slice at a time
    # (at 1M SPLADE-like chunks a whole copy is 1.2 GB on top of Seismic's own).
    for lo in range(0, forward.n_rows, ADD_BATCH_ROWS):
        hi = min(forward.n_rows, lo + ADD_BATCH_ROWS)
        a, b = int(forward.indptr[lo]), int(forward.indptr[hi])
        dataset.add_documents_by_id(
            [str(r) for r in range(lo, hi)],
            forward.indices[a:b].astype(np.int64),
            forward.data[a:b].astype(np.float32, copy=False),
            (forward.indptr[lo:hi + 1] - a).astype(np.int64),
        )
    with stdout_to_stderr():
        index = seismic.SeismicIndexLV.build_from_dataset(dataset, **params)
    del dataset
    return index


def build(forward: ForwardIndex, folder: Path, settings: dict[str, Any]) -> dict[str, Any]:
    params = build_params(forward, settings)
    index = build_in_memory(forward, params)
    with stdout_to_stderr():
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

    def _components(self, term_ids: np.ndarray) -> np.ndarray:
        return np.array([str(int(t)) for t in term_ids], dtype=self._string)

    @staticmethod
    def _hits(found) -> list[tuple[int, float]]:
        hits = [(int(doc), float(score)) for _, score, doc in found if score > 0]
        hits.sort(key=lambda rs: (-rs[1], rs[0]))
        return hits

    def search(self, term_ids: np.ndarray, weights: np.ndarray, k: int) -> list[tuple[int, float]]:
        if term_ids.size == 0:
            return []
        found = self._index.search(
            "q", self._components(term_ids), weights.astype(np.float32), k=k,
            query_cut=int(self._search["query_cut"]), heap_factor=float(self._search["heap_factor"]),
        )
        return self._hits(found)

    def search_batch(self, queries: list[tuple[np.ndarray, np.ndarray]], k: int) -> list[list[tuple[int, float]]]:
        """Many queries in one call; Seismic spreads them over ``RAYON_NUM_THREADS`` threads."""
        keep = [i for i, (ids, _) in enumerate(queries) if ids.size]
        out: list[list[tuple[int, float]]] = [[] for _ in queries]
        if not keep:
            return out
        found = self._index.batch_search(
            np.array([str(i) for i in keep], dtype=self._string),
            [self._components(queries[i][0]) for i in keep],
            [queries[i][1].astype(np.float32) for i in keep],
            k=k, query_cut=int(self._search["query_cut"]), heap_factor=float(self._search["heap_factor"]),
        )
        for i, hits in zip(keep, found):
            out[i] = self._hits(hits)
        return out
