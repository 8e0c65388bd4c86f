"""What a user waits for with a learned encoder: a `codelsr search` process, the MCP server's first
search, and (``progressive``) the first answer while a large repository is being indexed.

    python -m tools.bench.startup search --repo PATH [--encoder hybrid-code-tiny] [--runs 5]
    python -m tools.bench.startup mcp --repo PATH [--encoder hybrid-code-tiny] [--runs 3]
    python -m tools.bench.startup make-repo --out PATH --chunks 20000
    python -m tools.bench.startup progressive --repo PATH [--encoder hybrid-code-tiny]

Every figure is wall time plus the CPU time of the child processes (user + system), and the
1-minute load average when it was taken: on a shared machine the wall time is mostly waiting for a
core. ``search`` and ``mcp`` index the repository first (``--foreground``) unless it is indexed with
that encoder already. Results are printed as JSON lines and appended to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

QUERIES = ["parse an http response", "render a table with borders", "read a file in chunks",
           "progress bar refresh rate", "escape markup in text"]


def codelsr_command() -> list[str]:
    script = Path(sys.executable).with_name("codelsr")
    return [str(script)] if script.exists() else [sys.executable, "-m", "codelsr"]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_run(args: Sequence[str], **kw) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run a child process; (result, wall seconds, CPU seconds of the child)."""
    cpu0, t0 = _children_cpu(), time.perf_counter()
    out = subprocess.run(list(args), capture_output=True, text=True, **kw)
    return out, time.perf_counter() - t0, _children_cpu() - cpu0


def load() -> float:
    return round(os.getloadavg()[0], 2)


def emit(record: dict, out: Path | None) -> None:
    line = json.dumps(record)
    print(line, flush=True)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("a") as f:
            f.write(line + "\n")


def ensure_indexed(repo: Path, encoder: str) -> None:
    status = subprocess.run([*codelsr_command(), "status", str(repo), "--json"], capture_output=True, text=True)
    current = json.loads(status.stdout) if status.returncode == 0 else {}
    if current.get("encoder") == encoder and (current.get("learned") or {}).get("state", "complete") == "complete":
        return
    out, wall, cpu = timed_run([*codelsr_command(), "index", str(repo), "--encoder", encoder, "--foreground",
                                "--json"])
    if out.returncode != 0:
        raise SystemExit(f"indexing failed: {out.stderr}")
    print(f"# indexed {repo} with {encoder} in {wall:.1f} s wall, {cpu:.1f} s CPU", file=sys.stderr)


def bench_search(repo: Path, encoder: str, runs: int, out: Path | None) -> dict:
    """`codelsr search` as a new process, ``runs`` times (a different query each time)."""
    ensure_indexed(repo, encoder)
    walls, cpus, loads = [], [], []
    for i in range(runs):
        loads.append(load())
        res, wall, cpu = timed_run([*codelsr_command(), "search", QUERIES[i % len(QUERIES)], "--repo", str(repo),
                                    "-k", "10", "--json"])
        if res.returncode != 0:
            raise SystemExit(res.stderr)
        answered_by = json.loads(res.stdout).get("encoder")
        walls.append(wall)
        cpus.append(cpu)
    record = {"bench": "search-process", "repo": str(repo), "encoder": encoder, "answered_by": answered_by,
              "runs": runs, "wall_median_s": round(statistics.median(walls), 3),
              "cpu_median_s": round(statistics.median(cpus), 3), "walls_s": [round(w, 3) for w in walls],
              "cpus_s": [round(c, 3) for c in cpus], "load": loads}
    emit(record, out)
    return record


async def _mcp_first_search(repo: Path) -> dict:
    import mcp
    from mcp import StdioServerParameters

    command, *args = codelsr_command()
    params = StdioServerParameters(command=command, args=[*args, "serve", "--root", str(repo)],
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"}, cwd=str(repo))
    cpu0, t0 = _children_cpu(), time.perf_counter()
    async with mcp.Client(params, mode="legacy") as c:
        t_ready = time.perf_counter()
        found = await c.call_tool("search_code", {"query": QUERIES[0], "repo": str(repo)})
        t_first = time.perf_counter()
        second = await c.call_tool("search_code", {"query": QUERIES[1], "repo": str(repo)})
        t_second = time.perf_counter()
    assert not found.is_error and not second.is_error, found.content[0].text
    return {"start_to_ready_s": round(t_ready - t0, 3), "first_search_s": round(t_first - t_ready, 3),
            "start_to_first_answer_s": round(t_first - t0, 3), "second_search_s": round(t_second - t_first, 3),
            "server_cpu_s": round(_children_cpu() - cpu0, 3),
            "answered_by": found.structured_content.get("encoders")}


def bench_mcp(repo: Path, encoder: str, runs: int, out: Path | None) -> list[dict]:
    """A fresh `codelsr serve` over stdio: time to the first `search_code` answer, ``runs`` times."""
    ensure_indexed(repo, encoder)
    records = []
    for _ in range(runs):
        before = load()
        record = {"bench": "mcp-first-search", "repo": str(repo), "encoder": encoder, "load": before,
                  **asyncio.run(_mcp_first_search(repo))}
        emit(record, out)
        records.append(record)
    return records


def make_repo(dest: Path, chunks: int) -> dict:
    """A git repository of about ``chunks`` chunks: standard-library modules, copied until enough."""
    import sysconfig

    from codelsr.chunking import chunk_file

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    if dest.exists():
        raise SystemExit(f"{dest} exists; pick a new folder")
    dest.mkdir(parents=True)
    total = files = 0
    for path in sorted(stdlib.rglob("*.py")):
        rel = path.relative_to(stdlib)
        if any(part in {"test", "tests", "idlelib", "site-packages", "lib2to3"} for part in rel.parts):
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        total += len(chunk_file(rel.as_posix(), text))
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest / rel)
        files += 1
        if total >= chunks:
            break
    git = ["git", "-C", str(dest), "-c", "user.email=bench@example.com", "-c", "user.name=bench"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "stdlib copy"], check=True)
    return {"repo": str(dest), "files": files, "chunks": total}


