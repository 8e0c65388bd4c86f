"""Backends benchmark: the exact CSR backend against Seismic, on real and synthetic collections.

For each collection: build time, peak memory added by the build, index size on disk, memory the
built index keeps, query latency p50/p99 (single queries, and batched through Seismic's
``batch_search``), recall@10 against exact search, and the cost of codelsr's exact rescoring of
Seismic's candidates. Seismic is swept over build parameters (``n_postings`` as a share of all
postings, ``centroid_fraction``, ``summary_energy``, ``max_fraction``) and search parameters
(``query_cut``, ``heap_factor``).

Recall@10 is tie-aware: a returned row counts when its exact score reaches the exact 10th score.
"Served" figures ask for 40 candidates (what ``search_index`` fetches for k=10) and rescore them
exactly, as codelsr does, before taking the top 10.
"""

from __future__ import annotations

import gc
import itertools
import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from codelsr.index.store import ForwardIndex
from tools.bench.corpus import Collection
from tools.bench.measure import PeakMemory, latencies, load_average, rss_mb

K = 10
FETCH = K * 3 + 10  # what search_index asks the backend for when k=10

SEARCH_GRID_FULL = [{"query_cut": qc, "heap_factor": hf}
                    for qc, hf in itertools.product([5, 10, 20, 30], [0.7, 0.8, 0.9, 1.0])]
SEARCH_GRID_QUICK = [{"query_cut": qc, "heap_factor": hf} for qc, hf in itertools.product([10, 20], [0.8, 1.0])]


def build_sweep(full: bool) -> list[dict]:
    """Build settings to try: the share of postings kept, then one parameter at a time."""
    base = {"kept_fraction": 0.5, "centroid_fraction": 0.1, "summary_energy": 0.4, "max_fraction": 1.5}
    if not full:
        return [base, {**base, "kept_fraction": 1.0}]
    out = [{**base, "kept_fraction": f} for f in (0.25, 0.5, 1.0)]
    out += [{**base, "centroid_fraction": v} for v in (0.05, 0.2)]
    out += [{**base, "summary_energy": v} for v in (0.3, 0.6)]
    out += [{**base, "max_fraction": v} for v in (1.0, 3.0)]
    return out


@dataclass
class Truth:
    rows: list[int]
    kth: float  # exact score of the k-th hit (0 when fewer than k rows match)
    n: int  # how many rows the truth holds (<= k)


def fwd_bytes(forward: ForwardIndex) -> int:
    return forward.indptr.nbytes + forward.indices.nbytes + forward.data.nbytes


class RowScorer:
    """Exact scores of chosen rows for one query: the recall judge."""

    def __init__(self, forward: ForwardIndex):
        self.csr = forward.to_csr()
        self.q = np.zeros(len(forward.terms), dtype=np.float64)  # reused: cleared after each call

    def __call__(self, rows: list[int], ids: np.ndarray, weights: np.ndarray) -> np.ndarray:
        if not rows:
            return np.zeros(0)
        np.add.at(self.q, ids, weights.astype(np.float64))
        try:
            return self.csr[rows] @ self.q
        finally:
            self.q[ids] = 0.0


def recall(truth: Truth, exact_scores: np.ndarray, k: int = K) -> float:
    """Share of the true top k found, given the exact scores of the returned rows (best first)."""
    if truth.n == 0:
        return 1.0
    good = int(np.sum(exact_scores[:k] >= truth.kth * (1 - 1e-4)))
    return min(good, truth.n) / truth.n


def served_top(hits, ids, weights, scorer: RowScorer, k: int = K) -> list[tuple[int, float]]:
    rows = [r for r, _ in hits]
    exact = scorer(rows, ids, weights)
    return sorted(zip(rows, exact.tolist()), key=lambda rs: (-rs[1], rs[0]))[:k]


def mean_recall(results, queries, truths, scorer) -> float:
    vals = []
    for hits, (ids, w), truth in zip(results, queries, truths):
        rows = [r for r, _ in hits[:K]]
        vals.append(recall(truth, scorer(rows, ids, w)))
    return float(np.mean(vals)) if vals else float("nan")


