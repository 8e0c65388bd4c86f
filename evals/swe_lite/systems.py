"""Systems for ``swe-lite-files``: each indexes one source tree and answers the issues on it.

* ``bm25s``: BM25 over whole files (path line + contents, as SWE-bench's own BM25 retrieval
  indexes them), ``bm25s`` Lucene k1=1.2 b=0.75, with a code-aware tokenizer (codelsr's
  :func:`~codelsr.encoders.identifiers.code_terms`: identifiers whole and split, lower-cased).
* ``grep``: ``grep -wi`` per issue word over whole files; a file scores the number of distinct
  issue words it holds (as :class:`evals.systems.baselines.GrepSystem`).
* ``dense``: all-MiniLM-L6-v2 over whole files (path line + the first 256 word pieces), cosine.
* ``codelsr:<encoder>``: the library on the tree as a user has it: ``build_index`` of the folder
  (product defaults), ``search_index`` with the whole issue text (long-query handling on).
* ``codelsr-raw:<encoder>``: the same index, the issue cut at 4,000 characters and encoded
  as it is (``prepare_query=False``): how codelsr answered before ``codelsr.queries``.
* ``agent:<encoder>``: the MCP server through a real ``mcp.Client`` session: ``index_repo``, then
  one ``search_code(issue, k=100)`` per instance.
* ``policy:<encoder>``: a multi-step agent policy with no language model, over the same MCP
  session: ``search_code(title)``, then ``search_code(identifiers from the body)``, the two hit
  lists merged by reciprocal-rank fusion. It also reports each call alone (``policy-title:``,
  ``policy-ids:``), so the table shows what the second call buys.

codelsr's systems keep one work folder per (encoder, repository) and copy each tree into it in
release order, so moving to the next release is an incremental reindex of the files that changed.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from evals.mcp_calls import call_tool
from evals.paths import cache_dir
from evals.swe_lite.data import Instance
from evals.swe_lite.scoring import Region
from evals.swe_lite.trees import Tree

DEPTH = 100  # hits asked per query; 10 files are scored
OLD_QUERY_LIMIT = 4000  # what search_code accepted before codelsr.queries
RRF_K = 60  # reciprocal-rank fusion constant (Cormack et al., 2009)
MAX_IDENTIFIERS = 32

Results = dict[str, dict[str, list[Region]]]  # reported system name -> instance id -> hits in order


class TreeSystem(Protocol):
    name: str

    def index(self, tree: Tree, files: dict[str, str]) -> dict[str, Any]: ...

    def search(self, instances: list[Instance]) -> Results: ...


def document(path: str, text: str) -> str:
    """A file as the whole-file baselines index it: its path line, then its contents."""
    return f"{path}\n{text}"


def _top(paths: list[str], scores: np.ndarray, k: int) -> list[Region]:
    positive = np.flatnonzero(scores > 0)
    order = sorted(positive, key=lambda i: (-scores[i], paths[i]))[:k]
    return [Region(paths[i]) for i in order]


class BM25Files:
    name = "bm25s"

    def __init__(self):
        self._tokens: dict[str, list[str]] = {}  # content hash -> tokens, shared by nearby trees
        self._repo = None

    def index(self, tree: Tree, files: dict[str, str]) -> dict[str, Any]:
        import bm25s

        from codelsr.encoders.identifiers import code_terms

        if tree.repo != self._repo:
            self._tokens, self._repo = {}, tree.repo
        self.paths = sorted(files)
        corpus, fresh = [], 0
        live: dict[str, list[str]] = {}
        for p in self.paths:
            doc = document(p, files[p])
            h = hashlib.blake2b(doc.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
            toks = self._tokens.get(h)
            if toks is None:
                toks, fresh = code_terms(doc), fresh + 1
            live[h] = toks
            corpus.append(toks)
        self._tokens = live  # keep only this tree's: the next release shares most of it
        self.retriever = bm25s.BM25(method="lucene", k1=1.2, b=0.75)
        self.retriever.index(corpus, show_progress=False)
        return {"files": len(self.paths), "tokenized": fresh}

    def search(self, instances: list[Instance]) -> Results:
        from codelsr.encoders.identifiers import code_terms

        out = {}
        for inst in instances:
            q = [t for t in code_terms(inst.problem_statement) if t in self.retriever.vocab_dict]
            scores = np.asarray(self.retriever.get_scores(q)) if q else np.zeros(len(self.paths))
            out[inst.instance_id] = _top(self.paths, scores, DEPTH)
        return {self.name: out}


class GrepFiles:
    name = "grep"

    def index(self, tree: Tree, files: dict[str, str]) -> dict[str, Any]:
        from evals.systems.baselines import WORD

        self.paths = sorted(files)
        self.postings: dict[str, list[int]] = {}
        for i, p in enumerate(self.paths):
            for w in {m.lower() for m in WORD.findall(document(p, files[p]))}:
                self.postings.setdefault(w, []).append(i)
        return {"files": len(self.paths)}

    def search(self, instances: list[Instance]) -> Results:
        from evals.systems.baselines import grep_words

        out = {}
        for inst in instances:
            scores = np.zeros(len(self.paths), dtype=np.float32)
            for w in grep_words(inst.problem_statement):
                scores[self.postings.get(w, [])] += 1.0
            out[inst.instance_id] = _top(self.paths, scores, DEPTH)
        return {self.name: out}


class DenseFiles:
    name = "dense"

    def __init__(self):
        self._cache: dict[str, np.ndarray] = {}  # content hash -> embedding, across trees

    def _encode(self, texts: list[str]) -> np.ndarray:
        from evals.systems.dense import BATCH, MAX_CHARS, load_model

        return np.asarray(load_model().encode([t[:MAX_CHARS] for t in texts], batch_size=BATCH,
                                              normalize_embeddings=True, convert_to_numpy=True), dtype=np.float32)

    def index(self, tree: Tree, files: dict[str, str]) -> dict[str, Any]:
        self.paths = sorted(files)
        docs = [document(p, files[p]) for p in self.paths]
        hashes = [hashlib.blake2b(d.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest() for d in docs]
        todo = [i for i, h in enumerate(hashes) if h not in self._cache]
        if todo:
            for i, e in zip(todo, self._encode([docs[i] for i in todo])):
                self._cache[hashes[i]] = e
        self.embeddings = np.stack([self._cache[h] for h in hashes]) if hashes else np.zeros((0, 384), np.float32)
        return {"files": len(self.paths), "encoded": len(todo)}

    def search(self, instances: list[Instance]) -> Results:
        q = self._encode([i.problem_statement for i in instances])
        scores = q @ self.embeddings.T
        return {self.name: {inst.instance_id: _top(self.paths, scores[r] + 2.0, DEPTH)  # cosine > -1: all positive
                            for r, inst in enumerate(instances)}}


def sync_folder(files: dict[str, bytes | str], folder: Path) -> dict[str, int]:
    """Make ``folder`` hold exactly ``files`` (relative path -> content); files whose bytes are
    unchanged are left alone, so an incremental reindex sees only real changes."""
    folder.mkdir(parents=True, exist_ok=True)
    want = {p: (c.encode("utf-8", "surrogatepass") if isinstance(c, str) else c) for p, c in files.items()}
    removed = written = 0
    for path in sorted(folder.rglob("*"), reverse=True):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and rel not in want:
            path.unlink()
            removed += 1
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    for rel, data in want.items():
        target = folder / rel
        if target.is_file() and target.stat().st_size == len(data) and target.read_bytes() == data:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        written += 1
    return {"written": written, "removed": removed}


def work_folder(encoder: str, repo: str, work: str = "work") -> Path:
    """Where a codelsr system keeps ``repo``'s tree for ``encoder`` (``work``: a name per run, so
    two runs at once never share a folder)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", encoder)[:40] + "-" + hashlib.sha1(encoder.encode()).hexdigest()[:6]
    return cache_dir("swe-lite", work, slug) / repo.replace("/", "__")


