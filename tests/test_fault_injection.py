"""Seeded fault injection: every kind of index file, damaged every way (truncated, one bit flipped
at the same size, deleted, replaced by garbage, replaced by the same file of another generation),
then status, search, the MCP tools and a plain reindex are asked about it.

What must hold in every case: status never calls the index healthy (CLI, library, MCP
``index_status``); a search never serves the damaged generation (it fails with one line naming
the file and the fix); a plain ``codelsr index`` (no ``--force``) repairs it, keeps the index's
encoder, and reuses vectors from what is intact. The index is built once per module (four
generations, so "another generation" has different files to offer) and copied for each case.

The one exception, checked as such: ``CURRENT`` pointed at the previous generation (which is
complete and intact, as after a crash between publishing steps) is served, and status says the
working tree changed since that index, so it is never reported as current.
"""

from __future__ import annotations

import json
import random
import shutil
import time
import zlib
from pathlib import Path

import mcp
import pytest
from conftest import SAMPLE_FILES, make_git_repo, write

from codelsr.cli import main
from codelsr.index import build_index, index_root_for, index_status
from codelsr.index import reader as reader_module
from codelsr.index.health import check_index
from codelsr.server import create_server

FILES = ["CURRENT", "manifest.json", "files.json", "checksums.json", "chunks.sqlite", "vectors.npz", "terms.json",
         "delta/chunks.sqlite", "delta/vectors.npz", "delta/terms.json"]
