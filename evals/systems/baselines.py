"""Model-free baselines: BM25 with CodeRAG-Bench's settings, and grep-style keyword matching."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from evals.metrics import Ranking
from evals.tasks import Task


def top_k(doc_ids: list[str], scores: np.ndarray, k: int) -> Ranking:
    """The ``k`` best (doc, score) pairs with a positive score (ties: doc id, by metrics.rank)."""
    positive = np.flatnonzero(scores > 0)
    if positive.size > k:
        # Keep every document tied with the k-th score, so the id tie-break sees them all.
        kth = np.partition(scores[positive], positive.size - k)[positive.size - k]
        positive = positive[scores[positive] >= kth]
    return [(doc_ids[i], float(scores[i])) for i in positive]


def whitespace_tokens(text: str) -> list[str]:
    """CodeRAG-Bench's BM25 tokens: split on whitespace, case kept, nothing removed."""
    return text.split()


class BM25System:
    """Lucene BM25 (k1=1.2, b=0.75) over whitespace tokens, via ``bm25s``; title + text indexed."""

    name = "bm25"

    def __init__(self, k1: float = 1.2, b: float = 0.75):
        self.k1, self.b = k1, b

    def index(self, task: Task) -> dict[str, Any]:
        import bm25s

        self.doc_ids = list(task.corpus)
        self.retriever = bm25s.BM25(method="lucene", k1=self.k1, b=self.b)
        self.retriever.index([whitespace_tokens(d.contents) for d in task.corpus.values()], show_progress=False)
        return {"method": "lucene", "k1": self.k1, "b": self.b, "tokens": "whitespace, case kept"}

    def search(self, queries: dict[str, str], k: int = 100) -> dict[str, Ranking]:
        return {qid: top_k(self.doc_ids, np.asarray(self.retriever.get_scores(whitespace_tokens(q))), k)
                for qid, q in queries.items()}


WORD = re.compile(r"[A-Za-z0-9_]+")
# Words too common to be worth a grep: a person would not type them as a pattern.
STOPWORDS = frozenset("""a an and are as at be by can do does for from how i if in into is it its of on or
so that the then this to use using was what when where which with without you your""".split())


def grep_words(text: str) -> set[str]:
    """Distinct lower-cased words of 3+ characters that are not stopwords."""
    return {w for w in (m.lower() for m in WORD.findall(text)) if len(w) >= 3 and w not in STOPWORDS}


class GrepSystem:
    """``grep -wi`` per query word: a document scores the number of distinct query words it holds."""

    name = "grep"

    def index(self, task: Task) -> dict[str, Any]:
        self.doc_ids = list(task.corpus)
        self.postings: dict[str, list[int]] = {}
        for i, doc in enumerate(task.corpus.values()):
            for w in {m.lower() for m in WORD.findall(doc.contents)}:
                self.postings.setdefault(w, []).append(i)
        return {"match": "whole word, case-insensitive", "score": "distinct query words matched"}

    def search(self, queries: dict[str, str], k: int = 100) -> dict[str, Ranking]:
        out = {}
        for qid, query in queries.items():
            scores = np.zeros(len(self.doc_ids), dtype=np.float32)
            for w in grep_words(query):
                scores[self.postings.get(w, [])] += 1.0
            out[qid] = top_k(self.doc_ids, scores, k)
        return out
