"""The MCP tools: thin adapters from typed arguments to the library, run in worker threads.

Every tool checks its paths against the allowed roots first. Library errors (``CodelsrError``)
become tool errors whose message says what to call next; anything else is logged on stderr and
reported as a generic tool error, never a crashed server.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

import codelsr
from codelsr.encoders import normalise_spec
from codelsr.errors import (
    CodelsrError,
    CorruptIndexError,
    EncoderMismatchError,
    NotARepositoryError,
    NotIndexedError,
    PathNotAllowedError,
)
from codelsr.explain import explain_chunk
from codelsr.index import (
    IndexReader,
    catalog,
    index_repository,
    index_status,
    is_indexed,
    open_index,
    resolve_encoder,
)
from codelsr.index.build import IndexReport
from codelsr.index.health import DAMAGED, check_index
from codelsr.index.status import damaged_roots
from codelsr.index.milvus_backend import URI_ENV as MILVUS_URI_ENV
from codelsr.search import DEFAULT_SNIPPET_CHARS, MAX_K, search_readers, validate_query
from codelsr.server.arguments import report_arguments_plainly
from codelsr.index.progressive import learned_status
from codelsr.server.background import LearnedWorkers, warm_up
from codelsr.server.builds import Build, BuildTracker
from codelsr.server.models import (
    ExplainMatchResult,
    HitOut,
    IndexRepoResult,
    IndexStatusResult,
    RepoStatus,
    SearchCodeResult,
)
from codelsr.server.roots import AllowedRoots

log = logging.getLogger("codelsr.server")
T = TypeVar("T")

MAX_SNIPPET_CHARS = 20_000
# How long index_repo waits for another process (the CLI, a git hook) that holds the index's lock.
LOCK_WAIT_SECONDS = 60.0

INSTRUCTIONS = """\
codelsr searches code with learned sparse retrieval and explains every match term by term.
Typical flow: index_status (what is indexed, is it stale?) -> index_repo(path) when a repository is
not indexed or changed -> search_code(query) -> explain_match(query, chunk_id) when you need to know
why a hit matched before opening it -> read the file at path, start_line..end_line.
Paths are limited to the server's roots; relative paths are taken from the first root."""

READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
INDEXING = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True,
                           open_world_hint=False)


@contextlib.contextmanager
def _as_tool_errors() -> Iterator[None]:
    """Library errors -> tool errors the agent can act on."""
    try:
        yield
    except ToolError:
        raise
    except CodelsrError as exc:
        raise ToolError(str(exc)) from exc
    except OSError as exc:
        raise ToolError(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc)) from exc


def _reply(result: BaseModel) -> CallToolResult:
    """The structured result, and the same JSON as text: compact, since it lands in the agent's context
    (the SDK's default text is indented, a third of it whitespace)."""
    return CallToolResult(content=[TextContent(type="text", text=result.model_dump_json())],
                          structured_content=result.model_dump(mode="json"))


async def _in_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))


