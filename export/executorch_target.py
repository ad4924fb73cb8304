"""ExecuTorch export: ``.pte`` programs lowered to XNNPACK, one method per concept.

Layouts (``docs/executorch.md`` says which platform should use which):

- ``separate``: ONE ``executorch/generator.pte`` whose methods are the concepts (method
  name = concept name). Every method is the base generator with the concept's LoRA kept
  as a separate low-rank branch, padded to the bundle's rank pattern. XNNPACK stores
  delegate weights in the program's named-data store keyed by the sha256 of their
  bytes, so the base weights, identical in every method, are stored once; each extra
  concept costs its LoRA tensors, tokens and the method's instructions. Android's stock
  ``Module`` opens it as it is (no ``.ptd``).
- ``merged``: ONE ``executorch/merged.pte``, one method per concept with the LoRA folded
  into the weights. Only the layers LoRA does not touch (the ResNet blocks, norms) are
  shared between methods; the adapted layers are stored once per concept.
- ``layout="ptd"`` (or ``"both"``; separate mode only): a shared
  ``executorch/base.ptd`` holding the base weights and one small
  ``executorch/concepts/<name>.pte`` per concept (method ``forward``) that references
  them by content hash (``targets.executorch.external_data``). An app with many
  concepts can load them one at a time. A ``.pte`` only runs with the ``.ptd`` of the
  exact base it was exported from.

Every method is checked before anything is written: the heavy ops (convolution,
linear/addmm/mm, bmm/matmul) must be delegated to XNNPACK, and the program, run by the
ExecuTorch runtime on the real parity photos, must match PyTorch above the threshold
(``pocketgan.export.executorch_delegation``, ``pocketgan.export.parity``).

``precision="int8"`` (layout ``program``): each method is quantized with PT2E before
lowering: ``torch.export`` -> torchao ``prepare_pt2e`` with ExecuTorch's
``XNNPACKQuantizer`` (int8 symmetric per-channel weights, int8 per-tensor activations)
-> calibration on real photos held out from the parity photos -> ``convert_pt2e`` ->
``torch.export`` -> XNNPACK. Each concept's method is calibrated with its own LoRA, and
the export fails unless the quantized convolutions and linears run inside XNNPACK.
Details and measurements: ``docs/quantization.md``.

:func:`export_executorch_program` is the public ``(model, example inputs) -> .pte``
step (the pix2pix benchmark peer uses it); :class:`ExecuTorchTarget` is the target run
by ``pocketgan.export.target.export_target``.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from pocketgan._quiet import library_warnings_filtered, quiet_library_logs, start_executorch_threadpool
from pocketgan.bundle import Bundle
from pocketgan.concepts.conditioned import CONCEPT_TOKENS
from pocketgan.concepts.mixing import mix_model, mix_weights
from pocketgan.export.executorch_delegation import program_delegation
from pocketgan.export.target import ExportJob, export_target, gate_mixes, precision_label
from pocketgan.runtime.errors import PocketganError
from pocketgan.runtime.targets import EXECUTORCH_LAYOUTS

ET_DIR = "executorch"
PROGRAMS = {"separate": f"{ET_DIR}/generator.pte", "merged": f"{ET_DIR}/merged.pte"}
BASE_DATA = f"{ET_DIR}/base.ptd"
EXTERNAL_METHOD = "forward"
EXTERNAL_PARITY_KEY = "separate_ptd"
#: the method of every concept's weight (strength, blending); not a valid concept name
MIX_METHOD = "_mix"
_BASE_TAG = "base"  # the .ptd file name (without extension) the base weights go to


def _executorch():
    quiet_library_logs()  # before the import: torchao, which executorch imports, logs then
    try:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import ExecutorchBackendConfig, to_edge_transform_and_lower
    except ImportError as e:
        raise PocketganError(
            "the ExecuTorch export needs executorch (built for torch 2.13.0): pip install 'pocketgan[executorch]'"
        ) from e
    return XnnpackPartitioner, ExecutorchBackendConfig, to_edge_transform_and_lower


def export_aten(model: torch.nn.Module, example: tuple[torch.Tensor, ...]) -> torch.export.ExportedProgram:
    """``torch.export`` (non-strict) of ``model`` without its ``x * 1`` no-ops (:func:`drop_identity_muls`)."""
    with library_warnings_filtered():
        return drop_identity_muls(torch.export.export(model, example, strict=False))


# the multiplications drop_identity_muls looks at
MUL_OPS = (torch.ops.aten.mul.Tensor, torch.ops.aten.mul.Scalar)


def drop_identity_muls(ep: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    """Remove every ``x * 1`` from ``ep``'s graph, in place; returns ``ep``.

    PEFT scales each LoRA branch by ``lora_alpha / r``, which is 1 for every pocketgan
    adapter; ``torch.export`` records it as ``aten.mul(x, 1.0)``, a full pass over the
    layer's output (and, in int8, a quantized op of its own). The ONNX exporter's optimizer
    and the Core ML converter already fold such no-ops; ExecuTorch runs what it is given.
    Only multiplications whose result has the operand's dtype and shape, and is not a
    graph output, are removed.
    """
    graph = ep.graph_module.graph
    outputs: set[torch.fx.Node] = set()
    for n in graph.nodes:
        if n.op == "output":
            torch.fx.node.map_arg(n.args, outputs.add)
    removed = 0
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target not in MUL_OPS or node.kwargs or len(node.args) != 2:
            continue
        src, factor = node.args
        if not isinstance(src, torch.fx.Node) or isinstance(factor, torch.fx.Node) or factor != 1:
            continue
        a, b = src.meta.get("val"), node.meta.get("val")
        if a is None or b is None or a.dtype != b.dtype or a.shape != b.shape or node in outputs:
            continue
        node.replace_all_uses_with(src)
        graph.erase_node(node)
        removed += 1
    if removed:
        graph.lint()
        ep.graph_module.recompile()
    return ep


def quantize_pt2e(model: torch.nn.Module, example: tuple[torch.Tensor, ...], calibration: list[np.ndarray]):
    """PT2E int8 for XNNPACK: the ``ExportedProgram`` of ``model`` with int8 weights and
    activations, calibrated on ``calibration`` ((1, 3, S, S) float32 inputs)."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    with library_warnings_filtered():
        module = export_aten(model, example).module()
        quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
        prepared = prepare_pt2e(module, quantizer)
        with torch.no_grad():
            for x in calibration:
                prepared(torch.from_numpy(x))
        converted = convert_pt2e(prepared)
    return export_aten(converted, example)


