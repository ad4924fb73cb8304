"""What strength and blending cost at run time (`make bench-mix`; docs/strength-and-blending.md).

On the embedded default bundle at 256 px, per backend:

- ONNX Runtime: the concept as exported (its adapter) vs a strength (the mixed tensors fed
  as graph inputs) vs a two-concept blend, and the adapter on the same bundle exported
  without a neutral (no second LoRA in the graph): what the mix slot costs every run;
- ExecuTorch: the concept's own method vs the mix method (every concept baked in, weights
  as an input) vs the alternative the mix method was picked over: one method whose LoRA
  tensors are runtime-supplied inputs (XNNPACK does not delegate convolutions with
  non-constant weights, so their LoRA branches run in the portable kernels).
"""

from __future__ import annotations

import numpy as np
import pytest

BLEND = {"cartoon": 0.6, "stylize": 0.4}


@pytest.fixture(scope="module")
def et_bundle(exported_bundle):
    pytest.importorskip("executorch")
    return exported_bundle


@pytest.fixture(scope="module")
def no_mix_bundle(tmp_path_factory):
    """The default bundle without its neutral, exported to ONNX: the graph before strength."""
    import dataclasses

    from pocketgan.bundle import load_bundle, save_bundle
    from pocketgan.export import ExportConfig, run_export

    root = tmp_path_factory.mktemp("no-mix")
    save_bundle(dataclasses.replace(load_bundle(), neutral=None, strength_curves={}), root / "src")
    run_export(ExportConfig(out=root / "onnx", bundle=root / "src", targets=("onnx",)))
    return root / "onnx"


@pytest.mark.parametrize("case", ["adapter-without-mix-slot", "adapter", "strength-0.5", "blend"])
def test_onnx_mix_latency(benchmark, exported_bundle, no_mix_bundle, model_input, threads, case):
    from pocketgan.runtime import Runtime

    bundle = no_mix_bundle if case == "adapter-without-mix-slot" else exported_bundle
    rt = Runtime(bundle, backend="onnx", threads=threads)
    kwargs = {"adapter": {"concept": "cartoon"}, "strength-0.5": {"concept": "cartoon", "strength": 0.5}}
    kwargs["adapter-without-mix-slot"] = kwargs["adapter"]
    kwargs["blend"] = {"blend": BLEND}
    call = kwargs[case]
    rt.run_tensor(model_input, **call)
    benchmark.extra_info.update(backend="onnx", case=case)
    benchmark.pedantic(rt.run_tensor, args=(model_input,), kwargs=call, rounds=20, warmup_rounds=2)


@pytest.mark.parametrize("case", ["concept-method", "mix-method"])
def test_executorch_mix_latency(benchmark, et_bundle, model_input, threads, case):
    from pocketgan.runtime import Runtime

    rt = Runtime(et_bundle, backend="executorch", threads=threads)
    call = {"concept": "cartoon"} if case == "concept-method" else {"concept": "cartoon", "strength": 0.5}
    rt.run_tensor(model_input, **call)
    benchmark.extra_info.update(backend="executorch", case=case)
    benchmark.pedantic(rt.run_tensor, args=(model_input,), kwargs=call, rounds=20, warmup_rounds=2)


def test_executorch_runtime_supplied_lora_latency(benchmark, et_bundle, model_input, threads):
    """The rejected design: LoRA tensors and tokens as method inputs. ExecuTorch 1.5.1's XNNPACK
    lowering fails on it (its ConvertToLinearPass cannot take a Linear whose weight is an
    input), so it runs on the portable kernels: what runtime-supplied weights cost here."""
    import torch
    from executorch.exir import to_edge_transform_and_lower
    from executorch.runtime import Runtime

    from pocketgan._quiet import library_warnings_filtered, start_executorch_threadpool
    from pocketgan.bundle import load_bundle
    from pocketgan.export.executorch_target import export_aten, export_executorch_program
    from pocketgan.export.onnx_target import ConceptTensorsAsInputs, concept_tensors, mix_feeds, public_name
    from pocketgan.runtime.backends.executorch import set_threads

    bundle = load_bundle()
    model = bundle.model_for(None, "separate", mix_slot=True)
    tensors = concept_tensors(model)
    wrapped, example = ConceptTensorsAsInputs(model, list(tensors)), (*bundle.example_inputs(), *tensors.values())
    try:
        pte, _ = export_executorch_program(wrapped, example, require_delegation=False)
        lowering = "xnnpack"
    except Exception as e:  # noqa: BLE001  (the measured fact: XNNPACK does not take it)
        lowering = f"portable kernels (the XNNPACK lowering failed: {type(e).__name__})"
        with library_warnings_filtered():
            pte = to_edge_transform_and_lower(export_aten(wrapped, example)).to_executorch().buffer
    start_executorch_threadpool()
    set_threads(threads)
    method = Runtime.get().load_program(pte).load_method("forward")
    feeds = mix_feeds(bundle, {"cartoon": 0.5})
    args = [torch.from_numpy(model_input)]
    args += [torch.from_numpy(np.ascontiguousarray(feeds[public_name(n)])) for n in tensors]
    method.execute(args)
    benchmark.extra_info.update(backend="executorch", case="runtime-supplied-lora", lowering=lowering)
    print(f"runtime-supplied LoRA tensors: {lowering}")
    benchmark.pedantic(method.execute, args=(args,), rounds=5, warmup_rounds=1)