def bench_exact(coll: Collection, queries, log) -> tuple[dict, object, list[Truth]]:
    from codelsr.index.backends import ExactBackend

    gc.collect()
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        exact = ExactBackend(coll.forward)
        build_s = time.perf_counter() - t0
    lat = latencies(lambda q: exact.search(q[0], q[1], K), queries)
    served = latencies(lambda q: _served_codelsr(exact, coll.forward, q), queries)
    truths = []
    for ids, w in queries:
        top = exact.search(ids, w, K)
        truths.append(Truth([r for r, _ in top], top[-1][1] if len(top) == K else 0.0, len(top)))
    row = {"collection": coll.name, "backend": "exact", "chunks": coll.forward.n_rows,
           "nnz": int(coll.forward.indices.size), "forward_mb": fwd_bytes(coll.forward) / 1e6,
           "build_s": build_s, "build_peak_mb": mem.peak, "disk_mb": 0.0,
           # its one structure, counted exactly (RSS deltas miss memory the allocator reuses)
           "index_mb": sum(a.nbytes for a in (exact._by_term.data, exact._by_term.indices,
                                               exact._by_term.indptr)) / 1e6,
           **lat, "batch_ms_per_query": lat["p50_ms"], "recall10": 1.0, "served_recall10": 1.0,
           "served_p50_ms": served["p50_ms"], "served_p99_ms": served["p99_ms"],
           "served_cpu_p50_ms": served["cpu_p50_ms"], "build_peak_rss_mb": mem.hwm, "terms": len(coll.forward.terms),
           "load": load_average()}
    log(row)
    return row, exact, truths


def bench_seismic(coll: Collection, queries, truths, scorer: RowScorer, build: dict, grid: list[dict],
                  log, threads_note: str = "") -> list[dict]:
    """Seismic as codelsr builds and serves it: head terms (``head_min_df``) under compact ids in
    Seismic, the tail scored exactly (``seismic_backend.build`` / ``SeismicBackend.open``)."""
    from codelsr.index import seismic_backend as sb

    fwd = coll.forward
    codelsr_keys = ("kept_fraction", "head_min_df", "cap_lists")
    settings = {"kept_fraction": build["kept_fraction"], "head_min_df": build.get("head_min_df", sb.HEAD_MIN_DF),
                "build": {k: v for k, v in build.items() if k not in codelsr_keys}}
    if "cap_lists" in build:
        settings["cap_lists"] = build["cap_lists"]
    gc.collect()
    folder = Path(tempfile.mkdtemp(prefix="codelsr-bench-seismic-"))
    try:
        with PeakMemory() as mem:
            t0 = time.perf_counter()
            c0 = time.process_time()
            used = sb.build(fwd, folder, settings)
            build_s, build_cpu_s = time.perf_counter() - t0, time.process_time() - c0
        disk_mb = sum(p.stat().st_size for p in folder.iterdir()) / 1e6
        with PeakMemory() as opened:
            t0 = time.perf_counter()
            backend = sb.SeismicBackend.open(fwd, folder, used)
            open_s = time.perf_counter() - t0
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    rows = []
    for cfg in grid:
        backend._search = {**sb.DEFAULT_SEARCH, **cfg}
        lat = latencies(lambda q: backend.search(q[0], q[1], K), queries)
        results = [backend.search(ids, w, K) for ids, w in queries]
        rec = mean_recall(results, queries, truths, scorer)
        # Timed as codelsr serves k=10: FETCH candidates, rescored by IndexReader.row_scores.
        served_lat = latencies(lambda q: _served_codelsr(backend, fwd, q), queries)
        served = [served_top(backend.search(ids, w, FETCH), ids, w, scorer) for ids, w in queries]
        rec_served = mean_recall(served, queries, truths, scorer)
        t0 = time.perf_counter()
        backend.search_batch(queries, K)
        batch_ms = (time.perf_counter() - t0) * 1000 / max(1, len(queries))
        row = {"collection": coll.name, "backend": "seismic", "chunks": fwd.n_rows, "nnz": int(fwd.indices.size),
               "terms": len(fwd.terms), "forward_mb": fwd_bytes(fwd) / 1e6, **{f"b_{k}": v for k, v in build.items()},
               "head_min_df": used["head_min_df"], "head_terms": used["head_terms"],
               "head_postings": used["head_postings"], "tail_terms": used["tail_terms"],
               "list_cap": used.get("list_cap"), "postings_given": used.get("postings_given"),
               "n_postings": used["build"]["n_postings"], **{f"s_{k}": v for k, v in cfg.items()},
               "build_s": build_s, "build_cpu_s": build_cpu_s, "build_peak_mb": mem.peak,
               "build_peak_rss_mb": mem.hwm, "index_mb": opened.end, "open_s": open_s, "disk_mb": disk_mb,
               **lat, "batch_ms_per_query": batch_ms, "recall10": rec,
               "served_p50_ms": served_lat["p50_ms"], "served_p99_ms": served_lat["p99_ms"],
               "served_cpu_p50_ms": served_lat["cpu_p50_ms"], "served_recall10": rec_served,
               "load": load_average(), "threads": threads_note}
        log(row)
        rows.append(row)
    del backend
    gc.collect()
    return rows


