"""Measuring helpers shared by the benchmarks: peak memory, latency percentiles, machine facts."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path


def _status(field: str, pid: int | str = "self") -> float:
    """A ``/proc/<pid>/status`` memory field in MB (0 where /proc or the process is missing)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def rss_mb(pid: int | None = None) -> float:
    """Resident memory of this process, or of process ``pid``, in MB."""
    return _status("VmRSS", "self" if pid is None else pid)


class PeakMemory:
    """Peak resident memory added by the code inside the block, in MB.

    Resets the kernel's high-water mark (``/proc/self/clear_refs``) on entry, so each block is
    measured on its own; the figure includes native allocations (Seismic, scipy)."""

    def __enter__(self) -> "PeakMemory":
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass
        self.start = rss_mb()
        self.peak = 0.0
        return self

    def __exit__(self, *exc) -> None:
        self.hwm = _status("VmHWM")  # the process's peak resident memory during the block, MB
        self.peak = max(0.0, self.hwm - self.start)
        self.end = rss_mb() - self.start


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q / 100 * (len(ordered) - 1)))))]


def latencies(fn: Callable[[object], object], items: Sequence[object], warmup: int = 3) -> dict[str, float]:
    """Per-call wall and CPU milliseconds of ``fn(item)``: p50/p99 wall, p50 CPU.

    CPU time (``process_time``) is reported next to wall time because the benchmark machine is
    shared: wall time includes waiting for a core, CPU time does not."""
    for item in items[:warmup]:
        fn(item)
    wall, cpu = [], []
    for item in items:
        c0, w0 = time.process_time(), time.perf_counter()
        fn(item)
        wall.append((time.perf_counter() - w0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
    return {"p50_ms": statistics.median(wall), "p99_ms": percentile(wall, 99),
            "cpu_p50_ms": statistics.median(cpu), "n": len(items)}


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def machine() -> dict[str, str]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        mem = f"{int(Path('/proc/meminfo').read_text().split()[1]) / 1024 / 1024:.0f} GB"
    except (OSError, ValueError, IndexError):
        pass
    return {"cpu": cpu, "cores": str(os.cpu_count()), "memory": mem, "python": platform.python_version(),
            "os": platform.platform(), "load": load_average(),
            "threads": os.environ.get("RAYON_NUM_THREADS", "unset")}


def pin_threads(n: int) -> None:
    """Pin every native thread pool to ``n`` threads; call before numpy/torch/Seismic start any."""
    for var in ("RAYON_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)
