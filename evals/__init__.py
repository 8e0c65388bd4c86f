"""codelsr's retrieval-quality suite: CodeRAG-Bench tasks and mined docstring pairs, scored for
codelsr and baselines with ir-measures. Run ``python -m evals --help``.

Tasks build a :class:`~evals.tasks.Task` (BEIR-style corpus, queries, qrels); systems turn a
corpus and queries into ranked document ids; :mod:`evals.metrics` scores them; :mod:`evals.run`
runs the grid and writes ``evals/results/``.
"""

__all__ = ["metrics", "run", "systems", "tasks"]
