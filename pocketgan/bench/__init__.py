"""pocketgan.bench: latency, cold open, hot swap, memory, size and efficiency, measured
the same way here (``pocketgan bench``), in ``benchmarks/`` and on phones (``device_harness/``).

    from pocketgan.bench import BenchConfig, run_bench
    results = run_bench(BenchConfig(out="bench_out", sizes=(256,), precisions=("fp32",)))

Modules: ``config`` (BenchConfig), ``api`` (run_bench), ``measure`` (timing, memory),
``runners`` (what is timed), ``peers`` (pix2pix ResNet-9), ``exports`` (cached generator
exports), ``gemm`` (GEMM peak), ``flops``, ``results`` (+ ``schema.json``), ``report``
(markdown + PNG), ``report_pytest`` (reports of the ``benchmarks/`` pytest-benchmark suites),
``device`` (Android / iOS harness output parsers), ``profile_onnx`` (ONNX Runtime per-op
profile). The command line is :mod:`pocketgan.cli.bench`.

Importing this package is light (no torch): the heavy parts load on first use.
"""

from pocketgan.bench.config import BACKENDS, BENCH_CONCEPT_MODES, BENCH_PRECISIONS, BenchConfig

__all__ = ["BACKENDS", "BENCH_CONCEPT_MODES", "BENCH_PRECISIONS", "BenchConfig", "run_bench"]


def __getattr__(name: str):
    if name == "run_bench":
        from pocketgan.bench import api

        return getattr(api, name)
    raise AttributeError(f"module 'pocketgan.bench' has no attribute {name!r}")