DAMAGES = ["truncate", "flip", "delete", "garbage", "wrong_generation"]
CASES = [(f, d) for f in FILES for d in DAMAGES]
TOKENIZER_V2 = "def replaced_tokenizer():\n    return 'new tokenizer'\n"
DEBOUNCE_V2 = "export function throttleRequests(limit) {\n  return limit * 2;\n}\n"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The repository and a copy of its index folder: current generation = main + delta; beside it
    the previous generation (other delta) and, set aside, an older main segment."""
    base = tmp_path_factory.mktemp("faults")
    repo = make_git_repo(base / "repo", SAMPLE_FILES)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CODELSR_HOME", str(base / "home"))
        older = build_index(repo)
        root = index_root_for(repo)
        shutil.copytree(root / older.generation, base / "older")
        write(repo, "core/matrix.rs", SAMPLE_FILES["core/matrix.rs"] + "\npub fn identity() {}\n")
        build_index(repo, force=True)  # a new main segment, different from the older one
        # Generation names carry the second they were published in: one second apart, so the
        # clean-up keeps the previous generation rather than one published in the same second.
        time.sleep(1.1)
        write(repo, "src/tokenizer.py", TOKENIZER_V2)
        previous = build_index(repo)
        time.sleep(1.1)
        write(repo, "web/debounce.js", DEBOUNCE_V2)
        current = build_index(repo)
        assert sorted(p.name for p in root.glob("gen-*")) == sorted([previous.generation, current.generation])
        assert current.delta_chunks > 0 and not current.compacted and previous.generation != current.generation
        shutil.copytree(root, base / "index")
    return repo, base / "index", base / "older", current.generation, previous.generation


def _install(built, home: Path) -> tuple[Path, Path]:
    repo, index, _, current, _ = built
    root = index_root_for(repo)
    assert root.parent == home / "indexes"
    shutil.copytree(index, root)
    reader_module.forget_open_indexes()
    return root, root / current


def _other_generation_file(built, root: Path, victim: str) -> bytes:
    """The same file of another generation, differing from the current one."""
    _, _, older, current, previous = built
    mine = (root / current / victim).read_bytes()
    for source in (root / previous / victim, older / victim):
        if source.is_file() and source.read_bytes() != mine:
            return source.read_bytes()
    raise AssertionError(f"no other generation has a different {victim}")


def damage(built, root: Path, victim: str, how: str, rng: random.Random) -> None:
    _, _, _, current, previous = built
    path = root / victim if victim == "CURRENT" else root / current / victim
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: rng.randrange(len(data))])
    elif how == "flip":
        end = len(data.rstrip(b"\n")) if victim == "CURRENT" else len(data)  # the pointer's name, not its newline
        at = rng.randrange(end)
        flipped = bytearray(data)
        flipped[at] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(flipped))
    elif how == "delete":
        path.unlink()
    elif how == "garbage":
        path.write_bytes(rng.randbytes(rng.randint(1, 2 * len(data))))
    elif how == "wrong_generation":
        path.write_bytes((previous + "\n").encode() if victim == "CURRENT" else _other_generation_file(built, root, victim))
    assert not path.exists() or path.read_bytes() != data or how == "delete"


def _names(text: str, victim: str, how: str) -> bool:
    """Whether ``text`` names the damaged file. A checksum list of another generation cannot say
    which side is wrong: the files it disagrees with are named instead."""
    if (victim, how) == ("checksums.json", "wrong_generation"):
        return any(Path(f).name in text for f in FILES[1:])
    return Path(victim).name in text


def _mcp(server):
    return mcp.Client(server, mode="legacy")


async def _mcp_answers(repo: Path, default_encoder: str | None = None) -> tuple[dict, str | None, dict | None]:
    """(index_status of repo, search_code error or None, structured search result or None)."""
    async with _mcp(create_server([repo.parent], default_encoder)) as c:
        status = (await c.call_tool("index_status", {"repo": str(repo)})).structured_content["repositories"][0]
        found = await c.call_tool("search_code", {"query": "replaced tokenizer", "repo": str(repo)})
    if found.is_error:
        return status, found.content[0].text, None
    return status, None, found.structured_content


@pytest.mark.parametrize("victim, how", CASES, ids=[f"{v}-{d}" for v, d in CASES])
async def test_damage_is_never_reported_healthy_nor_served_and_a_plain_reindex_repairs_it(
        built, codelsr_home, victim, how, capsys):
    repo = built[0]
    root, _ = _install(built, codelsr_home)
    rng = random.Random(zlib.crc32(f"{victim}/{how}".encode()))
    damage(built, root, victim, how, rng)

    if victim == "CURRENT" and how == "wrong_generation":
        # A complete, intact older generation (as a crash between rename and pointer swap leaves it):
        # served, but status must say the working tree moved on since.
        status = index_status(repo, verify=True)
        assert status.state == "ok" and status.generation == built[4] and status.changed_since_index is True
        mcp_status, err, _ = await _mcp_answers(repo)
        assert err is None and mcp_status["changed_since_index"] is True and "index_repo" in mcp_status["hint"]
    else:
        # status: library, CLI (quick and --verify), MCP; never healthy, naming the file and the fix
        status = index_status(repo)
        assert status.state == "damaged", (victim, how, status)
        assert any(_names(p, victim, how) for p in status.problems) and "codelsr index" in status.fix
        assert main(["status", str(repo)]) == 1
        out = capsys.readouterr().out
        assert "DAMAGED" in out and _names(out, victim, how) and "fix:" in out
        assert main(["verify", str(repo)]) == 1
        capsys.readouterr()
        # search: one line naming the file, never results from the damaged generation
        reader_module.forget_open_indexes()
        assert main(["search", "replaced tokenizer", "--repo", str(repo)]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err and _names(err, victim, how) and "codelsr index" in err
        # MCP: the same truths, the encoder of the index not forgotten
        reader_module.forget_open_indexes()
        mcp_status, mcp_error, served = await _mcp_answers(repo)
        assert served is None, f"{victim} {how}: the damaged index was served over MCP"
        assert mcp_status["state"] == "damaged" and "index_repo" in mcp_status["hint"]
        assert any(_names(p, victim, how) for p in mcp_status["problems"])
        assert _names(mcp_error, victim, how) and "index_repo" in mcp_error

    # a plain reindex (no --force) repairs; half the cases through MCP with another default encoder
    if rng.random() < 0.5:
        assert main(["index", str(repo), "--json"]) == 0, capsys.readouterr().err
        report = json.loads(capsys.readouterr().out)
    else:
        async with _mcp(create_server([repo.parent], "splade-code-tiny")) as c:
            result = await c.call_tool("index_repo", {"path": str(repo)})
        assert not result.is_error, result.content[0].text
        report = result.structured_content
    assert report["encoder"] == "lexical", "the repair dropped the index's encoder for a default"
    assert report["reused_chunks"] > 0, f"{victim} {how}: nothing was salvaged from the intact segments"
    assert check_index(repo, full=True).state == "ok"
    reader_module.forget_open_indexes()
    assert main(["search", "replaced tokenizer", "--repo", str(repo), "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert hits[0]["path"] == "src/tokenizer.py"


def test_the_suite_covers_every_file_kind_with_every_damage():
    assert len(CASES) == len(FILES) * len(DAMAGES) == 50
