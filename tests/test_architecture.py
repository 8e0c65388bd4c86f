"""No module reaches into another module's private names: what one module uses of another is public.

Walks every Python file of the package (src/codelsr) and of tools/ and evals/ with ``ast`` and
fails on ``from X import _name`` and on ``X._name`` where ``X`` is one of this project's modules
(codelsr.*, tools.*, evals.*, or a relative import). Dunder names (``__version__``) are public.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOTS = {"codelsr": REPO / "src" / "codelsr", "tools": REPO / "tools", "evals": REPO / "evals"}
OURS = tuple(ROOTS)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _files() -> list[tuple[str, Path]]:
    """(dotted module name, path) of every source file, caches and run folders left out."""
    found = []
    for top, folder in ROOTS.items():
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder)
            if any(part.startswith(".") or part == "__pycache__" or part == "runs" for part in rel.parts):
                continue
            parts = [top, *rel.with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found.append((".".join(parts), path))
    return found


MODULES = {name for name, _ in _files()}


def _absolute(module: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute name a (possibly relative) ``from ... import`` refers to."""
    if not level:
        return target or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def _reaches(module: str, path: Path, shown_from: Path = REPO) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    problems: list[str] = []
    bound: dict[str, str] = {}  # local name -> our module it stands for
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in OURS:
                    if alias.asname:
                        bound[alias.asname] = alias.name
                    else:
                        bound[alias.name.split(".")[0]] = alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(module, is_package, node.level, node.module)
            if source.split(".")[0] not in OURS:
                continue
            for alias in node.names:
                if _private(alias.name) and source != module:
                    problems.append(f"{path.relative_to(shown_from)}:{node.lineno}: from {source} import {alias.name}")
                if f"{source}.{alias.name}" in MODULES:
                    bound[alias.asname or alias.name] = f"{source}.{alias.name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            chain, value = [], node.value
            while isinstance(value, ast.Attribute):
                chain.append(value.attr)
                value = value.value
            if isinstance(value, ast.Name) and value.id in bound:
                target = ".".join([bound[value.id], *reversed(chain)])
                if target in MODULES and target != module:
                    problems.append(f"{path.relative_to(shown_from)}:{node.lineno}: {target}.{node.attr}")
    return problems


def test_the_walk_sees_the_package_tools_and_evals():
    assert {"codelsr.index.build", "codelsr.git", "tools.bench.reindex", "evals.run"} <= MODULES


def test_the_check_catches_both_kinds_of_reach(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("from codelsr.index.reader import _readers\nfrom codelsr.index import reader as r\n"
                     "import codelsr.chunking.walk\nr._readers.clear()\ncodelsr.chunking.walk._plain_paths\n"
                     "from codelsr import __version__\n", encoding="utf-8")
    found = _reaches("tools.probe", probe, shown_from=tmp_path)
    assert len(found) == 3 and all("__version__" not in f for f in found), found


def test_no_module_imports_or_reads_another_modules_private_names():
    problems = [p for module, path in _files() for p in _reaches(module, path)]
    assert not problems, "private names reached across modules (make them public):\n" + "\n".join(problems)