def bench_progressive(repo: Path, encoder: str, out: Path | None, poll: float = 10.0,
                      wait_learned: bool = True) -> dict:
    """`codelsr index --encoder <learned>` on a repository not indexed yet: when it returns, when the first
    search answers (and with which encoder), when the learned index is complete; ETA samples on the way."""
    t0, cpu0 = time.perf_counter(), _children_cpu()
    res = subprocess.run([*codelsr_command(), "index", str(repo), "--encoder", encoder, "--json"],
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(res.stderr)
    report = json.loads(res.stdout)
    t_return = time.perf_counter() - t0
    first = subprocess.run([*codelsr_command(), "search", QUERIES[0], "--repo", str(repo), "--json"],
                           capture_output=True, text=True)
    t_first = time.perf_counter() - t0
    first_encoder = json.loads(first.stdout)["encoder"] if first.returncode == 0 else f"error: {first.stderr}"
    samples = []
    while True:
        polled = subprocess.run([*codelsr_command(), "status", str(repo), "--json"], capture_output=True, text=True)
        if polled.returncode != 0:  # a status that fails (a broken install mid-upgrade) is noted, not fatal
            samples.append({"t": round(time.perf_counter() - t0, 1), "error": polled.stderr[-300:]})
            time.sleep(poll)
            continue
        learned = json.loads(polled.stdout).get("learned") or {}
        samples.append({"t": round(time.perf_counter() - t0, 1), "state": learned.get("state"),
                        "done": learned.get("done"), "total": learned.get("total"),
                        "eta_s": learned.get("eta_seconds"), "load": load()})
        if learned.get("state") != "building" or not wait_learned:
            break
        time.sleep(poll)
    t_learned = time.perf_counter() - t0
    after = subprocess.run([*codelsr_command(), "search", QUERIES[0], "--repo", str(repo), "--json"],
                           capture_output=True, text=True)
    record = {"bench": "progressive", "repo": str(repo), "encoder": encoder, "chunks": report["chunks"],
              "files": report["files"], "index_returned_s": round(t_return, 1),
              "first_search_answered_s": round(t_first, 1), "first_search_encoder": first_encoder,
              "learned_state": learned.get("state"), "learned_complete_s": round(t_learned, 1),
              "search_encoder_after": json.loads(after.stdout)["encoder"] if after.returncode == 0 else None,
              "last_build": _last_build(repo), "samples": samples, "load_end": load(),
              "cli_cpu_s": round(_children_cpu() - cpu0, 1)}
    emit(record, out)
    return record


def _last_build(repo: Path) -> dict | None:
    from codelsr.index.catalog import index_root_for

    state = index_root_for(repo) / "progressive.json"
    if not state.is_file():
        return None
    build = json.loads(state.read_text()).get("last_build") or {}
    return {k: build.get(k) for k in ("chunks", "encoded_chunks", "reused_chunks", "seconds")}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.bench.startup", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    for name in ("search", "mcp"):
        p = sub.add_parser(name)
        p.add_argument("--repo", type=Path, required=True)
        p.add_argument("--encoder", default="hybrid-code-tiny")
        p.add_argument("--runs", type=int, default=5 if name == "search" else 3)
        p.add_argument("--out", type=Path, default=Path("/tmp/codelsr-bench/startup.jsonl"))
    p = sub.add_parser("progressive")
    p.add_argument("--repo", type=Path, required=True)
    p.add_argument("--encoder", default="hybrid-code-tiny")
    p.add_argument("--poll", type=float, default=10.0)
    p.add_argument("--no-wait-learned", action="store_true",
                   help="record the lexical phase only (when the index returned, the first search) and leave")
    p.add_argument("--out", type=Path, default=Path("/tmp/codelsr-bench/startup.jsonl"))
    p = sub.add_parser("make-repo")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--chunks", type=int, default=20_000)
    args = ap.parse_args(argv)
    if args.what == "search":
        bench_search(args.repo.resolve(), args.encoder, args.runs, args.out)
    elif args.what == "mcp":
        bench_mcp(args.repo.resolve(), args.encoder, args.runs, args.out)
    elif args.what == "progressive":
        bench_progressive(args.repo.resolve(), args.encoder, args.out, args.poll, not args.no_wait_learned)
    elif args.what == "make-repo":
        print(json.dumps(make_repo(args.out, args.chunks)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
