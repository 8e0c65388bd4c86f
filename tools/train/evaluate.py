"""Quick retrieval evaluation used while training: MRR@10 / nDCG@10 / R@10 on mined pairs.

Each query has exactly one relevant function (its own), so nDCG@10 = 1/log2(1 + rank) if the
rank is <= 10. Ranks are pessimistic: a document tied with the gold one counts as ranked above
it, so a system that scores everything 0 gets nothing.

``python -m tools.train.evaluate --encoder lexical --encoder splade:<folder> --encoder hybrid:<folder>``
(also ``bm25s``, ``teacher:minilm`` / ``teacher:e5`` and ``asym:<query folder>::<document folder>``)
runs the ``mined-docstrings`` definition (queries from :data:`evals.mining.EVAL_PACKAGES`, corpus =
every function of those packages with docstrings removed, distractors included). The official
numbers come from the eval suite under ``evals/``; this is the trainer's own yardstick.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from codelsr.encoders.base import document_frequencies
from evals.mining import EVAL_PACKAGES, Pair, mine


def eval_task(packages: Sequence[str] | None = None) -> tuple[list[Pair], list[Pair]]:
    """(query pairs, corpus) of the mined-docstrings definition; pair i's gold is corpus[i]."""
    m = mine(sorted(packages or EVAL_PACKAGES))
    return m.pairs, m.corpus


def score_matrix(doc_vecs: Sequence[dict[str, float]], query_vecs: Sequence[dict[str, float]]) -> Any:
    """Dense (n_queries, n_docs) dot products of sparse vectors."""
    from evals.sparse_matrix import sparse_rows

    vocab: dict[str, int] = {}
    dmat = sparse_rows(list(doc_vecs), vocab, grow=True)
    qmat = sparse_rows(list(query_vecs), vocab, grow=False)
    return (qmat @ dmat.T).toarray()


def metrics_from_scores(scores: Any, gold: Sequence[int] | Sequence[Sequence[int]] | None = None) -> dict[str, float]:
    """MRR@10, nDCG@10, R@10, R@100 for one relevant document per query (pessimistic ties). A
    query whose gold is several documents counts its best-ranked one (the first relevant hit).
    Without ``gold`` query i's document is document i."""
    import numpy as np

    if gold is None:
        gold = range(scores.shape[0])
    gold_arr = np.asarray([g if isinstance(g, (int, np.integer)) else max(g, key=lambda d: scores[row, d])
                           for row, g in enumerate(gold)])
    g = scores[np.arange(len(gold_arr)), gold_arr][:, None]
    ranks = (scores >= g).sum(axis=1)  # gold itself included -> rank >= 1
    ranks = np.where(g[:, 0] > 0, ranks, scores.shape[1] + 1)
    mrr = float(np.mean(np.where(ranks <= 10, 1.0 / ranks, 0.0)))
    ndcg = float(np.mean(np.where(ranks <= 10, 1.0 / np.log2(1 + ranks), 0.0)))
    return {
        "mrr@10": round(mrr, 4),
        "ndcg@10": round(ndcg, 4),
        "r@10": round(float(np.mean(ranks <= 10)), 4),
        "r@100": round(float(np.mean(ranks <= 100)), 4),
    }


def encode_query_list(encoder: Any, texts: Sequence[str], as_served: bool) -> list[dict[str, float]]:
    """Query vectors: the encoder's own, or with ``as_served`` what search uses
    (:func:`codelsr.queries.encode_query`: a long query read in pieces of the encoder's window)."""
    if not as_served:
        return encoder.encode_queries(list(texts))
    from codelsr.queries import encode_query

    return [encode_query(encoder, t) for t in texts]


