"""Scoring with ir-measures (pytrec_eval underneath, as BEIR and CodeRAG-Bench use).

Ties: pytrec_eval orders documents of equal score by document id, *descending*, which would let
id spelling move results. So a run is first ranked here by (score descending, document id
ascending), and pytrec_eval gets rank-derived scores (``n - rank``), all distinct: the order
evaluated is exactly the order :func:`rank` produced, whatever the scorer's tie rule.

Metrics are averaged over queries that have qrels; a query the system returns nothing for counts
as 0. Values are reported on a 0-100 scale.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import ir_measures
from ir_measures import RR, R, Success, nDCG

MEASURES = {"nDCG@10": nDCG @ 10, "R@10": R @ 10, "R@100": R @ 100, "MRR@10": RR @ 10}
# Recorded in results.json but not in the tables: for a query with several relevant documents,
# success@10 (any of them in the top 10) is what recall@10 is for a query with one.
EXTRA_MEASURES = {"Success@10": Success @ 10}
HEADLINE = "nDCG@10"

Ranking = Sequence[tuple[str, float]]  # (doc id, score), any order


def rank(scored: Ranking, k: int | None = None) -> list[str]:
    """Doc ids by score descending, ties by doc id ascending; the first ``k``."""
    ordered = sorted(scored, key=lambda ds: (-ds[1], ds[0]))
    return [d for d, _ in (ordered if k is None else ordered[:k])]


def to_run(results: Mapping[str, Ranking], k: int = 100) -> dict[str, dict[str, float]]:
    """query -> {doc: rank-derived score}, top ``k`` per query (see module doc)."""
    run = {}
    for qid, scored in results.items():
        ids = rank(scored, k)
        run[qid] = {doc: float(len(ids) - i) for i, doc in enumerate(ids)}
    return run


def evaluate(qrels: Mapping[str, Mapping[str, int]], results: Mapping[str, Ranking], k: int = 100) -> dict[str, float]:
    """Mean of each measure in :data:`MEASURES` and :data:`EXTRA_MEASURES` over the queries in
    ``qrels``, on a 0-100 scale."""
    run = to_run(results, k)
    qrels = {q: dict(rel) for q, rel in qrels.items()}
    # Queries with no results still count (as 0): give them a placeholder that no qrels name.
    for q in qrels:
        if not run.get(q):
            run[q] = {"\0no-result": 0.0}
    run = {q: docs for q, docs in run.items() if q in qrels}
    measures = MEASURES | EXTRA_MEASURES
    agg = ir_measures.calc_aggregate(list(measures.values()), qrels, run)
    n = len(qrels)
    return {name: round(100.0 * float(agg.get(m, 0.0)) * (1 if n else 0), 4) for name, m in measures.items()}


def per_query(qrels: Mapping[str, Mapping[str, int]], results: Mapping[str, Ranking], k: int = 100,
              measure: str = HEADLINE) -> dict[str, float]:
    """One measure for each query (0-100), for error analysis."""
    run = to_run(results, k)
    out = {q: 0.0 for q in qrels}
    run = {q: docs for q, docs in run.items() if q in qrels and docs}
    for m in ir_measures.iter_calc([(MEASURES | EXTRA_MEASURES)[measure]], {q: dict(r) for q, r in qrels.items()}, run):
        out[m.query_id] = 100.0 * m.value
    return out
