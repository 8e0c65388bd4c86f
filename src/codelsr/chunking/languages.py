"""Which language a file is in, and how its syntax tree breaks into units.

Everything language-specific lives in the ``LANGUAGES`` table below, as data: the chunker in
``treesitter.py`` has no per-language branches. Adding a language means adding one row and a
test that parses a sample; every node type named here is checked against the grammar by the
tests, so a typo or a grammar rename fails loudly instead of silently producing no units.

A *path* (used for names, receivers, kind refinement and requirements) is a tuple of steps from
a node, each step one of:

- ``"field"``: the child in that field (``child_by_field_name``);
- ``"field*"``: follow that field as long as it is present (zero or more times), e.g. C's
  ``declarator*`` walks ``pointer_declarator -> function_declarator -> identifier``;
- ``":type_a|type_b"``: the first named child of one of these types.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field

Path = tuple[str, ...]

# Container kinds that are namespaces rather than types: a function inside one stays a
# "function"; inside any other container (class, struct, impl, trait...) it becomes a "method".
NAMESPACE_KINDS = frozenset({"module", "namespace", "section", "media"})


@dataclass(frozen=True)
class LanguageSpec:
    """How to recognise one language and cut its syntax tree into units.

    ``units`` maps a node type to the chunk kind it produces. ``containers`` are unit types whose
    members (found in children of a ``bodies`` type, or in the node's own children when it has
    none) become chunks of their own. ``wrappers`` are nodes that carry a unit inside them
    (decorators, ``export``, templates) and lend it their wider line range. ``transparent`` nodes
    (preprocessor conditionals, ``extern "C"`` blocks) are looked through as if their children
    were siblings. ``leading`` nodes (comments, attributes) directly above a unit, with no blank
    line between, are attached to it.
    """

    name: str
    extensions: tuple[str, ...] = ()
    filenames: tuple[str, ...] = ()
    grammar: str | None = None
    units: Mapping[str, str] = field(default_factory=dict)
    containers: frozenset[str] = frozenset()
    bodies: frozenset[str] = frozenset()
    wrappers: frozenset[str] = frozenset()
    transparent: frozenset[str] = frozenset()
    leading: frozenset[str] = frozenset()
    # node type -> path to the name node; ("name",) when absent.
    name_paths: Mapping[str, Path] = field(default_factory=dict)
    # node type -> name used when the name path finds nothing (``init``, ``Companion``...).
    default_names: Mapping[str, str] = field(default_factory=dict)
    # node type -> path to a type that qualifies the name (Go receivers, Kotlin extensions).
    receiver_paths: Mapping[str, Path] = field(default_factory=dict)
    # node type -> (path, {node type found there -> kind}): refines the kind from the tree.
    kind_paths: Mapping[str, tuple[Path, Mapping[str, str]]] = field(default_factory=dict)
    # node type -> path that must resolve for the node to count as a unit (no forward decls).
    requires: Mapping[str, Path] = field(default_factory=dict)
    # ``const f = () => {}``: declaration node types, their declarator type, value type -> kind.
    declarations: frozenset[str] = frozenset()
    declarator: str = ""
    assigned_kinds: Mapping[str, str] = field(default_factory=dict)
    # Whether member symbols are prefixed with their container's (``Class.method``), and with
    # what between the parts (a Markdown section's heading path: ``Install > Linux``).
    qualify: bool = True
    scope_separator: str = "."
    # Whether names are normalised (``::``, ``:``, ``\\`` -> ``.``, generics dropped).
    normalize_names: bool = True
    # Prose is exempt from the minified check (long unwrapped paragraphs are normal there).
    prose: bool = False


_C_LIKE_COMMENTS = frozenset({"comment"})
_C_PREPROC = frozenset(
    {"preproc_if", "preproc_ifdef", "preproc_else", "preproc_elif", "preproc_elifdef"}
)
_C_UNITS = {
    "function_definition": "function",
    "struct_specifier": "struct",
    "union_specifier": "struct",
    "enum_specifier": "enum",
}
# ``struct foo;`` is a forward declaration, not a unit.
_C_REQUIRES = {
    "struct_specifier": ("body",),
    "union_specifier": ("body",),
    "enum_specifier": ("body",),
}
_C_NAMES = {"function_definition": ("declarator*",)}

# ``@media screen and (max-width: 600px)``: the first query names the block.
_CSS_QUERY = (
    ":feature_query|keyword_query|binary_query|unary_query|parenthesized_query|selector_query"
)

_JS_UNITS = {
    "function_declaration": "function",
    "generator_function_declaration": "function",
    "class_declaration": "class",
    "method_definition": "function",
    # Only reached as the child of a wrapper: ``export default function () {}``.
    "function_expression": "function",
    "class": "class",
}
_JS_ASSIGNED = {
    "arrow_function": "function",
    "function_expression": "function",
    "generator_function": "function",
    "class": "class",
}
_TS_UNITS = {
    **_JS_UNITS,
    "abstract_class_declaration": "class",
    "interface_declaration": "interface",
    "enum_declaration": "enum",
    "type_alias_declaration": "type",
    "internal_module": "namespace",
    "module": "module",
}


def _js_like(name: str, grammar: str, extensions: tuple[str, ...], typed: bool) -> LanguageSpec:
    """JavaScript, TypeScript and TSX share one shape; TypeScript adds declarations."""
    units = _TS_UNITS if typed else _JS_UNITS
    containers = {"class_declaration", "class"}
    bodies = {"class_body"}
    wrappers = {"export_statement"}
    if typed:
        containers |= {"abstract_class_declaration", "internal_module", "module"}
        bodies |= {"statement_block"}
        # ``namespace N {}`` parses as an expression statement; ``declare ...`` as ambient.
        wrappers |= {"ambient_declaration", "expression_statement"}
    return LanguageSpec(
        name=name,
        extensions=extensions,
        grammar=grammar,
        units=units,
        containers=frozenset(containers),
        bodies=frozenset(bodies),
        wrappers=frozenset(wrappers),
        leading=frozenset({"comment", "decorator"}),
        default_names={"function_expression": "default", "class": "default"},
        declarations=frozenset({"lexical_declaration", "variable_declaration"}),
        declarator="variable_declarator",
        assigned_kinds=_JS_ASSIGNED,
    )


def _windows_only(
    name: str,
    extensions: tuple[str, ...] = (),
    filenames: tuple[str, ...] = (),
    prose: bool = False,
) -> LanguageSpec:
    """A language we label (for filters and display) but cut into plain line windows."""
    return LanguageSpec(name=name, extensions=extensions, filenames=filenames, prose=prose)


LANGUAGES: tuple[LanguageSpec, ...] = (
    LanguageSpec(
        name="python",
        extensions=(".py", ".pyi", ".pyw"),
        grammar="python",
        units={"function_definition": "function", "class_definition": "class"},
        containers=frozenset({"class_definition"}),
        bodies=frozenset({"block"}),
        wrappers=frozenset({"decorated_definition"}),
        leading=frozenset({"comment"}),
    ),
    _js_like("javascript", "javascript", (".js", ".mjs", ".cjs", ".jsx"), typed=False),
    _js_like("typescript", "typescript", (".ts", ".mts", ".cts"), typed=True),
    _js_like("tsx", "tsx", (".tsx",), typed=True),
    LanguageSpec(
        name="java",
        extensions=(".java",),
        grammar="java",
        units={
            "class_declaration": "class",
            "interface_declaration": "interface",
            "enum_declaration": "enum",
            "record_declaration": "class",
            "annotation_type_declaration": "interface",
            "method_declaration": "function",
            "constructor_declaration": "function",
            "compact_constructor_declaration": "function",
        },
        containers=frozenset(
            {
                "class_declaration",
                "interface_declaration",
                "enum_declaration",
                "record_declaration",
                "annotation_type_declaration",
            }
        ),
        bodies=frozenset(
            {
                "class_body",
                "interface_body",
                "enum_body",
                "enum_body_declarations",
                "annotation_type_body",
            }
        ),
        leading=frozenset({"block_comment", "line_comment"}),
        # Abstract and interface methods have no body: they stay in their type's chunk.
        requires={"method_declaration": ("body",)},
    ),
    LanguageSpec(
        name="go",
        extensions=(".go",),
        grammar="go",
        units={
            "function_declaration": "function",
            "method_declaration": "method",
            "type_declaration": "type",
        },
        leading=frozenset({"comment"}),
        name_paths={"type_declaration": (":type_spec|type_alias", "name")},
        receiver_paths={"method_declaration": ("receiver", ":parameter_declaration", "type")},
        kind_paths={
            "type_declaration": (
                (":type_spec", "type"),
                {"struct_type": "struct", "interface_type": "interface"},
            ),
        },
    ),
    LanguageSpec(
        name="rust",
        extensions=(".rs",),
        grammar="rust",
        units={
            "function_item": "function",
            "struct_item": "struct",
            "union_item": "struct",
            "enum_item": "enum",
            "trait_item": "trait",
            "impl_item": "impl",
            "mod_item": "module",
            "macro_definition": "macro",
        },
        containers=frozenset({"impl_item", "trait_item", "mod_item"}),
        bodies=frozenset({"declaration_list"}),
        leading=frozenset({"line_comment", "block_comment", "attribute_item"}),
        # ``impl<T> Display for Wrapper<T>`` is named after the implementing type, ``Wrapper``.
        name_paths={"impl_item": ("type", "type*")},
        requires={"mod_item": ("body",)},
    ),
    LanguageSpec(
        name="c",
        extensions=(".c", ".h"),
        grammar="c",
        units=_C_UNITS,
        transparent=_C_PREPROC,
        leading=_C_LIKE_COMMENTS,
        name_paths=_C_NAMES,
        requires=_C_REQUIRES,
    ),
    LanguageSpec(
        name="cpp",
        extensions=(
            ".cc",
            ".cpp",
            ".cxx",
            ".c++",
            ".hpp",
            ".hh",
            ".hxx",
            ".h++",
            ".ipp",
            ".tpp",
            ".cu",
            ".cuh",
        ),
        grammar="cpp",
        units={**_C_UNITS, "class_specifier": "class", "namespace_definition": "namespace"},
        containers=frozenset(
            {"class_specifier", "struct_specifier", "union_specifier", "namespace_definition"}
        ),
        bodies=frozenset({"field_declaration_list", "declaration_list"}),
        wrappers=frozenset({"template_declaration"}),
        transparent=_C_PREPROC | {"linkage_specification", "declaration_list"},
        leading=_C_LIKE_COMMENTS,
        name_paths=_C_NAMES,
        requires={**_C_REQUIRES, "class_specifier": ("body",)},
    ),
    LanguageSpec(
        name="csharp",
        extensions=(".cs",),
        grammar="csharp",
        units={
            "namespace_declaration": "namespace",
            "class_declaration": "class",
            "struct_declaration": "struct",
            "interface_declaration": "interface",
            "enum_declaration": "enum",
            "record_declaration": "class",
            "method_declaration": "function",
            "constructor_declaration": "function",
            "destructor_declaration": "function",
            "operator_declaration": "function",
        },
        containers=frozenset(
            {
                "namespace_declaration",
                "class_declaration",
                "struct_declaration",
                "interface_declaration",
                "record_declaration",
            }
        ),
        bodies=frozenset({"declaration_list"}),
        leading=frozenset({"comment"}),
        default_names={"operator_declaration": "operator"},
        requires={"method_declaration": ("body",)},
    ),
    LanguageSpec(
        name="ruby",
        extensions=(".rb", ".rake", ".gemspec", ".ru"),
        filenames=("Rakefile", "Gemfile", "Guardfile", "Vagrantfile"),
        grammar="ruby",
        units={
            "method": "function",
            "singleton_method": "function",
            "class": "class",
            "module": "module",
        },
        containers=frozenset({"class", "module"}),
        bodies=frozenset({"body_statement"}),
        # ``class << self`` methods belong to the enclosing class.
        transparent=frozenset({"singleton_class", "body_statement"}),
        leading=frozenset({"comment"}),
    ),
    LanguageSpec(
        name="php",
        extensions=(".php", ".phtml"),
        grammar="php",
        units={
            "function_definition": "function",
            "class_declaration": "class",
            "interface_declaration": "interface",
            "trait_declaration": "trait",
            "enum_declaration": "enum",
            "method_declaration": "function",
            "namespace_definition": "namespace",
        },
        containers=frozenset(
            {
                "class_declaration",
                "interface_declaration",
                "trait_declaration",
                "enum_declaration",
                "namespace_definition",
            }
        ),
        bodies=frozenset({"declaration_list", "enum_declaration_list", "compound_statement"}),
        leading=frozenset({"comment"}),
        requires={"method_declaration": ("body",), "namespace_definition": ("body",)},
    ),
    LanguageSpec(
        name="kotlin",
        extensions=(".kt", ".kts"),
        grammar="kotlin",
        units={
            "class_declaration": "class",
            "object_declaration": "object",
            "companion_object": "object",
            "function_declaration": "function",
        },
        containers=frozenset({"class_declaration", "object_declaration", "companion_object"}),
        bodies=frozenset({"class_body", "enum_class_body"}),
        leading=frozenset({"line_comment", "multiline_comment"}),
        # This grammar has no ``name`` fields: the name is the first identifier child.
        name_paths={
            "class_declaration": (":type_identifier",),
            "object_declaration": (":type_identifier",),
            "companion_object": (":type_identifier",),
            "function_declaration": (":simple_identifier",),
        },
        default_names={"companion_object": "Companion"},
        receiver_paths={"function_declaration": ("receiver",)},
        requires={"function_declaration": (":function_body",)},
    ),
    LanguageSpec(
        name="swift",
        extensions=(".swift",),
        grammar="swift",
        units={
            "class_declaration": "class",
            "protocol_declaration": "interface",
            "function_declaration": "function",
            "init_declaration": "function",
            "deinit_declaration": "function",
        },
        containers=frozenset({"class_declaration", "protocol_declaration"}),
        bodies=frozenset({"class_body", "enum_class_body", "protocol_body"}),
        leading=frozenset({"comment", "multiline_comment"}),
        default_names={"init_declaration": "init", "deinit_declaration": "deinit"},
        kind_paths={
            "class_declaration": (
                ("declaration_kind",),
                {
                    "class": "class",
                    "struct": "struct",
                    "enum": "enum",
                    "extension": "extension",
                    "actor": "class",
                },
            ),
        },
    ),
    LanguageSpec(
        name="scala",
        extensions=(".scala", ".sc"),
        grammar="scala",
        units={
            "class_definition": "class",
            "object_definition": "object",
            "trait_definition": "trait",
            "enum_definition": "enum",
            "function_definition": "function",
        },
        containers=frozenset(
            {"class_definition", "object_definition", "trait_definition", "enum_definition"}
        ),
        bodies=frozenset({"template_body", "enum_body"}),
        leading=frozenset({"comment", "block_comment"}),
    ),
    LanguageSpec(
        name="lua",
        extensions=(".lua",),
        grammar="lua",
        units={"function_declaration": "function"},
        leading=frozenset({"comment"}),
    ),
    LanguageSpec(
        name="bash",
        extensions=(".sh", ".bash", ".zsh", ".ksh"),
        filenames=(".bashrc", ".bash_profile", ".zshrc", ".profile"),
        grammar="bash",
        units={"function_definition": "function"},
        leading=frozenset({"comment"}),
    ),
    LanguageSpec(
        name="sql",
        extensions=(".sql",),
        grammar="sql",
        # CREATE statements are units; queries and DML fall into line-window "module" chunks.
        units={
            "create_table": "table",
            "create_view": "view",
            "create_materialized_view": "view",
            "create_function": "function",
            "create_index": "index",
            "create_trigger": "trigger",
            "create_type": "type",
            "create_schema": "schema",
            "create_sequence": "sequence",
            "create_database": "database",
        },
        wrappers=frozenset({"statement"}),
        leading=frozenset({"comment"}),
        name_paths={
            "create_table": (":object_reference",),
            "create_view": (":object_reference",),
            "create_materialized_view": (":object_reference",),
            "create_function": (":object_reference",),
            "create_index": ("column",),
            "create_trigger": (":object_reference",),
            "create_type": (":object_reference",),
            "create_schema": (":identifier",),
            "create_sequence": (":object_reference",),
            "create_database": (":identifier",),
        },
    ),
    LanguageSpec(
        name="css",
        extensions=(".css",),
        grammar="css",
        units={
            "rule_set": "rule",
            "media_statement": "media",
            "keyframes_statement": "keyframes",
            "supports_statement": "media",
        },
        containers=frozenset({"media_statement", "supports_statement"}),
        bodies=frozenset({"block"}),
        leading=frozenset({"comment"}),
        name_paths={
            "rule_set": (":selectors",),
            "keyframes_statement": (":keyframes_name",),
            "media_statement": (_CSS_QUERY,),
            "supports_statement": (_CSS_QUERY,),
        },
        default_names={"media_statement": "@media", "supports_statement": "@supports"},
        qualify=False,
        normalize_names=False,
    ),
    LanguageSpec(
        name="scss",
        extensions=(".scss",),
        grammar="scss",
        units={
            "rule_set": "rule",
            "media_statement": "media",
            "keyframes_statement": "keyframes",
            "mixin_statement": "function",
            "function_statement": "function",
        },
        containers=frozenset({"media_statement"}),
        bodies=frozenset({"block"}),
        leading=frozenset({"comment", "js_comment"}),
        name_paths={
            "rule_set": (":selectors",),
            "keyframes_statement": (":keyframes_name",),
            "media_statement": (_CSS_QUERY,),
        },
        default_names={"media_statement": "@media"},
        qualify=False,
        normalize_names=False,
    ),
    LanguageSpec(
        name="markdown",
        extensions=(".md", ".markdown", ".mdown", ".mkd"),
        grammar="markdown",
        # A section's own chunk is its heading and text up to its first subsection.
        units={"section": "section"},
        containers=frozenset({"section"}),
        name_paths={"section": (":atx_heading|setext_heading", "heading_content")},
        requires={"section": (":atx_heading|setext_heading",)},
        # A section's symbol is its heading path: "Configuration > Proxies" says where a
        # "Proxies" section is, which its own heading does not.
        qualify=True,
        scope_separator=" > ",
        normalize_names=False,
        prose=True,
    ),
    _windows_only("html", (".html", ".htm", ".xhtml")),
    _windows_only("yaml", (".yml", ".yaml")),
    _windows_only("toml", (".toml",)),
    _windows_only("json", (".json", ".jsonc", ".json5")),
    _windows_only("xml", (".xml", ".xsd", ".xsl", ".xslt", ".plist")),
    _windows_only("restructuredtext", (".rst",), prose=True),
    _windows_only("text", (".txt",), prose=True),
    _windows_only("dockerfile", (".dockerfile",), ("Dockerfile", "Containerfile")),
    _windows_only("makefile", (".mk", ".mak"), ("Makefile", "makefile", "GNUmakefile")),
    _windows_only("cmake", (".cmake",), ("CMakeLists.txt",)),
    _windows_only("ini", (".ini", ".cfg", ".conf", ".properties")),
    _windows_only("protobuf", (".proto",)),
    _windows_only("graphql", (".graphql", ".gql")),
    _windows_only("vue", (".vue",)),
    _windows_only("svelte", (".svelte",)),
    _windows_only("dart", (".dart",)),
    _windows_only("elixir", (".ex", ".exs")),
    _windows_only("haskell", (".hs",)),
    _windows_only("perl", (".pl", ".pm")),
    _windows_only("r", (".r",)),
    _windows_only("julia", (".jl",)),
    _windows_only("zig", (".zig",)),
    _windows_only("powershell", (".ps1", ".psm1")),
    _windows_only("terraform", (".tf", ".tfvars")),
)

_BY_NAME: dict[str, LanguageSpec] = {spec.name: spec for spec in LANGUAGES}
_BY_EXTENSION: dict[str, str] = {ext: spec.name for spec in LANGUAGES for ext in spec.extensions}
_BY_FILENAME: dict[str, str] = {fn: spec.name for spec in LANGUAGES for fn in spec.filenames}

# Interpreter named on a ``#!`` line -> language, for extensionless scripts.
_SHEBANGS: dict[str, str] = {
    "python": "python",
    "python3": "python",
    "python2": "python",
    "sh": "bash",
    "bash": "bash",
    "zsh": "bash",
    "ksh": "bash",
    "dash": "bash",
    "node": "javascript",
    "ruby": "ruby",
    "php": "php",
    "lua": "lua",
}

TEXT = "text"


def detect_language(rel_path: str) -> str:
    """The language of a file from its name alone: exact filename first, then extension.

    Returns ``"text"`` when unknown, so every file still gets a label and line windows.
    """
    base = posixpath.basename(rel_path.replace("\\", "/"))
    by_name = _BY_FILENAME.get(base)
    if by_name:
        return by_name
    _, ext = posixpath.splitext(base)
    return _BY_EXTENSION.get(ext.lower(), TEXT)


def language_from_shebang(first_line: str) -> str | None:
    """The language named by a ``#!`` line (``#!/usr/bin/env python3``), or None."""
    if not first_line.startswith("#!"):
        return None
    words = first_line[2:].strip().split()
    if not words:
        return None
    program = words[0].rsplit("/", 1)[-1]
    if program == "env":
        rest = [w for w in words[1:] if not w.startswith("-")]
        program = rest[0] if rest else ""
    program = program.rstrip("0123456789.") if program not in _SHEBANGS else program
    return _SHEBANGS.get(program)


def spec_for(language: str) -> LanguageSpec | None:
    """The table row of a language id, or None for ``text`` and unknown ids."""
    return _BY_NAME.get(language)


def grammar_languages() -> list[str]:
    """Languages parsed with tree-sitter (the rest are cut into line windows)."""
    return [spec.name for spec in LANGUAGES if spec.grammar]