def evaluate(encoder: Any, queries: Sequence[Pair], corpus: Sequence[Pair], gold: Sequence[Any] | None = None,
             as_served: bool = False) -> dict[str, float]:
    """Encode ``corpus`` and ``queries`` with any SparseEncoder and score them (gold: query i's
    document index; by default i)."""
    t0 = time.perf_counter()
    docs = encoder.encode_documents([p.code for p in corpus])
    t1 = time.perf_counter()
    if hasattr(encoder, "bind_collection"):
        encoder = encoder.bind_collection(len(docs), document_frequencies(docs))
    qs = encode_query_list(encoder, [p.query for p in queries], as_served)
    t2 = time.perf_counter()
    out = metrics_from_scores(score_matrix(docs, qs), gold)
    out["terms_q"] = round(sum(map(len, qs)) / max(1, len(qs)), 1)
    out["terms_d"] = round(sum(map(len, docs)) / max(1, len(docs)), 1)
    out["docs_per_s"] = round(len(docs) / max(1e-9, t1 - t0), 1)
    out["ms_per_query"] = round(1000 * (t2 - t1) / max(1, len(qs)), 2)
    return out


def hybrid_sweep(spec: str, queries: Sequence[Pair], corpus: Sequence[Pair], weights: Sequence[float],
                 gold: Sequence[Any] | None = None, as_served: bool = False, units: str = "documents",
                 **kw: Any) -> dict[float, dict[str, float]]:
    """Metrics of SPLADE + w * BM25 for each w, encoding once (the hybrid's dot product, split;
    with ``as_served`` each half reads a long query in its own pieces, as search does). ``spec`` is
    ``splade:<folder>``, ``onnx:<folder>`` or ``asym:<query folder>::<document folder>`` (:func:`build_encoder`).
    ``units="chunks"``: the documents are indexed as the product's chunks (:func:`chunk_units`) and
    a document scores its best chunk; each result also gives ``first_chunk_ndcg@10``, the same
    ranking with each document reduced to its first chunk."""
    from codelsr.encoders.lexical import LexicalEncoder

    if not spec.startswith(("splade:", "onnx:", "asym:")):
        raise ValueError(f"{spec!r}: a hybrid sweep needs splade:<folder>, onnx:<folder> "
                         "or asym:<query folder>::<document folder>")
    if units not in ("documents", "chunks"):
        raise ValueError(f"units {units!r}: choose documents or chunks")
    splade = build_encoder(spec, **kw)
    texts = [p.code for p in corpus]
    if units == "chunks":
        from codelsr.encoders import window_lines

        texts, owner, first = chunk_units(texts, window_lines(splade))
    sd = splade.encode_documents(texts)
    sq = encode_query_list(splade, [p.query for p in queries], as_served)
    lex = LexicalEncoder()
    ld = lex.encode_documents(texts)
    lq = encode_query_list(lex.bind_collection(len(ld), document_frequencies(ld)), [p.query for p in queries], as_served)
    s_scores, l_scores = score_matrix(sd, sq), score_matrix(ld, lq)
    if units != "chunks":
        return {w: metrics_from_scores(s_scores + w * l_scores, gold) for w in weights}
    out = {}
    for w in weights:
        both = s_scores + w * l_scores
        out[w] = metrics_from_scores(pool_documents(both, owner, len(corpus)), gold)
        out[w]["first_chunk_ndcg@10"] = metrics_from_scores(pool_documents(both, owner, len(corpus), first), gold)["ndcg@10"]
        out[w]["chunks"] = len(texts)
    return out


def validation_task(cache_dir: str = "tools/train/runs/cache", exclude_scored: bool = False) -> tuple[list[Pair], list[Pair]]:
    """The trainer's held-out validation packages (never the eval packages): (queries, corpus).
    ``exclude_scored`` gives the validation set of a ``--exclude-scored`` training run."""

    from tools.train.data import training_pairs

    _, valid, distract = training_pairs(Path(cache_dir), exclude_scored=exclude_scored)
    return valid, valid + distract


def prose_validation_task() -> tuple[list[Pair], list[Pair]]:
    """Prose retrieval on the held-out validation packages: their docstring reference pages
    (:func:`tools.train.prose.reference_pages`, the page's summary as the query, the rest of the
    page as the document), which ``--prose`` never trains on. It measures what prose training
    does to documentation search without looking at an eval task's documents. Packages not
    installed here are left out."""
    from evals.mining import installed_packages
    from tools.train.data import VALID_PACKAGES, excluded_names
    from tools.train.prose import reference_pages

    installed = set(installed_packages(exclude=()))
    pages = reference_pages([p for p in VALID_PACKAGES if p in installed], excluded_names(exclude_scored=True))
    return pages, pages


