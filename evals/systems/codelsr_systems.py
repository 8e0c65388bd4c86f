"""codelsr as the product runs it: the corpus written as files into a folder, indexed, searched.

* :class:`LibrarySystem` (``codelsr:<encoder>``) calls ``build_index`` and ``search_index``.
  It raises ``max_file_bytes`` so every document is indexed (a few DevDocs pages pass 1 MB): it
  measures ranking, not the file filters.
* :class:`AgentSystem` (``agent:<encoder>``) goes through the MCP server with the product's
  defaults: ``index_repo``, then one ``search_code(query, repo, k=100)`` call per query in an
  in-process ``mcp.Client`` session; the score is computed on the hits the agent receives.

Each document is one file, ``docs/<nnn>/<nnnnn>.py`` (code) or ``.txt`` (text), numbered in doc-id
order: the name says nothing about the document. Its contents are the title line (when there is
one) and the text. Hits map back by path; the chunks of one file count once, at the rank of its
best chunk (an agent reads files). Results keep the product's own order (its tie-break included):
documents get rank-derived scores. Queries longer than codelsr's limit (4000 characters) are cut
to it, as an agent that got the error would.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

from evals.metrics import Ranking
from evals.mcp_calls import call_tool
from evals.paths import cache_dir
from evals.tasks import Task, corpus_fingerprint

LIBRARY_MAX_FILE_BYTES = 16_000_000
MAX_PAGES = 5  # library mode pages through at most 5 x 100 hits to fill 100 documents


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:60] or "default"


def corpus_files(task: Task) -> dict[str, str]:
    """relative path -> doc id, for the files that represent the task's corpus."""
    ext = "py" if task.kind == "code" else "txt"
    return {f"docs/{i // 1000:03d}/{i:05d}.{ext}": doc_id for i, doc_id in enumerate(sorted(task.corpus))}


def write_corpus(task: Task, folder: Path) -> dict[str, str]:
    """Write the corpus into ``folder`` (a plain folder, rewritten when the corpus changed)."""
    files = corpus_files(task)
    stamp = folder.parent / f"{folder.name}.corpus.json"
    fingerprint = corpus_fingerprint(task.corpus)
    if stamp.exists() and json.loads(stamp.read_text()).get("fingerprint") == fingerprint and folder.is_dir():
        return files
    stamp.unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)
    for rel, doc_id in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(task.corpus[doc_id].contents, encoding="utf-8", errors="surrogatepass")
    stamp.write_text(json.dumps({"fingerprint": fingerprint, "task": task.name, "docs": len(files)}))
    return files


def corpus_folder(task: Task, mode: str) -> Path:
    """``evals/.cache/corpora/<corpus>/<mode>-<hash>``: one folder (so one index) per system."""
    digest = hashlib.sha1(mode.encode("utf-8")).hexdigest()[:8]
    return cache_dir("corpora", _slug(task.corpus_key or task.name)) / f"{_slug(mode)[:40]}-{digest}"


def hits_to_ranking(paths: list[str], path_to_doc: dict[str, str], k: int) -> Ranking:
    """Hit paths in rank order -> documents at their best rank, with rank-derived scores."""
    ranked: list[str] = []
    seen: set[str] = set()
    for path in paths:
        doc = path_to_doc.get(path)
        if doc is not None and doc not in seen:
            seen.add(doc)
            ranked.append(doc)
    ranked = ranked[:k]
    return [(doc, float(len(ranked) - i)) for i, doc in enumerate(ranked)]


def clip_query(query: str) -> str:
    """The query as codelsr accepts it: stripped and cut to its length limit, as an agent that got
    the error would cut it."""
    from codelsr.search import MAX_QUERY_CHARS

    return query.strip()[:MAX_QUERY_CHARS]


class LibrarySystem:
    """``context``: the chunks' context header scheme (``codelsr.chunking.context``); ``None``
    keeps the product's default (``codelsr@none:lexical`` is codelsr before issue 18)."""

    def __init__(self, encoder: str = "lexical", context: str | None = None):
        self.encoder = encoder
        self.context = context
        self.name = f"codelsr:{encoder}" if context is None else f"codelsr@{context}:{encoder}"

    def index(self, task: Task) -> dict[str, Any]:
        from codelsr.chunking import ChunkingOptions
        from codelsr.index import build_index, open_index

        folder = corpus_folder(task, f"lib-{self.encoder}" + (f"@{self.context}" if self.context else ""))
        self.path_to_doc = write_corpus(task, folder)
        options = ChunkingOptions(max_file_bytes=LIBRARY_MAX_FILE_BYTES)
        if self.context:
            options = ChunkingOptions(max_file_bytes=LIBRARY_MAX_FILE_BYTES, context=self.context)
        report = build_index(folder, self.encoder, options=options)
        self.reader = open_index(folder)
        return {"encoder_id": report.encoder_id, "context": options.context, "backend": report.backend, "files": report.files,
                "chunks": report.chunks, "skipped": report.skipped, "encoded_chunks": report.encoded_chunks,
                "index_seconds": round(report.seconds, 2)}

    def search(self, queries: dict[str, str], k: int = 100) -> dict[str, Ranking]:
        from codelsr.errors import InvalidQueryError
        from codelsr.search import MAX_K, search_index

        out = {}
        for qid, query in queries.items():
            paths: list[str] = []
            offset: int | None = 0
            try:
                for _ in range(MAX_PAGES):
                    result = search_index(self.reader, clip_query(query), k=MAX_K, offset=offset, max_chars=0)
                    paths += [h.path for h in result.hits]
                    offset = result.next_offset
                    if offset is None or len(set(paths)) >= k:
                        break
            except InvalidQueryError:
                pass  # nothing to search for (an empty query): no results
            out[qid] = hits_to_ranking(paths, self.path_to_doc, k)
        return out


class AgentSystem:
    def __init__(self, encoder: str = "lexical"):
        self.encoder = encoder
        self.name = f"agent:{encoder}"

    def index(self, task: Task) -> dict[str, Any]:
        import anyio

        from codelsr.server import create_server

        self.folder = corpus_folder(task, f"agent-{self.encoder}")
        self.path_to_doc = write_corpus(task, self.folder)
        # Served as `codelsr serve --encoder <spec>` would be: a model folder outside the roots is allowed.
        self.server = create_server([self.folder], default_encoder=self.encoder)
        report = anyio.run(self._index)
        return {k: report[k] for k in ("encoder_id", "backend", "files", "chunks", "skipped", "encoded_chunks")
                if k in report} | {"index_seconds": round(report.get("seconds", 0.0), 2)}

    def _client(self):
        import mcp

        return mcp.Client(self.server, mode="legacy")

    async def _index(self) -> dict:
        async with self._client() as client:
            return await call_tool(client, "index_repo", path=str(self.folder), encoder=self.encoder)

    def search(self, queries: dict[str, str], k: int = 100) -> dict[str, Ranking]:
        import anyio

        return anyio.run(self._search, queries, k)

    async def _search(self, queries: dict[str, str], k: int) -> dict[str, Ranking]:
        from codelsr.search import MAX_K

        out = {}
        async with self._client() as client:
            for qid, query in queries.items():
                query = clip_query(query)
                if not query:
                    out[qid] = []
                    continue
                content = await call_tool(client, "search_code", query=query, repo=str(self.folder),
                                           k=min(k, MAX_K))
                out[qid] = hits_to_ranking([h["path"] for h in content["hits"]], self.path_to_doc, k)
        return out
