"""ONNX export: a base graph with overridable concept inputs + one .onnx_adapter per concept.

The base graph is the generator with LoRA at the bundle's rank pattern and every LoRA
tensor and the concept tokens exposed as graph inputs whose default initializers are
zero; ONNX Runtime's ``AdapterFormat`` then stores one concept's tensors under those
names and ``RunOptions.add_active_adapter`` swaps them in per run. With
``concept_mode="merged"`` (or ``"both"``) each concept is also folded into a full model.

``precision="int8"``: every model is quantized after export with ONNX Runtime's static
QDQ quantizer (int8 per-channel weights, uint8 activations calibrated on real photos
held out from the parity photos, see ``pocketgan.export.calibration``); the nodes that
read a concept tensor stay float, so every ``.onnx_adapter`` still applies
(``pocketgan.export.onnx_quantize``). The int8 graph takes the concept tensors as float16
(cast to float where read; the adapters are half the size); the manifest's
``concept_input_dtype`` says which. Details and measurements: ``docs/quantization.md``.

:func:`export_onnx_model` is the public ``(model, example inputs) -> ModelProto`` step
(the pix2pix benchmark peer uses it); :class:`OnnxTarget` is the target run by
``pocketgan.export.target.export_target``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch.func import functional_call

from pocketgan._quiet import library_warnings_filtered
from pocketgan.bundle import INPUT_NAME, OUTPUT_NAME, Bundle
from pocketgan.concepts.conditioned import CONCEPT_TOKENS
from pocketgan.export.onnx_quantize import check_float_inputs, half_concept_inputs, quantize_int8
from pocketgan.export.target import ExportJob, export_target, gate_mixes

OPSET = 18
ONNX_DIR = "onnx"
MODEL = f"{ONNX_DIR}/generator.onnx"
NEUTRAL_ADAPTER = f"{ONNX_DIR}/neutral.onnx_adapter"
# Separate mode: the dtype of the concept inputs and so of every adapter's tensors
# (manifest ``concept_input_dtype``). int8 stores them as float16 (half_concept_inputs).
CONCEPT_INPUT_DTYPES = {"fp32": "float32", "int8": "float16"}
# How int8 calibrates (recorded in the manifest's calibration entry).
CALIBRATION_METHOD = "percentile"
# Concepts each calibration photo runs with (they take turns; all of them when fewer).
CALIBRATION_CONCEPTS_PER_PHOTO = 3


def export_onnx_model(
    model: torch.nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    input_names: list[str] | tuple[str, ...] = (INPUT_NAME,),
):
    """torch.onnx (dynamo, opset ``OPSET``, optimised) -> a checked ``onnx.ModelProto``
    whose inputs are named ``input_names`` and whose output is ``edited``.

    ``example_inputs``: e.g. ``(torch.zeros(1, 3, S, S),)``, float32 in [-1, 1]. The model
    is exported in eval mode (the graph an app runs) and left in the mode it came in.
    """
    import onnx

    was_training = model.training
    model.eval()
    try:
        with library_warnings_filtered():
            program = torch.onnx.export(
                model,
                example_inputs,
                dynamo=True,
                opset_version=OPSET,
                input_names=list(input_names),
                output_names=[OUTPUT_NAME],
                verbose=False,
                optimize=True,
            )
    finally:
        model.train(was_training)
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


def concept_feeds(bundle: Bundle, concept: str, dtype=np.float32) -> dict[str, np.ndarray]:
    """The concept's tensors under the graph's public input names (padded to the pattern),
    as ``dtype`` (the graph's concept input type: ``CONCEPT_INPUT_DTYPES``)."""
    c = bundle.concept(concept)
    feeds = {k: v.detach().numpy().astype(dtype) for k, v in c.padded(bundle.rank_pattern).items()}
    feeds[CONCEPT_TOKENS] = c.tokens.reshape(1, *c.tokens.shape).detach().numpy().astype(dtype)
    return feeds


def neutral_tensors(bundle: Bundle, dtype=np.float32) -> dict[str, np.ndarray]:
    """The neutral concept's tensors at its own ranks, under the concepts' input names (its
    adapter: what the runtime mixes from, never applied to the graph as it is)."""
    n = bundle.neutral
    feeds = {k: v.detach().numpy().astype(dtype) for k, v in n.lora.items()}
    feeds[CONCEPT_TOKENS] = n.tokens.reshape(1, *n.tokens.shape).detach().numpy().astype(dtype)
    return feeds


def mix_feeds(bundle: Bundle, weights: dict[str, float], dtype=np.float32) -> dict[str, np.ndarray]:
    """The graph inputs of a strength or blend (both LoRA slots), as the runtime computes them."""
    from pocketgan.runtime.concept_mix import split_slots

    mixed = bundle.mixed_concept(weights)
    tensors = {k: v.detach().numpy().astype(dtype) for k, v in mixed.lora.items()}
    tensors[CONCEPT_TOKENS] = mixed.tokens.reshape(1, *mixed.tokens.shape).detach().numpy().astype(dtype)
    return split_slots(tensors, bundle.rank_pattern)


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


def _run(session, inputs: list[np.ndarray], run_options=None) -> list[np.ndarray]:
    """``session`` on each (1, 3, S, S) float32 input -> (1, 3, S, S) float32 outputs."""
    return [session.run([OUTPUT_NAME], {INPUT_NAME: x}, run_options)[0] for x in inputs]


@dataclass
class OnnxTarget:
    """``onnx/``: the base graph + one ``.onnx_adapter`` per concept (separate), one full
    model per concept (merged); fp32 or int8 (static QDQ).

    Attributes:
        calibration_photos: int8 only: a folder of calibration photos; ``None``: the
            offline training photos (held out from the parity photos).
    """

    name: ClassVar[str] = "onnx"
    parity_may_be_skipped: ClassVar[bool] = False
    calibration_photos: Path | None = None

    @classmethod
    def from_config(cls, config) -> OnnxTarget:
        return cls(calibration_photos=config.calibration_photos)

    def check(self, concept_mode: str, precision: str) -> None:
        """Every concept mode and every precision of ``TARGET_SPECS["onnx"]`` applies."""

    def build(self, job: ExportJob, work: Path) -> dict:
        entry = job.entry_head(opset=OPSET)
        calibration: list[np.ndarray] = []
        if job.precision == "int8":
            from pocketgan.export.calibration import calibration_set

            found = calibration_set(job.bundle.config.image_size, self.calibration_photos)
            calibration = found.inputs
            entry["calibration"] = {**found.manifest_entry(), "method": CALIBRATION_METHOD}
        if "separate" in job.modes:
            entry.update(self._separate(job, work, calibration))
        if "merged" in job.modes:
            entry["merged"] = self._merged(job, work, calibration)
        return entry

    def _separate(self, job: ExportJob, work: Path, calibration: list[np.ndarray]) -> dict:
        """The base graph (concept tensors as inputs) and an adapter per concept, each gated."""
        import onnxruntime as ort

        bundle, step = job.bundle, job.step
        step("export base graph (concepts as inputs)")
        base_model = bundle.model_for(None, "separate", mix_slot=bundle.neutral is not None)
        tensors = concept_tensors(base_model)
        public = [public_name(n) for n in tensors]
        proto = export_onnx_model(
            ConceptTensorsAsInputs(base_model, list(tensors)),
            (*bundle.example_inputs(), *tensors.values()),
            [INPUT_NAME, *public],
        )
        add_zero_defaults(proto, public)
        if job.precision == "int8":
            # each photo with CALIBRATION_CONCEPTS_PER_PHOTO concepts, taking turns: ONNX Runtime's
            # calibrator keeps every activation of every run, and every photo with every concept
            # (22 x 7 runs for the default bundle) needed more than 24 GiB
            per_photo = min(CALIBRATION_CONCEPTS_PER_PHOTO, len(job.names))
            step(f"int8: calibrate on {len(calibration)} photos x {per_photo} of {len(job.names)} concepts")
            n = len(job.names)
            feeds = [
                {INPUT_NAME: x, **concept_feeds(bundle, job.names[(i * per_photo + k) % n])}
                for i, x in enumerate(calibration)
                for k in range(per_photo)
            ]
            proto = quantize_int8(proto, feeds, float_inputs=public)
            half_concept_inputs(proto, public)
            check_float_inputs(proto, public, "float16")
        adapter_dtype = CONCEPT_INPUT_DTYPES[job.precision]
        model_bytes = proto.SerializeToString()
        (work / MODEL).write_bytes(model_bytes)
        session = _session(model_bytes)
        adapters: dict[str, str] = {}
        (work / ONNX_DIR / "adapters").mkdir()
        for name in job.names:
            step(f"adapter {name}")
            rel = f"{ONNX_DIR}/adapters/{name}.onnx_adapter"
            write_adapter(work / rel, concept_feeds(bundle, name, np.dtype(adapter_dtype)))
            adapter = ort.LoraAdapter()
            adapter.Load(str(work / rel))
            run_options = ort.RunOptions()
            run_options.add_active_adapter(adapter)
            got = _run(session, job.gate.inputs, run_options)
            reference = bundle.model_for(name, "separate")
            job.gate.check("separate", name, f"{job.label}ONNX adapter {name!r}", reference, got)
            adapters[name] = rel
        entry = {
            "model": MODEL,
            "concept_inputs": {public_name(n): list(t.shape) for n, t in tensors.items()},
            "concept_input_dtype": adapter_dtype,
            "adapters": adapters,
        }
        if bundle.neutral is not None:
            step("neutral adapter, strengths and a blend")
            write_adapter(work / NEUTRAL_ADAPTER, neutral_tensors(bundle, np.dtype(adapter_dtype)))
            entry["neutral"] = NEUTRAL_ADAPTER
            for key, weights in gate_mixes(bundle.concept_names):
                feeds = mix_feeds(bundle, weights, np.dtype(adapter_dtype))
                got = [session.run([OUTPUT_NAME], {INPUT_NAME: x, **feeds})[0] for x in job.gate.inputs]
                job.gate.check("mix", key, f"{job.label}ONNX mix {key}", bundle.model_for_mix(weights), got)
        return entry

    def _merged(self, job: ExportJob, work: Path, calibration: list[np.ndarray]) -> dict[str, str]:
        """One full model per concept (LoRA folded in), each gated: ``{concept: path}``."""
        merged: dict[str, str] = {}
        (work / ONNX_DIR / "merged").mkdir()
        for name in job.names:
            job.step(f"merged model {name}")
            model = job.bundle.model_for(name, "merged")
            proto = export_onnx_model(model, job.bundle.example_inputs())
            if job.precision == "int8":
                job.step(f"int8: calibrate merged {name} on {len(calibration)} photos")
                proto = quantize_int8(proto, [{INPUT_NAME: x} for x in calibration])
            model_bytes = proto.SerializeToString()
            rel = f"{ONNX_DIR}/merged/{name}.onnx"
            (work / rel).write_bytes(model_bytes)
            got = _run(_session(model_bytes), job.gate.inputs)
            job.gate.check("merged", name, f"{job.label}merged ONNX {name!r}", model, got)
            merged[name] = rel
        return merged


def write_onnx_target(bundle: Bundle, staging: Path, *, calibration_photos: Path | None = None, **common) -> dict:
    """Write ``onnx/`` into a staging bundle; return the manifest's ``targets.onnx``.

    ``common``: ``concept_mode``, ``photos``, ``threshold_db`` (``None``: 35 dB fp32,
    30 dB int8), ``precision`` (``fp32`` or ``int8``), ``progress``, as
    :func:`~pocketgan.export.target.export_target` takes them.
    """
    return export_target(OnnxTarget(calibration_photos), bundle, staging, **common)


TARGET = OnnxTarget
