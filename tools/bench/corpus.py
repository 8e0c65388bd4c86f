"""Collections for the benchmarks: real lexical vectors over real code and docs, and synthetic
SPLADE-like vectors with a Qwen3-sized vocabulary.

Real collection: the CPython standard library, then the sources of installed packages
(site-packages), then DevDocs pages, each file cut by codelsr's own chunker and encoded by the
lexical encoder; the first ``n`` chunks in that fixed order form the collection of size ``n``.
Encoded collections are cached under the work folder (``--work``) so repeated runs skip encoding.

Synthetic collection (``synthetic_forward``): documents draw ~100-200 distinct terms from a
Zipfian distribution over 151,936 ids (Qwen3's vocabulary), with log-normal weights; queries draw
~10-30 terms from the same distribution. No model produced them: they stand in for SPLADE output
where no 1M-chunk real collection exists on this machine.
"""

from __future__ import annotations

import json
import os
import random
import sysconfig
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from codelsr.index.store import ForwardIndex

QWEN3_VOCAB = 151_936
DEVDOCS_TAR = Path("/work/shared/data/devdocs/devdocs_plain.tar.xz")
SOURCE_SUFFIXES = {".py", ".pyi", ".c", ".h", ".cpp", ".hpp", ".js", ".ts", ".rs", ".go", ".java", ".md", ".rst"}
MAX_FILE_BYTES = 512_000


def default_work() -> Path:
    return Path(os.environ.get("CODELSR_BENCH_WORK", "/tmp/codelsr-bench"))


@dataclass
class Collection:
    """A forward index plus what peers need: chunk texts and the files they came from."""

    name: str
    forward: ForwardIndex
    texts: list[str] | None  # None for synthetic collections
    files: list[str] | None  # source files, in order, covering the chunks (for ripgrep)


def _devdocs_root(work: Path) -> Path:
    root = work / "devdocs"
    if not (root / "plain").is_dir():
        if not DEVDOCS_TAR.is_file():
            return root / "plain"  # missing: the real corpus simply has fewer files
        root.mkdir(parents=True, exist_ok=True)
        with tarfile.open(DEVDOCS_TAR) as tar:
            tar.extractall(root, filter="data")
    return root / "plain"


def _site_packages() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


