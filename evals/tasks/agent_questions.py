"""``agent-questions``: hand-written questions of the kind a coding agent asks about a code base
it does not know, with the defining function as the answer.

The questions live in ``evals/data/agent_questions.jsonl``, one JSON object a line::

    {"id": "rich-05", "split": "test", "package": "rich", "style": "question",
     "question": "which function renders a traceback frame with its source lines?",
     "gold": [{"path": "rich/traceback.py", "qualname": "Traceback._render_stack",
               "start_line": 767, "end_line": 895}]}

They were written by reading the code of the eval packages (:data:`evals.mining.EVAL_PACKAGES`,
which training never sees), not generated from docstrings; most do not name the function. A
question may have more than one gold when two functions genuinely both answer it; each is a
relevant document (relevance 1). Gold paths are relative to the folder holding the package, lines
are 1-based and inclusive, at the pinned version (a test checks that every gold still resolves).

``split`` is ``dev`` (about a third: for choosing models, checkpoints and settings) or ``test``
(the figures to report). Neither is ever used to train.

Two ways to score, because issue 18 measures what codelsr's chunking loses:

* **units**: the corpus is every function, method and class header of the packages that have
  questions (:mod:`evals.agent_units`), one document each, scored BEIR-style by every system.
  Variant ``text`` is the unit's code only; variant ``path`` puts the file path on the title line.
* **repo**: the ``repo:<encoder>`` system (:mod:`evals.systems.repo`) indexes copies of the
  package folders with codelsr's own chunker and ranks its hits; a hit answers a gold when its
  path is the gold's and its lines overlap the gold's (:func:`hits_to_gold_ranking`).

Task names: ``agent-questions`` (units, text only) and ``agent-questions-path`` (units, path +
text), both on the test split; append ``@dev`` or ``@all`` for another split
(``agent-questions-path@dev``). ``quick`` keeps the click questions and click's units.
"""

from __future__ import annotations

import json
import re
import sys
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from evals.paths import EVALS_DIR
from evals.tasks import Doc, Task, corpus_fingerprint

DATA_FILE = EVALS_DIR / "data" / "agent_questions.jsonl"
SPLITS = ("dev", "test")
STYLES = ("question", "keyword", "task", "bug")
VARIANTS = ("text", "path")
QUICK_PACKAGES = ("click",)
TASK_NAMES = {"agent-questions": "text", "agent-questions-path": "path"}


class QuestionFileError(ValueError):
    """The question file is malformed; the message names the line and the field."""


@dataclass(frozen=True, slots=True)
class Gold:
    path: str
    qualname: str
    start_line: int
    end_line: int

    @property
    def unit_id(self) -> str:
        return unit_doc_id(self.path, self.qualname, self.start_line, self.end_line)


@dataclass(frozen=True, slots=True)
class Question:
    id: str
    split: str
    package: str
    style: str
    question: str
    gold: tuple[Gold, ...]


def unit_doc_id(path: str, qualname: str, start_line: int, end_line: int) -> str:
    """A unit's document id; it carries the unit's lines, so hits can be checked against it."""
    return f"{path}::{qualname}@{start_line}-{end_line}"


_DOC_ID = re.compile(r"^(?P<path>.+)::(?P<qualname>[^@]+)@(?P<start>\d+)-(?P<end>\d+)$")


def parse_doc_id(doc_id: str) -> tuple[str, int, int]:
    """``(path, start_line, end_line)`` of a unit document id."""
    m = _DOC_ID.match(doc_id)
    if not m:
        raise ValueError(f"{doc_id!r} is not a unit id of the form path::qualname@start-end")
    return m["path"], int(m["start"]), int(m["end"])


def load_questions(path: Path = DATA_FILE) -> list[Question]:
    """Every question in the file, checked field by field."""
    out: list[Question] = []
    seen: set[str] = set()
    for no, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{no}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise QuestionFileError(f"{where}: not JSON ({e})") from None
        for key in ("id", "split", "package", "style", "question", "gold"):
            if key not in row:
                raise QuestionFileError(f"{where}: missing field {key!r}")
        if row["id"] in seen:
            raise QuestionFileError(f"{where}: duplicate id {row['id']!r}")
        seen.add(row["id"])
        if row["split"] not in SPLITS:
            raise QuestionFileError(f"{where}: split must be one of {SPLITS}, got {row['split']!r}")
        if row["style"] not in STYLES:
            raise QuestionFileError(f"{where}: style must be one of {STYLES}, got {row['style']!r}")
        if not str(row["question"]).strip():
            raise QuestionFileError(f"{where}: empty question")
        if not row["gold"]:
            raise QuestionFileError(f"{where}: no gold")
        golds = []
        for g in row["gold"]:
            try:
                gold = Gold(str(g["path"]), str(g["qualname"]), int(g["start_line"]), int(g["end_line"]))
            except (KeyError, TypeError, ValueError) as e:
                raise QuestionFileError(f"{where}: a gold needs path, qualname, start_line, end_line ({e})") from None
            if not gold.path.startswith(row["package"] + "/") or gold.start_line > gold.end_line:
                raise QuestionFileError(f"{where}: gold {g} is not inside package {row['package']!r} "
                                        "or its lines are reversed")
            golds.append(gold)
        out.append(Question(row["id"], row["split"], row["package"], row["style"], row["question"], tuple(golds)))
    return out


