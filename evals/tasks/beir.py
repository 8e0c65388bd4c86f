"""Any BEIR task: a local folder, or a CodeRAG-Bench dataset on the HuggingFace hub.

A BEIR folder holds ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl``
(``_id``, ``text``) and ``qrels/<split>.tsv`` (``query-id``, ``corpus-id``, ``score``, with a
header line). The hub loader reads ``code-rag-bench/<name>`` through ``datasets`` (imported only
here; needs network, so it is exercised in tests with a local stand-in for ``load_dataset``).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from evals.tasks import Doc, Task


def load_beir_folder(folder: str | Path, split: str = "test", name: str | None = None, kind: str = "code") -> Task:
    folder = Path(folder).expanduser()
    qrels_file = folder / "qrels" / f"{split}.tsv"
    for needed in (folder / "corpus.jsonl", folder / "queries.jsonl", qrels_file):
        if not needed.is_file():
            raise FileNotFoundError(f"{needed} is missing: a BEIR folder has corpus.jsonl, queries.jsonl "
                                    f"and qrels/{split}.tsv")
    corpus = {str(r["_id"]): Doc(r.get("title") or "", r.get("text") or "") for r in _jsonl(folder / "corpus.jsonl")}
    queries = {str(r["_id"]): r["text"] for r in _jsonl(folder / "queries.jsonl")}
    qrels: dict[str, dict[str, int]] = {}
    with qrels_file.open(encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            qrels.setdefault(str(row["query-id"]), {})[str(row["corpus-id"])] = int(row["score"])
    return Task(name or f"beir-{folder.name}", corpus, queries, qrels, kind=kind,
                meta={"source": str(folder), "split": split})


def _jsonl(path: Path) -> Iterable[dict]:
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


# CodeRAG-Bench's hub datasets that hold problems with gold docs: (dataset, query field, doc-list field).
HUB_TASKS: dict[str, tuple[str, str]] = {
    "humaneval": ("prompt", "docs"),
    "mbpp": ("text", "docs"),
    "ds1000": ("prompt", "docs"),
    "odex": ("intent", "docs"),
}


def load_hub_task(name: str, *, split: str = "train", load_dataset: Callable[..., Any] | None = None,
                  corpus: str | None = None) -> Task:
    """A CRB task from the hub: ``code-rag-bench/<name>`` problems, their gold docs as qrels.

    The corpus is the union of gold docs (id = title, as CRB's qrels use), plus, when ``corpus``
    names a hub corpus dataset (e.g. ``code-rag-bench/library-documentation``), every row of it
    (fields ``doc_id``/``title`` and ``doc_content``/``text``).
    """
    if load_dataset is None:
        try:
            from datasets import load_dataset
        except ImportError as e:
            raise ImportError("hub tasks need the datasets package and network: pip install datasets") from e
    short = name.removeprefix("code-rag-bench/")
    if short not in HUB_TASKS:
        raise ValueError(f"unknown hub task {name!r}: use one of {', '.join(sorted(HUB_TASKS))}")
    query_field, docs_field = HUB_TASKS[short]
    rows = load_dataset(f"code-rag-bench/{short}", split=split)
    docs: dict[str, Doc] = {}
    if corpus is not None:
        for r in load_dataset(corpus, split=split):
            doc_id = str(r.get("doc_id") or r.get("title") or r.get("_id"))
            docs[doc_id] = Doc(str(r.get("title") or ""), str(r.get("doc_content") or r.get("text") or ""))
    queries, qrels = {}, {}
    for i, r in enumerate(rows):
        gold = r.get(docs_field) or []
        if not gold:
            continue
        qid = f"{short}_{r.get('task_id', i)}_{i}"
        queries[qid] = r[query_field]
        qrels[qid] = {}
        for d in gold:
            docs.setdefault(d["title"], Doc(d["title"], d.get("text") or ""))
            qrels[qid][d["title"]] = 1
    return Task(f"hub-{short}", docs, queries, qrels, kind="text" if short in ("ds1000", "odex") else "code",
                meta={"source": f"code-rag-bench/{short}", "split": split, "corpus": corpus or "gold docs only"})
