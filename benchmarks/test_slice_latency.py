"""The vertical slice's claims: ORT (and ExecuTorch) vs PyTorch eager latency, hot-swap
vs cold open.

    make bench      # runs these, then `python -m pocketgan.bench.report slice` prints the ratio table
"""

from __future__ import annotations

import pytest
import torch

from pocketgan.bench.config import BENCH_CONCEPT_MODES as MODES


@pytest.mark.benchmark(group="generator-256-latency")
@pytest.mark.parametrize("mode", MODES)
def test_torch_eager(benchmark, threads, exported_bundle, model_input, mode):
    from pocketgan.bundle import load_bundle

    bundle = load_bundle(exported_bundle)
    model = bundle.model_for(bundle.concept_names[0], mode)
    x = torch.from_numpy(model_input)
    benchmark.extra_info.update(backend="torch-eager", concept_mode=mode, threads=threads)
    with torch.no_grad():
        benchmark.pedantic(model, args=(x,), rounds=30, warmup_rounds=3)


@pytest.mark.benchmark(group="generator-256-latency")
@pytest.mark.parametrize("mode", MODES)
def test_onnx_runtime(benchmark, threads, exported_bundle, model_input, mode):
    from pocketgan.runtime import Runtime

    rt = Runtime(exported_bundle, threads=threads, concept_mode=mode)
    benchmark.extra_info.update(backend="onnx", concept_mode=mode, threads=threads)
    benchmark.pedantic(rt.run_tensor, args=(model_input,), rounds=30, warmup_rounds=3)


@pytest.mark.benchmark(group="generator-256-latency")
@pytest.mark.parametrize("mode", MODES)
def test_executorch(benchmark, threads, exported_bundle, model_input, mode):
    from pocketgan.runtime import Runtime

    rt = Runtime(exported_bundle, backend="executorch", threads=threads, concept_mode=mode)
    benchmark.extra_info.update(backend="executorch", concept_mode=mode, threads=threads)
    benchmark.pedantic(rt.run_tensor, args=(model_input,), rounds=30, warmup_rounds=3)


@pytest.mark.benchmark(group="hot-swap")
def test_open_bundle_cold(benchmark, threads, exported_bundle):
    from pocketgan.runtime import Runtime

    benchmark.extra_info.update(backend="onnx", concept_mode="separate", threads=threads)
    benchmark.pedantic(
        lambda: Runtime(exported_bundle, threads=threads, concept_mode="separate"), rounds=5, warmup_rounds=1
    )


@pytest.mark.benchmark(group="hot-swap")
def test_set_concept(benchmark, threads, exported_bundle):
    from pocketgan.runtime import Runtime

    rt = Runtime(exported_bundle, threads=threads, concept_mode="separate")
    names = list(rt.concepts)
    state = {"i": 0}

    def swap():
        state["i"] += 1
        rt.set_concept(names[state["i"] % len(names)])

    benchmark.extra_info.update(backend="onnx", concept_mode="separate", threads=threads)
    benchmark.pedantic(swap, rounds=2000, warmup_rounds=10)