def long_validation_task(cache_dir: str = "tools/train/runs/cache") -> tuple[list[Pair], list[Pair], list[int]]:
    """Long queries on the held-out validation packages: a function's whole docstring (summary and
    body, median ~300 characters) as the query, the code validation corpus (docstrings removed) as
    the documents: (queries, corpus, gold index of each query). A stand-in for task statements,
    used to check long-query handling without an eval task's queries."""
    from tools.train.prose import long_query

    pages, _ = prose_validation_task()
    valid, corpus = validation_task(cache_dir, exclude_scored=True)
    page_of = {(p.path, p.qualname): p for p in pages}
    queries, gold = [], []
    for i, pair in enumerate(valid):
        page = page_of.get((pair.path, pair.qualname))
        query = long_query(page) if page is not None else None
        if query is None:
            continue
        queries.append(Pair(query, pair.code, pair.package, pair.qualname, pair.path, pair.line))
        gold.append(i)
    return queries, corpus, gold


QUESTIONS_FILE = Path(__file__).with_name("validation_questions.jsonl")
PROBLEMS_FILE = Path(__file__).with_name("validation_problems.jsonl")


def question_validation_task(path: Path = QUESTIONS_FILE, pages: Sequence[Pair] | None = None
                             ) -> tuple[list[Pair], list[Pair], list[list[int]]]:
    """Hand-written questions about the held-out packages' APIs, as a developer would ask them
    ("ask the user a yes or no question in the terminal"), against the same 449 reference pages as
    ``validation-prose``: (queries, corpus, gold page indices of each query). Written for issue 13
    to choose prose settings by rule: summaries queried against their own page are easier than
    questions. A question whose gold pages are missing (another version of a package) is skipped.
    ``pages``: the reference pages when the caller has them already (they are mined from source)."""
    pages = list(pages) if pages is not None else prose_validation_task()[0]
    index = {f"{p.path}::{p.qualname}": i for i, p in enumerate(pages)}
    queries, gold = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        item = json.loads(line)
        found = [index[g] for g in item["gold"] if g in index]
        if found:
            queries.append(Pair(item["query"], "", "", "", ""))
            gold.append(found)
    return queries, pages, gold


def problem_validation_task(path: Path = PROBLEMS_FILE, pages: Sequence[Pair] | None = None
                            ) -> tuple[list[Pair], list[Pair], list[list[int]]]:
    """Hand-written problem statements about the held-out packages, the shape of DS-1000's prompts
    and of agents' task descriptions: a few lines of situation and need with code (an attempt,
    sample data, a traceback), which do not name the API that answers them; against the same
    449 reference pages as ``validation-questions``. Read as search reads long queries. Written
    without looking at any eval task's queries, to choose by the failure DS-1000 and ODEX show
    (long prose-and-code queries over documentation) on data we may choose by."""
    return question_validation_task(path, pages)


def library_validation_task(cache_dir: str = "tools/train/runs/cache") -> tuple[list[Pair], list[Pair], list[list[int]]]:
    """``validation-problems`` and ``validation-questions`` together, over the held-out packages'
    449 reference pages *plus* the trainer's prose documents as distractors (reference pages and
    README sections of every training package, about 7,600): a documentation corpus of many
    libraries, the situation of DS-1000 and ODEX over DevDocs (13k pages of 13 libraries), where
    the right page must beat thousands of pages about other libraries. The distractors are
    training documents, never eval data; the gold pages are never trained on. Queries are read as
    search reads them (long ones in pieces)."""
    from tools.train import data as D
    from tools.train.train import Config, cached_prose_pairs

    problems, pages, gold_p = problem_validation_task()
    questions, _, gold_q = question_validation_task(pages=pages)  # the same pages, mined once
    train, _, _ = D.training_pairs(Path(cache_dir), exclude_scored=True, log=lambda *a: None)
    packages = sorted({p.package for p in train})
    prose = cached_prose_pairs(Path(cache_dir), packages, Config(exclude_scored=True))
    seen = {p.code for p in pages}
    distractors = []
    for p in prose:
        if p.code not in seen:
            seen.add(p.code)
            distractors.append(p)
    return problems + questions, pages + distractors, gold_p + gold_q


