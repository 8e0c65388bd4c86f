"""The pydantic shapes that cross the MCP boundary: each tool's result (its ``outputSchema`` and
structured content). Field descriptions are what the agent reads."""

from __future__ import annotations

from pydantic import BaseModel, Field

from codelsr.explain import Explanation
from codelsr.index.build import IndexReport
from codelsr.index.status import IndexStatus
from codelsr.records import Hit

MAX_SKIPPED_LISTED = 50
DECIMALS = 6  # as Hit.to_json rounds scores: more digits only cost the agent context


def _rounded(value):
    """``value`` with every float rounded to ``DECIMALS`` places, through dicts and lists."""
    if isinstance(value, float):
        return round(value, DECIMALS)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


class BuildProgress(BaseModel):
    """A build running in this server right now."""

    stage: str = Field(description="starting, chunking, encoding or writing")
    done: int = Field(description="items done in this stage (files while chunking, chunks while encoding)")
    total: int = Field(description="items in this stage")
    percent: float = Field(description="overall progress, 0-100")
    seconds: float = Field(description="time since the build started")
    encoder: str | None = Field(description="the encoder asked for; null keeps the index's encoder")


class SkippedFileOut(BaseModel):
    path: str = Field(description="relative to the repository; a folder ends with /")
    reason: str = Field(description="binary, too large, minified, generated, vendored, unreadable, "
                                    "permission denied, symlink loop, vanished, broken symlink or excluded")


class LearnedBuildOut(BaseModel):
    """The learned index of a progressive build (``codelsr.index.progressive.learned_status``)."""

    encoder: str = Field(description="the learned encoder the repository is indexed for")
    state: str = Field(description="complete (it answers searches), building (a worker is encoding; lexical "
                                   "answers meanwhile) or stopped (interrupted: index_repo resumes it)")
    serving: str | None = Field(default=None, description="the index answering searches now")
    stage: str | None = None
    done: int | None = Field(default=None, description="chunks encoded so far in this build")
    total: int | None = Field(default=None, description="chunks this build encodes")
    percent: float | None = None
    eta_seconds: float | None = Field(default=None, description="estimated time to completion")
    chunks_per_second: float | None = None
    error: str | None = None
    hint: str | None = None

    @classmethod
    def of(cls, info: dict | None) -> LearnedBuildOut | None:
        if info is None:
            return None
        return cls(**{k: info.get(k) for k in cls.model_fields if k in info})


class IndexRepoResult(BaseModel):
    repo: str = Field(description="absolute path of the repository")
    encoder: str = Field(description="encoder spec the index was built with")
    encoder_id: str
    backend: str = Field(description="exact or seismic")
    files: int = Field(description="files indexed")
    chunks: int = Field(description="chunks (functions, classes, sections, windows) indexed")
    encoded_chunks: int = Field(description="chunks encoded in this build")
    reused_chunks: int = Field(description="unchanged chunks whose vectors were reused")
    skipped: dict[str, int] = Field(description="files left out, counted by reason")
    skipped_files: list[SkippedFileOut] = Field(
        description=f"the skipped files with their reasons (the first {MAX_SKIPPED_LISTED})")
    seconds: float = Field(description="wall time of the build")
    commit: str | None = Field(description="git HEAD when indexed; null outside git")
    generation: str = Field(description="the index generation this build published")
    joined_build: bool = Field(
        description="true when a build of this repository was already running: this call waited for "
                    "that build and returns its result instead of starting a second one")
    learned: LearnedBuildOut | None = Field(
        default=None, description="with a learned encoder: this call built and serves a lexical index (fast); "
                                  "the learned index is built in the background and answers once complete")

    @classmethod
    def of(cls, report: IndexReport, joined: bool, learned: dict | None = None) -> IndexRepoResult:
        return cls(
            repo=report.repo, encoder=report.encoder, encoder_id=report.encoder_id, backend=report.backend,
            files=report.files, chunks=report.chunks, encoded_chunks=report.encoded_chunks,
            reused_chunks=report.reused_chunks, skipped=report.skipped,
            skipped_files=[SkippedFileOut(path=s.path, reason=s.reason)
                           for s in report.skipped_files[:MAX_SKIPPED_LISTED]],
            seconds=round(report.seconds, 3), commit=report.commit, generation=report.generation,
            joined_build=joined, learned=LearnedBuildOut.of(learned),
        )


class HitOut(BaseModel):
    """One ranked hit: ``Hit.to_json()`` plus the repository it came from."""

    repo: str = Field(description="absolute path of the repository")
    chunk_id: str = Field(description="pass to explain_match to see why this hit matched")
    path: str = Field(description="relative to repo, with /")
    start_line: int = Field(description="1-based, inclusive")
    end_line: int = Field(description="1-based, inclusive")
    symbol: str | None = Field(description="qualified name (Class.method); null for line windows")
    language: str
    score: float
    snippet: str = Field(description="the chunk's first lines, trimmed to max_chars")

    @classmethod
    def of(cls, hit: Hit) -> HitOut:
        return cls(repo=hit.repo, **hit.to_json())


