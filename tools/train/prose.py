"""Prose training pairs: documents that are documentation, not code (issue 13, "prose as well as code").

Two kinds, both mined from installed packages with the same exclusions as the code pairs
(:func:`tools.train.data.excluded_names`), so no eval library is ever read:

* :func:`reference_pages` -- an API reference page built from a docstring, the way DevDocs renders
  one: ``qualname(signature)`` then the docstring *without* its first paragraph; the query is that
  first paragraph (what the API does, in words). Functions and classes whose docstring has more
  than its summary.
* :func:`readme_sections` -- sections of the long descriptions (READMEs) in installed
  distributions' metadata, as inverse-cloze pairs (Lee et al., ORQA, arXiv 1906.00300): the query
  is one sentence of the section, the document the section's heading path and text with that
  sentence taken out (left in for one pair in ten, so exact matches still count).

Every pair is a :class:`evals.mining.Pair` whose ``code`` is the document text.
"""

from __future__ import annotations

import ast
import importlib.metadata
import inspect
import random
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence

from evals.mining import Pair, excluded_component, first_paragraph, package_dir, package_files, query_key

__all__ = ["check_clean", "long_query", "long_query_pairs", "prose_pairs", "readme_cloze_queries", "readme_documents",
           "readme_sections", "reference_pages", "split_sections"]

MAX_DOC_CHARS = 2000  # about 400 word pieces: past what the student reads in training
MIN_REST_CHARS = 80  # a page must say more than its summary
MIN_QUERY_WORDS = 4
MAX_QUERY_CHARS = 400
MIN_SECTION_CHARS = 250
KEEP_SENTENCE_EVERY = 10

_HEADING_MD = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_UNDERLINE_RST = re.compile(r"^([=\-~^\"'`#*+])\1{2,}\s*$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z`(\"'])")


def _documented(tree: ast.Module) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef]]:
    """Classes, functions and methods (in classes, at any depth) with their qualnames, in order."""

    def walk(nodes: list[ast.stmt], prefix: str) -> Iterator[tuple[str, ast.AST]]:
        for node in nodes:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield prefix + node.name, node
            elif isinstance(node, ast.ClassDef):
                yield prefix + node.name, node
                yield from walk(node.body, prefix + node.name + ".")
            elif isinstance(node, (ast.If, ast.Try)):
                yield from walk(node.body, prefix)
                yield from walk(getattr(node, "orelse", []), prefix)

    yield from walk(tree.body, "")  # type: ignore[misc]


def _signature(dotted: str, node: ast.AST) -> str:
    """``class pkg.mod.Name(Base)`` or ``pkg.mod.Owner.name(args)``: a reference page's title line."""
    if isinstance(node, ast.ClassDef):
        bases = ", ".join(ast.unparse(b) for b in node.bases)
        return f"class {dotted}({bases})" if bases else f"class {dotted}"
    return f"{dotted}({ast.unparse(node.args)})"  # type: ignore[attr-defined]


def _page(module: str, qualname: str, node: ast.AST) -> Pair | None:
    doc = ast.get_docstring(node, clean=False)  # type: ignore[arg-type]
    if not doc or qualname.split(".")[-1].startswith("_"):
        return None
    text = inspect.cleandoc(doc)
    parts = re.split(r"\n\s*\n", text.strip(), maxsplit=1)
    if len(parts) < 2 or len(parts[1].strip()) < MIN_REST_CHARS:
        return None
    query = first_paragraph(text)[:MAX_QUERY_CHARS]
    if len(query.split()) < MIN_QUERY_WORDS or not any(c.isalpha() for c in query):
        return None
    page = f"{_signature(f'{module}.{qualname}', node)}\n\n{parts[1].strip()}"
    return Pair(query, page[:MAX_DOC_CHARS], module.split(".")[0], qualname, "", getattr(node, "lineno", 0))