class CodelsrTools:
    """The state behind the tools: roots, default encoder, builds in flight."""

    def __init__(self, roots: AllowedRoots, default_encoder: str | None):
        self.roots = roots
        self.default_encoder = default_encoder
        self.builds = BuildTracker(self._run_build)
        self.learned = LearnedWorkers()  # learned index builds of progressive indexing, one thread per repo

    # ------------------------------------------------------------------ helpers (blocking ones run in threads)

    def indexed_repos(self) -> list[Path]:
        """Indexed repositories inside the roots, newest index first (manifests only: no git, no sizes)."""
        return [p.repo for p in catalog.list_published() if p.belongs_here and self.roots.contains(p.repo)]

    def _not_indexed(self, repo: Path) -> CodelsrError:
        if not repo.is_dir():
            return NotARepositoryError(f"{repo} is not an existing folder; pass a repository's root folder")
        build = self.builds.get(repo)
        if build is not None:
            p = build.progress()
            return NotIndexedError(f"{repo} is being indexed right now ({p.stage} {p.done}/{p.total}, "
                                   f"{p.percent:.0f}%): wait for index_repo to return, then search")
        enclosing = [r for r in self.indexed_repos() if repo.is_relative_to(r)]
        if enclosing:
            return NotIndexedError(
                f"{repo} is not indexed itself, but it lies inside the indexed repository {enclosing[0]}: "
                f"pass repo={str(enclosing[0])!r} (and path_glob to narrow the search)")
        return NotIndexedError(f"{repo} is not indexed yet: call index_repo(path={str(repo)!r}) first")

    def _reader(self, repo: Path) -> IndexReader:
        if not is_indexed(repo):
            found = check_index(repo)
            if found.state == DAMAGED:  # CURRENT lost beside published generations: not "not indexed"
                raise CorruptIndexError(found.message())
            raise self._not_indexed(repo)
        try:
            return open_index(repo)
        except NotIndexedError:
            raise self._not_indexed(repo) from None

    def _repos_for(self, repo: str | Sequence[str] | None, *, purpose: str) -> list[Path]:
        """The repositories a call names, checked; or the only indexed one when it names none."""
        if repo is None or (not isinstance(repo, str) and len(repo) == 0):
            indexed = self.indexed_repos()
            if len(indexed) == 1:
                return indexed
            if not indexed:
                building = [str(b.repo) for b in self.builds.all()]
                if building:
                    raise NotIndexedError(f"no repository is indexed yet; {', '.join(building)} is being "
                                          "indexed: wait for index_repo to return, then search")
                raise NotIndexedError(f"no repository under {self.roots} is indexed yet: call "
                                      "index_repo(path=<repository folder>) first")
            names = ", ".join(repr(str(r)) for r in indexed)
            raise NotIndexedError(f"{len(indexed)} repositories are indexed ({names}): pass repo=<one of them>"
                                  f"{', or a list of them to search several at once' if purpose == 'search' else ''}")
        paths = [repo] if isinstance(repo, str) else list(repo)
        checked: list[Path] = []
        for p in paths:
            real = self.roots.check(p)
            if real not in checked:
                checked.append(real)
        return checked

    def _effective_encoder(self, repo: Path, encoder: str | None) -> str:
        """The encoder a build will use: the one asked for, else the index's, else the server default."""
        if encoder is not None:
            spec = normalise_spec(encoder)
            self._check_model_path(spec)
            return spec
        return resolve_encoder(repo, None, self.default_encoder)

    def _check_model_path(self, spec: str) -> None:
        """A model given as a local folder must lie in a root (or be the server's own encoder)."""
        model = spec.removeprefix("splade:")
        if model == spec or spec == normalise_spec(self.default_encoder):
            return
        local = Path(model).expanduser()
        if local.is_absolute() or local.exists() or model.startswith((".", "~")):
            try:
                self.roots.check(local)
            except PathNotAllowedError:
                raise PathNotAllowedError(
                    f"encoder {spec!r} loads a model folder outside the server's roots ({self.roots}); "
                    "use a hub id (splade:naver/splade-v3), a folder inside a root, or start the server "
                    "with --encoder for that model"
                ) from None

    def _run_build(self, build: Build) -> IndexReport:
        """``serve --milvus URI`` / CODELSR_MILVUS_URI: every build through the server syncs to that engine.
        With a learned encoder: the lexical index (served when this returns); the learned one is
        left to a thread of this server (``LearnedWorkers``)."""
        return index_repository(build.repo, build.encoder, force=build.force, progress=build.update,
                                lock_timeout=LOCK_WAIT_SECONDS, start_worker=self.learned.start,
                                milvus_uri=os.environ.get(MILVUS_URI_ENV) or None).report

    def _status(self, repo: Path, verify: bool = False) -> RepoStatus:
        build = self.builds.get(repo)
        return RepoStatus.of(index_status(repo, verify), build.progress() if build is not None else None)

    def _statuses(self, repo: str | None, verify: bool = False) -> IndexStatusResult:
        if repo is not None:
            repos = [self.roots.check(repo)]
            if not repos[0].is_dir():
                raise NotARepositoryError(f"{repo} is not an existing folder; pass a repository's root folder")
        else:
            repos = self.indexed_repos()
            repos += [r for _, r in damaged_roots() if self.roots.contains(r) and r not in repos]
            repos += [b.repo for b in self.builds.all() if b.repo not in repos]
        return IndexStatusResult(roots=[str(r) for r in self.roots.paths],
                                 repositories=[self._status(r, verify) for r in repos])

    def _prepare_build(self, path: str, encoder: str | None) -> tuple[Path, str]:
        repo = self.roots.check(path)
        if not repo.is_dir():
            raise NotARepositoryError(f"{path} is not an existing folder; pass the repository's root folder")
        return repo, self._effective_encoder(repo, encoder)

    def _search(self, query: str, repo: str | list[str] | None, k: int, offset: int, path_glob: str | None,
                language: str | None, max_chars: int) -> SearchCodeResult:
        query = validate_query(query, k, offset)
        repos = self._repos_for(repo, purpose="search")
        try:
            return self._search_repos(query, repos, k, offset, path_glob, language, max_chars)
        except EncoderMismatchError as exc:
            raise self._with_mcp_hints(exc, repos) from exc

    def _search_repos(self, query: str, repos: list[Path], k: int, offset: int, path_glob: str | None,
                      language: str | None, max_chars: int) -> SearchCodeResult:
        readers = [self._reader(r) for r in repos]
        result = search_readers(readers, query, k=k, offset=offset, path_glob=path_glob, language=language,
                                max_chars=max_chars)
        note = None
        if result.mixed_encoders:
            note = ("these repositories were indexed with different encoders, whose scores are not on one "
                    "scale: the interleaving across repositories is approximate")
        elif not result.hits and offset == 0:
            note = "no chunk shares a term with the query: try identifiers or other words"
            if path_glob or language:
                note += ", or drop path_glob / language"
        pending = _learned_pending_note(result.encoders)
        if pending:
            note = f"{note}; {pending}" if note else pending
        return SearchCodeResult(query=result.query, repos=result.repos, encoders=result.encoders,
                                hits=[HitOut.of(h) for h in result.hits], offset=offset,
                                next_offset=result.next_offset, note=note)

    def _find_chunk_repo(self, chunk_id: str, repos: list[Path]) -> Path:
        for repo in repos:
            if self._reader(repo).chunks.by_chunk_id(chunk_id) is not None:
                return repo
        raise NotIndexedError(f"no indexed repository has chunk {chunk_id!r}; chunk ids come from search_code "
                              "results and change when the code changes: search again, or pass repo")

    def _explain(self, query: str, chunk_id: str, repo: str | None, max_terms: int) -> ExplainMatchResult:
        validate_query(query, 1)
        if repo is None and len(indexed := self.indexed_repos()) > 1:
            target = self._find_chunk_repo(chunk_id, indexed)
        else:
            target = self._repos_for(repo, purpose="explain")[0]
        try:
            return ExplainMatchResult.of(explain_chunk(self._reader(target), query, chunk_id, max_terms=max_terms))
        except EncoderMismatchError as exc:
            raise self._with_mcp_hints(exc, [target]) from exc

    def _with_mcp_hints(self, exc: EncoderMismatchError, repos: list[Path]) -> ToolError:
        where = repr(str(repos[0])) if len(repos) == 1 else "<repository>"
        return ToolError(f"{exc} (over MCP: call index_repo(path={where}, force=true))")

    # ------------------------------------------------------------------ tools

    async def index_repo(
        self,
        path: Annotated[str, Field(description="the repository folder (absolute, or relative to the server's "
                                               "first root)")],
        ctx: Context,
        encoder: Annotated[str | None, Field(
            description="lexical (offline BM25-style; the default unless the server sets --encoder), "
                        "hybrid-code-tiny (codelsr's shipped SPLADE model plus BM25: better at finding code by "
                        "what it does, slower to index), splade-code-tiny, or splade:<hub id or folder>; omit "
                        "to keep the encoder of the existing index")] = None,
        force: Annotated[bool, Field(description="re-encode every chunk instead of reusing unchanged ones")] = False,
    ) -> Annotated[CallToolResult, IndexRepoResult]:
        """Build or update the search index of a repository.

        Only chunks whose code changed are re-encoded, so calling it again after edits is cheap. Sends
        progress notifications while it works. If a build of the same repository is already running,
        this call waits for that build and returns its result (joined_build: true) instead of starting
        another. Returns file and chunk counts, skipped files with reasons, the encoder and the commit.
        """
        with _as_tool_errors():
            repo, spec = await _in_thread(self._prepare_build, path, encoder)
            report, joined = await self.builds.index(repo, spec, force, ctx.report_progress)
            log.info("indexed %s: %d chunks in %.1f s%s", repo, report.chunks, report.seconds,
                     " (joined)" if joined else "")
            learned = await _in_thread(learned_status, repo)
            return _reply(IndexRepoResult.of(report, joined, learned))

    async def search_code(
        self,
        query: Annotated[str, Field(description="what you are looking for: identifiers, a behaviour in words, "
                                                "an error message, or a mix")],
        repo: Annotated[str | list[str] | None, Field(
            description="repository folder, or a list to search several at once; may be omitted when exactly "
                        "one repository is indexed")] = None,
        k: Annotated[int, Field(ge=1, le=MAX_K, description="hits per page")] = 10,
        offset: Annotated[int, Field(ge=0, description="skip this many hits: pass next_offset for the next "
                                                       "page")] = 0,
        path_glob: Annotated[str | None, Field(description="only paths matching this glob, e.g. 'src/**/*.py'")] = None,
        language: Annotated[str | None, Field(description="only chunks in this language, e.g. python")] = None,
        max_chars: Annotated[int, Field(ge=0, le=MAX_SNIPPET_CHARS,
                                        description="snippet budget per hit in characters; 0: whole chunk")]
        = DEFAULT_SNIPPET_CHARS,
    ) -> Annotated[CallToolResult, SearchCodeResult]:
        """Search indexed code; returns ranked hits with path, line range, symbol and a snippet.

        Each hit's chunk_id can be passed to explain_match. Page with offset/next_offset. Searching
        several repositories interleaves their hits by score.
        """
        with _as_tool_errors():
            return _reply(await _in_thread(self._search, query, repo, k, offset, path_glob, language, max_chars))

    async def explain_match(
        self,
        query: Annotated[str, Field(description="the query of the search_code call")],
        chunk_id: Annotated[str, Field(description="a hit's chunk_id from search_code")],
        repo: Annotated[str | None, Field(description="the hit's repo; may be omitted")] = None,
        max_terms: Annotated[int, Field(ge=1, le=500, description="terms to list; the rest are summed in "
                                                                   "other_terms")] = 25,
    ) -> Annotated[CallToolResult, ExplainMatchResult]:
        """Why a chunk matched a query: the score split into per-term contributions.

        For each term: query weight x document weight, whether it occurs literally in the query and in
        the chunk (otherwise it is an expansion the encoder inferred), and the chunk lines where it
        occurs (via "path" or "symbol", and no lines, when it matched only the chunk's context header:
        its file path's words or its qualified name); focus_lines says where in the chunk the score
        concentrates. A hit carried mostly by
        expansion terms (high expansion_share) is a semantic guess; one with literal terms on
        focus_lines is a direct match worth opening.
        """
        with _as_tool_errors():
            return _reply(await _in_thread(self._explain, query, chunk_id, repo, max_terms))

    async def index_status(
        self,
        repo: Annotated[str | None, Field(description="a repository folder; omit to list every indexed "
                                                      "repository under the server's roots")] = None,
        verify: Annotated[bool, Field(description="read every byte of the index and check it against its "
                                                  "checksums (slower); by default sizes and small files")] = False,
    ) -> Annotated[CallToolResult, IndexStatusResult]:
        """What is indexed: encoder, chunk count, indexed commit, whether the working tree changed since
        (then call index_repo to update), index size and age, whether the index is intact (state: ok or
        damaged, with the damaged files; index_repo repairs it), and builds running now."""
        with _as_tool_errors():
            return _reply(await _in_thread(self._statuses, repo, verify))


