"""Scoring for ``swe-lite-files``: file Acc@k / Recall@10 / MRR@10 and function Recall@10.

* **Acc@k** (as LocAgent reports it): 1 when *every* gold file is in the top k, else 0.
* **Recall@10**: the share of gold files in the top 10. **MRR@10**: 1 / rank of the first gold
  file in the top 10, else 0. (Every Lite instance has one gold file, so Acc@k = Recall@k there.)
* **Function Recall@10**: the share of the gold functions (``gold_spans``; module-level spans such
  as ``imports`` are not functions and are left out) among the top 10 *distinct functions* a
  system returns. Only systems that return line ranges (codelsr's chunks) rank functions: a hit
  names every function of its file whose definition overlaps the hit's lines, innermost first.
  Gold functions missing from the tree are left out; an instance with none left is not scored.

An instance whose gold file is not in the tree (an approximate base can predate the file) still
counts, as a miss, in the ``all`` figures; the ``present`` figures average over the instances whose
gold files are all in the tree. Both are reported with their counts.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

FILE_MEASURES = ("Acc@1", "Acc@5", "Acc@10", "R@10", "MRR@10")
FUNCTION_MEASURE = "FnR@10"
HEADLINE = "Acc@5"


@dataclass(frozen=True)
class Region:
    """One hit as a system returns it: a file, and the lines it covers (None: the whole file)."""

    path: str
    start_line: int | None = None
    end_line: int | None = None


def file_ranking(regions: Iterable[Region]) -> list[str]:
    """Distinct files in the order of their first hit."""
    seen: dict[str, None] = {}
    for r in regions:
        seen.setdefault(r.path, None)
    return list(seen)


def file_metrics(ranked_files: Sequence[str], gold: Iterable[str]) -> dict[str, float]:
    """The file measures of one instance, each 0 or 1 (Recall and MRR: 0..1)."""
    gold = set(gold)
    if not gold:
        raise ValueError("an instance needs at least one gold file")
    first_rank: dict[str, int] = {}
    for i, f in enumerate(ranked_files, 1):
        if f in gold and f not in first_rank:
            first_rank[f] = i
    out = {}
    for k in (1, 5, 10):
        out[f"Acc@{k}"] = float(all(first_rank.get(g, k + 1) <= k for g in gold))
    out["R@10"] = sum(1 for g in gold if first_rank.get(g, 11) <= 10) / len(gold)
    best = min(first_rank.values(), default=None)
    out["MRR@10"] = 1.0 / best if best is not None and best <= 10 else 0.0
    return out


def function_spans(source: str) -> list[tuple[str, int, int]]:
    """(qualified name, first line, last line) of every function, method and class in a Python
    source, outer before inner: ``Request.register_hook``. Decorators count as part of the span.
    A file that does not parse has none."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    out: list[tuple[str, int, int]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                start = min([child.lineno] + [d.lineno for d in child.decorator_list])
                out.append((name, start, child.end_lineno or child.lineno))
                visit(child, name + ".")
            elif not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                visit(child, prefix)  # defs inside if/try blocks at the same level

    visit(tree, "")
    return out


def is_function_span(name: str) -> bool:
    """Whether a ``gold_spans`` entry names a function or class (not module-level code)."""
    return not name.split(":")[0] == "imports"


def function_ranking(regions: Iterable[Region], spans: Mapping[str, list[tuple[str, int, int]]]) -> list[tuple[str, str]]:
    """Distinct (file, qualified name) in rank order: each region names the functions of its file
    that it overlaps, innermost (latest-starting) first. Whole-file regions name none."""
    seen: dict[tuple[str, str], None] = {}
    for r in regions:
        if r.start_line is None or r.end_line is None:
            continue
        hit = [(name, s, e) for name, s, e in spans.get(r.path, ()) if s <= r.end_line and e >= r.start_line]
        for name, _, _ in sorted(hit, key=lambda t: (-t[1], t[2])):
            seen.setdefault((r.path, name), None)
    return list(seen)


def function_recall(ranked: Sequence[tuple[str, str]], gold: Iterable[tuple[str, str]], k: int = 10) -> float:
    gold = set(gold)
    if not gold:
        raise ValueError("no gold functions to score")
    top = set(ranked[:k])
    return sum(1 for g in gold if g in top) / len(gold)


def mean(values: Sequence[float]) -> float:
    return round(100.0 * sum(values) / len(values), 2) if values else float("nan")


def aggregate(per_instance: Mapping[str, Mapping[str, float | None]], present: set[str]) -> dict[str, object]:
    """Means (0-100) over all instances (a missing gold file counts as a miss) and over those
    whose gold is present; the function measure over the instances it applies to."""
    out: dict[str, object] = {"instances": len(per_instance), "gold_present": len(present)}
    for m in FILE_MEASURES:
        out[m] = mean([v[m] or 0.0 for v in per_instance.values()])
        out[f"{m} present"] = mean([per_instance[i][m] or 0.0 for i in per_instance if i in present])
    fn = [v[FUNCTION_MEASURE] for v in per_instance.values() if v.get(FUNCTION_MEASURE) is not None]
    out[FUNCTION_MEASURE] = mean(fn) if fn else None
    out[f"{FUNCTION_MEASURE} instances"] = len(fn)
    return out
