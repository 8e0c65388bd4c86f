"""``page:<encoder spec>``: a codelsr encoder scored the way ``dense`` scores MiniLM, one vector
per document and no chunks.

Why it exists: ``codelsr:`` systems measure the product, whose index holds chunks (a long DevDocs
page becomes several 80-line windows, and a page ranks at its best window), while ``dense`` embeds
each document once from its first :data:`MAX_CHARS` characters (its model reads 256 word pieces of
them). Comparing the two mixes up the model and the hit list. ``page:`` gives a codelsr encoder
exactly ``dense``'s unit: each document's first :data:`MAX_CHARS` characters, one sparse vector
(a SPLADE model reads its own window of them, as it does in the product), collection statistics
from those vectors, queries prepared as search prepares them (:func:`codelsr.queries.encode_query`),
exact dot products. It is a yardstick for encoders, not something the product does.
"""

from __future__ import annotations

from typing import Any

from evals.metrics import Ranking
from evals.systems.codelsr_systems import clip_query
from evals.systems.dense import MAX_CHARS
from evals.sparse_matrix import sparse_rows
from evals.tasks import Task


class PageSystem:
    def __init__(self, encoder: str = "lexical"):
        self.encoder_spec = encoder
        self.name = f"page:{encoder}"

    def index(self, task: Task) -> dict[str, Any]:
        from codelsr.encoders import CollectionAware, get_encoder
        from codelsr.encoders.base import document_frequencies

        encoder = get_encoder(self.encoder_spec)
        self.doc_ids = list(task.corpus)
        vectors = encoder.encode_documents([task.corpus[d].contents[:MAX_CHARS] for d in self.doc_ids])
        if isinstance(encoder, CollectionAware):
            encoder = encoder.bind_collection(len(vectors), document_frequencies(vectors))
        self.encoder = encoder
        self.columns: dict[str, int] = {}
        self.documents = sparse_rows(vectors, self.columns, grow=True)
        return {"encoder_id": encoder.encoder_id, "unit": f"document, first {MAX_CHARS} characters",
                "docs": len(vectors), "terms_per_doc": round(self.documents.nnz / max(1, len(vectors)), 1)}

    def search(self, queries: dict[str, str], k: int = 100) -> dict[str, Ranking]:
        from codelsr.index.backends import top_k_rows
        from codelsr.queries import encode_query

        qids = list(queries)
        q = sparse_rows([encode_query(self.encoder, clip_query(queries[x])) for x in qids], self.columns, grow=False)
        scores = (q @ self.documents.T).toarray()
        return {qid: [(self.doc_ids[i], score) for i, score in top_k_rows(scores[row], k)]
                for row, qid in enumerate(qids)}
