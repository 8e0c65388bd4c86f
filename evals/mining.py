"""Docstring -> function pairs mined with ``ast`` from installed Python packages.

One miner serves two users, so that their package sets can be kept apart by construction:

* the eval suite's ``mined-docstrings`` task mines :data:`EVAL_PACKAGES` (pinned versions);
* the training command (``python -m tools.train``) mines every *other* installed package, minus
  :data:`TRAIN_EXCLUDED` (the eval packages and the CPython standard library, including vendored
  copies of either, such as ``setuptools/_distutils`` or ``pip/_vendor/rich``).

A pair is (query, code): the query is the first paragraph of a function's docstring, the code is
the function's source (decorators included) with the docstring removed. Functions without a
docstring come back separately as distractors: they belong in a retrieval corpus but have no
query. Queries shared by several functions ("Return the value.") are dropped, as are very short
ones. Everything is deterministic: files in sorted order, functions in source order.

Nothing here imports the packages it mines: sources are located with ``importlib.util.find_spec``
of the top-level name, which does not run the package.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import importlib.util
import re
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

__all__ = [
    "EVAL_PACKAGES",
    "STDLIB_NAMES",
    "TRAIN_EXCLUDED",
    "Mined",
    "Pair",
    "excluded_component",
    "first_paragraph",
    "functions",
    "installed_packages",
    "mine",
    "mine_docstring_pairs",
    "package_dir",
    "package_files",
    "package_version",
    "query_key",
    "unit_list_hash",
]

# Import name -> pinned distribution version. Well-known, pure-Python, with real docstrings.
# The eval suite's `eval` extra pins the same versions; training never sees these packages.
EVAL_PACKAGES: dict[str, str] = {
    "click": "8.5.1",
    "jinja2": "3.1.6",
    "rich": "15.0.0",
    "dateutil": "4.0.0",
    "markdown_it": "4.3.0",
}

# Everything importable from CPython's standard library, plus the names its vendored copies go by.
STDLIB_NAMES: frozenset[str] = frozenset(sys.stdlib_module_names) | {
    "distutils",
    "_distutils",
    "_distutils_hack",
    "importlib_metadata",  # backports of stdlib modules, shipped as copies of CPython code
    "importlib_resources",
    "typing_extensions",
    "zipp",
    "backports",
}

# Names never used for training, wherever they appear in a path (``pip/_vendor/rich/...`` too).
TRAIN_EXCLUDED: frozenset[str] = frozenset(EVAL_PACKAGES) | STDLIB_NAMES

# Directories that hold tests, examples or build debris rather than library code.
_SKIP_DIRS = frozenset({"tests", "test", "testing", "__pycache__", "examples", "docs", "benchmarks"})

_MIN_QUERY_WORDS = 3
_MAX_QUERY_CHARS = 600
_MAX_CODE_LINES = 400


@dataclass(frozen=True, slots=True)
class Pair:
    """One mined function. ``query`` is empty for distractors (functions without a docstring).

    ``path`` is relative to the directory that holds the package (``click/core.py``).
    """

    query: str
    code: str
    package: str
    qualname: str
    path: str
    line: int = 0


@dataclass(slots=True)
class Mined:
    """What :func:`mine` found: query/code pairs and docstring-less distractor functions."""

    pairs: list[Pair] = field(default_factory=list)
    distractors: list[Pair] = field(default_factory=list)
    dropped_ambiguous: int = 0
    dropped_short: int = 0

    @property
    def corpus(self) -> list[Pair]:
        """Every function (pairs first, then distractors): the retrieval corpus."""
        return self.pairs + self.distractors


# ----------------------------------------------------------------------------- locating packages


def package_dir(name: str) -> Path:
    """The source directory of an installed top-level package (or the file of a module).

    Raises ``LookupError`` if ``name`` is not installed or has no Python source.
    """
    if "." in name:
        raise ValueError(f"give a top-level import name, not {name!r}")
    spec = importlib.util.find_spec(name)
    if spec is None:
        raise LookupError(f"package {name!r} is not installed (pip install it)")
    if spec.submodule_search_locations:
        locations = sorted(spec.submodule_search_locations)
        return Path(locations[0]).resolve()
    if spec.origin and spec.origin.endswith(".py"):
        return Path(spec.origin).resolve()
    raise LookupError(f"package {name!r} has no Python source ({spec.origin})")


def package_version(name: str) -> str | None:
    """The installed version of the distribution that provides import name ``name``."""
    dists = importlib.metadata.packages_distributions().get(name) or [name]
    for dist in dists:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def installed_packages(exclude: Iterable[str] = TRAIN_EXCLUDED) -> list[str]:
    """Top-level import names of installed distributions that have Python source, sorted.

    Names in ``exclude`` and private names (``_cffi_backend``) are left out.
    """
    excluded = set(exclude)
    names: set[str] = set()
    for name in importlib.metadata.packages_distributions():
        if name in excluded or name.startswith("_") or not name.isidentifier():
            continue
        try:
            path = package_dir(name)
        except (LookupError, ValueError, ImportError):
            continue
        if path.is_dir() and "site-packages" not in path.name:
            names.add(name)
    return sorted(names)


def excluded_component(rel_path: str, excluded: Iterable[str]) -> str | None:
    """The first directory (or module) name in ``rel_path`` that is in ``excluded``, if any.

    The package's own top-level name is not checked (a caller chose it): only what lies below,
    so ``setuptools/_distutils/core.py`` -> ``_distutils`` and ``pip/_vendor/rich/text.py`` ->
    ``rich``.
    """
    excluded = set(excluded)
    parts = rel_path.split("/")[1:]
    for i, part in enumerate(parts):
        name = part[:-3] if i == len(parts) - 1 and part.endswith(".py") else part
        if name in excluded:
            return name
    return None


# ----------------------------------------------------------------------------- parsing


def first_paragraph(docstring: str) -> str:
    """The docstring's first paragraph on one line (whitespace collapsed)."""
    import inspect

    text = inspect.cleandoc(docstring)
    para = re.split(r"\n\s*\n", text.strip(), maxsplit=1)[0]
    return " ".join(para.split())