def source_files(work: Path) -> Iterator[tuple[str, Path]]:
    """(label, path) in a fixed order: stdlib, site-packages, DevDocs."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    roots = [("stdlib", lambda: stdlib, lambda p: "site-packages" not in p.parts and "test" not in p.parts),
             ("site-packages", _site_packages, lambda p: True),
             ("devdocs", lambda: _devdocs_root(work), lambda p: True)]  # extracted only when reached
    for label, root_of, keep in roots:
        root = root_of()
        if not root.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and not d.startswith("."))
            for name in sorted(filenames):
                path = Path(dirpath) / name
                if label != "devdocs" and path.suffix not in SOURCE_SUFFIXES:
                    continue
                if not keep(path):
                    continue
                try:
                    if path.stat().st_size > MAX_FILE_BYTES:
                        continue
                except OSError:
                    continue
                yield label, path


REAL_CAP = 1_000_000


def _real_all(work: Path, log=print, cap: int = REAL_CAP) -> tuple[ForwardIndex, list[str], list[str], list[int]]:
    """Every real chunk (up to ``cap``), encoded once and cached: forward index, texts, files,
    and for each file the number of chunks before it (to map a prefix of chunks to files).
    The full corpus cache serves every size; a smaller ``cap`` (``--quick``) has its own."""
    cache = work / "real_all"
    if not (cache / "vectors.npz").is_file() and cap < REAL_CAP:
        cache = work / f"real_first_{cap}"
    if (cache / "vectors.npz").is_file():
        meta = json.loads((cache / "meta.json").read_text())
        return (ForwardIndex.read(cache), json.loads((cache / "texts.json").read_text()),
                meta["files"], meta["file_starts"])
    from codelsr.chunking import chunk_file
    from codelsr.chunking.walk import read_text
    from codelsr.encoders.lexical import LexicalEncoder

    t0 = time.perf_counter()
    texts: list[str] = []
    files: list[str] = []
    file_starts: list[int] = []
    for label, path in source_files(work):
        try:
            text = read_text(path)
        except (OSError, ValueError):
            continue
        lang = "text" if label == "devdocs" else None
        try:
            chunks = chunk_file(str(path), text, lang)
        except Exception:  # a chunker bug on one odd file must not stop the benchmark
            continue
        if not chunks:
            continue
        files.append(str(path))
        file_starts.append(len(texts))
        texts.extend(c.text for c in chunks)
        if len(texts) >= cap:
            break
    t1 = time.perf_counter()
    log(f"# real corpus: chunked {len(files)} files into {len(texts)} chunks in {t1 - t0:.0f} s")
    vectors = LexicalEncoder().encode_documents(texts)
    t2 = time.perf_counter()
    log(f"# real corpus: lexical-encoded {len(texts)} chunks in {t2 - t1:.0f} s "
        f"({len(texts) / (t2 - t1):.0f} chunks/s, 1 thread)")
    forward = ForwardIndex.from_vectors(vectors)
    cache.mkdir(parents=True, exist_ok=True)
    forward.write(cache)
    (cache / "texts.json").write_text(json.dumps(texts))
    (cache / "meta.json").write_text(json.dumps({"files": files, "file_starts": file_starts}))
    return forward, texts, files, file_starts


def real_collection(n: int, work: Path | None = None, log=print, cap: int = REAL_CAP) -> Collection:
    """The first ``n`` real chunks (stdlib, then site-packages, then DevDocs), lexical vectors.

    ``cap``: encode at most this many chunks when nothing is cached yet (``--quick``: just ``n``)."""
    forward, texts, files, starts = _real_all(work or default_work(), log, max(n, min(cap, REAL_CAP)))
    if n > forward.n_rows:
        log(f"# only {forward.n_rows} real chunks exist; using all of them for real-{n}")
        n = forward.n_rows
    end = int(forward.indptr[n])
    # Term ids stay those of the whole corpus; terms absent from the prefix have df 0.
    sub = ForwardIndex(forward.terms, forward.indptr[: n + 1].copy(), forward.indices[:end], forward.data[:end])
    n_files = int(np.searchsorted(np.asarray(starts), n, side="left"))
    return Collection(f"real-{n}", sub, texts[:n], files[:max(1, n_files)])


def zipf_probabilities(vocab: int, s: float = 1.0, offset: float = 10.0) -> np.ndarray:
    """Zipf-Mandelbrot over term ranks: p(r) ~ 1 / (r + offset)^s."""
    p = 1.0 / (np.arange(vocab, dtype=np.float64) + offset) ** s
    return p / p.sum()


def sample_rows(rng: np.random.Generator, n: int, lengths: np.ndarray, cdf: np.ndarray,
                 perm: np.ndarray, weight_mu: float, weight_sigma: float):
    """CSR rows of distinct Zipf-distributed ids with log-normal weights, built vectorised.

    Each row draws ``lengths[i]`` ids with replacement and keeps the distinct ones, so frequent
    ids repeat less than their draw count (a row has somewhat fewer than ``lengths[i]`` terms)."""
    draws = np.searchsorted(cdf, rng.random(int(lengths.sum())))
    draws = perm[np.minimum(draws, len(perm) - 1)].astype(np.int64)
    rows = np.repeat(np.arange(n, dtype=np.int64), lengths)
    keys = np.unique(rows * len(perm) + draws)  # sorted by row, then id; duplicates gone
    row_of = keys // len(perm)
    indices = (keys % len(perm)).astype(np.int32)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(row_of, minlength=n), out=indptr[1:])
    data = rng.lognormal(weight_mu, weight_sigma, size=indices.size).astype(np.float32)
    return indptr, indices, data


def synthetic_forward(n: int, vocab: int = QWEN3_VOCAB, seed: int = 0, work: Path | None = None,
                      log=print) -> Collection:
    """SPLADE-like documents: 100-200 distinct Zipfian terms each, log-normal weights; cached."""
    work = work or default_work()
    cache = work / f"synthetic_{n}_{vocab}_{seed}"
    if (cache / "vectors.npz").is_file():
        with np.load(cache / "vectors.npz") as z:
            forward = ForwardIndex([str(i) for i in range(vocab)], z["indptr"], z["indices"], z["data"])
        return Collection(f"synthetic-{n}", forward, None, None)
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(zipf_probabilities(vocab))
    perm = rng.permutation(vocab)  # frequent terms spread over the id space, as in a real vocab
    lengths = rng.integers(104, 210, size=n)  # ~100-200 distinct after dedup
    parts = []
    for lo in range(0, n, 50_000):  # blocks bound the temporary memory
        hi = min(n, lo + 50_000)
        parts.append(sample_rows(rng, hi - lo, lengths[lo:hi], cdf, perm, 0.0, 0.6))
    indptr = np.concatenate([[0]] + [p[0][1:] + off for p, off in
                                     zip(parts, np.cumsum([0] + [p[0][-1] for p in parts[:-1]]))])
    indices = np.concatenate([p[1] for p in parts])
    data = np.concatenate([p[2] for p in parts])
    forward = ForwardIndex([str(i) for i in range(vocab)], indptr.astype(np.int64), indices, data)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(cache / "vectors.npz", indptr=forward.indptr, indices=forward.indices, data=forward.data)
    log(f"# synthetic-{n}: generated in {time.perf_counter() - t0:.0f} s")
    return Collection(f"synthetic-{n}", forward, None, None)


def synthetic_queries(n_queries: int, vocab: int = QWEN3_VOCAB, seed: int = 1) -> list[tuple[np.ndarray, np.ndarray]]:
    """(term ids, weights) for SPLADE-like queries: 10-30 Zipfian terms, log-normal weights.

    Uses the same term permutation as ``synthetic_forward(seed=0)`` so queries hit the same
    frequent ids."""
    perm = np.random.default_rng(0).permutation(vocab)
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(zipf_probabilities(vocab))
    lengths = rng.integers(10, 32, size=n_queries)  # ~10-30 distinct
    indptr, indices, data = sample_rows(rng, n_queries, lengths, cdf, perm, 0.0, 0.6)
    return [(indices[indptr[i]:indptr[i + 1]].astype(np.int64), data[indptr[i]:indptr[i + 1]])
            for i in range(n_queries)]


def real_queries(collection: Collection, texts: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Query texts as (term ids, idf-weighted weights), exactly as ``IndexReader`` makes them."""
    from codelsr.encoders.lexical import LexicalEncoder
    from codelsr.index.reader import DocFreq

    fwd = collection.forward
    term_ids = {t: i for i, t in enumerate(fwd.terms)}
    enc = LexicalEncoder().bind_collection(fwd.n_rows, DocFreq(term_ids, fwd.doc_freq()))
    out = []
    for vec in enc.encode_queries(texts):
        pairs = [(term_ids[t], w) for t, w in vec.items() if t in term_ids and w > 0]
        if pairs:
            out.append((np.array([p[0] for p in pairs], dtype=np.int64),
                        np.array([p[1] for p in pairs], dtype=np.float32)))
    return out


def identifier_queries(collection: Collection, n: int, seed: int = 3) -> list[str]:
    """Literal lookups: identifiers that occur in the collection (for ripgrep and friends)."""
    import re

    rng = random.Random(seed)
    texts = collection.texts or []
    found: list[str] = []
    ident = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]{7,}\b")
    while len(found) < n and texts:
        names = ident.findall(texts[rng.randrange(len(texts))])
        if names:
            name = rng.choice(names)
            if name not in found:
                found.append(name)
    return found


ODEX = Path("/work/shared/data/coderag-bench/odex_docs.jsonl")


def nl_queries(n: int = 200) -> list[str]:
    """Natural-language code-search queries: the stdlib benchmark's 100, then ODEX intents."""
    from tools.bench.stdlib_index import QUERIES

    out = list(QUERIES)
    if ODEX.is_file():
        for line in ODEX.read_text().splitlines():
            intent = json.loads(line).get("intent")
            if intent:
                out.append(intent)
    return out[:n]