def _lower(
    programs, methods: list[str], where: str, external_constants=None, precision: str = "fp32", check: bool = True
):
    """ATen program(s) -> edge, delegated to XNNPACK -> ExecuTorch program manager.

    Returns ``(program manager, delegation summary)``; the summary is taken (and, with
    ``check``, the heavy ops checked) on the edge graphs, before ``to_executorch``
    rewrites them into out-variants and memory-planning nodes.
    """
    XnnpackPartitioner, ExecutorchBackendConfig, to_edge_transform_and_lower = _executorch()
    with library_warnings_filtered():
        edge = to_edge_transform_and_lower(programs, partitioner=[XnnpackPartitioner()])
        delegation = program_delegation(edge, methods, where, precision, check=check)
        config = ExecutorchBackendConfig(external_constants=external_constants) if external_constants else None
        program = edge.to_executorch(config) if config else edge.to_executorch()
    return program, delegation


def aten_program(
    model: torch.nn.Module,
    example: tuple[torch.Tensor, ...],
    precision: str = "fp32",
    calibration: list[np.ndarray] | None = None,
) -> torch.export.ExportedProgram:
    """The ExportedProgram to lower: :func:`export_aten` (fp32) or :func:`quantize_pt2e` (int8,
    calibrated on ``calibration``, (1, 3, S, S) float32 inputs in [-1, 1])."""
    if precision == "int8":
        if not calibration:
            raise ValueError("int8 needs calibration inputs")
        return quantize_pt2e(model, example, calibration)
    return export_aten(model, example)


