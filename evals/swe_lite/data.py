"""SWE-bench Lite instances from ``shared/data/swe-bench/lite.jsonl`` (see shared/data/README.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from evals.paths import shared_file

# --quick: the instances of one small repository (CI-sized: 3 instances on 2 small trees).
QUICK_REPO = "pallets/flask"
QUICK_INSTANCES = 3


@dataclass(frozen=True)
class Instance:
    instance_id: str
    repo: str
    base_commit: str
    release: str
    problem_statement: str
    gold_files: tuple[str, ...]
    gold_spans: dict[str, tuple[str, ...]]

    @property
    def title(self) -> str:
        """The issue's first non-blank line (SWE-bench puts the issue title there)."""
        return next((line.strip() for line in self.problem_statement.splitlines() if line.strip()), "")


def load_instances(path: Path | None = None, *, quick: bool = False) -> list[Instance]:
    path = path or shared_file("swe-bench", "lite.jsonl")
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            row = json.loads(line)
            out.append(Instance(row["instance_id"], row["repo"], row["base_commit"], row["release"],
                                row["problem_statement"], tuple(row["gold_files"]),
                                {k: tuple(v) for k, v in row.get("gold_spans", {}).items()}))
    if quick:
        out = [i for i in out if i.repo == QUICK_REPO][:QUICK_INSTANCES]
    return out