def _served_codelsr(backend, forward: ForwardIndex, query) -> list[tuple[int, float]]:
    from codelsr.index.reader import IndexReader

    ids, w = query
    rows = [r for r, _ in backend.search(ids, w, FETCH)]
    exact = IndexReader.row_scores(SimpleNamespace(forward=forward), rows, ids, w)
    return sorted(zip(rows, exact), key=lambda rs: (-rs[1], rs[0]))[:K]


def rescore_cost(coll: Collection, queries) -> dict:
    """What codelsr's exact rescoring (``IndexReader.row_scores``) of FETCH candidates costs."""
    from codelsr.index.reader import IndexReader

    fake = SimpleNamespace(forward=coll.forward)
    rng = np.random.default_rng(5)
    cands = [rng.choice(coll.forward.n_rows, size=min(FETCH, coll.forward.n_rows), replace=False).tolist()
             for _ in queries]
    items = list(zip(queries, cands))
    lat = latencies(lambda it: IndexReader.row_scores(fake, it[1], it[0][0], it[0][1]), items)
    return {"collection": coll.name, "what": f"row_scores of {FETCH} candidates", **lat}


def best_setting(rows: list[dict], min_recall: float = 0.95, key: str = "recall10",
                 lat_key: str = "p50_ms") -> dict | None:
    """The fastest Seismic setting whose recall reaches ``min_recall``."""
    ok = [r for r in rows if r["backend"] == "seismic" and r[key] >= min_recall]
    return min(ok, key=lambda r: r[lat_key]) if ok else None


def run_collection(coll: Collection, queries, full: bool, log, builds: list[dict] | None = None,
                   grid: list[dict] | None = None, timeout_s: float = 1800) -> list[dict]:
    ex_row, exact, truths = bench_exact(coll, queries, log)
    del exact
    gc.collect()
    scorer = RowScorer(coll.forward)
    rows = [ex_row]
    for build in build_sweep(full) if builds is None else builds:
        rows += bench_seismic_guarded(coll, queries, truths, scorer, build,
                                      grid or (SEARCH_GRID_FULL if full else SEARCH_GRID_QUICK), log, timeout_s)
    rows.append(rescore_cost(coll, queries))
    log(rows[-1])
    return rows


def format_row(r: dict) -> str:
    if r.get("backend") == "seismic-timeout":
        return (f"{r['collection']:>16} seismic keep={r['b_kept_fraction']} cf={r['b_centroid_fraction']} "
                f"se={r['b_summary_energy']} mf={r['b_max_fraction']}: {r['note']} | load {r['load']}")
    if "what" in r:
        return f"{r['collection']:>16} rescoring: {r['what']} p50 {r['p50_ms']:.3f} ms (cpu {r['cpu_p50_ms']:.3f})"
    head = f"{r['collection']:>16} {r['backend']:<7}"
    if r["backend"] == "seismic":
        head += (f" head df>={r.get('head_min_df')} ({r.get('head_terms')} terms, {r.get('tail_terms')} tail)"
                 f" keep={r['b_kept_fraction']:<4} np={r['n_postings']:<5} cf={r['b_centroid_fraction']:<4} "
                 f"se={r['b_summary_energy']:<3} mf={r['b_max_fraction']:<3} qc={r['s_query_cut']:<2} "
                 f"hf={r['s_heap_factor']:<3} lists {'cut' if r.get('b_cap_lists') else 'whole'}")
    tail = (f" build {r['build_s']:.1f}s peak+{r['build_peak_mb']:.0f}MB idx {r['index_mb']:.0f}MB "
            f"disk {r['disk_mb']:.0f}MB | p50 {r['p50_ms']:.3f} p99 {r['p99_ms']:.3f} cpu50 {r['cpu_p50_ms']:.3f} "
            f"batch {r['batch_ms_per_query']:.3f} ms | R@10 {r['recall10']:.3f}")
    if "served_p50_ms" in r:
        tail += f" served R@10 {r['served_recall10']:.3f} p50 {r['served_p50_ms']:.3f}"
        if "served_p99_ms" in r:
            tail += f" p99 {r['served_p99_ms']:.3f}"
    if "build_peak_rss_mb" in r:
        tail += f" peak RSS {r['build_peak_rss_mb']:.0f}MB"
    return head + tail + f" | load {r['load']}"