def hits_to_regions(hits: Iterable[Any]) -> list[Region]:
    out = []
    for h in hits:
        get = h.get if isinstance(h, dict) else lambda k, h=h: getattr(h, k)
        out.append(Region(get("path"), get("start_line"), get("end_line")))
    return out


class CodelsrLibrary:
    """``codelsr:<encoder>`` (``raw=False``) or ``codelsr-raw:<encoder>`` (``raw=True``)."""

    def __init__(self, encoder: str, raw: bool = False, work: str = "work"):
        self.encoder, self.raw, self.work = encoder, raw, work
        self.name = f"codelsr{'-raw' if raw else ''}:{encoder}"

    def index(self, tree: Tree, files: dict[str, str]) -> dict[str, Any]:
        from codelsr.index import build_index, open_index

        self.folder = work_folder(self.encoder, tree.repo, self.work)
        synced = sync_folder({p: (tree.root / p).read_bytes() for p in files}, self.folder)
        report = build_index(self.folder, self.encoder)
        self.reader = open_index(self.folder)
        return {"files": report.files, "chunks": report.chunks, "encoded_chunks": report.encoded_chunks,
                "skipped": len(report.skipped), "seconds": round(report.seconds, 2)} | synced

    def search(self, instances: list[Instance]) -> Results:
        from codelsr.search import MAX_K, search_index

        out = {}
        for inst in instances:
            query = inst.problem_statement[:OLD_QUERY_LIMIT] if self.raw else inst.problem_statement
            result = search_index(self.reader, query, k=min(DEPTH, MAX_K), max_chars=1, prepare_query=not self.raw)
            out[inst.instance_id] = hits_to_regions(result.hits)
        return {self.name: out}


