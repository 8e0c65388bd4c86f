"""``codelsr serve`` as a real subprocess: over stdio, and over streamable HTTP on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import mcp
import pytest
from mcp import StdioServerParameters
from mcp.client.stdio import stdio_client

from codelsr.errors import CodelsrError
from codelsr.index.backends import BACKENDS
from codelsr.server.serve import parse_http

from conftest import SAMPLE_FILES, make_git_repo

pytestmark = pytest.mark.slow

# Writes to fd 1 like native code and from Python during every build, and builds with the Seismic
# backend where it is installed (its Rust core prints while building and loading), then runs the
# CLI: the protocol must survive all of it, and the noise must land on stderr.
NOISY_SERVE = """
import os, sys
import codelsr.server.app as app
real = app.index_repository
def noisy_build(*args, **kwargs):
    os.write(1, b"native noise on fd 1\\n")
    print("python noise on sys.stdout", flush=True)
    return real(*args, backend=os.environ["NOISY_BACKEND"], **kwargs)
app.index_repository = noisy_build
from codelsr.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture
def repo(tmp_path) -> Path:
    return make_git_repo(tmp_path / "root" / "sample", SAMPLE_FILES)


def codelsr_command() -> list[str]:
    script = Path(sys.executable).with_name("codelsr")
    return [str(script)] if script.exists() else [shutil.which("codelsr") or "codelsr"]


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}  # carries CODELSR_HOME from the autouse fixture


async def index_search_explain(c: mcp.Client, repo: Path) -> dict:
    tools = {t.name for t in (await c.list_tools()).tools}
    assert tools == {"index_repo", "search_code", "explain_match", "index_status"}
    notes = []

    async def on_progress(progress, total, message):
        notes.append(progress)

    indexed = await c.call_tool("index_repo", {"path": str(repo)}, progress_callback=on_progress)
    assert not indexed.is_error, indexed.content[0].text
    assert indexed.structured_content["files"] == 5 and notes and notes[-1] == 100
    found = await c.call_tool("search_code", {"query": "transpose matrix"})
    hit = found.structured_content["hits"][0]
    assert hit["path"] == "core/matrix.rs"
    explained = await c.call_tool("explain_match", {"query": "transpose matrix", "chunk_id": hit["chunk_id"]})
    terms = explained.structured_content["terms"]
    assert sum(t["contribution"] for t in terms) == pytest.approx(hit["score"], rel=1e-5)
    refused = await c.call_tool("search_code", {"query": "matrix", "repo": "/"})
    assert refused.is_error and "outside the folders" in refused.content[0].text
    status = await c.call_tool("index_status", {})
    assert status.structured_content["repositories"][0]["repo"] == str(repo.resolve())
    return indexed.structured_content


async def test_codelsr_serve_over_stdio_answers_real_calls(repo):
    command, *args = codelsr_command()
    params = StdioServerParameters(command=command, args=[*args, "serve", "--root", str(repo.parent)],
                                   env=child_env(), cwd=str(repo.parent))
    async with mcp.Client(params, mode="legacy") as c:
        await index_search_explain(c, repo)


async def test_output_on_fd_1_during_a_tool_call_never_reaches_the_stdio_protocol(repo, tmp_path):
    errlog = tmp_path / "stderr.txt"
    backend = "seismic" if BACKENDS["seismic"].available() else "exact"  # exact: Python 3.12+
    params = StdioServerParameters(command=sys.executable, args=["-c", NOISY_SERVE, "serve"],
                                   env={**child_env(), "NOISY_BACKEND": backend}, cwd=str(repo.parent))
    with errlog.open("w") as err:
        async with mcp.Client(stdio_client(params, errlog=err), mode="legacy") as c:
            indexed = await index_search_explain(c, repo)  # the default root is the current folder
    assert indexed["backend"] == backend
    noise = errlog.read_text()
    assert "native noise on fd 1" in noise and "python noise on sys.stdout" in noise


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_codelsr_serve_over_streamable_http_binds_loopback_and_answers_real_calls(repo, tmp_path):
    port = free_port()
    errlog = tmp_path / "stderr.txt"
    with errlog.open("w") as err:
        proc = subprocess.Popen([*codelsr_command(), "serve", "--http", str(port), "--root", str(repo.parent)],
                                stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=child_env())
        try:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, errlog.read_text()
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, errlog.read_text()
                    time.sleep(0.2)
            async with mcp.Client(f"http://127.0.0.1:{port}/mcp", mode="legacy") as c:
                await index_search_explain(c, repo)
        finally:
            proc.terminate()
            proc.wait(10)
    assert f"http://127.0.0.1:{port}/mcp" in errlog.read_text()


@pytest.mark.parametrize("spec, expected", [
    ("8765", ("127.0.0.1", 8765)),
    ("127.0.0.1:9000", ("127.0.0.1", 9000)),
    ("0.0.0.0:80", ("0.0.0.0", 80)),
    ("[::1]:8765", ("::1", 8765)),
    (":8765", ("127.0.0.1", 8765)),
])
def test_http_addresses_default_to_loopback(spec, expected):
    assert parse_http(spec) == expected


@pytest.mark.parametrize("spec", ["localhost", "127.0.0.1:http", "70000"])
def test_bad_http_addresses_are_refused(spec):
    with pytest.raises(CodelsrError, match="--http"):
        parse_http(spec)