def library_files_task(cache_dir: str = "tools/train/runs/cache") -> tuple[list[Pair], list[Pair], list[list[int]]]:
    """``validation-library`` plus long documents, for scoring through the product's chunks
    (``--units chunks``): the whole READMEs of the installed distributions the trainer may read
    (distractors of many windows each, like DevDocs' guide pages), and of the held-out packages'
    distributions, each the gold of inverse-cloze queries from its own sections (the sentence
    taken out: the answer is inside a long document, not at its head); and a module page for
    each module of a training package with two or more reference pages (its pages one after the
    other, like DevDocs' module pages; never a held-out package's, whose pages are gold). The 209 hand-written
    queries come first, in ``validation-library``'s order; the README queries follow. It exists
    because ``validation-library``'s documents are cut to 2,000 characters, one chunk each, so it
    cannot see what a long file's many windows do to a ranked list."""
    from tools.train import data as D
    from tools.train.prose import readme_cloze_queries, readme_documents

    queries, corpus, gold = library_validation_task(cache_dir)
    queries, corpus, gold = list(queries), list(corpus), [list(g) for g in gold]
    excluded = D.excluded_names(exclude_scored=True)
    held_out = set(D.VALID_PACKAGES)
    readmes = readme_documents(excluded)
    gold_readmes = {name for name, _ in readmes} - {name for name, _ in readme_documents(excluded | held_out)}
    for name, body in readmes:
        if name in gold_readmes:
            cloze, body = readme_cloze_queries(body)
            for q in cloze:
                queries.append(Pair(q, "", name, "README", ""))
                gold.append([len(corpus)])
        corpus.append(Pair("", f"{name} README\n\n{body.strip()}", name, "README", ""))
    modules: dict[tuple[str, str], list[str]] = {}
    for doc in corpus:
        if doc.path.endswith(".py") and doc.package not in held_out:
            modules.setdefault((doc.package, doc.path), []).append(doc.code)
    for (package, path), pages in modules.items():
        if len(pages) > 1:
            corpus.append(Pair("", f"{path} reference\n\n" + "\n\n".join(pages), package, "module", path))
    return queries, corpus, gold


def chunk_units(texts: Sequence[str], window: int | None) -> tuple[list[str], Any, Any]:
    """The product's chunks of each text, as a text file of the product's index gets them
    (:func:`codelsr.chunking.chunk_file`, default options, ``window`` lines for the encoder):
    (the chunks' encoded texts, the document of each chunk, whether it is its document's first)."""
    import numpy as np

    from codelsr.chunking import chunk_file

    out, owner, first = [], [], []
    for i, text in enumerate(texts):
        for k, chunk in enumerate(chunk_file(f"docs/{i:05d}.txt", text, window_lines=window)):
            out.append(chunk.encoded_text)
            owner.append(i)
            first.append(k == 0)
    return out, np.asarray(owner, dtype=np.int64), np.asarray(first, dtype=bool)


def pool_documents(scores: Any, owner: Any, n_docs: int, mask: Any = None) -> Any:
    """(n_queries, n_docs) scores from chunk scores: a document scores its best chunk (among
    ``mask``'s, when given), as the product's hit list ranks a file at its best chunk."""
    import numpy as np

    out = np.zeros((scores.shape[0], n_docs), dtype=np.float64)
    cols = np.arange(scores.shape[1]) if mask is None else np.flatnonzero(mask)
    np.maximum.at(out.T, owner[cols], scores[:, cols].T)
    return out