def reference_pages(packages: Iterable[str], exclude: Iterable[str]) -> list[Pair]:
    """Docstring reference pages of ``packages`` (import names), skipping excluded paths below them.

    Queries shared by several pages are dropped ("Initialize self."), as are duplicate pages.
    """
    excluded = frozenset(exclude)
    raw: list[Pair] = []
    for name in packages:
        if name in excluded:
            raise ValueError(f"package {name!r} is excluded from training")
        root = package_dir(name)
        for path, rel in package_files(root, excluded):
            try:
                tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
                continue
            module = rel[:-3].replace("/", ".").removesuffix(".__init__")
            for qualname, node in _documented(tree):
                pair = _page(module, qualname, node)
                if pair is not None:
                    raw.append(Pair(pair.query, pair.code, name, qualname, rel, pair.line))
    return _unique(raw)


def _unique(raw: Sequence[Pair]) -> list[Pair]:
    counts = Counter(query_key(p.query) for p in raw)
    seen: set[str] = set()
    out = []
    for p in raw:
        if counts[query_key(p.query)] > 1 or p.code in seen:
            continue
        seen.add(p.code)
        out.append(p)
    return out


def split_sections(text: str) -> list[tuple[str, str]]:
    """(heading path, body) for each section of a Markdown or reStructuredText document.

    Headings are ``#``-style or reST underlined titles; the path joins the enclosing headings with
    `` > `` (the chunker's Markdown symbols). Text before the first heading has an empty path.
    """
    lines = text.splitlines()
    sections: list[tuple[str, list[str]]] = [("", [])]
    stack: list[tuple[int, str]] = []
    rst_levels: list[str] = []
    i = 0
    in_fence = False
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        title, level = None, 0
        if not in_fence:
            m = _HEADING_MD.match(line)
            if m:
                title, level = m.group(2), len(m.group(1))
            elif (i + 1 < len(lines) and line.strip() and _UNDERLINE_RST.match(lines[i + 1])
                  and len(lines[i + 1].strip()) >= len(line.strip())):  # fmt: skip
                mark = lines[i + 1].strip()[0]
                if mark not in rst_levels:
                    rst_levels.append(mark)
                title, level = line.strip(), rst_levels.index(mark) + 1
                i += 1
        if title is not None:
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, title.strip()))
            sections.append((" > ".join(t for _, t in stack), []))
        else:
            sections[-1][1].append(line)
        i += 1
    return [(path, "\n".join(body).strip()) for path, body in sections if "\n".join(body).strip()]


def _sentences(body: str) -> list[str]:
    flat = " ".join(line.strip() for line in body.splitlines() if line.strip() and not line.startswith("    "))
    return [s for s in _SENTENCE_END.split(flat) if len(s.split()) >= 6 and "```" not in s and "|" not in s]


def _distributions(excluded: frozenset[str]) -> Iterator[tuple[str, str]]:
    """(distribution name, long description) for installed distributions none of whose import
    names, nor whose own name, is excluded."""
    names_of: dict[str, set[str]] = {}
    for module, dists in importlib.metadata.packages_distributions().items():
        for d in dists:
            names_of.setdefault(d.lower(), set()).add(module)
    seen: set[str] = set()
    for dist in sorted(importlib.metadata.distributions(), key=lambda d: (d.metadata["Name"] or "").lower()):
        name = (dist.metadata["Name"] or "").lower()
        if not name or name in seen:
            continue
        seen.add(name)
        imports = names_of.get(name, set()) | {name.replace("-", "_")}
        if imports & excluded:
            continue
        body = dist.metadata.get_payload() or dist.metadata.get("Description") or ""  # type: ignore[attr-defined]
        if body.strip():
            yield name, body


def readme_documents(exclude: Iterable[str]) -> list[tuple[str, str]]:
    """(distribution name, whole long description) of installed distributions that ``exclude``
    allows: the READMEs :func:`readme_sections` cuts into sections, whole and uncut."""
    return list(_distributions(frozenset(exclude)))