def export_executorch_program(
    model: torch.nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    *,
    precision: str = "fp32",
    calibration: list[np.ndarray] | None = None,
    require_delegation: bool = True,
) -> tuple[bytes, dict]:
    """``model`` as an XNNPACK-lowered ``.pte`` with one method, ``forward``: ``(pte bytes,
    delegation summary)``.

    ``example_inputs``: e.g. ``(torch.zeros(1, 3, S, S),)``. ``precision="int8"``: PT2E,
    calibrated on ``calibration``. ``require_delegation``: fail
    (:class:`~pocketgan.export.executorch_delegation.DelegationError`) when a heavy op (or,
    in int8, a (de)quantize op) is left to the portable kernels; a model with ops XNNPACK
    lacks (the pix2pix peer's reflection padding) passes ``False`` and gets the summary only.
    """
    program = aten_program(model, example_inputs, precision, calibration)
    manager, delegation = _lower(
        program,
        ["forward"],
        f"ExecuTorch {precision_label(precision)}program",
        precision=precision,
        check=require_delegation,
    )
    return manager.buffer, delegation


def run_methods(pte: bytes, methods: list[str], inputs: list[np.ndarray], data_path: Path | None = None):
    """method -> outputs of the ExecuTorch runtime on ``inputs`` (program loaded from bytes)."""
    from executorch.runtime import Runtime

    start_executorch_threadpool()  # created now, its cpuinfo lines filtered; loads below print nothing

    program = Runtime.get().load_program(pte, data_path=data_path)
    out = {}
    for method in methods:
        m = program.load_method(method)
        out[method] = [m.execute([torch.from_numpy(x)])[0].numpy().copy() for x in inputs]
    return out


def build_program(
    bundle: Bundle,
    mode: str,
    concepts: list[str] | None = None,
    progress=None,
    *,
    precision: str = "fp32",
    calibration: list[np.ndarray] | None = None,
):
    """Export one ``.pte`` with a method per concept; return ``(pte bytes, delegation, models)``.

    ``models`` are the PyTorch reference models (concept -> ConceptModel) the methods were
    exported from, for the parity check. ``precision="int8"`` quantizes every method
    (:func:`quantize_pt2e`) with ``calibration`` inputs.
    """
    step = progress or (lambda message: None)
    names = list(concepts or bundle.concept_names)
    example = bundle.example_inputs()
    if precision == "int8" and not calibration:
        raise ValueError("int8 needs calibration inputs")
    models, programs = {}, {}
    for name in names:
        models[name] = bundle.model_for(name, mode)
        if precision == "int8":
            step(f"int8 {mode} {name}: calibrate on {len(calibration)} photos")
        else:
            step(f"torch.export {mode} {name}")
        programs[name] = aten_program(models[name], example, precision, calibration)
    methods = list(names)
    if mode == "separate" and precision == "fp32" and bundle.neutral is not None and names == bundle.concept_names:
        step("torch.export the mix method (strength and blending)")
        models[MIX_METHOD] = mix_model(bundle)
        weights = torch.zeros(len(names))
        programs[MIX_METHOD] = aten_program(models[MIX_METHOD], (*example, weights))
        methods.append(MIX_METHOD)
    step(f"lower {len(methods)} {precision} method(s) to XNNPACK ({mode})")
    where = f"ExecuTorch {precision_label(precision)}{mode} program"
    program, delegation = _lower(programs, methods, where, precision=precision)
    return program.buffer, delegation, models


