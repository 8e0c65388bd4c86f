"""``codelsr serve``: run the server over stdio (default) or streamable HTTP on loopback.

On stdio, stdout is the protocol. Native code (the Seismic core) prints to fd 1, and swapping fd 1
temporarily while the protocol writer runs is a race, so before anything else the process moves the
protocol to private descriptors, points fd 1 at stderr and fd 0 at /dev/null for good, and hands
the private descriptors to the SDK's stdio transport. No stray print can reach the wire.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import sys
from pathlib import Path

import anyio

from codelsr.errors import CodelsrError
from codelsr.git import harden_env
from codelsr.server.app import create_server

log = logging.getLogger("codelsr.server")

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def parse_http(spec: str) -> tuple[str, int]:
    """``[HOST:]PORT`` -> (host, port); the host defaults to 127.0.0.1 and may be ``[v6]``."""
    host, sep, port = spec.rpartition(":")
    host = host.strip("[]") if sep else "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        raise CodelsrError(f"--http takes [HOST:]PORT, e.g. 8765 or 127.0.0.1:8765; got {spec!r}") from None
    if not 0 < number < 65536:
        raise CodelsrError(f"--http port must be 1-65535, got {number}")
    return host or "127.0.0.1", number


def _dup_private(fd: int) -> int:
    """A close-on-exec duplicate of ``fd`` above the standard descriptors."""
    try:
        import fcntl

        return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    except ImportError:  # pragma: no cover - Windows
        return os.dup(fd)


def claim_stdio() -> tuple[anyio.AsyncFile[str], anyio.AsyncFile[str]]:
    """Move the protocol off fds 0/1 for the rest of the process; return the wire as text streams."""
    sys.stdout.flush()
    wire_in, wire_out = _dup_private(0), _dup_private(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)  # fd 1 is stderr from now on: native prints and sys.stdout land there
    stdin = io.TextIOWrapper(os.fdopen(wire_in, "rb"), encoding="utf-8", errors="replace")
    stdout = io.TextIOWrapper(os.fdopen(wire_out, "wb"), encoding="utf-8", write_through=True)
    return anyio.wrap_file(stdin), anyio.wrap_file(stdout)


async def _serve_stdio(server, stdin: anyio.AsyncFile[str], stdout: anyio.AsyncFile[str]) -> None:
    from mcp.server.stdio import stdio_server

    lowlevel = server._lowlevel_server  # the SDK's run_stdio_async cannot take our streams
    async with stdio_server(stdin=stdin, stdout=stdout) as (read_stream, write_stream):
        await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())


def serve_command(args: argparse.Namespace) -> int:
    roots = [Path(r) for r in (args.root or [Path.cwd()])]
    encoder = getattr(args, "encoder", None)
    if getattr(args, "milvus", None):
        from codelsr.index.milvus_backend import URI_ENV

        os.environ[URI_ENV] = args.milvus  # index_repo builds into this engine (see CodelsrTools)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="codelsr: %(message)s")
    harden_env()
    if args.http is None:
        server = create_server(roots, encoder)  # bad roots or encoder fail here, before the claim
        stdin, stdout = claim_stdio()
        log.info("MCP server on stdio; roots: %s", ", ".join(map(str, roots)))
        anyio.run(_serve_stdio, server, stdin, stdout)
        return 0
    host, port = parse_http(args.http)
    server = create_server(roots, encoder)
    if host not in LOOPBACK:
        log.warning("serving on %s, not loopback: anyone who can reach this address can read the code under "
                    "the roots; there is no authentication", host)
    shown = f"[{host}]" if ":" in host else host
    log.info("MCP server on http://%s:%d/mcp; roots: %s", shown, port, ", ".join(map(str, roots)))
    anyio.run(lambda: server.run_streamable_http_async(host=host, port=port))
    return 0
