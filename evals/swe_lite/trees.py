"""Source trees for SWE-bench Lite instances: a PyPI release (approximate base) or a mirror clone
(exact base).

* **Approximate** (default): the instance's ``release`` -- the project's last PyPI release at or
  before the base commit -- downloaded with ``pip download --no-deps`` and cached. An sdist is
  tried first (it keeps the repository layout: ``src/``, ``lib/``, tests, docs); when pip cannot
  prepare it (old build systems need their build dependencies just to read metadata) a wheel is
  taken instead, and its package folders are placed where the repository keeps them
  (:data:`WHEEL_PREFIX`: ``matplotlib/...`` -> ``lib/matplotlib/...``). A wheel holds no tests
  and no docs.
* **Exact** (``--mirror DIR``): ``git -C DIR/<owner>__<name> archive <base_commit>`` (or
  ``DIR/<name>``, or ``DIR/<owner>/<name>``), where a user has clones.

Either way the tree is unpacked once into the cache, keeping only the files the task indexes
(:func:`kept`): Python sources and documentation.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from evals.paths import cache_dir

PYPI_NAMES = {
    "astropy/astropy": "astropy", "django/django": "Django", "matplotlib/matplotlib": "matplotlib",
    "mwaskom/seaborn": "seaborn", "pallets/flask": "Flask", "psf/requests": "requests",
    "pydata/xarray": "xarray", "pylint-dev/pylint": "pylint", "pytest-dev/pytest": "pytest",
    "scikit-learn/scikit-learn": "scikit-learn", "sphinx-doc/sphinx": "Sphinx", "sympy/sympy": "sympy",
}
# Where a wheel's top-level entries live in the repository (the rest sit at the root).
WHEEL_PREFIX = {"matplotlib/matplotlib": "lib/", "pytest-dev/pytest": "src/", "pallets/flask": "src/"}
# A wheel of a compiled project for an interpreter of its time (old releases have no cp311 wheel).
WHEEL_TARGETS = [(), ("--platform", "manylinux2014_x86_64", "--python-version", "3.9", "--implementation", "cp"),
                 ("--platform", "manylinux1_x86_64", "--python-version", "3.7", "--implementation", "cp"),
                 ("--platform", "manylinux1_x86_64", "--python-version", "3.6", "--implementation", "cp")]
DOC_SUFFIXES = (".rst", ".md", ".txt")
TREES_DIR = "trees-v2"  # unpacked trees; v2: test files left out (see kept)
PIP_TIMEOUT = 180
# Compiled projects: pip would build numpy & co. just to read an sdist's metadata; take a wheel first.
WHEEL_FIRST = {"matplotlib/matplotlib", "scikit-learn/scikit-learn", "astropy/astropy"}


class TreeUnavailable(RuntimeError):
    """No source tree could be had for an instance (the message says what was tried)."""


@dataclass(frozen=True)
class Tree:
    """An unpacked source tree: ``root`` holds the kept files under their repository paths.

    ``kind`` is ``"approximate"`` (a PyPI release) or ``"exact"`` (the base commit), ``source``
    says which artifact it came from, ``key`` names it (one tree serves every instance on it).
    """

    repo: str
    key: str
    kind: str
    source: str
    root: Path

    def files(self) -> list[str]:
        return sorted(p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file())


TEST_DIRS = frozenset({"tests", "test", "testing"})


def is_test_file(path: str) -> bool:
    """Test code: a file under a ``tests``/``test``/``testing`` folder, ``test_*.py``, ``*_test.py``
    or ``conftest.py``. No SWE-bench Lite gold file is one (the gold patch excludes tests)."""
    parts = PurePosixPath(path).parts
    name = parts[-1] if parts else ""
    return (any(p in TEST_DIRS for p in parts[:-1]) or name.startswith("test_") or name.endswith("_test.py")
            or name == "conftest.py")


def kept(path: str) -> bool:
    """Whether the task indexes a file: Python sources and docs, not tests, never build or VCS
    folders. Tests are left out so that sdist trees (which ship them) and wheel trees (which
    mostly do not) hold the same kind of corpus, and because indexing them tripled the cost of
    Django's trees on a 2-core machine; the docs are there when the artifact has them (sdists)."""
    parts = PurePosixPath(path).parts
    if any(p in {".git", "__pycache__", "build", ".tox", ".eggs"} or p.endswith(".egg-info") for p in parts[:-1]):
        return False
    if is_test_file(path):
        return False
    return path.endswith(".py") or path.lower().endswith(DOC_SUFFIXES)