def run_mix_method(pte: bytes, inputs: list[np.ndarray], weights: torch.Tensor) -> list[np.ndarray]:
    """The mix method's outputs on ``inputs`` with one weight vector."""
    from executorch.runtime import Runtime

    start_executorch_threadpool()
    method = Runtime.get().load_program(pte).load_method(MIX_METHOD)
    return [method.execute([torch.from_numpy(x), weights])[0].numpy().copy() for x in inputs]


def _is_concept_tensor(name: str) -> bool:
    """LoRA tensors and tokens, by unlifted (``generator.ds.conv.lora_A.default.weight``)
    or lifted (``p_generator_ds_conv_lora_A_default_weight``) name."""
    return "lora_A" in name or "lora_B" in name or name.endswith(CONCEPT_TOKENS)


def build_external(bundle: Bundle, name: str):
    """One concept as a small ``.pte`` (method ``forward``) + the base weights as ``.ptd`` bytes.

    Delegate weights are tagged before lowering (``delegate_constant_tag``) and the
    constants left outside XNNPACK (the LayerNorm affine) through
    ``ExecutorchBackendConfig(external_constants=...)``; the concept's LoRA tensors and
    tokens stay inside the ``.pte``.
    """
    from executorch.exir.passes.external_constants_pass import delegate_external_constants_pass_unlifted

    example = bundle.example_inputs()
    model = bundle.model_for(name, "separate")
    module = export_aten(model, example).module()
    delegate_external_constants_pass_unlifted(
        module=module, gen_tag_fn=lambda node: None if _is_concept_tensor(str(node.target)) else _BASE_TAG
    )
    ep = export_aten(module, example)
    program, delegation = _lower(
        ep,
        [EXTERNAL_METHOD],
        f"ExecuTorch external-data program {name!r}",
        external_constants=lambda node: None if _is_concept_tensor(node.name) else _BASE_TAG,
    )
    with tempfile.TemporaryDirectory() as tmp:
        program.write_tensor_data_to_file(tmp)
        written = sorted(p.name for p in Path(tmp).iterdir())
        if written != [f"{_BASE_TAG}.ptd"]:
            raise PocketganError(f"ExecuTorch wrote external data {written}, expected only {_BASE_TAG}.ptd")
        data = (Path(tmp) / f"{_BASE_TAG}.ptd").read_bytes()
    return program.buffer, data, delegation, model


