"""Where the suite reads data and keeps its caches.

Shared benchmark data sits in the folder ``shared/data`` next to the repository (read-only; in CI
``../shared/data`` relative to the clone); ``CODELSR_SHARED_DATA`` overrides it. Anything derived
(the unpacked DevDocs pages, corpora written as files, indexes, embeddings) goes under
``evals/.cache/`` (git-ignored), or ``CODELSR_EVAL_CACHE``.
"""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path

EVALS_DIR = Path(__file__).resolve().parent
REPO_DIR = EVALS_DIR.parent
RESULTS_DIR = EVALS_DIR / "results"


class MissingDataError(FileNotFoundError):
    """A data file the task needs is not there; the message says where it was looked for."""


def shared_data() -> Path:
    env = os.environ.get("CODELSR_SHARED_DATA")
    return Path(env).expanduser().resolve() if env else (REPO_DIR / "../shared/data").resolve()


def shared_file(*parts: str) -> Path:
    path = shared_data().joinpath(*parts)
    if not path.exists():
        raise MissingDataError(
            f"{path} is missing: put CodeRAG-Bench's data in ../shared/data next to the repository "
            "or point CODELSR_SHARED_DATA at the folder that holds coderag-bench/ and devdocs/"
        )
    return path


def cache_dir(*parts: str) -> Path:
    env = os.environ.get("CODELSR_EVAL_CACHE")
    base = Path(env).expanduser() if env else EVALS_DIR / ".cache"
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def devdocs_pages() -> Path:
    """The unpacked ``plain/`` folder of DevDocs pages, extracted once (about 10 s, 170 MB)."""
    target = cache_dir("devdocs")
    done = target / ".complete"
    if not done.exists():
        archive = shared_file("devdocs", "devdocs_plain.tar.xz")
        tmp = cache_dir("devdocs.partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        shutil.rmtree(target / "plain", ignore_errors=True)
        (tmp / "plain").rename(target / "plain")
        shutil.rmtree(tmp, ignore_errors=True)
        done.write_text(str(archive) + "\n")
    return target / "plain"
