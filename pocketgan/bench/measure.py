"""Measurement primitives: latency with warm-up and rounds, cold open, ``set_concept``,
peak resident memory in a fresh subprocess, artifact bytes, stability of repeats.

Everything here is what ``pocketgan bench``, ``pocketgan demo``'s latency table and the
pytest-benchmark suites in ``benchmarks/`` time with; nothing here imports torch (the ONNX Runtime memory child
must stay torch-free to measure what an app embedding ``pocketgan.runtime`` pays).

The memory child:

    python -m pocketgan.bench.measure '{"spec": {...}, "size": 256, "runs": 3}'

opens the runner described by ``spec`` (:func:`pocketgan.bench.runners.open_runner`),
runs it, and prints one JSON line: resident memory after the imports, peak resident
memory (Linux ``VmHWM``, else ``ru_maxrss``) and the open time in this fresh process.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence


@dataclass(frozen=True)
class Stats:
    """Summary of timed samples, in milliseconds."""

    median: float
    iqr: float
    q1: float
    q3: float
    mean: float
    min: float
    max: float
    rounds: int

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(samples_ms: Sequence[float]) -> Stats:
    """Median, inter-quartile range (Q3 - Q1, inclusive quartiles), mean, extremes."""
    if not samples_ms:
        raise ValueError("no samples to summarize")
    xs = sorted(float(s) for s in samples_ms)
    if len(xs) >= 2:
        q1, _, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    else:
        q1 = q3 = xs[0]
    return Stats(statistics.median(xs), q3 - q1, q1, q3, statistics.fmean(xs), xs[0], xs[-1], len(xs))


def time_calls(
    fn: Callable[[], object], *, rounds: int, warmup: int = 0, max_seconds: float | None = None, min_rounds: int = 1
) -> list[float]:
    """Milliseconds of each of up to ``rounds`` calls of ``fn`` after ``warmup`` untimed calls.

    With ``max_seconds``, stops early once that much time was spent timing and at least
    ``min_rounds`` calls were made (a slow peer gets fewer rounds, never fewer than that).
    """
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    start = time.perf_counter()
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
        if max_seconds is not None and len(samples) >= min_rounds and time.perf_counter() - start > max_seconds:
            break
    return samples


def median_ms(fn: Callable[[], object], *, rounds: int, warmup: int = 2) -> float:
    """Median milliseconds of ``rounds`` calls of ``fn`` after ``warmup`` untimed ones
    (``pocketgan demo``'s latency table)."""
    return summarize(time_calls(fn, rounds=rounds, warmup=warmup)).median


def time_open(open_fn: Callable[[], object], *, rounds: int, warmup: int = 1) -> Stats:
    """Cold open: construct (and drop) what ``open_fn`` returns, ``rounds`` times.

    "Cold" as an app sees it on a second launch: the bundle is parsed, every artifact's
    checksum verified and the sessions / methods created from scratch; the OS file
    cache is warm (the first, warm-up open reads the files from disk).
    """

    def once():
        obj = open_fn()
        close = getattr(obj, "close", None)
        if close:
            close()

    return summarize(time_calls(once, rounds=rounds, warmup=warmup))


def time_set_concept(set_concept: Callable[[str], None], concepts: Sequence[str], *, rounds: int) -> Stats:
    """Median of single ``set_concept`` calls, cycling through ``concepts``.

    Timed in batches (one clock read per 10 calls) so the clock's own cost (~50 ns)
    does not dominate a microsecond-scale swap; reported per call, in milliseconds.
    """
    if len(concepts) < 1:
        raise ValueError("set_concept needs at least one concept")
    batch = 10
    names = list(concepts)
    n = len(names)
    for i in range(min(rounds, 20)):  # warm-up
        set_concept(names[i % n])
    samples = []
    i = 0
    for _ in range(max(1, rounds // batch)):
        t0 = time.perf_counter()
        for _ in range(batch):
            set_concept(names[i % n])
            i += 1
        samples.append((time.perf_counter() - t0) * 1e3 / batch)
    return summarize(samples)


def spread(medians: Sequence[float]) -> float:
    """How far apart repeated medians are: (max - min) / min (0.0 for one value)."""
    if not medians:
        raise ValueError("no medians")
    lo, hi = min(medians), max(medians)
    return 0.0 if len(medians) < 2 else (hi - lo) / lo if lo > 0 else float("inf")


def is_stable(medians: Sequence[float], tolerance: float = 0.10) -> bool:
    """True when every repeated median is within ``tolerance`` of every other one."""
    return spread(medians) <= tolerance


def file_bytes(paths: Sequence[Path]) -> int:
    """Total bytes of files or directories (recursively)."""
    total = 0
    for p in map(Path, paths):
        if p.is_dir():
            total += sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
        else:
            total += p.stat().st_size
    return total


# --- other processes ----------------------------------------------------------------------


@dataclass(frozen=True)
class CpuSnapshot:
    busy_s: float  # CPU seconds every process on the machine has used (all CPUs)
    total_s: float  # CPU seconds that passed (wall time x CPUs)
    own_s: float  # CPU seconds this process has used


def cpu_snapshot() -> CpuSnapshot | None:
    """Machine-wide and own CPU time (Linux ``/proc/stat``); ``None`` elsewhere."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    busy = user + nice + system + irq + softirq + steal
    t = os.times()
    return CpuSnapshot(busy / tick, (busy + idle + iowait) / tick, t.user + t.system)


def foreign_load(before: CpuSnapshot | None, after: CpuSnapshot | None) -> float | None:
    """Share of the machine's CPU time other processes used between two snapshots
    (0.0: only this process ran; 0.5: others kept one of two cores busy)."""
    if before is None or after is None or after.total_s <= before.total_s:
        return None
    others = (after.busy_s - before.busy_s) - (after.own_s - before.own_s)
    return min(1.0, max(0.0, others / (after.total_s - before.total_s)))


def wait_until_quiet(threshold: float, timeout: float, probe: float = 1.0) -> float | None:
    """Wait (up to ``timeout`` seconds) until other processes use at most ``threshold`` of
    the machine over a ``probe``-second window; return the last window's foreign load."""
    deadline = time.monotonic() + timeout
    while True:
        before = cpu_snapshot()
        time.sleep(probe)
        load = foreign_load(before, cpu_snapshot())
        if load is None or load <= threshold or time.monotonic() >= deadline:
            return load


# --- resident memory --------------------------------------------------------------------


def _status_kib(field_name: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def current_rss_bytes() -> int | None:
    kib = _status_kib("VmRSS")
    return kib * 1024 if kib is not None else None


def peak_rss_bytes() -> int:
    """This process's peak resident set: Linux ``VmHWM``, else ``ru_maxrss``."""
    kib = _status_kib("VmHWM")
    if kib is not None:
        return kib * 1024
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss if sys.platform == "darwin" else maxrss * 1024  # bytes on macOS, KiB elsewhere


def measure_memory(spec: dict, size: int, runs: int = 3, timeout: float = 600.0) -> dict:
    """Peak resident memory of opening ``spec`` and running it ``runs`` times, measured in
    a fresh Python subprocess (so nothing this process loaded counts).

    Returns ``{"baseline_rss_bytes", "peak_rss_bytes", "open_ms", "torch_imported"}``:
    resident memory after the imports, the peak over open + runs, the open time in that
    fresh process, and whether torch got loaded (never, for the ONNX Runtime groups).
    """
    payload = json.dumps({"spec": spec, "size": size, "runs": runs})
    env = dict(os.environ)
    env.setdefault("PYTHONWARNINGS", "ignore")
    proc = subprocess.run(
        [sys.executable, "-m", "pocketgan.bench.measure", payload],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"memory subprocess failed ({proc.returncode}): {' | '.join(tail)}")
    return json.loads(lines[-1])


def _child(payload: dict) -> dict:
    import numpy as np

    from pocketgan.bench.runners import import_for, open_runner

    spec, size, runs = payload["spec"], int(payload["size"]), int(payload["runs"])
    import_for(spec)  # the backend's libraries: part of the baseline, not of the model
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, size, size)).astype(np.float32)
    baseline = current_rss_bytes() or peak_rss_bytes()
    t0 = time.perf_counter()
    runner = open_runner(spec)
    open_ms = (time.perf_counter() - t0) * 1e3
    for _ in range(runs):
        runner.run(x)
    return {
        "baseline_rss_bytes": baseline,
        "peak_rss_bytes": peak_rss_bytes(),
        "open_ms": open_ms,
        "torch_imported": "torch" in sys.modules,
    }


if __name__ == "__main__":
    import warnings

    warnings.filterwarnings("ignore")
    print(json.dumps(_child(json.loads(sys.argv[1]))), flush=True)
