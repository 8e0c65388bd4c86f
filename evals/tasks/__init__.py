"""Retrieval tasks in BEIR form: a corpus, queries, and graded relevance (qrels).

Each builder takes ``quick`` (a small, deterministic subset for CI) and returns a :class:`Task`.
:data:`TASKS` maps task names to builders; ``beir:<folder>`` and ``hub:<name>`` load any other
BEIR task (see :mod:`evals.tasks.beir`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Doc:
    """One corpus document. Systems index ``contents``: the title line (when there is one) and the text."""

    title: str
    text: str

    @property
    def contents(self) -> str:
        return f"{self.title}\n{self.text}" if self.title else self.text


@dataclass
class Task:
    """A BEIR-style task. Only queries with at least one relevant document are kept.

    ``kind`` is ``"code"`` or ``"text"``: whether a document is written to disk as ``.py`` or
    ``.txt`` when a system indexes files. ``corpus_key`` names the corpus: tasks that share a
    corpus share it too (the runner indexes it once). ``meta`` records how the task was built.
    """

    name: str
    corpus: dict[str, Doc]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    kind: str = "code"
    corpus_key: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in ("code", "text"):
            raise ValueError(f"kind must be 'code' or 'text', got {self.kind!r}")
        self.qrels = {q: {d: int(r) for d, r in rel.items()} for q, rel in self.qrels.items()
                      if q in self.queries and any(r > 0 for r in rel.values())}
        self.queries = {q: text for q, text in self.queries.items() if q in self.qrels}
        missing = sorted({d for rel in self.qrels.values() for d in rel if d not in self.corpus})
        if missing:
            raise ValueError(f"task {self.name}: qrels name {len(missing)} documents not in the corpus, "
                             f"e.g. {missing[:3]}")
        if self.corpus_key is None:
            self.corpus_key = f"{self.name}-{corpus_fingerprint(self.corpus)}"

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "docs": len(self.corpus), "queries": len(self.queries),
                "qrels": sum(len(r) for r in self.qrels.values()), "corpus_key": self.corpus_key, **self.meta}


def corpus_fingerprint(corpus: dict[str, Doc]) -> str:
    """A short hash of the corpus content (ids, titles, texts, in id order)."""
    h = hashlib.sha256()
    for doc_id in sorted(corpus):
        doc = corpus[doc_id]
        h.update(json.dumps([doc_id, doc.title, doc.text]).encode("utf-8", "surrogatepass"))
    return h.hexdigest()[:12]


def _crb(name: str) -> Callable[[bool], Task]:
    def build(quick: bool = False) -> Task:
        from evals.tasks import crb

        return crb.BUILDERS[name](quick=quick)

    return build


def _mined(quick: bool = False) -> Task:
    from evals.tasks.mined import mined_docstrings

    return mined_docstrings(quick=quick)


def _agent_questions(name: str) -> Callable[[bool], Task]:
    def build(quick: bool = False) -> Task:
        from evals.tasks.agent_questions import agent_questions

        return agent_questions(name, quick=quick)

    return build


TASKS: dict[str, Callable[[bool], Task]] = {
    "crb-humaneval": _crb("crb-humaneval"),
    "crb-mbpp-500": _crb("crb-mbpp-500"),
    "crb-ds1000-devdocs": _crb("crb-ds1000-devdocs"),
    "crb-odex-devdocs": _crb("crb-odex-devdocs"),
    "mined-docstrings": _mined,
    "agent-questions": _agent_questions("agent-questions"),
    "agent-questions-path": _agent_questions("agent-questions-path"),
}


def build_task(name: str, quick: bool = False) -> Task:
    """The task ``name``: a registered name, ``beir:<folder>``, ``hub:<dataset>``, or an
    agent-questions task with another split (``agent-questions@dev``, ``agent-questions-path@all``)."""
    if name.startswith("beir:"):
        from evals.tasks.beir import load_beir_folder

        return load_beir_folder(name.removeprefix("beir:"))
    if name.startswith("hub:"):
        from evals.tasks.beir import load_hub_task

        return load_hub_task(name.removeprefix("hub:"))
    if "@" in name and name.partition("@")[0] in TASKS:
        return _agent_questions(name)(quick)
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}: use one of {', '.join(sorted(TASKS))}, "
                         "'beir:<folder>' or 'hub:<dataset>'")
    return TASKS[name](quick)