def readme_cloze_queries(body: str, *, seed: int = 13) -> tuple[list[str], str]:
    """One inverse-cloze query per section of the README ``body`` (a sentence of the section, as
    :func:`readme_sections` picks them), and the README with every query sentence taken out (a
    sentence broken across lines stays in, as in :func:`readme_sections`): queries whose answer is
    somewhere inside a long document."""
    rng = random.Random(seed)
    queries = []
    for _, text in split_sections(body):
        if len(text) < MIN_SECTION_CHARS:
            continue
        sentences = _sentences(text)
        if len(sentences) >= 2:
            queries.append(rng.choice(sentences)[:MAX_QUERY_CHARS])
    for query in queries:
        body = body.replace(query, " ", 1)
    return queries, body


def readme_sections(exclude: Iterable[str], *, seed: int = 13) -> list[Pair]:
    """Inverse-cloze pairs from the README sections of installed distributions (see the module doc)."""
    excluded = frozenset(exclude)
    rng = random.Random(seed)
    raw: list[Pair] = []
    for dist, body in _distributions(excluded):
        for n, (path, text) in enumerate(split_sections(body)):
            if len(text) < MIN_SECTION_CHARS:
                continue
            sentences = _sentences(text)
            if len(sentences) < 2:
                continue
            query = rng.choice(sentences)[:MAX_QUERY_CHARS]
            doc = text if rng.randrange(KEEP_SENTENCE_EVERY) == 0 else text.replace(query, " ", 1)
            head = f"{dist} > {path}" if path else dist
            raw.append(Pair(query, f"{head}\n\n{doc.strip()}"[:MAX_DOC_CHARS], dist, path or dist, "README", n))
    return _unique(raw)


def prose_pairs(packages: Sequence[str], exclude: Iterable[str], *, seed: int = 13) -> list[Pair]:
    """Both kinds, reference pages first (deterministic order). READMEs are read from every
    installed distribution that ``exclude`` allows, so pass the validation packages in it too."""
    excluded = frozenset(exclude)
    return reference_pages(packages, excluded) + readme_sections(excluded, seed=seed)


def long_query(page: Pair) -> str | None:
    """A reference page's whole docstring as one query: its summary, a blank line, the rest (None
    when the page has no body). The shape of a task statement or a bug report that names the API,
    and of DS-1000's long prompts, where a first line alone is short."""
    body = page.code.split("\n\n", 1)[1].strip() if "\n\n" in page.code else ""
    if len(body) < 20:  # a signature with blank lines in its defaults: no body found
        return None
    return page.query + "\n\n" + body


def long_query_pairs(code_pairs: Sequence[Pair], pages: Sequence[Pair], *, limit: int = 0, seed: int = 13) -> list[Pair]:
    """(whole docstring -> function code) for each code pair whose reference page is in ``pages``
    (matched by path and qualified name; the code has its docstring removed, as mined). ``limit``
    keeps a seeded sample of that many, in their original order; 0 keeps all."""
    page_of = {(p.path, p.qualname): p for p in pages}
    out = []
    for pair in code_pairs:
        page = page_of.get((pair.path, pair.qualname))
        query = long_query(page) if page is not None else None
        if query is not None:
            out.append(Pair(query, pair.code, pair.package, pair.qualname, pair.path, pair.line))
    if limit and len(out) > limit:
        keep = sorted(random.Random(seed).sample(range(len(out)), limit))
        out = [out[i] for i in keep]
    return out


def check_clean(pairs: Iterable[Pair], exclude: Iterable[str]) -> None:
    """Raise if any pair comes from an excluded package or path (a guard before training)."""
    excluded = frozenset(exclude)
    for p in pairs:
        if p.package in excluded or (p.path and excluded_component(p.path, excluded)):
            raise ValueError(f"pair from an excluded library: {p.package} {p.path}")

