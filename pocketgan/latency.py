"""Small wall-clock timer for the CLI's latency table (the benchmarks use pytest-benchmark)."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Timing:
    median_ms: float
    min_ms: float
    rounds: int


def time_call(fn: Callable[[], object], *, warmup: int = 2, rounds: int = 10) -> Timing:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    return Timing(statistics.median(samples), min(samples), rounds)
