"""A second worktree of an indexed repository: chunks re-encoded, seconds and disk added.

Clones ``--source`` (default: this repository) into a temporary folder with its own codelsr home,
indexes it, adds a worktree with ``git worktree add`` and indexes that. Disk is counted per inode
(hard links once), new files plus the growth of existing ones (the vector store).

    python -m tools.bench.worktree [--source PATH] [--encoder lexical|hybrid-code-tiny]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path


def disk_usage(home: Path) -> dict[tuple[int, int], int]:
    out = {}
    for dirpath, _, files in os.walk(home):
        for name in files:
            st = os.lstat(os.path.join(dirpath, name))
            out[(st.st_dev, st.st_ino)] = st.st_blocks * 512
    return out


def added(before: dict, after: dict) -> int:
    return sum(max(0, size - before.get(ino, 0)) for ino, size in after.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.worktree")
    parser.add_argument("--source", type=Path, default=Path(__file__).resolve().parents[2])
    parser.add_argument("--encoder", default="lexical")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="codelsr-bench-worktree-"))
    os.environ["CODELSR_HOME"] = str(work / "home")
    from codelsr.index import build_index

    try:
        repo = work / "repo"
        subprocess.run(["git", "clone", "-q", str(args.source), str(repo)], check=True)
        home = work / "home"
        home.mkdir()
        empty = disk_usage(home)
        first = build_index(repo, args.encoder)
        after_first = disk_usage(home)
        subprocess.run(["git", "-C", str(repo), "worktree", "add", "-q", "-b", "bench-wt", str(work / "wt")],
                       check=True)
        t0 = time.perf_counter()
        second = build_index(work / "wt")
        wall = time.perf_counter() - t0
        row = {"what": "second worktree", "source": str(args.source), "encoder": args.encoder,
               "files": first.files, "chunks": first.chunks,
               "first_encoded": first.encoded_chunks, "first_seconds": round(first.seconds, 2),
               "first_added_bytes": added(empty, after_first),
               "second_encoded": second.encoded_chunks, "second_seconds": round(wall, 2),
               "second_added_bytes": added(after_first, disk_usage(home)),
               "load": " ".join(f"{x:.2f}" for x in os.getloadavg())}
        row["disk_ratio"] = round(row["second_added_bytes"] / row["first_added_bytes"], 4)
        print(json.dumps(row))
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps(row) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
