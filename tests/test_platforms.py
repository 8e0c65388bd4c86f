"""Every supported Python: Seismic is optional, and where it is missing codelsr says so and what to do.

On CPython 3.11 / Linux x86_64 Seismic is installed, and these tests make it missing by patching
the one availability check; on Python 3.12+ (the 3.13 CI leg) it is missing for real.
"""

from __future__ import annotations

import logging
import platform
import tomllib
from pathlib import Path

import pytest
from conftest import skip_without_seismic
from packaging.markers import Marker
from packaging.requirements import Requirement

from codelsr.cli import main
from codelsr.errors import CodelsrError
from codelsr.index import backends, build_index, open_index, seismic_backend
from codelsr.search import search

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


@pytest.fixture
def without_seismic(monkeypatch):
    monkeypatch.setattr(seismic_backend, "available", lambda: False)


def top(repo: Path, query: str) -> list[tuple[str, float]]:
    return [(h.chunk_id, round(h.score, 4)) for h in search(repo, query, k=5).hits]


def test_pyproject_installs_seismic_exactly_where_the_code_says_it_has_wheels():
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    (seismic,) = [Requirement(r) for r in project["dependencies"] if r.startswith("pyseismic-lsr")]
    assert str(seismic.specifier) == seismic_backend.REQUIREMENT.removeprefix(seismic.name)
    assert seismic.marker.evaluate() == seismic_backend.has_wheels_here()
    wheel_platform = {"python_version": "3.11", "platform_python_implementation": "CPython",
                      "platform_system": "Linux", "platform_machine": "x86_64"}
    assert seismic.marker.evaluate(wheel_platform)
    for other in ({"python_version": "3.12"}, {"python_version": "3.13"}, {"platform_system": "Darwin"},
                  {"platform_machine": "aarch64"}, {"platform_python_implementation": "PyPy"}):
        assert not seismic.marker.evaluate({**wheel_platform, **other}), other
    assert Marker(f'python_version >= "{project["requires-python"].removeprefix(">=")}"').evaluate()


def test_asking_for_seismic_where_it_is_missing_names_the_platform_and_the_way_out(sample_repo, without_seismic):
    build_index(sample_repo)
    before = top(sample_repo, "matrix transpose")
    with pytest.raises(CodelsrError) as err:
        build_index(sample_repo, backend="seismic", force=True)
    message = str(err.value)
    assert "Seismic" in message and "--backend exact" in message
    if seismic_backend.has_wheels_here():
        assert "pip install 'pyseismic-lsr==0.5.4'" in message
    else:
        assert "wheels for CPython 3.11 on Linux x86_64 only" in message
        assert f"this is {platform.python_implementation()} {platform.python_version()}" in message
    # The refused build lost nothing: the previous index is still there and answers the same.
    assert open_index(sample_repo).manifest.backend == "exact"
    assert top(sample_repo, "matrix transpose") == before


def test_the_cli_refuses_seismic_in_one_line_when_it_is_missing(sample_repo, capsys, without_seismic):
    assert main(["index", str(sample_repo), "--backend", "seismic"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("codelsr: error: backend 'seismic' is not available: Seismic (pyseismic-lsr==0.5.4)")
    assert "\n" not in err


def test_auto_at_a_million_chunks_without_seismic_searches_exactly_and_says_why(caplog, without_seismic):
    with caplog.at_level(logging.WARNING, logger="codelsr.index.backends"):
        assert backends.choose_backend("auto", backends.SEISMIC_MIN_CHUNKS) == "exact"
        assert backends.choose_backend(None, backends.SEISMIC_MIN_CHUNKS - 1) == "exact"
    (record,) = caplog.records  # only the first call crosses the threshold
    assert "`auto` would pick Seismic" in record.getMessage() and "--backend exact" in record.getMessage()


def test_a_seismic_index_opened_where_seismic_is_missing_is_searched_exactly(sample_repo, monkeypatch, caplog):
    skip_without_seismic()  # building the Seismic index needs it; reading it then goes without
    build_index(sample_repo, backend="exact")
    exact = top(sample_repo, "matrix transpose data rows")
    build_index(sample_repo, backend="seismic")
    monkeypatch.setattr(seismic_backend, "available", lambda: False)
    reader = open_index(sample_repo)
    assert reader.manifest.backend == "seismic"
    with caplog.at_level(logging.WARNING, logger="codelsr.index.reader"):
        assert top(sample_repo, "matrix transpose data rows") == exact
    assert reader.backend.name == "exact"
    assert any("built with the seismic backend, searched exactly here" in r.getMessage() for r in caplog.records)

