"""End to end: ``search_code`` through the MCP server (in-process ``mcp.Client``), and the same
queries through ``search_index`` in-process, on an index built by ``build_index``.

The repository is a folder holding copies of the source files behind the first ``n`` real chunks
(stdlib, then site-packages), so codelsr's own walker and chunker make the index.
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
from pathlib import Path
from types import SimpleNamespace

from tools.bench.corpus import Collection
from tools.bench.measure import latencies, load_average


def make_repo(coll: Collection, folder: Path) -> Path:
    if folder.is_dir():
        return folder
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for i, src in enumerate(coll.files or []):
        p = Path(src)
        dest = tmp / f"d{i // 500:03d}" / f"{i:06d}_{p.name if p.suffix else p.name + '.txt'}"
        dest.parent.mkdir(exist_ok=True)
        shutil.copyfile(p, dest)
    tmp.rename(folder)
    return folder


def run(coll: Collection, queries: list[str], work: Path, log, backend: str = "auto",
        reuse: bool = True) -> list[dict]:
    """``reuse``: keep an index of the same repository and backend from an earlier run."""
    import anyio
    import mcp

    from codelsr.index import build_index
    from codelsr.index.reader import is_indexed, open_index
    from codelsr.search import search_index

    repo = make_repo(coll, work / f"e2e_repo_{len(coll.texts or [])}")
    os.environ.setdefault("CODELSR_HOME", str(work / "home"))
    if reuse and is_indexed(repo) and backend in ("auto", open_index(repo).manifest.backend):
        reader = open_index(repo)
        report = SimpleNamespace(chunks=reader.manifest.chunk_count, backend=reader.manifest.backend)
        log(f"# e2e index: reusing {repo} ({report.chunks} chunks, backend {report.backend})")
    else:
        t0 = time.perf_counter()
        report = build_index(repo, "lexical", backend=backend)
        build_s = time.perf_counter() - t0
        log(f"# e2e index: {report.chunks} chunks from {report.files} files, backend {report.backend}, "
            f"{build_s:.0f} s (chunk + encode + write)")
        reader = open_index(repo)
    search_index(reader, queries[0])  # loads the backend and the encoder statistics
    inproc = latencies(lambda q: search_index(reader, q, k=10), queries)
    rows = [{"what": "search_index in-process", "chunks": report.chunks, "backend": report.backend, **inproc,
             "load": load_average()}]
    log(rows[-1])

    try:
        from codelsr.server import create_server
    except ImportError as exc:  # the server is optional for this benchmark
        log(f"# MCP server not importable ({exc}); end-to-end measured in-process only")
        return rows

    async def through_mcp() -> dict:
        server = create_server([repo])
        async with mcp.Client(server, mode="legacy") as client:
            args = {"query": queries[0], "repo": str(repo), "k": 10}
            await client.call_tool("search_code", args)  # warm-up
            wall, cpu = [], []
            for q in queries:
                c, t = time.process_time(), time.perf_counter()
                result = await client.call_tool("search_code", {**args, "query": q})
                wall.append((time.perf_counter() - t) * 1000)
                cpu.append((time.process_time() - c) * 1000)  # all threads: server, client, worker
                if getattr(result, "is_error", False) or getattr(result, "isError", False):
                    raise RuntimeError(f"search_code failed: {result}")
        from tools.bench.measure import percentile

        wall.sort()
        return {"what": "search_code via mcp.Client (in-process)", "chunks": report.chunks,
                "backend": report.backend, "p50_ms": wall[len(wall) // 2], "p99_ms": percentile(wall, 99),
                "cpu_p50_ms": statistics.median(cpu), "n": len(wall), "load": load_average()}

    rows.append(anyio.run(through_mcp))
    log(rows[-1])
    return rows
