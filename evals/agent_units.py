"""Code units of a Python package, read with ``ast``: every function, method and class header.

The ``agent-questions`` task scores retrieval of these units (its gold answers name one), and
its repo mode checks a gold unit's line range against codelsr's hits. A unit is

* a function or method (``async`` too), decorators included, with everything nested in it;
* a class *header*: the class statement, its docstring and class-level statements, without the
  methods and nested classes (those are units of their own).

Functions nested inside functions belong to their parent. ``path`` is relative to the folder
that holds the package (``rich/console.py``), ``qualname`` is dotted (``Console.print``), lines
are 1-based and inclusive. Nothing is imported: files are parsed.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Unit", "package_units", "file_units"]

_SKIP_DIRS = frozenset({"__pycache__", "tests", "test"})


@dataclass(frozen=True, slots=True)
class Unit:
    path: str
    qualname: str
    kind: str  # "function", "method" or "class"
    start_line: int
    end_line: int
    text: str

    @property
    def unit_id(self) -> str:
        return f"{self.path}::{self.qualname}@{self.start_line}"


def _start(node: ast.AST) -> int:
    decorators = getattr(node, "decorator_list", [])
    return min([node.lineno] + [d.lineno for d in decorators])


def file_units(source: str, path: str) -> list[Unit]:
    """The units of one file, in source order."""
    lines = source.splitlines()
    tree = ast.parse(source)
    out: list[Unit] = []

    def text(a: int, b: int) -> str:
        return "\n".join(lines[a - 1:b])

    def visit(body: list[ast.stmt], prefix: str, in_class: bool) -> Iterator[Unit]:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a, b = _start(node), node.end_lineno or node.lineno
                yield Unit(path, prefix + node.name, "method" if in_class else "function", a, b, text(a, b))
            elif isinstance(node, ast.ClassDef):
                a, b = _start(node), node.end_lineno or node.lineno
                # The header ends before the first method or nested class.
                members = [n for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
                head_end = (_start(members[0]) - 1) if members else b
                head = text(a, head_end).rstrip()
                yield Unit(path, prefix + node.name, "class", a, max(a, a + head.count("\n")), head)
                yield from visit(node.body, f"{prefix}{node.name}.", True)
            elif isinstance(node, (ast.If, ast.Try)) and not in_class:
                # Definitions under `if TYPE_CHECKING:` / `try: ... except ImportError:` at module level.
                for block in [node.body, getattr(node, "orelse", []), getattr(node, "finalbody", [])] + \
                        [h.body for h in getattr(node, "handlers", [])]:
                    yield from visit(block, prefix, in_class)

    out.extend(visit(tree.body, "", False))
    return out


def package_units(package_root: Path, name: str) -> list[Unit]:
    """Every unit of the package ``name`` whose folder is ``package_root`` (files in path order)."""
    units: list[Unit] = []
    for file in sorted(package_root.rglob("*.py")):
        rel = file.relative_to(package_root)
        if any(part in _SKIP_DIRS for part in rel.parts[:-1]):
            continue
        path = f"{name}/{rel.as_posix()}"
        units.extend(file_units(file.read_text(encoding="utf-8"), path))
    return units