def _echo(line: str) -> None:
    print(line, flush=True)


def make_logger(path: Path | None, echo=_echo):
    def log(row):
        if isinstance(row, str):
            echo(row)
            return
        try:
            echo(format_row(row))
        except KeyError:  # rows of the other sections
            echo("  " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
        if path is not None:
            with open(path, "a") as f:
                f.write(json.dumps(row) + "\n")
    return log


def bench_seismic_guarded(coll: Collection, queries, truths, scorer: RowScorer, build: dict, grid: list[dict],
                          log, timeout_s: float) -> list[dict]:
    """``bench_seismic`` in a forked child, given up after ``timeout_s`` (Seismic's native build
    cannot be interrupted in-process). A build that runs out of time is recorded as such."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)

    def target():
        rows = bench_seismic(coll, queries, truths, scorer, build, grid, lambda r: None)
        child.send(rows)
        child.close()

    t0 = time.perf_counter()
    proc = ctx.Process(target=target, daemon=True)
    proc.start()
    rows, note = None, f"build + sweep did not finish in {timeout_s:.0f} s"
    timeline: list[tuple[float, float]] = []  # (seconds, child's resident MB), every ~2 s
    while time.perf_counter() - t0 < timeout_s:
        timeline.append((round(time.perf_counter() - t0, 1), round(rss_mb(proc.pid))))
        if parent.poll(2.0):
            rows = parent.recv()
            break
        if not proc.is_alive():  # the OOM killer, or a panic in the native build
            note = (f"child died after {time.perf_counter() - t0:.0f} s with exit code {proc.exitcode}"
                    + (" (SIGKILL: out of memory?)" if proc.exitcode == -9 else ""))
            break
    proc.join(5)
    if proc.is_alive():
        proc.kill()
        proc.join()
    if rows is None:
        row = {"collection": coll.name, "backend": "seismic-timeout", "chunks": coll.forward.n_rows,
               **{f"b_{k}": v for k, v in build.items()}, "build_s": time.perf_counter() - t0,
               "note": note, "rss_timeline": timeline, "load": load_average()}
        log(row)
        return [row]
    for r in rows:
        r["rss_timeline"] = timeline
        log(r)
    return rows


VOCAB_CASES = [  # (documents, vocabulary drawn from, largest id + 1)
    (2_000, 30_522, 30_522), (2_000, 30_522, 151_936), (2_000, 151_936, 151_936), (20_000, 30_522, 30_522),
]


def vocabulary_cost(log, cases=VOCAB_CASES) -> list[dict]:
    """Seismic build CPU time against collection size and vocabulary size (``n_postings`` 256).

    The middle case draws ids from 30,522 but gives one document the id 151,935, so Seismic sees a
    151,936-wide vocabulary with ~30k non-empty lists: it isolates the cost of the width."""
    from codelsr.index import seismic_backend as sb
    from tools.bench.corpus import sample_rows, zipf_probabilities

    rows = []
    for n, drawn, width in cases:
        rng = np.random.default_rng(0)
        cdf = np.cumsum(zipf_probabilities(drawn))
        indptr, indices, data = sample_rows(rng, n, rng.integers(104, 210, size=n), cdf,
                                             rng.permutation(drawn), 0.0, 0.6)
        if width > drawn:
            indices = indices.copy()
            indices[indptr[1] - 1] = width - 1  # the last (largest) id of document 0
        fwd = ForwardIndex([str(i) for i in range(width)], indptr, indices, data)
        params = {**sb.DEFAULT_BUILD, "n_postings": 256}
        c0, w0 = time.process_time(), time.perf_counter()
        sb.build_in_memory(fwd, params)
        row = {"what": "seismic build vs vocabulary", "documents": n, "ids_drawn_from": drawn,
               "vocabulary_width": width, "terms_used": int((np.bincount(indices) > 0).sum()),
               "build_cpu_s": time.process_time() - c0, "build_wall_s": time.perf_counter() - w0,
               "load": load_average()}
        log(row)
        rows.append(row)
    return rows
