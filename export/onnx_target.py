"""ONNX export: a base graph with overridable concept inputs + one .onnx_adapter per concept.

The base graph is the generator with LoRA at the bundle's rank pattern and every LoRA
tensor and the concept tokens exposed as graph inputs whose default initializers are
zero; ONNX Runtime's ``AdapterFormat`` then stores one concept's tensors under those
names and ``RunOptions.add_active_adapter`` swaps them in per run. With
``concept_mode="merged"`` (or ``"both"``) each concept is also folded into a full model.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch.func import functional_call

from pocketgan.bundle import BASE_WEIGHTS, INPUT_NAME, OUTPUT_NAME, Bundle
from pocketgan.concepts.conditioned import CONCEPT_TOKENS
from pocketgan.export.parity import check_parity, parity_inputs
from pocketgan.runtime.manifest import sha256_file

OPSET = 18
ONNX_DIR = "onnx"


def _export_onnx(model: torch.nn.Module, example: tuple[torch.Tensor, ...], input_names: list[str]):
    """torch.onnx (dynamo, optimised) -> onnx.ModelProto with the manifest's tensor names."""
    import onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model, example, dynamo=True, opset_version=OPSET, input_names=input_names,
            output_names=[OUTPUT_NAME], verbose=False, optimize=True,
        )
    proto = program.model_proto
    # torch.onnx attaches stack traces with absolute build paths to every node: a third
    # of the file, and a leak of the exporting machine's paths. Ship the graph only.
    for node in proto.graph.node:
        del node.metadata_props[:]
    del proto.metadata_props[:]
    onnx.checker.check_model(proto)
    return proto


class ConceptTensorsAsInputs(torch.nn.Module):
    """Runs a separate-mode ConceptModel with its concept tensors passed as arguments.

    Exporting this (rather than the model with the tensors as parameters) makes every
    concept tensor a true graph input: the exporter's optimiser cannot constant-fold
    them into the graph (it would fold the cross-attention keys of the tokens and the
    transposed Linear LoRA weights, baking one concept in).
    """

    def __init__(self, model: torch.nn.Module, tensor_names: list[str]) -> None:
        super().__init__()
        self.model = model
        self.tensor_names = tensor_names

    def forward(self, image: torch.Tensor, *tensors: torch.Tensor) -> torch.Tensor:
        return functional_call(self.model, dict(zip(self.tensor_names, tensors)), (image,), strict=False)


def public_name(torch_name: str) -> str:
    """``generator.ds.conv.lora_A.default.weight`` -> ``ds.conv.lora_A.weight``."""
    return torch_name.removeprefix("generator.").replace(".default.", ".")


def concept_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """torch name -> tensor of the concept tokens and every LoRA weight, in graph order."""
    params = dict(model.named_parameters())
    names = [CONCEPT_TOKENS] + sorted(n for n in params if ".lora_" in n)
    return {n: params[n].detach().clone() for n in names}


def add_zero_defaults(proto, names: list[str]) -> None:
    """Give each concept input a same-named zero initializer: ORT then treats it as an
    overridable input whose default is the base model (no concept)."""
    from onnx import numpy_helper

    shapes = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in proto.graph.input}
    for name in names:
        proto.graph.initializer.append(numpy_helper.from_array(np.zeros(shapes[name], np.float32), name))


def concept_feeds(bundle: Bundle, concept: str) -> dict[str, np.ndarray]:
    """The concept's tensors under the graph's public input names (padded to the pattern)."""
    c = bundle.concept(concept)
    feeds = {k: v.detach().numpy().astype(np.float32) for k, v in c.padded(bundle.rank_pattern).items()}
    feeds[CONCEPT_TOKENS] = c.tokens.reshape(1, *c.tokens.shape).detach().numpy().astype(np.float32)
    return feeds


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
        tensors = concept_tensors(base_model)
        public = [public_name(n) for n in tensors]
        proto = _export_onnx(ConceptTensorsAsInputs(base_model, list(tensors)), (*example, *tensors.values()),
                             [INPUT_NAME, *public])
        add_zero_defaults(proto, public)
        model_bytes = proto.SerializeToString()
        (out / "generator.onnx").write_bytes(model_bytes)
        session = _session(model_bytes)
        entry["model"] = f"{ONNX_DIR}/generator.onnx"
        entry["concept_inputs"] = {public_name(n): list(t.shape) for n, t in tensors.items()}
        entry["adapters"] = {}
        scores["separate"] = {}
        (out / "adapters").mkdir(exist_ok=True)
        for name in bundle.concept_names:
            step(f"adapter {name}")
            rel = f"{ONNX_DIR}/adapters/{name}.onnx_adapter"
            write_adapter(staging / rel, concept_feeds(bundle, name))
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
            model_bytes = _export_onnx(model, example, [INPUT_NAME]).SerializeToString()
            rel = f"{ONNX_DIR}/merged/{name}.onnx"
            (staging / rel).write_bytes(model_bytes)
            session = _session(model_bytes)
            got = [session.run([OUTPUT_NAME], {INPUT_NAME: x})[0] for x in inputs]
            scores["merged"][name] = check_parity(f"merged ONNX {name!r}", _torch_outputs(model, inputs), got, threshold_db)
            entry["merged"][name] = rel
    entry["parity"] = {"metric": "psnr", "threshold_db": threshold_db, "photos": [p.name for p in photos], "psnr_db": scores}
    return entry
