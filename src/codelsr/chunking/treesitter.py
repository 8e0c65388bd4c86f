"""Find the units (functions, methods, classes...) of a source file with tree-sitter.

Speed matters more than completeness here: the walk visits only the root's children and the
bodies of containers (class bodies, namespaces, impl blocks), never the inside of a function,
so the Python work per file is proportional to its number of top-level declarations, not to
its number of syntax nodes. Parsing itself runs in C.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from tree_sitter import Node, Parser

from codelsr.chunking.languages import NAMESPACE_KINDS, LanguageSpec, Path


@dataclass
class Unit:
    """A unit found in the tree: 1-based inclusive lines, kind, qualified symbol, members.

    ``members`` are the units nested in a container (methods of a class, sections of a
    section); the container's own chunk is whatever of its lines they do not cover.
    """

    start: int
    end: int
    kind: str
    symbol: str | None
    members: list[Unit] = field(default_factory=list)


_local = threading.local()


def get_parser(grammar: str) -> Parser:
    """A parser for ``grammar``, created once per thread and reused for every file.

    Creating a parser loads the grammar, which costs far more than parsing a small file.
    Parsers hold mutable state and are not safe to share between threads, hence per thread.
    """
    parsers: dict[str, Parser] | None = getattr(_local, "parsers", None)
    if parsers is None:
        parsers = _local.parsers = {}
    parser = parsers.get(grammar)
    if parser is None:
        from tree_sitter_language_pack import get_parser as load

        parser = parsers[grammar] = load(grammar)  # type: ignore[arg-type]
    return parser


def _first_row(node: Node) -> int:
    return node.start_point[0]


def _last_row(node: Node) -> int:
    """The 0-based row of a node's last character.

    Some nodes (Rust line comments, Markdown sections) end *after* their newline, at column 0
    of the next row; that row holds none of their text.
    """
    row, column = node.end_point
    if column == 0 and row > node.start_point[0]:
        return row - 1
    return row


def _follow(node: Node, path: Path) -> Node | None:
    """Resolve a path (see ``languages``) from ``node``; None when a step finds nothing."""
    current: Node | None = node
    for step in path:
        if current is None:
            return None
        if step.startswith(":"):
            wanted = step[1:].split("|")
            current = next((c for c in current.named_children if c.type in wanted), None)
        elif step.endswith("*"):
            name = step[:-1]
            nxt = current.child_by_field_name(name)
            while nxt is not None:
                current = nxt
                nxt = current.child_by_field_name(name)
        else:
            current = current.child_by_field_name(step)
    return current


_GENERICS = re.compile(r"\s*[<\[].*$", re.S)
_SEPARATORS = re.compile(r"::|[:\\]")
_SPACES = re.compile(r"\s+")


def _text(node: Node) -> str:
    return (node.text or b"").decode("utf-8", "replace")


def _clean_name(raw: str, normalize: bool) -> str:
    """Make a name usable in a dotted symbol: ``ns::A::m`` -> ``ns.A.m``, ``M:f`` -> ``M.f``."""
    name = _SPACES.sub(" ", raw).strip()
    if len(name) > 1 and name[0] == name[-1] and name[0] in "\"'`":  # declare module "x"
        name = name[1:-1]
    if normalize:
        name = _SEPARATORS.sub(".", name.replace(" ", "")).strip(".")
    return name


def _clean_type(raw: str) -> str:
    """The bare type of a receiver: ``*List[T]`` -> ``List``, ``&mut Foo<T>`` -> ``Foo``."""
    name = _GENERICS.sub("", raw.strip())
    name = name.lstrip("*&(").removeprefix("mut ").strip()
    return _SEPARATORS.sub(".", name)


class _Extractor:
    """Walks one tree with one language table. Holds the spec to keep call signatures short."""

    def __init__(self, spec: LanguageSpec) -> None:
        self.spec = spec

    def collect(
        self, children: Iterable[Node], scope: tuple[str, ...], in_type: bool
    ) -> list[Unit]:
        """Units among sibling nodes, with leading comments/attributes attached to each."""
        spec = self.spec
        units: list[Unit] = []
        lead_start: int | None = None  # first row of the comment block just above, if any
        lead_end = -1
        prev_end = -1
        for node in self._flatten(children):
            ntype = node.type
            first, last = _first_row(node), _last_row(node)
            if ntype in spec.leading:
                if lead_start is not None and first <= lead_end + 1:
                    lead_end = max(lead_end, last)
                elif first > prev_end:
                    lead_start, lead_end = first, last
                else:  # a trailing comment on the previous statement's line
                    lead_start = None
                prev_end = max(prev_end, last)
                continue
            unit = self.unit(node, scope, in_type)
            if unit is not None:
                if lead_start is not None and lead_end + 1 >= first:
                    unit.start = min(unit.start, lead_start + 1)
                units.append(unit)
            lead_start = None
            prev_end = max(prev_end, last)
        return units

    def _flatten(self, children: Iterable[Node]) -> Iterator[Node]:
        """Named siblings, looking through transparent nodes (``#ifdef``, ``extern "C"``)."""
        transparent = self.spec.transparent
        for node in children:
            if not node.is_named:
                continue
            if node.type in transparent:
                yield from self._flatten(node.children)
            else:
                yield node

    def unit(self, node: Node, scope: tuple[str, ...], in_type: bool) -> Unit | None:
        """The unit this node is, wraps or declares, or None."""
        spec = self.spec
        ntype = node.type
        if ntype in spec.units:
            return self._make(node, node, ntype, scope, in_type, None)
        if ntype in spec.wrappers:
            for child in node.named_children:
                inner = self.unit(child, scope, in_type)
                if inner is not None:
                    inner.start = min(inner.start, _first_row(node) + 1)
                    inner.end = max(inner.end, _last_row(node) + 1)
                    return inner
            return None
        if ntype in spec.declarations:
            return self._assigned(node, scope, in_type)
        return None

    def _assigned(self, node: Node, scope: tuple[str, ...], in_type: bool) -> Unit | None:
        """``const f = () => {}``: the declaration is a unit named after its variable."""
        spec = self.spec
        for declarator in node.named_children:
            if declarator.type != spec.declarator:
                continue
            value = declarator.child_by_field_name("value")
            if value is None or value.type not in spec.assigned_kinds:
                continue
            name_node = declarator.child_by_field_name("name")
            name = _clean_name(_text(name_node), spec.normalize_names) if name_node else None
            return self._make(
                node, value, value.type, scope, in_type, name, kind=spec.assigned_kinds[value.type]
            )
        return None

    def _make(
        self,
        outer: Node,
        node: Node,
        ntype: str,
        scope: tuple[str, ...],
        in_type: bool,
        name: str | None,
        kind: str | None = None,
    ) -> Unit | None:
        """Build the unit of ``node`` spanning ``outer``; recurse into container bodies."""
        spec = self.spec
        required = spec.requires.get(ntype)
        if required is not None and _follow(node, required) is None:
            return None
        if name is None:
            name = self._name(node, ntype)
        kind = kind or self._kind(node, ntype)
        if kind == "function" and in_type:
            kind = "method"
        qualifier = self._receiver(node, ntype)
        parts = scope if spec.qualify else ()
        if qualifier:
            parts = (*parts, qualifier)
        if name:
            parts = (*parts, name)
        symbol = spec.scope_separator.join(parts) if parts else None
        unit = Unit(_first_row(outer) + 1, _last_row(outer) + 1, kind, symbol)
        if ntype in spec.containers:
            inner_scope = (*scope, name) if name else scope
            unit.members = self.collect(self._body(node), inner_scope, kind not in NAMESPACE_KINDS)
        return unit

    def _body(self, node: Node) -> list[Node]:
        """Member nodes of a container: children of its body node(s), else its own children."""
        bodies = self.spec.bodies
        found = [child for child in node.named_children if child.type in bodies]
        if not found:
            return node.named_children
        members: list[Node] = []
        for body in found:
            for child in body.named_children:
                # Java enums keep their methods one level down, in enum_body_declarations.
                if child.type in bodies:
                    members.extend(child.named_children)
                else:
                    members.append(child)
        return members

    def _name(self, node: Node, ntype: str) -> str | None:
        spec = self.spec
        target = _follow(node, spec.name_paths.get(ntype, ("name",)))
        if target is not None:
            name = _clean_name(_text(target), spec.normalize_names)
            if name:
                return name
        return spec.default_names.get(ntype)

    def _kind(self, node: Node, ntype: str) -> str:
        spec = self.spec
        kind = spec.units[ntype]
        refine = spec.kind_paths.get(ntype)
        if refine is not None:
            path, kinds = refine
            target = _follow(node, path)
            if target is not None:
                kind = kinds.get(target.type, kind)
        return kind

    def _receiver(self, node: Node, ntype: str) -> str | None:
        path = self.spec.receiver_paths.get(ntype)
        if path is None:
            return None
        target = _follow(node, path)
        return _clean_type(_text(target)) or None if target is not None else None


def extract_units(source: bytes, spec: LanguageSpec) -> list[Unit]:
    """Parse ``source`` with the spec's grammar and return its top-level units (nested inside).

    Raises whatever the parser raises; the caller falls back to line windows.
    """
    assert spec.grammar is not None
    tree = get_parser(spec.grammar).parse(source)
    return _Extractor(spec).collect(tree.root_node.children, (), False)