def _docstring_node(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.Expr | None:
    if fn.body and isinstance(fn.body[0], ast.Expr):
        value = fn.body[0].value
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            return fn.body[0]
    return None


def _is_trivial(body: Sequence[ast.stmt]) -> bool:
    """A body that does nothing: ``pass``, ``...``, or ``raise NotImplementedError``."""
    for stmt in body:
        if isinstance(stmt, ast.Pass):
            continue
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            continue
        if isinstance(stmt, ast.Raise) and "NotImplementedError" in ast.unparse(stmt):
            continue
        return False
    return True


def _dedent(lines: list[str]) -> str:
    indents = [len(x) - len(x.lstrip()) for x in lines if x.strip()]
    cut = min(indents) if indents else 0
    return "\n".join(x[cut:] if x.strip() else "" for x in lines).rstrip() + "\n"


def functions(tree: ast.Module) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Module-level functions and methods (of nested classes too), with qualnames, in order.

    Functions nested in functions are part of their parent's code, not units of their own.
    """

    def walk(nodes: list[ast.stmt], prefix: str) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
        for node in nodes:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield prefix + node.name, node
            elif isinstance(node, ast.ClassDef):
                yield from walk(node.body, prefix + node.name + ".")
            elif isinstance(node, (ast.If, ast.Try)):  # `if TYPE_CHECKING:` / try-import blocks
                yield from walk(node.body, prefix)
                yield from walk(getattr(node, "orelse", []), prefix)

    yield from walk(tree.body, "")


def _mine_file(path: Path, rel: str, package: str) -> Iterator[Pair]:
    try:
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source, filename=str(path))
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
        return
    lines = source.splitlines()
    for qualname, fn in functions(tree):
        start = min([fn.lineno] + [d.lineno for d in fn.decorator_list]) - 1
        end = fn.end_lineno or fn.lineno
        if end - start > _MAX_CODE_LINES:
            continue
        doc = _docstring_node(fn)
        body = fn.body[1:] if doc is not None else fn.body
        if not body or _is_trivial(body):
            continue
        if doc is None:
            code = _dedent(lines[start:end])
            yield Pair("", code, package, qualname, rel, fn.lineno)
            continue
        d0, d1 = doc.lineno - 1, (doc.end_lineno or doc.lineno)
        # A docstring sharing its line with the signature (`def f(): "doc"`) is rare; skip it.
        if not re.match(r"""\s*[rRuUbB]*['"]""", lines[d0]):
            continue
        code = _dedent(lines[start:d0] + lines[d1:end])
        query = first_paragraph(doc.value.value)  # type: ignore[attr-defined]
        yield Pair(query, code, package, qualname, rel, fn.lineno)


def package_files(root: Path, excluded: frozenset[str]) -> Iterator[tuple[Path, str]]:
    """(file, path relative to the parent of ``root``) for every .py file, in sorted order."""
    base = root.parent
    files = [root] if root.is_file() else sorted(root.rglob("*.py"))
    for path in files:
        rel = path.relative_to(base).as_posix()
        parts = rel.split("/")
        if any(p in _SKIP_DIRS for p in parts[:-1]) or parts[-1].startswith("test_"):
            continue
        if excluded and excluded_component(rel, excluded) is not None:
            continue
        yield path, rel


def mine(
    packages: Iterable[str | Path],
    *,
    exclude: Iterable[str] = (),
    min_query_words: int = _MIN_QUERY_WORDS,
) -> Mined:
    """Mine pairs and distractors from packages given by import name or source directory.

    ``exclude``: names skipped wherever they occur below a package's top level (vendored copies);
    pass :data:`TRAIN_EXCLUDED` when mining training data. Queries with fewer than
    ``min_query_words`` words, and queries shared by more than one function, are dropped; exact
    duplicate code (the same function copied twice) is kept once.
    """
    excluded = frozenset(exclude)
    raw: list[Pair] = []
    distractors: list[Pair] = []
    seen_code: set[str] = set()
    for spec in packages:
        root = Path(spec) if isinstance(spec, Path) else package_dir(spec)
        name = root.stem if root.is_file() else root.name
        if name in excluded:
            raise ValueError(f"package {name!r} is excluded (eval package or standard library)")
        for path, rel in package_files(root, excluded):
            for unit in _mine_file(path, rel, name):
                if unit.code in seen_code:
                    continue
                seen_code.add(unit.code)
                (raw if unit.query else distractors).append(unit)
    out = Mined(distractors=distractors)
    counts = Counter(query_key(p.query) for p in raw)
    for p in raw:
        words = p.query.split()
        if len(words) < min_query_words or not any(ch.isalpha() for ch in p.query):
            out.dropped_short += 1
        elif counts[query_key(p.query)] > 1:
            out.dropped_ambiguous += 1
        else:
            out.pairs.append(replace(p, query=p.query[:_MAX_QUERY_CHARS]))
    return out


def query_key(query: str) -> str:
    """A query compared as the same query: lower-cased, whitespace collapsed."""
    return " ".join(query.lower().split())


def mine_docstring_pairs(
    packages: Iterable[str | Path], *, exclude: Iterable[str] = (), min_query_words: int = _MIN_QUERY_WORDS
) -> list[Pair]:
    """Just the (query, code) pairs of :func:`mine`."""
    return mine(packages, exclude=exclude, min_query_words=min_query_words).pairs


def unit_list_hash(units: Iterable[Pair]) -> str:
    """A short content hash of a list of mined units (order matters): pins a task's exact data."""
    h = hashlib.sha256()
    for u in units:
        for part in (u.package, u.path, u.qualname, u.query, u.code):
            h.update(part.encode("utf-8", "surrogatepass"))
            h.update(b"\0")
        h.update(b"\1")
    return h.hexdigest()[:16]