class SearchCodeResult(BaseModel):
    query: str
    repos: list[str] = Field(description="the repositories searched")
    encoders: dict[str, str] = Field(description="repository -> encoder its index was built with")
    hits: list[HitOut] = Field(description="best first")
    offset: int = Field(description="rank of the first hit, 0-based")
    next_offset: int | None = Field(
        description="pass as offset (same query and filters) for the next page; null when there are no more")
    note: str | None = Field(default=None, description="a caveat about these results, when there is one")


class TermOut(BaseModel):
    term: str = Field(description="vocabulary term")
    query_weight: float
    doc_weight: float
    contribution: float = Field(description="query_weight x doc_weight: this term's share of the score")
    in_query: bool = Field(description="the term occurs literally in the query text")
    in_chunk: bool = Field(description="the term occurs literally in the chunk text or its context header "
                                       "(path words, qualified symbol)")
    expansion: bool = Field(description="true unless the term occurs literally in both texts")
    kind: str = Field(description="literal; query_expansion (in the chunk, inferred from the query); "
                                  "document_expansion (in the query, inferred for the chunk); "
                                  "inferred (in neither text)")
    lines: list[int] = Field(description="chunk lines where the term occurs (the first 20)")
    via: str | None = Field(default="text", description="where the chunk holds the term: text (its lines), path "
                                                        "or symbol (only in the context header encoded with the "
                                                        "chunk: its file path's words, its qualified name), "
                                                        "null for an expansion found in neither")


class OtherTermsOut(BaseModel):
    count: int = Field(description="shared terms not listed in terms")
    contribution: float = Field(description="their summed contribution")
    expansion_contribution: float = Field(description="the part of it from expansion terms")


class FocusLineOut(BaseModel):
    line: int
    text: str = Field(description="the line, stripped and cut to 160 characters")
    contribution: float = Field(description="summed contributions of the matched terms on this line")
    terms: list[str]


class ExplainMatchResult(BaseModel):
    query: str
    chunk_id: str
    repo: str
    path: str
    start_line: int
    end_line: int
    symbol: str | None
    language: str
    encoder: str
    score: float = Field(description="sum of every term's contribution (terms plus other_terms)")
    expansion_share: float = Field(description="share of the score from expansion terms, 0-1")
    terms: list[TermOut] = Field(description="contributing terms, largest contribution first")
    other_terms: OtherTermsOut = Field(description="the contributing terms left out of terms, summed")
    focus_lines: list[FocusLineOut] = Field(description="the chunk lines carrying most of the score, best first")
    query_terms_unmatched: list[str] = Field(description="query terms this chunk lacks, heaviest first")
    summary: str

    @classmethod
    def of(cls, e: Explanation) -> ExplainMatchResult:
        return cls.model_validate(_rounded(e.to_json()))


class RepoStatus(BaseModel):
    repo: str = Field(description="absolute path of the repository")
    indexed: bool
    encoder: str | None = None
    backend: str | None = None
    context: str | None = Field(default=None, description="the header encoded before each chunk's text: "
                                                          "path+symbol (path words, qualified name) or none")
    chunks: int = 0
    files: int = 0
    indexed_commit: str | None = Field(default=None, description="git HEAD when the index was built")
    changed_since_index: bool | None = Field(
        default=None, description="the working tree changed since indexing (null: unknown); "
                                  "call index_repo to update")
    index_bytes: int = Field(default=0, description="size of the index on disk")
    created_at: str | None = Field(default=None, description="when the index was built (UTC, ISO 8601)")
    age_seconds: float | None = None
    indexing: BuildProgress | None = Field(default=None, description="a build running in this server now")
    state: str = Field(default="ok", description="ok; damaged (see problems; call index_repo to repair); "
                                                 "unverified (built before checksums); not indexed")
    checked: str = Field(default="none", description="how the files were checked: quick (sizes and small "
                                                     "files), full (every byte: verify=true) or none")
    problems: list[str] = Field(default_factory=list, description="damaged files and what is wrong with each")
    learned: LearnedBuildOut | None = Field(default=None, description="the learned index, when one is wanted: "
                                                                      "its state, progress and ETA")
    hint: str | None = Field(default=None, description="what to do next, when something is needed")

    @classmethod
    def of(cls, s: IndexStatus, indexing: BuildProgress | None = None) -> RepoStatus:
        hint = None
        if s.state == "damaged":
            hint = (f"the index is damaged: call index_repo(path={s.repo!r}) to rebuild the damaged files "
                    "(it keeps the index's encoder and reuses what is intact)")
        elif not s.indexed and indexing is None:
            hint = f"not indexed yet: call index_repo(path={s.repo!r})"
        elif s.changed_since_index:
            hint = f"the working tree changed since indexing: call index_repo(path={s.repo!r}) to update"
        return cls(
            repo=s.repo, indexed=s.indexed, encoder=s.encoder, backend=s.backend, context=s.context, chunks=s.chunks, files=s.files,
            indexed_commit=s.indexed_commit, changed_since_index=s.changed_since_index,
            index_bytes=s.index_bytes, created_at=s.created_at, age_seconds=s.age_seconds,
            indexing=indexing, state=s.state, checked=s.checked, problems=s.problems, learned=LearnedBuildOut.of(s.learned),
            hint=hint,
        )


class IndexStatusResult(BaseModel):
    roots: list[str] = Field(description="the folders this server may index and search")
    repositories: list[RepoStatus] = Field(description="newest index first")
