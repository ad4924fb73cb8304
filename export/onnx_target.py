"""ONNX export: a base graph with overridable concept inputs + one .onnx_adapter per concept.

The base graph is the generator with LoRA at the bundle's rank pattern and every LoRA
tensor and the concept tokens exposed as graph inputs whose default initializers are
zero; ONNX Runtime's ``AdapterFormat`` then stores one concept's tensors under those
names and ``RunOptions.add_active_adapter`` swaps them in per run. With
``concept_mode="merged"`` (or ``"both"``) each concept is also folded into a full model.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import torch

from pocketgan.bundle import BASE_WEIGHTS, INPUT_NAME, OUTPUT_NAME, Bundle
from pocketgan.concepts.conditioned import CONCEPT_TOKENS
from pocketgan.export.parity import check_parity, parity_inputs
from pocketgan.runtime.manifest import sha256_file

OPSET = 18
ONNX_DIR = "onnx"


def _export_onnx(model: torch.nn.Module, example: tuple[torch.Tensor, ...], *, optimize: bool = True):
    """torch.onnx (dynamo) -> onnx.ModelProto with the input/output names of the manifest.

    ``optimize=False`` for the base graph: the exporter's optimizer constant-folds
    everything computed from initializers alone (the cross-attention keys and values of
    the concept tokens), which would bake one concept into the graph. ONNX Runtime does
    not fold initializers that are also graph inputs, so nothing is lost at run time.
    """
    import onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model, example, dynamo=True, opset_version=OPSET, input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME], verbose=False, optimize=optimize,
        )
    proto = program.model_proto
    onnx.checker.check_model(proto)
    return proto


def _concept_tensor_names(model: torch.nn.Module) -> dict[str, str]:
    """torch parameter name -> public input name (``<layer>.lora_A.weight``, ``concept_tokens``)."""
    names = {CONCEPT_TOKENS: CONCEPT_TOKENS}
    for name, _ in model.named_parameters():
        if ".lora_" in name:
            public = name.removeprefix("generator.").replace(".default.", ".")
            names[name] = public
    return names


def expose_concept_inputs(proto, torch_names: dict[str, str], shapes: dict[str, tuple[int, ...]]) -> None:
    """Rename the concept initializers to their public names and make them graph inputs."""
    from onnx import TensorProto, helper

    by_name = {init.name: init for init in proto.graph.initializer}
    missing = sorted(n for n in torch_names if n not in by_name)
    if missing:
        raise RuntimeError(f"ONNX export folded or renamed concept tensors {missing[:3]}; cannot expose them as inputs")
    for torch_name, public in torch_names.items():
        init = by_name[torch_name]
        if tuple(init.dims) != shapes[torch_name]:
            raise RuntimeError(f"ONNX initializer {torch_name} has shape {tuple(init.dims)}, torch has {shapes[torch_name]}")
        init.name = public
        for node in proto.graph.node:
            for i, value in enumerate(node.input):
                if value == torch_name:
                    node.input[i] = public
        proto.graph.input.append(helper.make_tensor_value_info(public, TensorProto.FLOAT, list(init.dims)))


def concept_feeds(bundle: Bundle, concept: str, torch_names: dict[str, str]) -> dict[str, np.ndarray]:
    """The concept's tensors under the graph's public input names (padded to the pattern)."""
    c = bundle.concept(concept)
    padded = {f"generator.{k}".replace(".lora_A.", ".lora_A.default.").replace(".lora_B.", ".lora_B.default."): v
              for k, v in c.padded(bundle.rank_pattern).items()}
    padded[CONCEPT_TOKENS] = c.tokens.reshape(1, *c.tokens.shape)
    return {torch_names[k]: padded[k].detach().numpy().astype(np.float32) for k in torch_names}


def write_adapter(path: Path, feeds: dict[str, np.ndarray]) -> None:
    import onnxruntime as ort

    adapter = ort.AdapterFormat()
    adapter.set_adapter_version(1)
    adapter.set_model_version(1)
    adapter.set_parameters({k: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(v)) for k, v in feeds.items()})
    adapter.export_adapter(str(path))


def _session(model_bytes: bytes):
    import onnxruntime as ort

    from pocketgan.runtime.backends.onnx import session_options

    return ort.InferenceSession(model_bytes, session_options(None), providers=["CPUExecutionProvider"])


def _torch_outputs(model: torch.nn.Module, inputs: list[np.ndarray]) -> list[np.ndarray]:
    with torch.no_grad():
        return [model(torch.from_numpy(x)).numpy() for x in inputs]


def write_onnx_target(
    bundle: Bundle,
    staging: Path,
    *,
    concept_mode: str,
    photos: list[Path],
    threshold_db: float,
    progress=None,
) -> dict:
    """Write ``onnx/`` into a staging bundle; return the manifest's ``targets.onnx``."""
    import onnxruntime as ort

    step = progress or (lambda message: None)
    out = staging / ONNX_DIR
    out.mkdir(parents=True, exist_ok=True)
    inputs = parity_inputs(photos, bundle.config.image_size)
    example = bundle.example_inputs()
    entry: dict = {"precision": "fp32", "opset": OPSET, "concept_mode": concept_mode,
                   "source_base_sha256": sha256_file(staging / BASE_WEIGHTS)}
    scores: dict[str, dict[str, float]] = {}
    if concept_mode in ("separate", "both"):
        step("export base graph (concepts as inputs)")
        base_model = bundle.model_for(None, "separate")
        torch_names = _concept_tensor_names(base_model)
        shapes = {n: tuple(p.shape) for n, p in base_model.named_parameters() if n in torch_names}
        proto = _export_onnx(base_model, example, optimize=False)
        expose_concept_inputs(proto, torch_names, shapes)
        model_bytes = proto.SerializeToString()
        (out / "generator.onnx").write_bytes(model_bytes)
        session = _session(model_bytes)
        entry["model"] = f"{ONNX_DIR}/generator.onnx"
        entry["concept_inputs"] = {torch_names[n]: list(shapes[n]) for n in torch_names}
        entry["adapters"] = {}
        scores["separate"] = {}
        (out / "adapters").mkdir(exist_ok=True)
        for name in bundle.concept_names:
            step(f"adapter {name}")
            rel = f"{ONNX_DIR}/adapters/{name}.onnx_adapter"
            write_adapter(staging / rel, concept_feeds(bundle, name, torch_names))
            adapter = ort.LoraAdapter()
            adapter.Load(str(staging / rel))
            run_options = ort.RunOptions()
            run_options.add_active_adapter(adapter)
            got = [session.run([OUTPUT_NAME], {INPUT_NAME: x}, run_options)[0] for x in inputs]
            want = _torch_outputs(bundle.model_for(name, "separate"), inputs)
            scores["separate"][name] = check_parity(f"ONNX adapter {name!r}", want, got, threshold_db)
            entry["adapters"][name] = rel
    if concept_mode in ("merged", "both"):
        entry["merged"] = {}
        scores["merged"] = {}
        (out / "merged").mkdir(exist_ok=True)
        for name in bundle.concept_names:
            step(f"merged model {name}")
            model = bundle.model_for(name, "merged")
            model_bytes = _export_onnx(model, example).SerializeToString()
            rel = f"{ONNX_DIR}/merged/{name}.onnx"
            (staging / rel).write_bytes(model_bytes)
            session = _session(model_bytes)
            got = [session.run([OUTPUT_NAME], {INPUT_NAME: x})[0] for x in inputs]
            scores["merged"][name] = check_parity(f"merged ONNX {name!r}", _torch_outputs(model, inputs), got, threshold_db)
            entry["merged"][name] = rel
    entry["parity"] = {"metric": "psnr", "threshold_db": threshold_db, "photos": [p.name for p in photos], "psnr_db": scores}
    return entry
