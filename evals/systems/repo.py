"""``repo:<encoder>``: codelsr on the real source folders of a task's packages (repo mode).

Where ``codelsr:<encoder>`` indexes one file per corpus document, this system indexes copies of
the package folders themselves (``<cache>/agent-questions-repo/<encoder>/rich/console.py``, ...)
with the product's chunker and defaults, searches with ``search_index`` and pages to 100 hits. A
hit answers a gold unit when its path is the gold's and its lines overlap the gold's; every other
hit keeps its place as a non-relevant result (:func:`evals.tasks.agent_questions.hits_to_gold_ranking`).
So the figures include what codelsr's chunks and hit list cost next to the same encoder on
whole units (issue 18).

Only tasks that name their packages' source folders (``meta["source_dirs"]``: the agent-questions
tasks) can be scored this way; the unit variant of the task does not matter here. The runner
reuses one index for the tasks that share a corpus (``agent-questions`` and ``agent-questions@dev``)
and calls ``search`` with query ids only, so the system knows the gold of every question in the
task's question file (``meta["questions_file"]``), not only of the split it was indexed for.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from evals.metrics import Ranking
from evals.paths import cache_dir
from evals.tasks import Task

MAX_PAGES = 5


def _tree_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(folder.rglob("*.py")):
        h.update(f.relative_to(folder).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def copy_sources(source_dirs: dict[str, str], folder: Path) -> dict[str, Any]:
    """Copy each package folder to ``folder/<name>`` (``.py`` files; caches left out); a stamp
    keeps an unchanged copy, so codelsr's index of it stays valid."""
    stamp = folder.parent / f"{folder.name}.sources.json"
    want = {name: _tree_digest(Path(src)) for name, src in sorted(source_dirs.items())}
    if stamp.exists() and json.loads(stamp.read_text()).get("digests") == want and folder.is_dir():
        return want
    stamp.unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name, src in sorted(source_dirs.items()):
        shutil.copytree(src, folder / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.so"))
    stamp.write_text(json.dumps({"digests": want}))
    return want


class RepoSystem:
    """``context``: the chunks' context header scheme (``codelsr.chunking.context``); ``None``
    keeps the product's default, so ``repo:<encoder>`` always measures what users get."""

    def __init__(self, encoder: str = "lexical", context: str | None = None):
        self.encoder = encoder
        self.context = context
        self.name = f"repo:{encoder}" if context is None else f"repo@{context}:{encoder}"

    def index(self, task: Task) -> dict[str, Any]:
        from codelsr.index import build_index, open_index

        source_dirs = task.meta.get("source_dirs")
        if not source_dirs:
            raise ValueError(f"{self.name} scores tasks that name their packages' source folders "
                             f"(the agent-questions tasks); {task.name} does not")
        self.gold = {qid: list(rel) for qid, rel in task.qrels.items()}
        if task.meta.get("questions_file"):
            from evals.tasks.agent_questions import load_questions

            self.gold |= {q.id: [g.unit_id for g in q.gold] for q in load_questions(Path(task.meta["questions_file"]))}
        from codelsr.chunking import ChunkingOptions

        key = f"{self.encoder}|{sorted(source_dirs)}" + (f"|{self.context}" if self.context else "")
        slug = hashlib.sha1(key.encode()).hexdigest()[:8]
        self.folder = cache_dir("agent-questions-repo") / f"{'+'.join(sorted(source_dirs))}-{slug}"
        copy_sources(source_dirs, self.folder)
        # The product's chunking options and file filters (a context scheme, when one is named).
        options = ChunkingOptions(context=self.context) if self.context else ChunkingOptions()
        report = build_index(self.folder, self.encoder, options=options)
        self.reader = open_index(self.folder)
        return {"encoder_id": report.encoder_id, "context": options.context, "backend": report.backend, "files": report.files,
                "chunks": report.chunks, "skipped": report.skipped, "encoded_chunks": report.encoded_chunks,
                "index_seconds": round(report.seconds, 2), "folder": str(self.folder)}

    def search(self, queries: dict[str, str], k: int = 100) -> dict[str, Ranking]:
        from codelsr.errors import InvalidQueryError
        from codelsr.search import MAX_K, MAX_QUERY_CHARS, search_index

        from evals.tasks.agent_questions import HitSpan, hits_to_gold_ranking

        out = {}
        for qid, query in queries.items():
            hits: list[HitSpan] = []
            offset: int | None = 0
            try:
                for _ in range(MAX_PAGES):
                    result = search_index(self.reader, query.strip()[:MAX_QUERY_CHARS], k=min(k, MAX_K),
                                          offset=offset, max_chars=0)
                    hits += [HitSpan(h.path, h.start_line, h.end_line) for h in result.hits]
                    offset = result.next_offset
                    if offset is None or len(hits) >= k:
                        break
            except InvalidQueryError:
                pass
            out[qid] = hits_to_gold_ranking(hits, self.gold.get(qid, []), k)
        return out
