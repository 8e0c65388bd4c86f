"""What renaming one file costs a reindex, with and without context headers (issue 18).

A chunk's context header holds its path's words, and vectors are cached by the hash of header and
text, so a renamed file's headed chunks are encoded again. This copies a package's sources into a
temporary git repository with its own codelsr home, indexes it under each context scheme, renames
one file with ``git mv`` and reindexes: chunks encoded and reused, seconds.

    python -m tools.bench.rename [--package click] [--file core.py] [--encoder lexical]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.email=bench@example.com", "-c", "user.name=bench", "-c",
                    "commit.gpgsign=false", *args], cwd=repo, check=True, capture_output=True)


def rename_cost(package: str, file: str, encoder: str, scheme: str, work: Path) -> dict:
    """Index a git copy of ``package`` under ``scheme``, rename ``file``, reindex: the report."""
    from codelsr.chunking import ChunkingOptions
    from codelsr.index import build_index

    source = Path(importlib.import_module(package).__file__).parent
    repo = work / f"repo-{scheme.replace('+', '-')}"
    shutil.copytree(source, repo / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.so"))
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "sources")
    first = build_index(repo, encoder, options=ChunkingOptions(context=scheme))
    new_name = f"renamed_{file}"
    _git(repo, "mv", f"{package}/{file}", f"{package}/{new_name}")
    _git(repo, "commit", "-qm", "rename")
    started = time.perf_counter()
    after = build_index(repo)
    return {"context": scheme, "encoder": encoder, "chunks": first.chunks,
            "renamed": f"{package}/{file} -> {package}/{new_name}", "encoded": after.encoded_chunks,
            "reused": after.reused_chunks, "seconds": round(time.perf_counter() - started, 3)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--package", default="click")
    p.add_argument("--file", default="core.py")
    p.add_argument("--encoder", default="lexical")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="codelsr-rename-") as tmp:
        os.environ["CODELSR_HOME"] = str(Path(tmp) / "home")  # a cold vector store
        for scheme in ("path+symbol", "none"):
            print(json.dumps(rename_cost(args.package, args.file, args.encoder, scheme, Path(tmp))), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
