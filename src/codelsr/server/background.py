"""The server's own background work: learned index builds, and warming up at start.

* ``LearnedWorkers``: ``index_repo`` with a learned encoder returns once the lexical index is
  served (``codelsr.index.progressive``); the learned build then runs here, one thread per
  repository, in the server process (which already holds the model). If another worker (a
  ``codelsr learn`` process started by the CLI or a git hook) has the repository, the thread sees
  its lock and leaves the work to it.
* ``warm_up``: the first search after a start would otherwise pay for loading the encoder (the
  ONNX model), opening the index and building the exact backend. A thread does that at start for
  the indexes under the roots, most recent first, while the client is still connecting.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

log = logging.getLogger("codelsr.server")


class LearnedWorkers:
    """At most one learned-build thread per repository in this process."""

    def __init__(self) -> None:
        self._threads: dict[Path, threading.Thread] = {}
        self._lock = threading.Lock()

    def start(self, repo: Path) -> str:
        """``progressive.StartWorker``: run the pending learned build of ``repo`` in a thread."""
        with self._lock:
            running = self._threads.get(repo)
            if running is not None and running.is_alive():
                return "thread (already running; it takes the new request too)"
            thread = threading.Thread(target=self._run, args=(repo,), name=f"codelsr-learn-{repo.name}",
                                      daemon=True)
            self._threads[repo] = thread
            thread.start()
        return "thread"

    @staticmethod
    def _run(repo: Path) -> None:
        from codelsr.index.progressive import run_learned

        started = time.monotonic()
        try:
            report = run_learned(repo)
        except Exception:  # a background thread has no caller: log it; status shows the error
            log.exception("learned build of %s failed", repo)
            return
        if report is not None:
            log.info("learned index (%s) of %s complete: %d chunks (%d encoded) in %.1f s", report.encoder, repo,
                     report.chunks, report.encoded_chunks, time.monotonic() - started)

    def running(self) -> list[Path]:
        with self._lock:
            return [repo for repo, t in self._threads.items() if t.is_alive()]


def warm_up(repos: Callable[[], Iterable[Path]]) -> threading.Thread:
    """Start a thread that loads, for each repository ``repos()`` lists, its index and encoder and
    runs one query, so that the first real search finds everything in memory."""

    def work() -> None:
        from codelsr.index import open_index
        from codelsr.search import search_index

        started = time.monotonic()
        warmed = []
        try:
            for repo in repos():
                try:
                    search_index(open_index(repo), "warm up", k=1)
                    warmed.append(str(repo))
                except Exception as exc:  # an index that cannot be read fails its real search later
                    log.debug("warm-up of %s: %r", repo, exc)
        finally:
            if warmed:
                log.info("warmed up %d index(es) in %.2f s", len(warmed), time.monotonic() - started)

    thread = threading.Thread(target=work, name="codelsr-warm-up", daemon=True)
    thread.start()
    return thread