def select(questions: Iterable[Question], split: str = "test", packages: Sequence[str] | None = None) -> list[Question]:
    """The questions of ``split`` (``dev``, ``test`` or ``all``), of ``packages`` when given."""
    if split not in (*SPLITS, "all"):
        raise ValueError(f"split must be dev, test or all, got {split!r}")
    return [q for q in questions if (split == "all" or q.split == split)
            and (packages is None or q.package in packages)]


def units_corpus(packages: dict[str, Path], variant: str = "text") -> dict[str, Doc]:
    """Every function, method and class header of ``packages``, dedented; with the file path as
    the title line when ``variant`` is ``path``.

    The title is a Python comment (``# rich/console.py``): a document is written to a ``.py``
    file for codelsr's systems, and its chunker keeps a comment line with the function below it,
    so the path and the code are encoded as one chunk (a bare path line would be a chunk of its
    own). BM25, grep and the dense model see the same text."""
    from evals.agent_units import package_units

    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    corpus: dict[str, Doc] = {}
    for name, folder in packages.items():
        for unit in package_units(folder, name):
            doc_id = unit_doc_id(unit.path, unit.qualname, unit.start_line, unit.end_line)
            corpus[doc_id] = Doc(f"# {unit.path}" if variant == "path" else "", textwrap.dedent(unit.text))
    return corpus


def parse_task_name(name: str) -> tuple[str, str]:
    """``agent-questions-path@dev`` -> (``path``, ``dev``)."""
    base, _, split = name.partition("@")
    if base not in TASK_NAMES:
        raise ValueError(f"unknown task {name!r}: use {' or '.join(TASK_NAMES)}, optionally with @dev or @all")
    split = split or "test"
    if split not in (*SPLITS, "all"):
        raise ValueError(f"task {name!r}: the split after @ must be dev or all (test is the default)")
    return TASK_NAMES[base], split


def agent_questions(name: str = "agent-questions", quick: bool = False, questions_file: Path = DATA_FILE,
                    package_dirs: dict[str, Path] | None = None) -> Task:
    """The task ``name`` (see the module docstring): units corpus, one split's questions.

    ``package_dirs`` (tests) gives the source folder of packages that are not installed."""
    from evals.mining import EVAL_PACKAGES, package_dir, package_version

    variant, split = parse_task_name(name)
    all_questions = load_questions(questions_file)
    packages = sorted({q.package for q in all_questions})
    if quick:
        packages = [p for p in packages if p in QUICK_PACKAGES]
    chosen = select(all_questions, split, packages)
    pins = {p: EVAL_PACKAGES.get(p) for p in packages}
    versions = {p: package_version(p) if p in EVAL_PACKAGES else None for p in packages}
    off = {p: (v, pins[p]) for p, v in versions.items() if v != pins[p]}
    if off:
        print(f"warning: agent-questions packages differ from their pins (installed, pinned): {off}; gold "
              "line ranges are for the pins: pip install 'codelsr[eval]' for comparable numbers", file=sys.stderr)
    dirs = {p: Path(package_dirs[p]) if package_dirs and p in package_dirs else package_dir(p) for p in packages}
    corpus = units_corpus(dirs, variant)
    queries = {q.id: q.question for q in chosen}
    qrels = {q.id: {g.unit_id: 1 for g in q.gold} for q in chosen}
    # Both splits of one variant share the corpus, so the runner indexes it once.
    corpus_key = f"agent-questions-units-{variant}-{'+'.join(packages)}-{corpus_fingerprint(corpus)}"
    return Task(name, corpus, queries, qrels, kind="code", corpus_key=corpus_key,
                meta={"variant": variant, "split": split, "packages": versions, "pinned": pins,
                      "source_dirs": {p: str(d) for p, d in dirs.items()},
                      "questions_file": str(questions_file), "questions_total": len(all_questions)})


# ----------------------------------------------------------------------------- repo mode


@dataclass(frozen=True, slots=True)
class HitSpan:
    """One hit of codelsr's search, as repo mode sees it."""

    path: str
    start_line: int
    end_line: int


def hits_to_gold_ranking(hits: Sequence[HitSpan], relevant: Iterable[str], k: int = 100) -> list[tuple[str, float]]:
    """Hits in rank order -> a ranking of document ids with rank-derived scores.

    A hit answers a gold (a unit id in ``relevant``) when its path equals the gold's and its lines
    overlap the gold's. The first hit that answers a gold takes the gold's id at its rank; each hit
    answers at most one gold (the first in ``relevant`` order it overlaps that is still open), and
    every other hit, a later one on the same gold included, is a non-relevant document of its
    own: it takes a place in the list, as it does in what an agent reads.
    """
    golds = [(doc_id, *parse_doc_id(doc_id)) for doc_id in relevant]
    open_golds = list(golds)
    ranked: list[str] = []
    for rank, hit in enumerate(hits[:k]):
        match = next((g for g in open_golds if g[1] == hit.path and hit.start_line <= g[3] and hit.end_line >= g[2]),
                     None)
        if match is not None:
            open_golds.remove(match)
            ranked.append(match[0])
        else:
            ranked.append(f"hit#{rank}:{hit.path}:{hit.start_line}-{hit.end_line}")
    return [(doc, float(len(ranked) - i)) for i, doc in enumerate(ranked)]
