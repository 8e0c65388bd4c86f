"""Index builds in flight, at most one per repository per server.

A second ``index_repo`` call for a repository whose build is running does not start another: it
*joins* the running build, receives progress notifications from it, and returns the same result
(``joined_build: true``). That is what an agent wants from a retry or a parallel call: the index it
asked for, once, without double work. A second call that asks for something the running build
will not deliver (another encoder, or ``force`` when the running build reuses vectors) is refused
with a tool error that says what is running and how far it got.

Progress crosses from the worker thread by polling: the build thread only assigns a few fields;
each waiting call reads them every ``PROGRESS_INTERVAL`` seconds and sends a notification when
they changed. No call into the event loop from the thread, and notifications are throttled for free.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio

from codelsr.errors import IndexBusyError
from codelsr.index.build import IndexReport
from codelsr.server.models import BuildProgress

log = logging.getLogger("codelsr.server")

PROGRESS_INTERVAL = 0.25
# Share of the overall 0-100 progress each stage covers, so the reported value only grows.
STAGE_SPAN = {"starting": (0.0, 0.0), "chunking": (0.0, 20.0), "encoding": (20.0, 95.0), "writing": (95.0, 100.0)}

ReportProgress = Callable[[float, float, str], Awaitable[None]]
RunBuild = Callable[["Build"], IndexReport]


class Build:
    """One build: its parameters, its progress (written by the worker thread) and its outcome."""

    def __init__(self, repo: Path, encoder: str, force: bool):
        self.repo, self.encoder, self.force = repo, encoder, force
        self.started = time.monotonic()
        self.stage, self.done, self.total, self.percent = "starting", 0, 0, 0.0
        self.report: IndexReport | None = None
        self.error: BaseException | None = None
        self.finished = anyio.Event()

    def update(self, stage: str, done: int, total: int) -> None:
        """``build_index``'s progress callback; runs in the worker thread."""
        lo, hi = STAGE_SPAN.get(stage, (self.percent, self.percent))
        percent = lo + (hi - lo) * (done / total if total else 1.0)
        self.stage, self.done, self.total = stage, done, total
        self.percent = max(self.percent, round(percent, 1))

    @property
    def message(self) -> str:
        if self.stage == "starting":
            return f"indexing {self.repo}: starting"
        return f"indexing {self.repo}: {self.stage} {self.done}/{self.total}"

    def progress(self) -> BuildProgress:
        return BuildProgress(stage=self.stage, done=self.done, total=self.total, percent=self.percent,
                             seconds=round(time.monotonic() - self.started, 1), encoder=self.encoder)

    def accepts(self, encoder: str, force: bool) -> bool:
        """Whether this build delivers what a call with these arguments asks for."""
        return encoder == self.encoder and (self.force or not force)


class BuildTracker:
    def __init__(self, run: RunBuild):
        self._run = run
        self._builds: dict[Path, Build] = {}

    def get(self, repo: Path) -> Build | None:
        return self._builds.get(repo)

    def all(self) -> list[Build]:
        return list(self._builds.values())

    async def index(self, repo: Path, encoder: str, force: bool, report: ReportProgress) -> tuple[IndexReport, bool]:
        """Build (or join the build of) ``repo``; returns the report and whether this call joined."""
        build = self._builds.get(repo)
        if build is not None:
            if not build.accepts(encoder, force):
                p = build.progress()
                raise IndexBusyError(
                    f"{repo} is already being indexed with encoder {build.encoder!r}"
                    f"{' (force)' if build.force else ''}: {p.stage} {p.done}/{p.total}, {p.percent:.0f}% "
                    f"after {p.seconds:.0f} s. Wait for it (index_status shows its progress), then call "
                    f"index_repo again with encoder={encoder!r}{', force=true' if force else ''}"
                )
            await self._follow(build, report)
            return self._outcome(build), True

        build = Build(repo, encoder, force)
        self._builds[repo] = build

        def work() -> None:  # the outcome is stored by the thread, so no cancellation can lose it
            try:
                build.report = self._run(build)
            except Exception as exc:  # handed to every call waiting on this build
                build.error = exc

        async def run_in_thread() -> None:
            try:
                await anyio.to_thread.run_sync(work)  # not abandoned on cancel: the build runs its course
            finally:
                self._builds.pop(repo, None)
                build.finished.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(run_in_thread)
            await self._follow(build, report)
        return self._outcome(build), False

    @staticmethod
    def _outcome(build: Build) -> IndexReport:
        if build.error is not None:
            raise build.error
        if build.report is None:
            raise IndexBusyError(f"the build of {build.repo} was cancelled before it finished; call index_repo again")
        return build.report

    @staticmethod
    async def _follow(build: Build, report: ReportProgress) -> None:
        """Send progress notifications until the build finishes."""

        async def send(percent: float, message: str) -> None:
            try:
                await report(percent, 100.0, message)
            except Exception as exc:  # a caller that went away must not end the build or its other callers
                log.debug("progress notification failed: %r", exc)

        last: tuple[float, str] | None = None
        while not build.finished.is_set():
            state = (build.percent, build.message)
            if state != last:
                await send(*state)
                last = state
            with anyio.move_on_after(PROGRESS_INTERVAL):
                await build.finished.wait()
        if build.report is not None:
            r = build.report
            await send(100.0, f"indexed {r.repo}: {r.files} files, {r.chunks} chunks")
