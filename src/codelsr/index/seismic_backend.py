"""The Seismic approximate inverted index (PyPI ``pyseismic-lsr``; Bruch et al., SIGIR 2024),
over the *head* of the vocabulary, with the *tail* searched exactly.

Why a split: pyseismic-lsr 0.5.4's build allocates, for every non-empty posting list, a table as
wide as the vocabulary it sees (its k-means assigns documents through a per-list inverted index of
``dim`` entries), so its build grows with (lists x vocabulary width): 131 s for the 66k chunks of
the CPython standard library (240k terms), > 15 min for 100k lexical chunks. Most lexical terms
are rare identifiers whose lists hold a handful of chunks, where clustering and summaries buy
nothing. So Seismic gets only the terms whose document frequency reaches ``head_min_df``, under
compact ids (0..n_head-1, in generation term order), and the other lists are scored exactly from a
term-major copy of their postings. The two are merged exactly (``SeismicBackend.search``): where
Seismic returns the true top rows of the head part of the query, the result equals exact search.

Terms enter Seismic as integer component ids (compact head ids, written as decimal strings at
query time), through the ``LV`` classes whose ids are not capped at 65,535.
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
from codelsr.index.backends import rows_dot
from codelsr.index.store import ForwardIndex

SEISMIC_FILE = "seismic"  # Seismic appends ".index.seismic"
HEAD_TERMS_FILE = "seismic.head.npy"  # generation term id of each compact head id, ascending
# Terms in at least this many chunks go to Seismic; rarer ones are scored exactly. Measured in
# docs/performance.md ("Head/tail split"): see the sweep there for why this value.
HEAD_MIN_DF = 64

# Chosen from tools/bench/backends.py sweeps; the numbers are in docs/performance.md.
# Build: Seismic's own defaults for the clustering and summaries; n_postings scaled to the
# collection by default_n_postings.
DEFAULT_BUILD = {"centroid_fraction": 0.1, "summary_energy": 0.4, "max_fraction": 1.5, "doc_cut": 15}
# Search: query_cut 10 (SPLADE-like queries: 5 drops recall@10 to 0.92-0.93, 20 gains < 0.01);
# heap_factor 0.8: on real lexical vectors (100k chunks, head/tail split) recall@10 0.953 -> 0.984
# against 1.0, 0.984 -> 0.992 once rescored, at the same latency within the noise.
# Kept fraction 1.0: 0.5 lost recall on lexical queries (0.917-0.934 served), whose few terms
# lean on the long lists that pruning shortens. docs/performance.md has the sweeps.
DEFAULT_SEARCH = {"query_cut": 10, "heap_factor": 0.8}
DEFAULT_KEPT_FRACTION = 1.0  # share of the head's postings Seismic keeps (see default_n_postings)
MIN_N_POSTINGS = 256
# ``settings["cap_lists"]``: cut each head list to the postings Seismic may keep before it is given
# them (list_cap_thresholds). Off by default. Seismic's build holds ~95 bytes per posting given
# (docs/performance.md, "Memory"), so the cut bounds its memory (1M SPLADE-like chunks: 58M of
# 146M postings given, 7.8 GB peak instead of > 8.5 GB); but Seismic also scores its candidates
# with the documents as given, and cut documents cost recall: on 100k real lexical chunks served
# recall@10 fell from 0.992 to 0.845. A memory-bound build of a SPLADE collection may turn it on.
CAP_SLICE_POSTINGS = 8_000_000  # postings read per slice while list_cap_thresholds fills its keys
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


def compact_ids(head_terms: np.ndarray, n_terms: int) -> np.ndarray:
    """Compact id of every generation term, -1 for tail terms; shape (n_terms,)."""
    compact = np.full(n_terms, -1, dtype=np.int32)
    compact[head_terms] = np.arange(head_terms.size, dtype=np.int32)
    return compact


def default_n_postings(nnz: int, dim: int, kept_fraction: float | None = None) -> int:
    """Seismic's ``n_postings`` for a collection of ``nnz`` postings over ``dim`` (compact) ids.

    Seismic keeps about ``n_postings * dim`` postings in all, at most ``max_fraction * n_postings``
    in one list. Scaling by the vocabulary turns the setting into the share of the postings kept:
    ``kept_fraction * nnz / dim``. A fixed ``n_postings`` (the library default 3,500 was tuned for
    MS MARCO on BERT's 30,522 terms) keeps far too much or too little as the vocabulary and
    collection change.
    """
    frac = DEFAULT_KEPT_FRACTION if kept_fraction is None else kept_fraction
    return max(MIN_N_POSTINGS, int(round(frac * nnz / max(1, dim))))


def build_params(nnz: int, dim: int, settings: dict[str, Any]) -> dict[str, Any]:
    """Build parameters: the defaults, ``n_postings`` scaled to the head (``kept_fraction`` of its
    postings), then overrides."""
    n_postings = default_n_postings(nnz, dim, settings.get("kept_fraction"))
    return {**DEFAULT_BUILD, "n_postings": n_postings, **settings.get("build", {})}


def list_cap_thresholds(forward: ForwardIndex, df: np.ndarray, terms: np.ndarray, cap: int) -> np.ndarray:
    """Per generation term, the smallest weight among its ``cap`` heaviest postings (0 where a
    list is no longer than ``cap``, or the term is not in ``terms``); ``df`` is the document
    frequency of every term (``ForwardIndex.doc_freq``), which the caller already has.

    Seismic keeps at most ``max_fraction * n_postings`` postings of a list, the heaviest, and
    holds ~45-95 bytes for every posting it is *given* while it builds (docs/performance.md,
    "Memory"). Cutting each list to that size here, in numpy, keeps its copies at the size it
    keeps. Found by one sort of (term, weight) keys: weights are positive float32, whose bit
    patterns order like the values, so ``term << 32 | ~bits(weight)`` sorts by term, heaviest
    first, without an argsort of the whole collection."""
    thresholds = np.zeros(len(forward.terms), dtype=np.float32)
    over = np.zeros(len(forward.terms), dtype=bool)
    over[terms] = True
    over &= df > cap
    if not over.any():
        return thresholds
    keys = np.empty(int(df[over].sum()), dtype=np.int64)  # filled by slices: one full-size array
    filled = 0
    for lo in range(0, forward.indices.size, CAP_SLICE_POSTINGS):
        ids = forward.indices[lo:lo + CAP_SLICE_POSTINGS]
        sel = over[ids]
        bits = forward.data[lo:lo + CAP_SLICE_POSTINGS][sel].astype(np.float32).view(np.uint32)
        part = (ids[sel].astype(np.int64) << 32) | (0xFFFFFFFF - bits.astype(np.int64))
        keys[filled:filled + part.size] = part
        filled += part.size
    keys.sort()
    over_terms = np.flatnonzero(over)
    starts = np.searchsorted(keys, over_terms.astype(np.int64) << 32)
    kth = keys[starts + cap - 1] & 0xFFFFFFFF
    thresholds[over_terms] = (0xFFFFFFFF - kth).astype(np.uint32).view(np.float32)
    return thresholds


def build_in_memory(forward: ForwardIndex, params: dict[str, Any], compact: np.ndarray | None = None,
                    min_weight: np.ndarray | None = None, stats: dict[str, int] | None = None):
    """A Seismic index over ``forward`` (not saved), its term ids mapped through ``compact``
    (postings of terms mapped to -1 left out; ``None``: ids as they are), and postings lighter
    than their term's ``min_weight`` (``list_cap_thresholds``) left out. Rows left without
    postings are left out too; Seismic knows each row by its number, as a string. ``stats``, if
    given, receives ``postings_given``: how many postings Seismic was handed.

    Rows go in by slices, so the mapped int64 copy of the ids Seismic wants exists for one slice
    at a time (at 1M SPLADE-like chunks a whole copy is 1.2 GB on top of Seismic's own)."""
    seismic = _import_seismic()
    dataset = seismic.SeismicDatasetLV()
    given = 0
    for lo in range(0, forward.n_rows, ADD_BATCH_ROWS):
        hi = min(forward.n_rows, lo + ADD_BATCH_ROWS)
        a, b = int(forward.indptr[lo]), int(forward.indptr[hi])
        ids, data = forward.indices[a:b].astype(np.int64), forward.data[a:b]
        offsets = forward.indptr[lo:hi + 1] - a
        if compact is not None or min_weight is not None:
            mapped = ids if compact is None else compact[ids]
            keep = mapped >= 0
            if min_weight is not None:
                keep &= data >= min_weight[ids]
            ids, data = mapped[keep].astype(np.int64), data[keep]
            offsets = np.concatenate([[0], np.cumsum(keep, dtype=np.int64)])[offsets]
        given += int(offsets[-1])
        lengths = np.diff(offsets)
        rows = np.flatnonzero(lengths > 0)
        if rows.size == 0:
            continue
        dataset.add_documents_by_id(
            [str(lo + r) for r in rows.tolist()], ids, data.astype(np.float32, copy=False),
            np.concatenate([offsets[rows], [offsets[-1]]]).astype(np.int64),
        )
        del ids, data
    with stdout_to_stderr():
        index = seismic.SeismicIndexLV.build_from_dataset(dataset, **params)
    del dataset
    if stats is not None:
        stats["postings_given"] = given
    return index


def build(forward: ForwardIndex, folder: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """Seismic over the head terms (compact ids) of ``forward``; the tail needs no files (it is
    read from the forward index when the backend opens)."""
    head_min_df = int(settings.get("head_min_df", HEAD_MIN_DF))
    df = forward.doc_freq()
    head_terms = np.flatnonzero(df >= max(1, head_min_df)).astype(np.int32)
    head_nnz = int(df[head_terms].sum())
    params = build_params(head_nnz, head_terms.size, settings)
    cap = int(params["max_fraction"] * params["n_postings"]) if settings.get("cap_lists") else 0
    min_weight = list_cap_thresholds(forward, df, head_terms, cap) if head_nnz and cap else None
    stats = {"postings_given": 0, "postings_kept": 0}
    if head_nnz:
        index = build_in_memory(forward, params, compact_ids(head_terms, len(forward.terms)), min_weight, stats)
        stats["postings_kept"] = int(index.nnz)
        with stdout_to_stderr():
            index.save(str(folder / SEISMIC_FILE))
        del index
    np.save(folder / HEAD_TERMS_FILE, head_terms)
    return {"build": params, "search": {**DEFAULT_SEARCH, **settings.get("search", {})},
            "head_min_df": head_min_df, "head_terms": int(head_terms.size), "head_postings": head_nnz,
            "list_cap": cap, **stats,
            "tail_terms": int(np.count_nonzero(df)) - int(head_terms.size)}


class TailIndex:
    """The tail's posting lists, term-major, over generation term ids (head terms' lists empty).

    Built when the backend opens, from the forward index: only tail postings are copied."""

    def __init__(self, forward: ForwardIndex, is_tail: np.ndarray):
        tail_at = np.flatnonzero(is_tail[forward.indices])  # shape (n_tail_postings,)
        terms = forward.indices[tail_at]
        order = np.argsort(terms, kind="stable")  # by term, then by row (positions are row-major)
        self.rows = (np.searchsorted(forward.indptr, tail_at[order], side="right") - 1).astype(np.int64)
        self.data = forward.data[tail_at[order]]
        self.indptr = np.zeros(len(forward.terms) + 1, dtype=np.int64)
        np.cumsum(np.bincount(terms, minlength=len(forward.terms)), out=self.indptr[1:])

    def scores(self, term_ids: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rows, tail scores) of every row a tail term of the query occurs in."""
        lo, hi = self.indptr[term_ids], self.indptr[term_ids + 1]
        n = hi - lo
        if not n.sum():
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        pos = np.arange(int(n.sum()), dtype=np.int64) - np.repeat(np.cumsum(n) - n, n) + np.repeat(lo, n)
        rows, inverse = np.unique(self.rows[pos], return_inverse=True)
        sums = np.bincount(inverse, weights=self.data[pos].astype(np.float64) * np.repeat(weights, n))
        return rows, sums


class SeismicBackend:
    """Seismic over the head terms plus exact scoring of the tail, merged exactly.

    For a query ``q = q_head + q_tail``: Seismic returns candidates S for ``q_head``; the tail
    index gives ``tail(r)`` for every row r that a tail term of the query occurs in (T). Every
    candidate's score is computed exactly from the forward index. A row outside S scores at most
    ``h = min head score over S`` on the head part (when Seismic's S is the true head top), so a
    row of T outside S is scored only when ``h + tail(r)`` can reach the k-th score found so far;
    rows outside S and T cannot beat S. So the result equals exact search whenever Seismic finds
    the true head top k (Seismic's recall 1), and otherwise misses only what Seismic missed."""

    name = "seismic"

    def __init__(self, index, search_settings: dict[str, Any], forward: ForwardIndex,
                 head_terms: np.ndarray | None):
        self._index = index
        self._search = {**DEFAULT_SEARCH, **search_settings}
        self._string = _import_seismic().get_seismic_string()
        self._forward = forward
        n_terms = len(forward.terms)
        if head_terms is None:  # an index built before the split: every term in Seismic, ids as they are
            self._compact = np.arange(n_terms, dtype=np.int32)
            self._tail = None
        else:
            self._compact = compact_ids(head_terms, n_terms)
            is_tail = self._compact < 0
            self._tail = TailIndex(forward, is_tail) if is_tail.any() else None

    @classmethod
    def open(cls, forward: ForwardIndex, folder: Path, settings: dict[str, Any]) -> "SeismicBackend":
        head_path = folder / HEAD_TERMS_FILE
        head_terms = None
        if head_path.is_file():
            try:
                head_terms = np.load(head_path, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise CorruptIndexError(
                    f"index file damaged: {head_path} ({exc}); rebuild with `codelsr index --force`") from exc
            if head_terms.ndim != 1 or (head_terms.size and int(head_terms.max()) >= len(forward.terms)):
                raise CorruptIndexError(
                    f"index file damaged: {head_path} (term ids outside the term table); "
                    "rebuild with `codelsr index --force`")
        elif "head_min_df" in settings:
            raise CorruptIndexError(f"index file missing: {head_path}; rebuild with `codelsr index --force`")
        index = None
        if head_terms is None or settings.get("head_postings", 1):
            index = _load(folder / (SEISMIC_FILE + ".index.seismic"))
        return cls(index, settings.get("search", {}), forward, head_terms)

    def _components(self, compact: np.ndarray) -> np.ndarray:
        return np.array([str(int(t)) for t in compact], dtype=self._string)

    def _seismic_rows(self, compact: np.ndarray, weights: np.ndarray, k: int) -> np.ndarray:
        if self._index is None or compact.size == 0:
            return np.zeros(0, dtype=np.int64)
        found = self._index.search(
            "q", self._components(compact), weights.astype(np.float32), k=k,
            query_cut=int(self._search["query_cut"]), heap_factor=float(self._search["heap_factor"]),
        )
        return np.array([int(doc) for _, score, doc in found if score > 0], dtype=np.int64)

    @property
    def head_terms(self) -> np.ndarray:
        """Generation term ids Seismic holds (position = compact id)."""
        return np.flatnonzero(self._compact >= 0)

    def head_rows(self, term_ids: np.ndarray, weights: np.ndarray, k: int) -> np.ndarray:
        """The rows Seismic returns for the head part of the query, before the tail and the exact
        merge: ``search`` equals exact search whenever these hold the head part's true top k."""
        term_ids = np.asarray(term_ids, dtype=np.int64)
        compact = self._compact[term_ids]
        in_head = compact >= 0
        return self._seismic_rows(compact[in_head], np.asarray(weights, dtype=np.float32)[in_head], k)

    def search(self, term_ids: np.ndarray, weights: np.ndarray, k: int) -> list[tuple[int, float]]:
        term_ids = np.asarray(term_ids, dtype=np.int64)
        weights = np.asarray(weights, dtype=np.float32)
        if term_ids.size == 0 or k <= 0:
            return []
        compact = self._compact[term_ids]
        in_head = compact >= 0
        head_rows = self._seismic_rows(compact[in_head], weights[in_head], k)
        return self._merge(term_ids, weights, in_head, head_rows, k)

    def _merge(self, term_ids, weights, in_head, head_rows: np.ndarray, k: int) -> list[tuple[int, float]]:
        scores = rows_dot(self._forward, head_rows, term_ids, weights)
        if self._tail is not None and not in_head.all():
            tail_rows, tail = self._tail.scores(term_ids[~in_head], weights[~in_head])
            if tail_rows.size:
                # Head part of S's scores (full minus tail) bounds every row outside S.
                tail_of_s = np.zeros(head_rows.size)
                at = np.searchsorted(tail_rows, head_rows)
                found = (at < tail_rows.size) & (tail_rows[np.minimum(at, tail_rows.size - 1)] == head_rows)
                tail_of_s[found] = tail[at[found]]
                head_bound = float((scores - tail_of_s).min()) if head_rows.size >= k else 0.0
                kth = float(np.sort(scores)[-k]) if scores.size >= k else 0.0
                outside = ~np.isin(tail_rows, head_rows, assume_unique=True)
                promising = outside & (head_bound + tail >= kth * (1 - 1e-6))
                more = tail_rows[promising]
                if more.size:
                    head_rows = np.concatenate([head_rows, more])
                    scores = np.concatenate([scores, rows_dot(self._forward, more, term_ids, weights)])
        keep = scores > 0
        hits = sorted(zip(head_rows[keep].tolist(), scores[keep].tolist()), key=lambda rs: (-rs[1], rs[0]))
        return hits[:k]

    def search_batch(self, queries: list[tuple[np.ndarray, np.ndarray]], k: int) -> list[list[tuple[int, float]]]:
        """Many queries; Seismic's part in one call, spread over ``RAYON_NUM_THREADS`` threads."""
        parts = []
        for ids, w in queries:
            ids = np.asarray(ids, dtype=np.int64)
            w = np.asarray(w, dtype=np.float32)
            compact = self._compact[ids] if ids.size else np.zeros(0, dtype=np.int32)
            parts.append((ids, w, compact >= 0, compact))
        keep = [i for i, (_, _, h, _) in enumerate(parts) if h.any()] if self._index is not None else []
        found_rows: list[np.ndarray] = [np.zeros(0, dtype=np.int64) for _ in queries]
        if keep:
            found = self._index.batch_search(
                np.array([str(i) for i in keep], dtype=self._string),
                [self._components(parts[i][3][parts[i][2]]) for i in keep],
                [parts[i][1][parts[i][2]] for i in keep],
                k=k, query_cut=int(self._search["query_cut"]), heap_factor=float(self._search["heap_factor"]),
            )
            for i, hits in zip(keep, found):
                found_rows[i] = np.array([int(doc) for _, score, doc in hits if score > 0], dtype=np.int64)
        return [self._merge(ids, w, h, found_rows[i], k) if ids.size else []
                for i, (ids, w, h, _) in enumerate(parts)]


def _load(path: Path):
    seismic = _import_seismic()
    if not path.is_file():
        raise CorruptIndexError(f"index file missing: {path}; rebuild with `codelsr index --force`")
    try:
        with stdout_to_stderr():
            return seismic.SeismicIndexLV.load(str(path))
    except BaseException as exc:  # the Rust loader panics on truncated files
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise CorruptIndexError(
            f"index file damaged: {path} ({exc}); rebuild with `codelsr index --force`"
        ) from exc