@dataclass
class ExecuTorchTarget:
    """``executorch/``: programs lowered to XNNPACK, a method per concept (see the module docstring).

    Attributes:
        layout: how the separate mode is stored: ``program`` (one ``.pte``, a method per
            concept; what Android's stock ``Module`` can open), ``ptd`` (shared
            ``base.ptd`` + one small ``.pte`` per concept) or ``both``.
        calibration_photos: int8 only: a folder of calibration photos; ``None``: the
            offline training photos (held out from the parity photos).
    """

    name: ClassVar[str] = "executorch"
    parity_may_be_skipped: ClassVar[bool] = False
    layout: str = "program"
    calibration_photos: Path | None = None

    @classmethod
    def from_config(cls, config) -> ExecuTorchTarget:
        return cls(layout=config.executorch_layout, calibration_photos=config.calibration_photos)

    def check(self, concept_mode: str, precision: str) -> None:
        if self.layout not in EXECUTORCH_LAYOUTS:
            raise ValueError(f"layout must be one of {list(EXECUTORCH_LAYOUTS)}, got {self.layout!r}")
        if self.layout != "program" and concept_mode == "merged":
            raise ValueError(f"layout {self.layout!r} (shared base .ptd) needs the separate concept mode")
        if precision == "int8" and self.layout != "program":
            raise ValueError(f"int8 ExecuTorch exports support layout 'program' only, got {self.layout!r}")
        _executorch()

    def build(self, job: ExportJob, work: Path) -> dict:
        entry = job.entry_head()
        calibration = None
        if job.precision == "int8":
            from pocketgan.export.calibration import calibration_set

            found = calibration_set(job.bundle.config.image_size, self.calibration_photos)
            calibration = found.inputs
            entry["calibration"] = found.manifest_entry()
        delegation: dict[str, dict] = {}
        mix = False
        for mode in job.modes:
            if mode == "separate" and self.layout == "ptd":
                continue
            delegation[mode], has_mix = self._program(job, work, mode, calibration)
            mix = mix or has_mix
            entry["program" if mode == "separate" else "merged_program"] = PROGRAMS[mode]
        if delegation:
            entry["methods"] = {name: name for name in job.names}
        if mix:
            entry["mix"] = {"method": MIX_METHOD, "concepts": list(job.names)}
        if "separate" in job.modes and self.layout in ("ptd", "both"):
            entry["external_data"], delegation[EXTERNAL_PARITY_KEY] = self._external(job, work)
        entry["delegation"] = delegation
        return entry

    def _program(
        self, job: ExportJob, work: Path, mode: str, calibration: list[np.ndarray] | None
    ) -> tuple[dict, bool]:
        """One ``.pte``, a method per concept (+ the mix method when the bundle can mix), every
        method gated; returns its delegation summary and whether it has the mix method."""
        pte, delegation, models = build_program(
            job.bundle, mode, job.names, progress=job.step, precision=job.precision, calibration=calibration
        )
        job.step(f"parity {mode} program ({len(pte) / 1e6:.2f} MB)")
        got = run_methods(pte, job.names, job.gate.inputs)
        for name in job.names:
            job.gate.check(mode, name, f"ExecuTorch {job.label}{mode} method {name!r}", models[name], got[name])
        if MIX_METHOD in models:
            bundle = job.bundle
            for key, weights in [(f"{n}@1", {n: 1.0}) for n in job.names] + gate_mixes(job.names):
                got = run_mix_method(pte, job.gate.inputs, mix_weights(job.names, weights))
                job.gate.check("mix", key, f"ExecuTorch mix method {key}", bundle.model_for_mix(weights), got)
        (work / PROGRAMS[mode]).write_bytes(pte)
        return delegation, MIX_METHOD in models

    def _external(self, job: ExportJob, work: Path) -> tuple[dict, dict]:
        """The shared-``.ptd`` layout, every concept program gated: (manifest part, delegation)."""
        base_data: bytes | None = None
        data_path = work / BASE_DATA
        programs: dict[str, str] = {}
        delegation: dict = {}
        (work / ET_DIR / "concepts").mkdir()
        for name in job.names:
            job.step(f"external-data program {name}")
            pte, data, delegation, model = build_external(job.bundle, name)
            if base_data is None:
                base_data = data
                data_path.write_bytes(data)
            elif data != base_data:
                raise PocketganError(f"the base .ptd exported with concept {name!r} differs from the first one")
            got = run_methods(pte, [EXTERNAL_METHOD], job.gate.inputs, data_path=data_path)[EXTERNAL_METHOD]
            job.gate.check(EXTERNAL_PARITY_KEY, name, f"ExecuTorch external-data program {name!r}", model, got)
            rel = f"{ET_DIR}/concepts/{name}.pte"
            (work / rel).write_bytes(pte)
            programs[name] = rel
        return {"data": BASE_DATA, "method": EXTERNAL_METHOD, "programs": programs}, delegation


def write_executorch_target(
    bundle: Bundle, staging: Path, *, layout: str = "program", calibration_photos: Path | None = None, **common
) -> dict:
    """Write ``executorch/`` into a staging bundle; return the manifest's ``targets.executorch``.

    ``common``: ``concept_mode``, ``photos``, ``threshold_db`` (``None``: 35 dB fp32,
    30 dB int8), ``precision`` (``fp32``, or ``int8`` with layout ``program``),
    ``progress``, as :func:`~pocketgan.export.target.export_target` takes them.
    Raises ``ParityError``/``DelegationError`` before any file is written.
    """
    return export_target(ExecuTorchTarget(layout, calibration_photos), bundle, staging, **common)


TARGET = ExecuTorchTarget