def _slug(repo: str) -> str:
    return repo.replace("/", "__")


def _pip(args: list[str], dest: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q", "-d", str(dest), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT)


def download_release(repo: str, release: str) -> Path:
    """The cached sdist or wheel of ``repo``'s PyPI ``release`` (downloaded once with pip)."""
    name = PYPI_NAMES.get(repo)
    if name is None:
        raise TreeUnavailable(f"no PyPI name known for {repo}")
    folder = cache_dir("swe-lite", "downloads", _slug(repo), release)
    done = folder / "artifact.json"
    failed = folder / "failed.json"  # pip's answer is kept: retrying costs minutes and changes nothing
    if done.exists():
        return folder / json.loads(done.read_text())["file"]
    if failed.exists():
        raise TreeUnavailable(json.loads(failed.read_text())["error"] + f" (cached; delete {failed} to retry)")
    tried = []
    # Without build isolation first: pip then reads an old setup.py with this venv's setuptools
    # instead of installing a build environment per download (seconds each).
    sdist = [("sdist", ["--no-binary", ":all:", "--no-build-isolation"]), ("sdist", ["--no-binary", ":all:"])]
    wheels = [("wheel", ["--only-binary", ":all:", *t]) for t in WHEEL_TARGETS]
    attempts = wheels + sdist if repo in WHEEL_FIRST else sdist + wheels
    for kind, extra in attempts:
        tmp = folder / f"partial-{os.getpid()}"  # two downloaders may meet on one release
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            proc = _pip([*extra, f"{name}=={release}"], tmp)
            ok = proc.returncode == 0
            err = proc.stderr.strip().splitlines()[-1:] if not ok else []
        except subprocess.TimeoutExpired:
            ok, err = False, [f"pip timed out after {PIP_TIMEOUT} s"]
        got = [p for p in tmp.iterdir() if p.is_file()]
        if done.exists():  # another process finished it meanwhile
            shutil.rmtree(tmp, ignore_errors=True)
            return folder / json.loads(done.read_text())["file"]
        if ok and len(got) == 1:
            target = folder / got[0].name
            got[0].replace(target)
            shutil.rmtree(tmp, ignore_errors=True)
            done.write_text(json.dumps({"file": target.name, "kind": kind, "pip_args": extra}))
            return target
        tried.append(f"{kind} {' '.join(extra)}: {' '.join(err) or 'no file'}")
    shutil.rmtree(folder / f"partial-{os.getpid()}", ignore_errors=True)
    error = f"pip could not download {name}=={release}: " + "; ".join(tried)
    if not any("timed out" in t for t in tried):  # a timeout may be the machine, not the release
        failed.write_text(json.dumps({"error": error}))
    raise TreeUnavailable(error)


def _members(artifact: Path) -> list[tuple[str, bytes]]:
    """(path inside the artifact, bytes) for every regular file."""
    out = []
    if artifact.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(artifact) as z:
            for info in z.infolist():
                if not info.is_dir():
                    out.append((info.filename, z.read(info)))
    else:
        with tarfile.open(artifact) as t:
            for m in t.getmembers():
                if m.isfile():
                    f = t.extractfile(m)
                    if f is not None:
                        out.append((m.name, f.read()))
    return out


def repository_path(repo: str, artifact_kind: str, member: str) -> str | None:
    """Where a file of the artifact sits in the repository: an sdist loses its top folder
    (``Django-3.0/django/db/...`` -> ``django/db/...``); a wheel's package folders get the
    repository's source prefix; a wheel's ``*.dist-info`` / ``*.data`` is dropped."""
    parts = PurePosixPath(member).parts
    if artifact_kind == "sdist":
        return PurePosixPath(*parts[1:]).as_posix() if len(parts) > 1 else None
    if parts[0].endswith((".dist-info", ".data")):
        return None
    return WHEEL_PREFIX.get(repo, "") + PurePosixPath(*parts).as_posix()


def _write_tree(root: Path, files: dict[str, bytes]) -> None:
    tmp = root.with_name(f"{root.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    for rel, data in files.items():
        path = tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    tmp.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(root, ignore_errors=True)
    try:
        tmp.rename(root)
    except OSError:  # another process put the same tree there first
        shutil.rmtree(tmp, ignore_errors=True)


def release_tree(repo: str, release: str) -> Tree:
    """The kept files of ``repo``'s PyPI ``release``, unpacked once into the cache."""
    base = cache_dir("swe-lite", TREES_DIR, _slug(repo))
    root = base / release
    stamp = base / f"{release}.json"
    if stamp.exists() and root.is_dir():
        meta = json.loads(stamp.read_text())
        return Tree(repo, f"{repo}@{release}", "approximate", meta["source"], root)
    artifact = download_release(repo, release)
    kind = json.loads((artifact.parent / "artifact.json").read_text())["kind"]
    files = {}
    for member, data in _members(artifact):
        rel = repository_path(repo, kind, member)
        if rel and kept(rel):
            files[rel] = data
    _write_tree(root, files)
    stamp.write_text(json.dumps({"source": f"PyPI {kind} {artifact.name}", "files": len(files)}))
    return Tree(repo, f"{repo}@{release}", "approximate", f"PyPI {kind} {artifact.name}", root)


def find_clone(mirror: Path, repo: str) -> Path | None:
    owner, name = repo.split("/")
    for cand in (mirror / _slug(repo), mirror / name, mirror / owner / name):
        if (cand / ".git").exists() or (cand / "HEAD").is_file():  # a work tree or a bare clone
            return cand
    return None


def exact_tree(mirror: Path, repo: str, commit: str) -> Tree:
    """The kept files of ``repo`` at ``commit``, from a clone under ``mirror`` (``git archive``)."""
    clone = find_clone(mirror, repo)
    if clone is None:
        raise TreeUnavailable(f"no clone of {repo} under {mirror} (looked for {_slug(repo)}, "
                              f"{repo.split('/')[1]}, {repo})")
    base = cache_dir("swe-lite", f"exact-{TREES_DIR}", _slug(repo))
    root = base / commit
    stamp = base / f"{commit}.json"
    if stamp.exists() and root.is_dir():
        return Tree(repo, f"{repo}@{commit[:12]}", "exact", json.loads(stamp.read_text())["source"], root)
    proc = subprocess.run(["git", "-C", str(clone), "archive", "--format=tar", commit], capture_output=True)
    if proc.returncode != 0:
        raise TreeUnavailable(f"git archive {commit} in {clone} failed: {proc.stderr.decode(errors='replace').strip()}")
    files = {}
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as t:
        for m in t.getmembers():
            if m.isfile() and kept(m.name):
                f = t.extractfile(m)
                if f is not None:
                    files[m.name] = f.read()
    _write_tree(root, files)
    source = f"git archive {commit} of {clone}"
    stamp.write_text(json.dumps({"source": source, "files": len(files)}))
    return Tree(repo, f"{repo}@{commit[:12]}", "exact", source, root)


def main(argv: list[str] | None = None) -> int:
    """``python -m evals.swe_lite.trees``: download and unpack every release the task needs."""
    from evals.swe_lite.data import load_instances

    pairs = sorted({(i.repo, i.release) for i in load_instances()})
    if argv is None:
        argv = sys.argv[1:]
    if "--reverse" in argv:  # a second downloader, from the other end
        pairs.reverse()
    if "--middle" in argv:  # a third, from the middle
        pairs = pairs[len(pairs) // 2:] + pairs[:len(pairs) // 2]
    failed = 0
    for n, (repo, release) in enumerate(pairs, 1):
        try:
            tree = release_tree(repo, release)
            print(f"[{n}/{len(pairs)}] {repo} {release}: {tree.source}", flush=True)
        except TreeUnavailable as exc:
            failed += 1
            print(f"[{n}/{len(pairs)}] {repo} {release}: FAILED {exc}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