URL = re.compile(r"\b(?:https?|ftp)://\S+|\bwww\.\S+")
IDENTIFIER = re.compile(
    r"`([^`\n]{2,80})`"  # anything in backticks
    r"|((?:[\w.-]+/)+[\w.-]+\.py)\b"  # file paths (tracebacks name the files they pass through)
    r"|\b([A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)+)\b"  # dotted names: models.QuerySet.filter, file.py
    r"|\b([a-z0-9]+_[\w]+|_[\w]+)\b"  # snake_case with an underscore
    r"|\b([A-Z][a-z0-9]+[A-Z]\w*|[A-Z]{2,}[a-z]\w*)\b"  # CamelCase, HTTPAdapter
    r"|\b([A-Za-z_]\w*)\("  # called names: foo(
)


def identifiers(text: str, limit: int = MAX_IDENTIFIERS) -> list[str]:
    """Code-looking names in an issue body, in order of first appearance: backticked text,
    dotted names and paths, snake_case, CamelCase, called names. The title line is left out (the
    first call searched it). No language model: regular expressions only."""
    body = text.strip().split("\n", 1)[1] if "\n" in text.strip() else ""
    body = URL.sub(" ", body)
    seen: dict[str, None] = {}
    for m in IDENTIFIER.finditer(body):
        name = next(g for g in m.groups() if g)
        name = name.strip().strip(".")
        if len(name) >= 3:
            seen.setdefault(name, None)
        if len(seen) >= limit:
            break
    return list(seen)


def fuse(*rankings: list[Region], k: int = RRF_K) -> list[Region]:
    """Reciprocal-rank fusion of hit lists (a hit is its file and lines); ties: first list first."""
    score: dict[Region, float] = {}
    first: dict[Region, tuple[int, int]] = {}
    for li, ranking in enumerate(rankings):
        for rank, region in enumerate(ranking, 1):
            score[region] = score.get(region, 0.0) + 1.0 / (k + rank)
            first.setdefault(region, (rank, li))
    return sorted(score, key=lambda r: (-score[r], first[r]))


class CodelsrAgent:
    """``agent:<encoder>`` (one call with the issue) or ``policy:<encoder>`` (title, then identifiers)."""

    def __init__(self, encoder: str, policy: bool = False, work: str = "work"):
        self.encoder, self.policy, self.work = encoder, policy, work
        self.name = f"{'policy' if policy else 'agent'}:{encoder}"
        self.server = None

    def index(self, tree: Tree, files: dict[str, str]) -> dict[str, Any]:
        import anyio

        from codelsr.server import create_server

        self.folder = work_folder(self.encoder, tree.repo, self.work)
        synced = sync_folder({p: (tree.root / p).read_bytes() for p in files}, self.folder)
        if self.server is None:
            self.server = create_server([self.folder.parent], default_encoder=self.encoder)
        report = anyio.run(self._index)
        return {k: report[k] for k in ("files", "chunks", "encoded_chunks") if k in report} | synced

    async def _index(self) -> dict:
        import mcp

        async with mcp.Client(self.server, mode="legacy") as client:
            return await call_tool(client, "index_repo", path=str(self.folder), encoder=self.encoder)

    def search(self, instances: list[Instance]) -> Results:
        import anyio

        return anyio.run(self._search, instances)

    async def _search(self, instances: list[Instance]) -> Results:
        import mcp

        from codelsr.search import MAX_K

        async def hits(client, query: str) -> list[Region]:
            if not query.strip():
                return []
            content = await call_tool(client, "search_code", query=query, repo=str(self.folder),
                                       k=min(DEPTH, MAX_K), max_chars=1)
            return hits_to_regions(content["hits"])

        out: Results = {}
        async with mcp.Client(self.server, mode="legacy") as client:
            for inst in instances:
                iid = inst.instance_id
                if not self.policy:
                    out.setdefault(self.name, {})[iid] = await hits(client, inst.problem_statement)
                    continue
                title = await hits(client, inst.title)
                ids = await hits(client, " ".join(identifiers(inst.problem_statement)))
                out.setdefault(f"policy-title:{self.encoder}", {})[iid] = title
                out.setdefault(f"policy-ids:{self.encoder}", {})[iid] = ids
                out.setdefault(self.name, {})[iid] = fuse(title, ids)
        return out


def make_tree_system(spec: str, work: str = "work") -> TreeSystem:
    spec = spec.strip()
    if spec == "bm25s":
        return BM25Files()
    if spec == "grep":
        return GrepFiles()
    if spec == "dense":
        return DenseFiles()
    kind, _, encoder = spec.partition(":")
    encoder = encoder or "lexical"
    if kind in ("codelsr", "codelsr-raw"):
        return CodelsrLibrary(encoder, raw=kind == "codelsr-raw", work=work)
    if kind in ("agent", "policy"):
        return CodelsrAgent(encoder, policy=kind == "policy", work=work)
    raise ValueError(f"unknown system {spec!r}: use bm25s, grep, dense, codelsr:<encoder>, codelsr-raw:<encoder>, "
                     "agent:<encoder> or policy:<encoder>")
