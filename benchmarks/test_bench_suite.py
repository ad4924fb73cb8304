"""``pocketgan bench``'s measurements as a pytest-benchmark suite (run on purpose, never in
the default test run): the same groups, exports, runners and helpers (``pocketgan.bench``),
timed by pytest-benchmark.

    pytest benchmarks/test_bench_suite.py --benchmark-json=out/bench-suite.json --benchmark-save-data
    python -m pocketgan.bench.report suite out/bench-suite.json out/bench-suite   # -> results.json/.md, latency.png

Environment (defaults in brackets): ``BENCH_THREADS`` [2], ``BENCH_SIZES`` [256 512],
``BENCH_PRECISIONS`` [fp32 int8], ``BENCH_BACKENDS`` [onnx executorch eager],
``BENCH_ROUNDS`` [20], ``BENCH_REPEATS`` [2], ``BENCH_CACHE`` [out/bench-cache: the
exports, shared with ``pocketgan bench --cache``], ``BENCH_BUNDLE`` [the embedded default],
``BENCH_PEER_NGF`` / ``BENCH_PEER_BLOCKS`` [64 / 9], ``BENCH_GEMM_SIZES`` [256 512 1024 2048].
Each group is timed once per repeat; the repeats are separate passes over all groups (so
drift shows up as instability).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pocketgan.bench.api import group_ids
from pocketgan.bench.config import BenchConfig


def _env(name: str, cast=str, many: bool = False):
    """``$name`` cast (a tuple of its words with ``many``); ``None`` when unset or empty."""
    value = os.environ.get(name)
    if not value:
        return None
    return tuple(cast(v) for v in value.split()) if many else cast(value)


def _config() -> BenchConfig:
    """BenchConfig from the ``BENCH_*`` variables; an unset one keeps BenchConfig's default."""
    settings = {
        "threads": _env("BENCH_THREADS", int),
        "sizes": _env("BENCH_SIZES", int, many=True),
        "precisions": _env("BENCH_PRECISIONS", many=True),
        "backends": _env("BENCH_BACKENDS", many=True),
        "rounds": _env("BENCH_ROUNDS", int),
        "repeats": _env("BENCH_REPEATS", int),
        "bundle": _env("BENCH_BUNDLE", Path),
        "peer_ngf": _env("BENCH_PEER_NGF", int),
        "peer_blocks": _env("BENCH_PEER_BLOCKS", int),
        "gemm_sizes": _env("BENCH_GEMM_SIZES", int, many=True),
    }
    return BenchConfig(
        out=Path("out/bench-suite"),
        cache=Path(os.environ.get("BENCH_CACHE", "out/bench-cache")),
        progress=False,
        **{k: v for k, v in settings.items() if v is not None},
    )


CONFIG = _config()
IDS = group_ids(CONFIG)
PASSES = [(repeat, gid) for repeat in range(1, CONFIG.repeats + 1) for gid in IDS]


@pytest.fixture(scope="session")
def groups(threads):
    """Every group, exported (or from the cache) once per session."""
    from pocketgan.bench.api import plan_groups

    return {g.id: g for g in plan_groups(CONFIG, log=print)}


@pytest.fixture(scope="session")
def inputs():
    from pocketgan.bench.api import _photo_input

    return {size: _photo_input(size) for size in CONFIG.sizes}


def _flops(g) -> int:
    from pocketgan.bench.flops import generator_flops, pix2pix_flops

    if g.model == "pocketgan":
        return generator_flops(str(CONFIG.bundle) if CONFIG.bundle else None, g.mode, g.size)
    return pix2pix_flops(g.size, CONFIG.peer_ngf, CONFIG.peer_blocks)


# Group attributes recorded under their own name in extra_info (the report reads them back).
_SAME_NAMES = ("model", "model_name", "backend", "precision", "size", "concept", "concepts", "artifact_bytes")


def _info(benchmark, g, **more) -> None:
    """The group's identity and static figures in extra_info: what ``python -m
    pocketgan.bench.report suite`` builds a record from."""
    info = {name: getattr(g, name) for name in _SAME_NAMES}
    info.update(group=g.id, concept_mode=g.mode, parity_psnr_db=g.parity, threads=CONFIG.threads)
    benchmark.extra_info.update(flops=_flops(g), **info, **more)


def _open(g):
    from pocketgan.bench.runners import open_runner

    if g.spec is None:
        pytest.skip(g.error or "not runnable here")
    return open_runner(g.spec)


@pytest.mark.benchmark(group="bench-latency")
@pytest.mark.parametrize("repeat, gid", PASSES, ids=[f"r{r}-{g}" for r, g in PASSES])
def test_latency(benchmark, groups, inputs, repeat, gid):
    g = groups[gid]
    runner = _open(g)
    _info(benchmark, g, measurement="latency", repeat=repeat, warmup=CONFIG.warmup)
    x = inputs[g.size]
    benchmark.pedantic(runner.run, args=(x,), rounds=CONFIG.rounds, warmup_rounds=CONFIG.warmup, iterations=1)


@pytest.mark.benchmark(group="bench-cold-open")
@pytest.mark.parametrize("gid", IDS)
def test_cold_open(benchmark, groups, gid):
    from pocketgan.bench.runners import open_runner

    g = groups[gid]
    _open(g).close()  # reads the files once: the timed opens find them in the OS cache
    _info(benchmark, g, measurement="open")
    benchmark.pedantic(lambda: open_runner(g.spec).close(), rounds=CONFIG.open_rounds, warmup_rounds=0, iterations=1)


@pytest.mark.benchmark(group="bench-set-concept")
@pytest.mark.parametrize("gid", [i for i in IDS if not i.startswith("pix2pix/")])
def test_set_concept(benchmark, groups, gid):
    g = groups[gid]
    runner = _open(g)
    names = list(runner.concepts)
    state = {"i": 0}

    def swap():
        state["i"] += 1
        runner.set_concept(names[state["i"] % len(names)])

    _info(benchmark, g, measurement="set_concept")
    benchmark.pedantic(swap, rounds=CONFIG.swap_rounds, warmup_rounds=10, iterations=1)


@pytest.mark.benchmark(group="bench-memory")
@pytest.mark.parametrize("gid", IDS)
def test_peak_memory(benchmark, groups, gid):
    """Peak RSS of a fresh process that opens and runs the group (in extra_info)."""
    from pocketgan.bench.measure import measure_memory

    g = groups[gid]
    if g.spec is None:
        pytest.skip(g.error or "not runnable here")
    memory = measure_memory(g.spec, g.size, CONFIG.memory_runs)
    _info(benchmark, g, measurement="memory", **memory)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)


@pytest.mark.benchmark(group="bench-gemm")
def test_gemm_peak(benchmark):
    """This machine's GEMM peak (in extra_info; the timed call is one fp32 GEMM at the best side)."""
    import numpy as np

    from pocketgan.bench.gemm import gemm_peak

    gemm = gemm_peak(CONFIG.threads, CONFIG.gemm_sizes)
    benchmark.extra_info.update(measurement="gemm", gemm=gemm)
    n = gemm["fp32"]["best"]["n"]
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    benchmark.pedantic(lambda: a @ a, rounds=5, iterations=1)