def create_server(roots: list[Path], default_encoder: str | None = None) -> MCPServer:
    """An MCP server exposing codelsr's tools over the repositories inside ``roots``."""
    if default_encoder is not None:
        default_encoder = normalise_spec(default_encoder)
    tools = CodelsrTools(AllowedRoots(roots), default_encoder)
    server = MCPServer("codelsr", title="codelsr code search", version=codelsr.__version__,
                       instructions=INSTRUCTIONS)
    server.add_tool(tools.index_repo, title="Index a repository", annotations=INDEXING)
    server.add_tool(tools.search_code, title="Search code", annotations=READ_ONLY)
    server.add_tool(tools.explain_match, title="Explain a match", annotations=READ_ONLY)
    server.add_tool(tools.index_status, title="Index status", annotations=READ_ONLY)
    report_arguments_plainly(server)
    warm_up(tools.indexed_repos)  # the first search should not wait for the model and the index to load
    return server


def _learned_pending_note(encoders: dict[str, str]) -> str | None:
    """Say so when a repository's learned index is still being built and lexical answered instead."""
    parts = []
    for repo, answered_by in encoders.items():
        info = learned_status(repo)
        if info is None or info["state"] == "complete" or answered_by == info["encoder"]:
            continue
        where = f", {info['percent']:.0f}% done" if info.get("percent") is not None else ""
        if info.get("eta_seconds") is not None:
            where += f", about {info['eta_seconds']:.0f} s left"
        parts.append(f"{repo}: answered by the {answered_by} index; its {info['encoder']} index is "
                     f"{'being built' if info['state'] == 'building' else 'stopped (call index_repo to resume)'}"
                     f"{where}, and answers once complete")
    return "; ".join(parts) or None
