"""Tests of codelsr.chunking: files -> chunks, on real files in temporary folders and git repos."""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import pytest
import tree_sitter_language_pack

from codelsr.chunking import (
    ChunkingOptions,
    ChunkingResult,
    chunk_file,
    chunk_repository,
    detect_language,
    git_head,
    is_git_repository,
    read_text,
    walk_repository,
)
from codelsr.chunking.languages import LANGUAGES
from codelsr.errors import NotARepositoryError
from codelsr.records import Chunk

Row = tuple[str, str | None, int, int]


def table(chunks: list[Chunk]) -> list[Row]:
    """(kind, symbol, start_line, end_line) of each chunk: what the assertions compare."""
    return [(c.kind, c.symbol, c.start_line, c.end_line) for c in chunks]


def src(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.email=t@t", "-c", "user.name=t", *args],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def write(root: Path, rel: str, content: str | bytes) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


# --- per-language units ---------------------------------------------------------------------

PYTHON = src('''
    import os

    X = 1

    @decorator
    def f(a):
        return a

    class A(Base):
        """Doc."""
        y = 2

        def m(self):
            pass

        @property
        def p(self):
            return 1

        class B:
            def n(self): pass

    if __name__ == "__main__":
        f(X)
''')


def test_python_gives_functions_methods_and_class_headers_with_qualified_names():
    assert table(chunk_file("pkg/mod.py", PYTHON)) == [
        ("module", None, 1, 3),
        ("function", "f", 5, 7),
        ("class", "A", 9, 11),
        ("method", "A.m", 13, 14),
        ("method", "A.p", 16, 18),
        ("class", "A.B", 20, 20),
        ("method", "A.B.n", 21, 21),
        ("module", None, 23, 24),
    ]


def test_chunks_carry_path_language_and_the_exact_lines_as_text():
    chunks = chunk_file("pkg/mod.py", PYTHON)
    f = chunks[1]
    assert (f.path, f.language) == ("pkg/mod.py", "python")
    assert f.text == "@decorator\ndef f(a):\n    return a"


def test_javascript_units_include_classes_arrow_functions_and_exports():
    code = src("""
        import x from "y";
        // doc for f
        function f(a) { return a; }
        class A extends B {
          static x = 1;
          constructor() { super(); }
          async m(a) {
            return a;
          }
        }
        const g = (a) => a + 1;
        export function ef() {}
        export default function () {}
        module.exports.q = 1;
    """)
    assert table(chunk_file("a.js", code)) == [
        ("module", None, 1, 1),
        ("function", "f", 2, 3),
        ("class", "A", 4, 5),
        ("method", "A.constructor", 6, 6),
        ("method", "A.m", 7, 9),
        ("function", "g", 11, 11),
        ("function", "ef", 12, 12),
        ("function", "default", 13, 13),
        ("module", None, 14, 14),
    ]


def test_typescript_units_include_interfaces_namespaces_and_decorated_members():
    code = src("""
        export interface Shape { area(): number; }
        type Id = string;
        export abstract class Base<T> implements Shape {
          private x = 1;
          @memo
          area(): number { return 0; }
          abstract name(): string;
        }
        namespace NS {
          export function inner(): void {}
        }
    """)
    assert table(chunk_file("a.ts", code)) == [
        ("interface", "Shape", 1, 1),
        ("type", "Id", 2, 2),
        ("class", "Base", 3, 4),
        ("method", "Base.area", 5, 6),
        ("class", "Base", 7, 8),
        ("namespace", "NS", 9, 9),
        ("function", "NS.inner", 10, 10),
    ]


def test_tsx_parses_components_with_jsx():
    code = src("""
        export function App(props: Props) {
          return <div>{props.name}</div>;
        }
        const Item = ({ x }: { x: number }) => <li>{x}</li>;
    """)
    assert table(chunk_file("App.tsx", code)) == [
        ("function", "App", 1, 3),
        ("function", "Item", 4, 4),
    ]


def test_go_methods_are_qualified_by_their_receiver_type():
    code = src("""
        package main

        import "fmt"

        // Point is a point.
        type Point struct {
            X int
        }

        func (p *Point) Move(dx int) {
            p.X += dx
        }

        func (l List[T]) Len() int { return 0 }

        func main() {
            fmt.Println("hi")
        }
    """)
    assert table(chunk_file("main.go", code)) == [
        ("module", None, 1, 3),
        ("struct", "Point", 5, 8),
        ("method", "Point.Move", 10, 12),
        ("method", "List.Len", 14, 14),
        ("function", "main", 16, 18),
    ]


def test_rust_impl_methods_are_named_after_the_implementing_type():
    code = src("""
        use std::fmt;

        /// A point.
        #[derive(Debug)]
        pub struct Point { x: i32 }

        impl<T> fmt::Display for Wrapper<T> {
            fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
                Ok(())
            }
        }

        trait Shape {
            fn area(&self) -> f64;
        }

        mod inner {
            pub fn f() {}
        }
    """)
    assert table(chunk_file("src/lib.rs", code)) == [
        ("module", None, 1, 1),
        ("struct", "Point", 3, 5),
        ("impl", "Wrapper", 7, 7),
        ("method", "Wrapper.fmt", 8, 10),
        ("trait", "Shape", 13, 15),
        ("module", "inner", 17, 17),
        ("function", "inner.f", 18, 18),
    ]


def test_java_nested_types_constructors_and_annotated_methods():
    code = src("""
        package a.b;

        /** Doc */
        public class Outer extends Base {
            private int x = 1;

            public Outer() {}

            @Override
            public String toString() { return ""; }

            static class Inner {
                void m() {}
            }

            abstract void later();
        }
    """)
    assert table(chunk_file("Outer.java", code)) == [
        ("module", None, 1, 1),
        ("class", "Outer", 3, 5),
        ("method", "Outer.Outer", 7, 7),
        ("method", "Outer.toString", 9, 10),
        ("class", "Outer.Inner", 12, 12),
        ("method", "Outer.Inner.m", 13, 13),
        ("class", "Outer", 16, 17),
    ]


def test_cpp_namespaces_classes_templates_and_out_of_line_methods():
    code = src("""
        #include <vector>
        namespace ns {
        class A : public B {
         public:
          void m() { }
          int x;
        };
        template <typename T>
        T add(T a, T b) { return a + b; }
        }  // namespace ns

        void ns::A::m2() {}
        #ifdef DEBUG
        static void trace() {}
        #endif
    """)
    assert table(chunk_file("a.cpp", code)) == [
        ("module", None, 1, 1),
        ("namespace", "ns", 2, 2),
        ("class", "ns.A", 3, 4),
        ("method", "ns.A.m", 5, 5),
        ("class", "ns.A", 6, 7),
        ("function", "ns.add", 8, 9),
        ("function", "ns.A.m2", 12, 12),
        ("module", None, 13, 13),
        ("function", "trace", 14, 14),
        ("module", None, 15, 15),
    ]


def test_ruby_modules_classes_and_singleton_methods():
    code = src("""
        require "x"

        # A module.
        module M
          class A < B
            attr_reader :x
            def initialize(x)
              @x = x
            end

            def self.build
              new(1)
            end
          end
        end
    """)
    assert table(chunk_file("lib/m.rb", code)) == [
        ("module", None, 1, 1),
        ("module", "M", 3, 4),
        ("class", "M.A", 5, 6),
        ("method", "M.A.initialize", 7, 9),
        ("method", "M.A.build", 11, 13),
    ]


def test_markdown_sections_are_named_by_their_heading_path():
    code = src("""
        Intro text.

        # Title

        Some text.

        ## Install

        Run it.

        ```python
        # not a heading
        ```

        ## Usage
        Use it.
    """)
    assert table(chunk_file("README.md", code)) == [
        ("module", None, 1, 1),
        ("section", "Title", 3, 5),
        ("section", "Title > Install", 7, 13),
        ("section", "Title > Usage", 15, 16),
    ]
    # The header an encoder sees names the path and the headings above the section.
    assert chunk_file("docs/guide.md", code)[2].context == "docs guide Title > Install"


SAMPLES: dict[str, tuple[str, str, set[tuple[str, str]]]] = {
    "c": (
        "a.c",
        "struct point { int x; };\nstatic int *make(int n) {\n  return 0;\n}\n",
        {("struct", "point"), ("function", "make")},
    ),
    "csharp": (
        "A.cs",
        "namespace App {\n  class Foo {\n    public void M() {}\n  }\n}\n",
        {("namespace", "App"), ("class", "App.Foo"), ("method", "App.Foo.M")},
    ),
    "php": (
        "a.php",
        "<?php\nfunction helper($a) { return $a; }\nclass User {\n  public function make() {}\n}\n",
        {("module", None), ("function", "helper"), ("class", "User"), ("method", "User.make")},
    ),
    "kotlin": (
        "a.kt",
        "class Foo {\n  fun m(a: Int): Int = a\n}\nfun String.ext(): Int = 1\n",
        {("class", "Foo"), ("method", "Foo.m"), ("function", "String.ext")},
    ),
    "swift": (
        "a.swift",
        "struct S {\n  var x = 1\n  func f() {}\n}\n",
        {("struct", "S"), ("method", "S.f")},
    ),
    "scala": (
        "a.scala",
        "object Foo {\n  val y = 1\n  def apply(): Int = 1\n}\n",
        {("object", "Foo"), ("method", "Foo.apply")},
    ),
    "lua": (
        "a.lua",
        "local M = {}\nfunction M:add(a)\n  return a\nend\n",
        {("module", None), ("function", "M.add")},
    ),
    "bash": (
        "a.sh",
        "set -e\ngreet() {\n  echo hi\n}\n",
        {("module", None), ("function", "greet")},
    ),
    "sql": (
        "a.sql",
        "CREATE TABLE users (\n  id INT\n);\nSELECT 1;\n",
        {("table", "users"), ("module", None)},
    ),
    "css": (
        "a.css",
        "body, .a > b {\n  color: red;\n}\n@media (max-width: 600px) {\n  .b { color: blue; }\n}\n",
        {("rule", "body, .a > b"), ("media", "(max-width: 600px)"), ("rule", ".b")},
    ),
}


@pytest.mark.parametrize("language", sorted(SAMPLES))
def test_every_grammar_language_yields_real_units(language):
    path, code, expected = SAMPLES[language]
    assert detect_language(path) == language
    assert {(c.kind, c.symbol) for c in chunk_file(path, code)} == expected


def test_every_node_type_and_field_in_the_language_table_exists_in_its_grammar():
    for spec in LANGUAGES:
        if spec.grammar is None:
            continue
        grammar = tree_sitter_language_pack.get_language(spec.grammar)
        types = (
            set(spec.units)
            | spec.containers
            | spec.bodies
            | spec.wrappers
            | spec.transparent
            | spec.leading
            | spec.declarations
            | set(spec.assigned_kinds)
        )
        if spec.declarator:
            types.add(spec.declarator)
        paths = [
            *spec.name_paths.values(),
            *spec.receiver_paths.values(),
            *spec.requires.values(),
            *(path for path, _ in spec.kind_paths.values()),
        ]
        fields = set()
        for path in paths:
            for step in path:
                if step.startswith(":"):
                    types |= set(step[1:].split("|"))
                else:
                    fields.add(step.rstrip("*"))
        missing = sorted(t for t in types if grammar.id_for_node_kind(t, True) is None)
        unknown = sorted(f for f in fields if grammar.field_id_for_name(f) is None)
        assert (missing, unknown) == ([], []), spec.name


# --- coverage, windows, fallbacks ---------------------------------------------------------


def test_a_long_function_is_split_into_overlapping_windows_that_keep_its_symbol():
    body = "".join(f"    x{i} = {i}\n" for i in range(1, 30))
    code = "import os\n\ndef long():\n" + body + "    return x1\n"
    options = ChunkingOptions(max_chunk_lines=12, window_overlap=3, min_chunk_lines=2)
    chunks = chunk_file("a.py", code, options=options)
    assert table(chunks) == [
        ("module", None, 1, 1),
        ("function", "long", 3, 14),
        ("function", "long", 12, 23),
        ("function", "long", 21, 33),  # 30-33 would add one line: folded in
    ]
    assert chunks[2].text.splitlines()[0] == "    x9 = 9"


def test_a_last_window_adding_fewer_than_min_chunk_lines_is_folded_into_the_previous_one():
    code = "".join(f"line {i}\n" for i in range(1, 23))
    options = ChunkingOptions(max_chunk_lines=10, window_overlap=0, min_chunk_lines=3)
    assert table(chunk_file("notes.txt", code, options=options)) == [
        ("window", None, 1, 10),
        ("window", None, 11, 22),
    ]


def test_a_class_chunk_holds_its_header_and_fields_but_not_its_methods_bodies():
    chunks = chunk_file("pkg/mod.py", PYTHON)
    header = next(c for c in chunks if c.symbol == "A")
    assert header.text == 'class A(Base):\n    """Doc."""\n    y = 2'
    assert "return 1" not in header.text


def test_every_non_blank_line_of_a_file_lands_in_some_chunk():
    chunks = chunk_file("pkg/mod.py", PYTHON)
    covered = {line for c in chunks for line in range(c.start_line, c.end_line + 1)}
    non_blank = {i for i, line in enumerate(PYTHON.splitlines(), 1) if line.strip()}
    assert non_blank <= covered


def test_a_file_without_units_is_kept_as_module_chunks():
    assert table(chunk_file("conf.py", "A = 1\nB = 2\n")) == [("module", None, 1, 2)]


def test_an_unknown_extension_falls_back_to_line_windows():
    code = "".join(f"row {i}\n" for i in range(1, 101))
    chunks = chunk_file("data.weird", code)
    assert detect_language("data.weird") == "text"
    assert table(chunks) == [("window", None, 1, 80), ("window", None, 71, 100)]
    assert {c.language for c in chunks} == {"text"}


def test_data_formats_are_cut_into_windows():
    assert table(chunk_file("config.yaml", "a: 1\nb:\n  c: 2\n")) == [("window", None, 1, 3)]
    assert detect_language("Cargo.toml") == "toml"
    assert detect_language("x/package.json") == "json"


def test_a_blank_or_whitespace_only_file_gives_no_chunks():
    assert chunk_file("empty.py", "") == []
    assert chunk_file("blank.py", "  \n\n\t\n") == []


def test_windows_line_endings_give_the_same_line_numbers_as_unix_ones():
    crlf = PYTHON.replace("\n", "\r\n")
    assert table(chunk_file("pkg/mod.py", crlf)) == table(chunk_file("pkg/mod.py", PYTHON))
    assert all("\r" not in c.text for c in chunk_file("pkg/mod.py", crlf))


def test_an_extensionless_script_is_detected_from_its_shebang():
    chunks = chunk_file("bin/tool", "#!/usr/bin/env python3\nimport sys\n\ndef main():\n    pass\n")
    assert [(c.language, c.symbol) for c in chunks] == [("python", None), ("python", "main")]


def test_a_syntax_error_still_gives_chunks_for_the_whole_file():
    chunks = chunk_file("broken.py", "def ok():\n    pass\n\ndef broken(:\n    x = (\n")
    covered = {line for c in chunks for line in range(c.start_line, c.end_line + 1)}
    assert ("function", "ok", 1, 2) in table(chunks)
    assert {1, 2, 4, 5} <= covered


def test_chunking_options_reject_an_overlap_as_large_as_the_window():
    with pytest.raises(ValueError):
        ChunkingOptions(max_chunk_lines=10, window_overlap=10)


# --- walking --------------------------------------------------------------------------------


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository exercising every skip reason, with one commit and untracked files."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    write(root, ".gitignore", "ignored.py\n")
    write(root, "src/app.py", "def main():\n    return 1\n")
    write(root, "src/gone.py", "x = 1\n")
    write(root, "ignored.py", "def secret(): pass\n")
    write(root, "logo.png", b"\x89PNG\r\n\x1a\n\x00\x00")
    write(root, "data.dat", b"abc\x00def")
    write(root, "huge.py", "x = 1\n" * 400)
    write(root, "app.min.js", "var a=1;")
    write(root, "bundle.js", "var a=1;" * 200)
    write(root, "package-lock.json", "{}\n")
    write(root, "api_pb2.py", "x = 1\n")
    write(root, "gen.go", "// Code generated by stringer. DO NOT EDIT.\npackage main\n")
    write(root, "vendor/lib/dep.go", "package lib\n")
    write(root, "latin.py", "# caf\xe9\nname = 'M\xfcller'\n".encode("latin-1"))
    os.symlink("does-not-exist.py", root / "broken.py")
    os.symlink(tmp_path / "outside.py", root / "escape.py")
    write(tmp_path, "outside.py", "def outside(): pass\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "init")
    (root / "src/gone.py").unlink()
    write(root, "src/new.py", "def fresh():\n    pass\n")
    return root


SMALL = ChunkingOptions(max_file_bytes=2_000)


def test_a_git_repository_lists_tracked_and_untracked_files_but_not_ignored_ones(repo):
    paths = [f.path for f in walk_repository(repo, SMALL).files]
    assert paths == [".gitignore", "latin.py", "src/app.py", "src/new.py"]


def test_the_walker_reports_each_skipped_file_with_its_reason(repo):
    skipped = {s.path: s.reason for s in walk_repository(repo, SMALL).skipped}
    assert skipped == {
        "logo.png": "binary",
        "data.dat": "binary",
        "huge.py": "too large",
        "app.min.js": "minified",
        "bundle.js": "minified",
        "package-lock.json": "generated",
        "api_pb2.py": "generated",
        "gen.go": "generated",
        "vendor/": "vendored",
        "broken.py": "broken symlink",
        "escape.py": "excluded",
    }


def test_a_latin1_file_is_decoded_without_crashing(repo):
    text = read_text(repo / "latin.py")
    assert "café" in text and "Müller" in text
    assert [c.symbol for c in chunk_file("latin.py", text)] == [None]


def test_read_text_strips_a_utf8_bom_and_keeps_mostly_utf8_text(tmp_path):
    bom = write(tmp_path, "bom.py", "\ufeffx = 'é'\n".encode("utf-8"))
    assert read_text(bom) == "x = 'é'\n"
    stray = write(tmp_path, "stray.py", "é ü ö".encode() + b" \xff\n")
    assert read_text(stray) == "é ü ö \ufffd\n"


def test_chunk_repository_chunks_every_kept_file_and_reports_progress(repo):
    calls: list[tuple[int, int]] = []
    result = chunk_repository(repo, SMALL, progress=lambda done, total: calls.append((done, total)))
    assert isinstance(result, ChunkingResult)
    assert calls[-1] == (4, 4)
    assert {(c.path, c.symbol) for c in result.chunks if c.symbol} == {
        ("src/app.py", "main"),
        ("src/new.py", "fresh"),
    }
    assert result.skipped_by_reason() == {
        "binary": 2,
        "generated": 3,
        "minified": 2,
        "too large": 1,
        "vendored": 1,
        "broken symlink": 1,
        "excluded": 1,
    }


def test_git_head_is_the_commit_sha_and_none_before_the_first_commit(repo, tmp_path):
    assert git_head(repo) == git(repo, "rev-parse", "HEAD").strip()
    assert is_git_repository(repo)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    git(fresh, "init", "-q")
    assert is_git_repository(fresh) and git_head(fresh) is None


def test_a_plain_folder_is_walked_without_git_honouring_excluded_folders(tmp_path):
    write(tmp_path, "a.py", "def a(): pass\n")
    write(tmp_path, "pkg/b.rs", "fn b() {}\n")
    write(tmp_path, "node_modules/x/index.js", "module.exports = 1;\n")
    write(tmp_path, "build/out.py", "x = 1\n")
    write(tmp_path, "pkg/__pycache__/b.cpython-311.pyc", b"\x00\x01")
    result = walk_repository(tmp_path)
    assert [(f.path, f.language) for f in result.files] == [
        ("a.py", "python"),
        ("pkg/b.rs", "rust"),
    ]
    assert {(s.path, s.reason) for s in result.skipped} == {
        ("build/", "excluded"),
        ("node_modules/", "vendored"),
    }
    assert not is_git_repository(tmp_path) and git_head(tmp_path) is None


def test_exclude_globs_skip_matching_files_and_folders(tmp_path):
    write(tmp_path, "a.py", "x = 1\n")
    write(tmp_path, "docs/guide.md", "# Guide\n")
    write(tmp_path, "tests/test_a.py", "x = 1\n")
    result = walk_repository(tmp_path, ChunkingOptions(exclude_globs=("docs", "*test_*.py")))
    assert [f.path for f in result.files] == ["a.py"]
    assert {(s.path, s.reason) for s in result.skipped} == {
        ("docs/", "excluded"),
        ("tests/test_a.py", "excluded"),
    }


def test_a_missing_path_or_a_file_is_not_a_repository(tmp_path):
    with pytest.raises(NotARepositoryError, match="does not exist"):
        walk_repository(tmp_path / "nope")
    with pytest.raises(NotARepositoryError, match="not a directory"):
        chunk_repository(write(tmp_path, "f.py", "x = 1\n"))


def test_documentation_that_mentions_generation_is_indexed_but_real_banners_are_skipped(tmp_path):
    write(tmp_path, "docs/api.md", "# API reference\n\nThis page is automatically generated from the docstrings.\n")
    write(tmp_path, "docs/notes.txt", "Auto-generated indexes are rebuilt nightly.\n")
    write(tmp_path, "docs/changelog.md", "<!-- DO NOT EDIT: written by towncrier -->\n# Changes\n")
    write(tmp_path, "src/schema.py", "# Automatically generated by datamodel-codegen\nclass A: pass\n")
    write(tmp_path, "src/real.py", "def f():\n    return 1\n")
    listing = walk_repository(tmp_path)
    assert sorted(f.path for f in listing.files) == ["docs/api.md", "docs/notes.txt", "src/real.py"]
    assert {s.path: s.reason for s in listing.skipped} == {
        "docs/changelog.md": "generated", "src/schema.py": "generated"}