def bm25s_metrics(queries: Sequence[Pair], corpus: Sequence[Pair], gold: Sequence[Any] | None = None) -> dict[str, float]:
    """bm25s (Lucene BM25, k1 1.5, b 0.75) over codelsr's code-aware terms, for comparison."""
    import bm25s
    import numpy as np

    from codelsr.encoders.identifiers import code_terms

    docs = [code_terms(p.code) for p in corpus]
    retriever = bm25s.BM25()
    retriever.index(docs, show_progress=False)
    scores = np.stack([retriever.get_scores(code_terms(p.query)) for p in queries])
    return metrics_from_scores(scores, gold)


class AsymmetricEncoder:
    """Queries read by one SPLADE model, documents by another (same word-piece term space).

    A diagnostic, not a product encoder: it says which side of a fine-tune gained or lost
    (docs/model.md, 2026-12-07: the questions a fine-tune loses are lost by its documents)."""

    def __init__(self, queries: Any, documents: Any):
        self.queries, self.documents = queries, documents
        self.max_length_query = queries.max_length_query  # codelsr.queries cuts long queries by it

    def encode_documents(self, texts: Sequence[str]) -> list[dict[str, float]]:
        return self.documents.encode_documents(texts)

    def encode_queries(self, texts: Sequence[str]) -> list[dict[str, float]]:
        return self.queries.encode_queries(texts)


def teacher_metrics(name: str, queries: Sequence[Pair], corpus: Sequence[Pair], gold: Sequence[Any] | None = None,
                    max_length: int = 256) -> dict[str, float]:
    """A dense teacher (``minilm`` or ``e5``) ranking by cosine: what distillation aims at."""
    import numpy as np

    from tools.train.teacher import load_teacher

    teacher = load_teacher(name, "cpu", max_length=max_length)
    docs = teacher.embed([p.code for p in corpus], "passage").numpy()
    qs = teacher.embed([p.query for p in queries], "query").numpy()
    return metrics_from_scores(np.asarray(qs @ docs.T), gold)


