"""Turn the benchmark's JSON lines into the Markdown tables of docs/performance.md.

Usage::

    python -m tools.bench.report /tmp/codelsr-bench/results*.jsonl
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tools.bench.backends import best_setting


def load(paths: list[Path]) -> list[dict]:
    rows = []
    for p in paths:
        for line in p.read_text().splitlines():
            if line.strip():
                rows.append(json.loads(line))
    return rows


def _f(v, digits=3) -> str:
    return f"{v:.{digits}f}" if isinstance(v, (int, float)) else str(v)


def backend_tables(rows: list[dict]) -> str:
    out = []
    colls = list(dict.fromkeys(r["collection"] for r in rows if "collection" in r and "backend" in r))
    out.append("| collection | backend | settings | build s | build peak MB | index MB | disk MB | p50 ms | CPU p50 ms "
               "| p99 ms | batch ms/q | R@10 | served p50 ms | served R@10 | load |")
    out.append("|" + "---|" * 15)
    for c in colls:
        mine = [r for r in rows if r.get("collection") == c and "backend" in r]
        exact = [r for r in mine if r["backend"] == "exact"]
        best = best_setting(mine)
        timeouts = [r for r in mine if r["backend"] == "seismic-timeout"]
        for r in exact[-1:] + ([best] if best else []):
            settings = "" if r["backend"] == "exact" else (
                f"keep {r['b_kept_fraction']} (n_postings {r['n_postings']}), cf {r['b_centroid_fraction']}, "
                f"se {r['b_summary_energy']}, mf {r['b_max_fraction']}, qc {r['s_query_cut']}, hf {r['s_heap_factor']}")
            out.append(f"| {c} ({r['chunks']:,}) | {r['backend']} | {settings} | {_f(r['build_s'], 1)} | "
                       f"{_f(r['build_peak_mb'], 0)} | {_f(r['index_mb'], 0)} | {_f(r['disk_mb'], 0)} | "
                       f"{_f(r['p50_ms'])} | {_f(r['cpu_p50_ms'])} | {_f(r['p99_ms'])} | {_f(r['batch_ms_per_query'])} | "
                       f"{_f(r['recall10'])} | {_f(r.get('served_p50_ms', float('nan')))} | "
                       f"{_f(r.get('served_recall10', float('nan')))} | {r['load']} |")
        for r in timeouts:
            out.append(f"| {c} ({r['chunks']:,}) | seismic | keep {r['b_kept_fraction']} | > {_f(r['build_s'], 0)} "
                       f"| | | | | | | | | | {r['note']} | {r['load']} |")
    return "\n".join(out)


def sweep_table(rows: list[dict], collection: str) -> str:
    out = ["| keep | n_postings | cf | se | mf | qc | hf | build s | disk MB | p50 ms | cpu p50 ms | R@10 |",
           "|" + "---|" * 12]
    for r in rows:
        if r.get("collection") == collection and r.get("backend") == "seismic":
            out.append(f"| {r['b_kept_fraction']} | {r['n_postings']} | {r['b_centroid_fraction']} | "
                       f"{r['b_summary_energy']} | {r['b_max_fraction']} | {r['s_query_cut']} | {r['s_heap_factor']} | "
                       f"{_f(r['build_s'], 1)} | {_f(r['disk_mb'], 0)} | {_f(r['p50_ms'])} | {_f(r['cpu_p50_ms'])} | "
                       f"{_f(r['recall10'])} |")
    return "\n".join(out)


def scale_table(rows: list[dict]) -> str:
    """One row per collection and backend (the ``scale`` section): build, memory, disk, served
    latency and recall."""
    out = ["| collection | chunks | terms | backend | Seismic sees | build s (CPU s) | peak RSS MB | disk MB "
           "| served p50 / p99 ms | served CPU p50 ms | served R@10 | load |", "|" + "---|" * 12]
    for r in rows:
        if r.get("backend") not in ("exact", "seismic", "seismic-timeout"):
            continue
        if r["backend"] == "seismic-timeout":
            out.append(f"| {r['collection']} | {r['chunks']:,} | | seismic | | > {_f(r['build_s'], 0)} | "
                       f"{max((m for _, m in r.get('rss_timeline', [])), default=0):,.0f} | | | | {r['note']} | "
                       f"{r['load']} |")
            continue
        sees = "" if r["backend"] == "exact" else (
            f"{r['head_terms']:,} head terms (df >= {r['head_min_df']}), {r['tail_terms']:,} tail; "
            f"n_postings {r['n_postings']}, qc {r['s_query_cut']}, hf {r['s_heap_factor']}")
        cpu = f" ({_f(r['build_cpu_s'], 1)})" if "build_cpu_s" in r else ""
        peak = max([r.get("build_peak_rss_mb", 0)] + [m for _, m in r.get("rss_timeline", [])])
        out.append(f"| {r['collection']} | {r['chunks']:,} | {r.get('terms', 0):,} | {r['backend']} | {sees} | "
                   f"{_f(r['build_s'], 1)}{cpu} | {peak:,.0f} | {_f(r['disk_mb'], 0)} | "
                   f"{_f(r['served_p50_ms'])} / {_f(r.get('served_p99_ms', float('nan')))} | "
                   f"{_f(r.get('served_cpu_p50_ms', float('nan')))} | {_f(r['served_recall10'])} | {r['load']} |")
    return "\n".join(out)


def split_table(rows: list[dict]) -> str:
    """Seismic rows by head cut, kept fraction and search setting (``backends --head``)."""
    out = ["| collection | head df >= | head terms | tail terms | keep | n_postings | qc | hf | build s | disk MB "
           "| served p50 ms | R@10 | served R@10 | load |", "|" + "---|" * 14]
    for r in rows:
        if r.get("backend") == "seismic" and "head_min_df" in r:
            out.append(f"| {r['collection']} | {r['head_min_df']} | {r['head_terms']:,} | {r['tail_terms']:,} | "
                       f"{r['b_kept_fraction']} | {r['n_postings']} | {r['s_query_cut']} | {r['s_heap_factor']} | "
                       f"{_f(r['build_s'], 1)} | {_f(r['disk_mb'], 0)} | {_f(r['served_p50_ms'])} | "
                       f"{_f(r['recall10'])} | {_f(r['served_recall10'])} | {r['load']} |")
    return "\n".join(out)


def other_rows(rows: list[dict]) -> str:
    out = []
    for r in rows:
        if "backend" in r or "run" in r:
            continue
        r = {k: v for k, v in r.items() if k not in ("rss_timeline", "events")}
        out.append("- " + ", ".join(f"{k}={_f(v) if isinstance(v, float) else v}" for k, v in r.items()))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    paths = [Path(p) for p in (argv if argv is not None else sys.argv[1:])]
    rows = load(paths)
    if any("head_min_df" in r for r in rows):
        print(scale_table(rows))
        print()
        print(split_table(rows))
        print()
    print(backend_tables(rows))
    for c in dict.fromkeys(r["collection"] for r in rows if r.get("backend") == "seismic"):
        print(f"\n### Sweep: {c}\n")
        print(sweep_table(rows, c))
    print()
    print(other_rows(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
