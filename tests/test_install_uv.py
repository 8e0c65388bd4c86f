"""The one-line install for MCP clients, as the README documents it: uv installs codelsr from this
checkout, with the Python that runs the suite, into folders of its own (no hand-made virtual
environment), and a real MCP client launches it and calls the tools over stdio.

Everything uv touches (its cache, tool and bin folders) lies in a temporary folder, so the install
is a fresh one: the packages come from the package index, nothing from an earlier run is reused.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import mcp
import pytest
from mcp import StdioServerParameters
from test_server_transports import index_search_explain

from conftest import SAMPLE_FILES, make_git_repo

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
INSTALL_TIMEOUT_S = 900


def uv_program(name: str) -> str:
    """``uv`` or ``uvx``: beside this Python (the test extra installs uv), else on PATH."""
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed: `pip install -e '.[test]'` brings uv (the test extra pins it)")
    return found


def this_python() -> str:
    """The interpreter behind this (virtual) environment, for uv's ``--python``."""
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    return str(base if base.exists() else sys.executable)


@pytest.fixture(scope="module")
def uv_env(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("uv")
    # Without PYTHONPATH: a developer's (pointing at a checkout's src/) would shadow the installed copy.
    return {
        **{k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")},
        "UV_CACHE_DIR": str(folder / "cache"),
        "UV_TOOL_DIR": str(folder / "tools"),
        "UV_TOOL_BIN_DIR": str(folder / "bin"),
        "UV_PYTHON_DOWNLOADS": "never",  # use the Python named, never fetch one
        "UV_NO_CONFIG": "1",  # ignore the user's uv.toml
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture(scope="module")
def installed(uv_env) -> Path:
    """``uv tool install`` of this checkout; the path of the ``codelsr`` it put on the bin folder."""
    done = subprocess.run([uv_program("uv"), "tool", "install", "--python", this_python(), str(REPO)],
                          env=uv_env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    assert "Installed 1 executable: codelsr" in done.stderr
    return Path(uv_env["UV_TOOL_BIN_DIR"]) / "codelsr"


async def test_uv_tool_install_gives_a_codelsr_on_this_python_that_serves_mcp_over_stdio(installed, uv_env, tmp_path):
    tool_python = Path(uv_env["UV_TOOL_DIR"]) / "codelsr" / "bin" / "python"
    version = subprocess.run([str(tool_python), "-c", "import sys, codelsr; print(sys.version_info[:2], codelsr.__file__)"],
                             env=uv_env, capture_output=True, text=True, check=True).stdout
    assert version.startswith(str(sys.version_info[:2])), version
    assert f" {uv_env['UV_TOOL_DIR']}/codelsr/" in version  # an installed copy, not this checkout's source
    repo = make_git_repo(tmp_path / "root" / "sample", SAMPLE_FILES)
    params = StdioServerParameters(command=str(installed), args=["serve", "--root", str(repo.parent)],
                                   env={**uv_env, "CODELSR_HOME": os.environ["CODELSR_HOME"]}, cwd=str(repo.parent))
    async with mcp.Client(params, mode="legacy") as c:
        indexed = await index_search_explain(c, repo)
    assert indexed["backend"] == "exact" and indexed["encoder"] == "lexical"


async def test_uvx_from_the_checkout_launched_by_the_mcp_client_answers_real_calls(installed, uv_env, tmp_path):
    """The README's ``uvx --from PATH codelsr serve`` line as a client's server command, started in
    the project folder, which is then the root."""
    repo = make_git_repo(tmp_path / "root" / "sample", SAMPLE_FILES)
    params = StdioServerParameters(
        command=uv_program("uvx"),
        args=["--python", this_python(), "--from", str(REPO), "codelsr", "serve"],
        env={**uv_env, "CODELSR_HOME": os.environ["CODELSR_HOME"]}, cwd=str(repo.parent),
    )
    async with mcp.Client(params, mode="legacy") as c:
        await index_search_explain(c, repo)
