"""The ``codelsr`` command: a thin adapter over the library. Library errors become one line on
stderr and exit status 1; results go to stdout (``--json`` for a stable machine-readable shape)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from codelsr.errors import CodelsrError


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _window_lines(text: str) -> int:
    """``--max-chunk-lines``: a whole number longer than the windows' overlap."""
    from codelsr.chunking import ChunkingOptions

    overlap = ChunkingOptions().window_overlap
    try:
        lines = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of lines") from None
    if lines <= overlap:
        raise argparse.ArgumentTypeError(f"{lines} is too short: windows overlap by {overlap} lines, so give at "
                                         f"least {overlap + 1}")
    return lines


def cmd_index(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from codelsr.chunking import ChunkingOptions
    from codelsr.index.progressive import index_repository

    options = ChunkingOptions(
        max_file_bytes=args.max_file_bytes,
        max_chunk_lines=args.max_chunk_lines,
        exclude_globs=tuple(args.exclude or ()),
        context=args.context,
    )
    console = _stderr_console()
    with Progress(TextColumn("{task.description:<9}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=args.json or not console.is_terminal) as bar:
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total or 1)
            bar.update(tasks[stage], completed=done if total else 1, total=total or 1)

        result = index_repository(args.path, args.encoder, foreground=args.foreground, backend=args.backend,
                                  force=args.force, options=options, progress=progress, lock_timeout=args.wait,
                                  milvus_uri=args.milvus)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        return 0
    for report in [result.report]:
        skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(report.skipped.items())) or "none"
        console.print(f"encoder: {report.encoder} ({report.encoder_id}); backend: {report.backend}", markup=False)
        print(
            f"indexed {report.repo}: {report.files} files, {report.chunks} chunks "
            f"({report.encoded_chunks} encoded, {report.reused_chunks} reused), skipped: {skipped}, "
            f"{report.seconds:.1f} s"
        )
        if not report.compacted:
            print(f"updated: {report.changed_files} files changed, {report.deleted_files} deleted; "
                  f"delta segment {report.delta_chunks} chunks, {report.tombstones} tombstones")
    if result.learned_state == "building":
        print(f"learned index ({result.encoder}): building in the background ({result.worker}); searches use "
              f"the lexical index until it is complete. `codelsr status {result.report.repo}` shows its progress; "
              "`--foreground` waits for it.")
    for note in result.notes:
        print(note)
    return 0


def cmd_learn(args: argparse.Namespace) -> int:
    from codelsr.index.progressive import run_learned

    report = run_learned(args.path, wait=args.wait)
    if report is None:
        print("nothing to do: no learned build is pending, or another worker has it")
        return 0
    print(f"learned index ({report.encoder}) of {report.repo}: {report.chunks} chunks "
          f"({report.encoded_chunks} encoded, {report.reused_chunks} reused), {report.seconds:.1f} s")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from codelsr.config import SETTINGS, config_path, set_setting, setting

    if args.name is not None and (args.value is not None or args.unset):
        set_setting(args.name, None if args.unset else args.value)
    names = [args.name] if args.name is not None else sorted(SETTINGS)
    values = {name: setting(name) for name in names}
    if args.json:
        print(json.dumps({n: {"value": v, "from": src} for n, (v, src) in values.items()}, indent=2))
        return 0
    for name, (value, source) in values.items():
        print(f"{name} = {value}  ({'set by ' + source if source != 'built-in' else 'built-in default'})")
    if args.name is None:
        print(f"# settings file: {config_path()}")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    repos = args.repo or [Path(".")]
    for repo in repos:
        _check_path(repo, "search")
    if len(repos) > 1:
        return _search_several(args, repos)
    from codelsr.search import search

    result = search(repos[0], args.query, k=args.k, offset=args.offset, path_glob=args.glob,
                    language=args.lang, max_chars=args.max_chars, encoder=args.encoder)
    if args.json:
        print(json.dumps(result.to_json(), indent=2, ensure_ascii=False))
        return 0
    print(f"# encoder: {result.encoder}  repo: {result.repo}")
    _print_hits(result.hits, args.offset, with_repo=False)
    return 0


def _search_several(args: argparse.Namespace, repos: list[Path]) -> int:
    """``codelsr search --repo A --repo B``: one ranking across the repositories, by score."""
    from codelsr.search import search_repos

    result = search_repos(repos, args.query, k=args.k, offset=args.offset, path_glob=args.glob,
                          language=args.lang, max_chars=args.max_chars, encoder=args.encoder)
    if args.json:
        print(json.dumps(result.to_json(), indent=2, ensure_ascii=False))
        return 0
    encoders = ", ".join(sorted(set(result.encoders.values())))
    print(f"# encoder: {encoders}  repos: {', '.join(result.repos)}")
    if result.mixed_encoders:
        print("# indexed with different encoders, whose scores are not on one scale: the interleaving is approximate")
    _print_hits(result.hits, args.offset, with_repo=True)
    return 0


def _print_hits(hits: list, offset: int, *, with_repo: bool) -> None:
    if not hits:
        print("no matches")
    for rank, hit in enumerate(hits, 1 + offset):
        symbol = f"  {hit.symbol}" if hit.symbol else ""
        where = f"  in {hit.repo}" if with_repo else ""
        print(f"\n{rank}. {hit.path}:{hit.start_line}-{hit.end_line}{symbol}  [{hit.language}]  "
              f"score {hit.score:.3f}  id {hit.chunk_id}{where}")
        for line in hit.snippet.splitlines():
            print(f"   {line}")


def cmd_status(args: argparse.Namespace) -> int:
    from codelsr.index import index_status, list_indexes

    verify = getattr(args, "verify", False)
    if not args.all:
        _check_path(args.path, "status")
    statuses = list_indexes(verify) if args.all else [index_status(args.path, verify)]
    damaged = any(s.state == "damaged" for s in statuses)
    if args.json:
        out = [s.to_json() for s in statuses]
        print(json.dumps(out if args.all else out[0], indent=2))
        return 1 if damaged else 0
    for s in statuses:
        if not s.indexed:
            print(f"{s.repo}: not indexed; run `codelsr index {s.repo}`")
            continue
        if s.state == "damaged":
            print(f"{s.repo}: DAMAGED ({s.checked} check)")
            for problem in s.problems:
                print(f"  {problem}")
            print(f"  fix: {s.fix}")
            continue
        changed = {True: "changed since", False: "unchanged since", None: "unknown since"}[s.changed_since_index]
        commit = (s.indexed_commit or "no commit")[:12]
        windows = f", windows {s.window_lines} lines" if s.window_lines else ""
        print(f"{s.repo}: {s.chunks} chunks from {s.files} files, encoder {s.encoder}, context {s.context}{windows}, "
              f"backend {s.backend}, "
              f"commit {commit}, working tree {changed} indexing, {s.index_bytes / 1e6:.1f} MB, "
              f"built {s.created_at} ({s.age_seconds:.0f} s ago)")
        print(f"  integrity: {_integrity_line(s)}")
        if s.learned is not None:
            print(f"  learned index: {_learned_line(s.learned)}")
    if args.all and not statuses:
        print("no repositories indexed yet")
    return 1 if damaged else 0


def _integrity_line(s) -> str:
    if s.state == "unverified":
        return "unverified (built before checksums; `codelsr index --force` adds them)"
    if s.checked == "full":
        return "ok (every byte matches its checksum)"
    return "ok (sizes and small files match their checksums; `codelsr verify` reads every byte)"


def cmd_verify(args: argparse.Namespace) -> int:
    args.verify = True
    return cmd_status(args)


def _check_path(path: Path, command: str) -> None:
    """A path that does not exist is named as such, never sent on to be indexed."""
    from codelsr.errors import NotARepositoryError

    if not Path(path).expanduser().exists():
        raise NotARepositoryError(f"{path} does not exist; pass the folder of a repository to `codelsr {command}`")


def _learned_line(info: dict) -> str:
    """One line on the learned index of a progressive build (``progressive.learned_status``)."""
    if info["state"] == "complete":
        return f"{info['encoder']}, complete (it answers searches)"
    where = ""
    if info.get("total"):
        where = f" {info.get('stage')} {info['done']}/{info['total']} ({info['percent']:.0f}%)"
        if info.get("eta_seconds") is not None:
            where += f", ETA {info['eta_seconds']:.0f} s at {info.get('chunks_per_second')} chunks/s"
    if info["state"] == "building":
        return f"{info['encoder']}, building{where}; lexical answers until it is complete"
    error = f"; last error: {info['error']}" if info.get("error") else ""
    return (f"{info['encoder']}, stopped{where} with {info.get('cached_vectors') or 0} vectors kept{error}; "
            f"{info.get('hint', '')}")


def cmd_explain(args: argparse.Namespace) -> int:
    from codelsr.explain import explain

    _check_path(args.repo, "explain")
    result = explain(args.repo, args.query, args.chunk_id)
    if args.json:
        print(json.dumps(result.to_json(), indent=2, ensure_ascii=False))
        return 0
    print(f"{result.path}:{result.start_line}-{result.end_line} {result.symbol or ''}")
    print(result.summary)
    for t in result.terms:
        kind = "expansion" if t.expansion else "literal"
        where = f"lines {','.join(map(str, t.lines[:8])) or '-'}" if t.via in ("text", None) else f"via {t.via}"
        print(f"  {t.term:<24} {t.contribution:8.3f} = {t.query_weight:.3f} x {t.doc_weight:.3f}  {kind:<9} {where}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from codelsr.chunking.context import DEFAULT_SCHEME as DEFAULT_CONTEXT
    from codelsr.chunking.context import SCHEMES as CONTEXT_SCHEMES

    parser = argparse.ArgumentParser(prog="codelsr", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("index", help="index a repository (or update its index)")
    p.add_argument("path", nargs="?", default=".", type=Path)
    p.add_argument("--encoder", help="lexical, splade-code-tiny, hybrid-code-tiny, or splade:<hub id or folder>; "
                                     "default: the encoder of the existing index, else `codelsr config "
                                     "default_encoder` (lexical unless set)")
    p.add_argument("--backend", choices=["auto", "exact", "seismic", "milvus"], default=None)
    p.add_argument("--milvus", metavar="URI", help="keep the vectors in Milvus: a local file (Milvus Lite) or "
                                                   "http://host:19530 (token in CODELSR_MILVUS_TOKEN); default "
                                                   "for new indexes: $CODELSR_MILVUS_URI")
    p.add_argument("--force", action="store_true", help="re-encode every chunk (ignore cached vectors)")
    p.add_argument("--max-file-bytes", type=int, default=1_000_000)
    p.add_argument("--context", choices=list(CONTEXT_SCHEMES), default=DEFAULT_CONTEXT,
                   help="header encoded before each chunk: its path words and qualified symbol (path+symbol, the "
                        "default) or nothing (none); changing it re-encodes every chunk")
    p.add_argument("--max-chunk-lines", type=_window_lines, default=None, metavar="N",
                   help="cut units longer than N lines into overlapping windows (default: the encoder's window: "
                        "25 lines for the shipped SPLADE model, 120 for lexical; prose never below 80)")
    p.add_argument("--exclude", action="append", metavar="GLOB", help="skip paths matching GLOB (repeatable)")
    p.add_argument("--wait", type=float, default=0, metavar="SECONDS",
                   help="wait this long for another indexing run of the same repository to finish")
    p.add_argument("--foreground", action="store_true",
                   help="with a learned encoder, build the learned index too before returning (scripts, CI); "
                        "by default a lexical index answers at once and the learned one is built in the background")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("learn", help="build the pending learned index of a repository (what `index` starts in "
                                     "the background; resumes a killed build)")
    p.add_argument("path", nargs="?", default=".", type=Path)
    p.add_argument("--wait", action="store_true", help="wait for a worker already running instead of leaving it")
    p.set_defaults(func=cmd_learn)

    p = sub.add_parser("config", help="show or change settings (default_encoder: the encoder of new indexes)")
    p.add_argument("name", nargs="?", help="a setting, e.g. default_encoder")
    p.add_argument("value", nargs="?", help="the new value, e.g. hybrid-code-tiny or lexical")
    p.add_argument("--unset", action="store_true", help="remove the setting (back to the built-in default)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("search", help="search an indexed repository (or several: --repo A --repo B)")
    p.add_argument("query")
    p.add_argument("--repo", action="append", type=Path,
                   help="the repository (default: the current folder); repeat it to search several at once")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--offset", type=int, default=0, help="skip this many hits (paging)")
    p.add_argument("--glob", help="only paths matching this glob, e.g. 'src/*.py'")
    p.add_argument("--lang", help="only chunks in this language, e.g. python")
    p.add_argument("--max-chars", type=int, default=600, help="snippet budget per hit")
    p.add_argument("--encoder", help="fail unless the index was built with this encoder")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("status", help="show what is indexed")
    p.add_argument("path", nargs="?", default=".", type=Path)
    p.add_argument("--all", action="store_true", help="list every indexed repository")
    p.add_argument("--verify", action="store_true", help="read every byte of the index and check its checksums")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("verify", help="check every byte of an index against its checksums (exit 1 if damaged)")
    p.add_argument("path", nargs="?", default=".", type=Path)
    p.add_argument("--all", action="store_true", help="verify every indexed repository")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("explain", help="why a chunk matched a query, term by term")
    p.add_argument("query")
    p.add_argument("chunk_id")
    p.add_argument("--repo", default=".", type=Path)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("serve", help="run the MCP server (stdio by default)")
    p.add_argument("--root", action="append", type=Path, metavar="PATH",
                   help="a folder the server may index and search (repeatable; default: the current folder)")
    p.add_argument("--http", metavar="[HOST:]PORT", help="serve streamable HTTP instead of stdio (host default 127.0.0.1)")
    p.add_argument("--encoder", help="encoder for repositories indexed through the server (default: lexical)")
    p.add_argument("--milvus", metavar="URI", help="index into Milvus: a local file (Milvus Lite, this process "
                                                   "only) or http://host:19530; default $CODELSR_MILVUS_URI")
    p.set_defaults(func=lambda a: _lazy("codelsr.server", "serve_command")(a))

    p = sub.add_parser("hook", help="keep an index fresh with git hooks")
    hook_sub = p.add_subparsers(dest="hook_command", required=True)
    for name, help_text in (("install", "install post-commit/merge/checkout/rewrite hooks"),
                            ("uninstall", "remove codelsr's hooks and restore what was there")):
        h = hook_sub.add_parser(name, help=help_text)
        h.add_argument("path", nargs="?", default=".", type=Path)
    h = hook_sub.add_parser("run", help="(called by the hooks) reindex in the background")
    h.add_argument("path", nargs="?", default=".", type=Path)
    h.add_argument("--event", default="manual")
    h.add_argument("--foreground", action="store_true")
    p.set_defaults(func=lambda a: _lazy("codelsr.hooks", "hook_command")(a))
    return parser


def _lazy(module: str, name: str):
    """Import an adapter only when its command runs, so other commands start fast."""
    import importlib

    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise CodelsrError(f"this command is not available in this build ({module}.{name}: {exc})") from exc


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from codelsr.git import harden_env

    harden_env()  # a repository's core.fsmonitor must not run programs when we index it
    try:
        return int(args.func(args) or 0)
    except CodelsrError as exc:
        print(f"codelsr: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("codelsr: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`codelsr search ... | head`): not an error; keep Python's
        # exit-time flush from raising again on the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
