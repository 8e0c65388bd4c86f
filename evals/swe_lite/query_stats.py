"""What the encoders do with SWE-bench Lite issue texts as queries: their length in characters and
in the shipped SPLADE model's word pieces, how much of each issue a 64-piece query window reads,
how many carry tracebacks or code, and how :mod:`codelsr.queries` splits them.

    python -m evals.swe_lite.query_stats   # -> evals/results/swe_lite/query_lengths.json (+ a table on stdout)
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path

from evals.paths import RESULTS_DIR
from evals.swe_lite.data import load_instances

TRACEBACK = re.compile(r"Traceback \(most recent call last\)|^\s*File \".+\", line \d+", re.M)
OLD_LIMIT_CHARS = 4000  # search_code's limit before codelsr.queries
CODE = re.compile(r"```|^>>> |^\s{4,}\S", re.M)


def _q(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def stats() -> dict:
    from codelsr.encoders import get_encoder
    from codelsr.encoders.lexical import LexicalEncoder
    from transformers import AutoTokenizer

    import codelsr
    from codelsr.queries import MAX_QUERY_TERMS, prepare_query

    texts = [i.problem_statement for i in load_instances()]
    splade = get_encoder("splade-code-tiny")
    tok = AutoTokenizer.from_pretrained(str(Path(codelsr.__file__).parent / "models" / "splade-code-tiny"))
    window = splade.max_length_query
    lengths = [len(t) for t in texts]
    pieces_all = [len(tok(t, add_special_tokens=True)["input_ids"]) for t in texts]
    read_share = []
    for t, n in zip(texts, pieces_all):
        enc = tok(t, add_special_tokens=False, return_offsets_mapping=True, truncation=True, max_length=window - 2)
        end = enc["offset_mapping"][-1][1] if enc["offset_mapping"] else 0
        read_share.append(min(1.0, end / max(1, len(t.strip()) or 1)))
    lex = LexicalEncoder()
    lex_terms = [len(lex.encode_queries([t])[0]) for t in texts]
    lex_pieces = [len(prepare_query(lex, t).pieces) for t in texts]
    sp_pieces = [len(prepare_query(splade, t).pieces) for t in texts]
    dropped = sum(1 for t in texts if prepare_query(splade, t).dropped_chars > 0)
    return {
        "instances": len(texts),
        "chars": {"median": statistics.median(lengths), "p90": _q(lengths, 0.9), "max": max(lengths),
                  f"over_{OLD_LIMIT_CHARS}": sum(n > OLD_LIMIT_CHARS for n in lengths)},
        "splade_word_pieces": {"median": statistics.median(pieces_all), "p90": _q(pieces_all, 0.9),
                               "max": max(pieces_all), "query_window": window,
                               "over_window": sum(n > window for n in pieces_all)},
        "share_read_by_the_window": {"median": round(statistics.median(read_share), 3),
                                     "p10": round(_q(read_share, 0.1), 3)},
        "with_traceback": sum(bool(TRACEBACK.search(t)) for t in texts),
        "with_code": sum(bool(CODE.search(t)) for t in texts),
        "lexical_distinct_terms": {"median": statistics.median(lex_terms), "p90": _q(lex_terms, 0.9),
                                   "max": max(lex_terms), f"over_{MAX_QUERY_TERMS}": sum(n > MAX_QUERY_TERMS for n in lex_terms)},
        "pieces_lexical": {"median": statistics.median(lex_pieces), "max": max(lex_pieces),
                           "more_than_one": sum(n > 1 for n in lex_pieces)},
        "pieces_splade": {"median": statistics.median(sp_pieces), "max": max(sp_pieces),
                          "more_than_one": sum(n > 1 for n in sp_pieces), "text_dropped_past_max_pieces": dropped},
    }


def main() -> int:
    out = stats()
    path = RESULTS_DIR / "swe_lite" / "query_lengths.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n")
    json.dump(out, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