def build_encoder(spec: str, **kw: Any) -> Any:
    """``lexical``, ``splade:<folder>`` (torch), ``onnx:<folder>`` (the folder's ONNX export, int8
    or float, as the product runs it), ``hybrid:<folder>[@<lexical weight>]`` or
    ``asym:<query folder>::<document folder>`` (:class:`AsymmetricEncoder`)."""
    if spec.startswith("asym:"):
        query_folder, sep, doc_folder = spec.removeprefix("asym:").partition("::")
        if not sep or not query_folder or not doc_folder:
            raise ValueError(f"{spec!r}: write asym:<query folder>::<document folder>")
        return AsymmetricEncoder(build_encoder(f"splade:{query_folder}", **kw),
                                 build_encoder(f"splade:{doc_folder}", **kw))
    if spec == "lexical":
        from codelsr.encoders.lexical import LexicalEncoder

        return LexicalEncoder()
    if spec.startswith("splade:"):
        from codelsr.encoders.splade import SpladeEncoder

        return SpladeEncoder(spec.removeprefix("splade:"), device="cpu", **kw)
    if spec.startswith("onnx:"):
        from codelsr.encoders.splade.onnx_encoder import OnnxSpladeEncoder

        kw.pop("dtype", None)  # the export's own (float32 arithmetic, float or int8 weights)
        return OnnxSpladeEncoder(spec.removeprefix("onnx:"), **kw)
    if spec.startswith("hybrid:"):
        from codelsr.encoders.hybrid import HybridEncoder

        folder, _, weight = spec.removeprefix("hybrid:").partition("@")
        extra = {"lexical_weight": float(weight)} if weight else {}
        return HybridEncoder.from_model(folder, device="cpu", **extra, **kw)
    raise ValueError(f"unknown encoder spec {spec!r}: lexical, splade:<folder>, onnx:<folder>, hybrid:<folder>[@w] "
                     "or asym:<query folder>::<document folder>")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.train.evaluate", description=__doc__)
    ap.add_argument("--encoder", action="append", required=True)
    ap.add_argument("--max-length-doc", type=int, default=256)
    ap.add_argument("--max-length-query", type=int, default=None,
                    help="SPLADE query cut in tokens (default: the family default, 128 for BERT)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dtype", default="float32", help="SPLADE inference dtype (float32 or bfloat16)")
    ap.add_argument("--limit", type=int, default=0, help="only the first N queries (corpus unchanged)")
    ap.add_argument("--skip", type=int, default=0,
                    help="leave out the first N queries, before --limit (validation-library: --limit 87 is its "
                         "problem statements, --skip 87 its questions)")
    ap.add_argument("--task", choices=["mined-docstrings", "validation", "validation-prose", "validation-long",
                                           "validation-questions", "validation-problems", "validation-library",
                                           "validation-library-files"],
                    default="mined-docstrings")
    ap.add_argument("--units", choices=["documents", "chunks"], default="documents",
                    help="with --sweep: score whole documents (default) or the product's chunks of them, a "
                         "document at its best chunk")
    ap.add_argument("--sweep", nargs="*", type=float,
                    help="lexical weights to sweep (splade:, onnx: and asym:<query folder>::<document folder> only)")
    ap.add_argument("--exclude-scored", action="store_true",
                    help="with --task validation: the validation set of a --exclude-scored training run")
    args = ap.parse_args(argv)
    if args.units == "chunks" and not args.sweep:
        ap.error("--units chunks scores the hybrid sweep: add --sweep (for instance --sweep 0 0.2)")
    import torch

    torch.set_num_threads(args.threads)
    tasks = {
        "mined-docstrings": lambda: (*eval_task(), None),
        "validation": lambda: (*validation_task(exclude_scored=args.exclude_scored), None),
        "validation-prose": lambda: (*prose_validation_task(), None),
        "validation-long": long_validation_task,
        "validation-questions": question_validation_task,
        "validation-problems": problem_validation_task,
        "validation-library": library_validation_task,
        "validation-library-files": library_files_task,
    }
    queries, corpus, gold = tasks[args.task]()
    gold = list(gold) if gold is not None else list(range(len(queries)))
    # long queries: read as search reads them (codelsr.queries), in pieces of the encoder's window
    as_served = args.task in ("validation-long", "validation-problems", "validation-library", "validation-library-files")
    if args.skip:
        queries, gold = queries[args.skip :], gold[args.skip :]
    if args.limit:
        queries, gold = queries[: args.limit], gold[: args.limit]
    print(f"{args.task}: {len(queries)} queries, {len(corpus)} documents", file=sys.stderr)
    for spec in args.encoder:
        if spec == "bm25s":
            print(json.dumps({"encoder": spec, "task": args.task, **bm25s_metrics(queries, corpus, gold)}), flush=True)
            continue
        if spec.startswith("teacher:"):
            res = teacher_metrics(spec.removeprefix("teacher:"), queries, corpus, gold, args.max_length_doc)
            print(json.dumps({"encoder": spec, "task": args.task, **res}), flush=True)
            continue
        if args.sweep:
            sweep_spec = spec if spec.startswith(("splade:", "onnx:", "asym:")) else f"splade:{spec}"  # a bare folder, as before
            res_by_w = hybrid_sweep(sweep_spec, queries, corpus, args.sweep, gold, as_served, args.units,
                                    max_length_doc=args.max_length_doc,
                                    max_length_query=args.max_length_query, dtype=args.dtype)
            for w, res in res_by_w.items():
                print(json.dumps({"encoder": spec, "task": args.task, "units": args.units, "lexical_weight": w, **res}),
                      flush=True)
            continue
        kw = {} if spec == "lexical" else {"max_length_doc": args.max_length_doc, "dtype": args.dtype,
                                           "max_length_query": args.max_length_query}
        res = evaluate(build_encoder(spec, **kw), queries, corpus, gold, as_served)
        print(json.dumps({"encoder": spec, "task": args.task, "max_length_doc": args.max_length_doc,
                          "max_length_query": args.max_length_query,
                          "dtype": args.dtype, **res}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
