"""``mined-docstrings``: CodeSearchNet-style pairs mined at run time from installed packages.

Query = the first paragraph of a function's docstring; document = that function with its
docstring removed. Functions without a docstring stay in the corpus as distractors; queries
shared by several functions are dropped (:mod:`evals.mining` does the mining). The packages and
their pinned versions are :data:`evals.mining.EVAL_PACKAGES` (the ``eval`` extra installs them);
the task records the versions found and a hash of the unit list, so two runs on different
versions can't be confused.
"""

from __future__ import annotations

import sys

from evals.tasks import Doc, Task

QUICK_PACKAGES = ("markdown_it",)


def mined_docstrings(quick: bool = False, packages: dict[str, str] | None = None) -> Task:
    from evals.mining import EVAL_PACKAGES, mine, package_version, unit_list_hash

    pins = dict(packages if packages is not None else EVAL_PACKAGES)
    if quick and packages is None:
        pins = {name: pins[name] for name in QUICK_PACKAGES if name in pins}
    versions = {name: package_version(name) for name in sorted(pins)}
    off = {n: (v, pins[n]) for n, v in versions.items() if v != pins[n]}
    if off:
        print(f"warning: mined-docstrings packages differ from their pins (installed, pinned): {off}; "
              "pip install 'codelsr[eval]' for comparable numbers", file=sys.stderr)
    mined = mine(sorted(pins))
    corpus, queries, qrels = {}, {}, {}
    for unit in mined.corpus:
        doc_id = f"{unit.path}::{unit.qualname}@{unit.line}"
        corpus[doc_id] = Doc("", unit.code)
        if unit.query:
            queries[f"q:{doc_id}"] = unit.query
            qrels[f"q:{doc_id}"] = {doc_id: 1}
    return Task("mined-docstrings", corpus, queries, qrels, kind="code",
                meta={"packages": versions, "pinned": pins, "unit_list_hash": unit_list_hash(mined.corpus),
                      "pairs": len(mined.pairs), "distractors": len(mined.distractors),
                      "dropped_ambiguous": mined.dropped_ambiguous, "dropped_short": mined.dropped_short})
