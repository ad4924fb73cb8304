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
ExecuTorch runtime on the real parity photos, must match PyTorch above the threshold.

``precision="int8"`` (layout ``program``): each method is quantized with PT2E before
lowering: ``torch.export`` -> torchao ``prepare_pt2e`` with ExecuTorch's
``XNNPACKQuantizer`` (int8 symmetric per-channel weights, int8 per-tensor activations)
-> calibration on real photos held out from the parity photos -> ``convert_pt2e`` ->
``torch.export`` -> XNNPACK. Each concept's method is calibrated with its own LoRA, and
the export fails unless the quantized convolutions and linears run inside XNNPACK.
Details and measurements: ``docs/quantization.md``.
"""

from __future__ import annotations

import operator
import tempfile
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from pocketgan.bundle import BASE_WEIGHTS, Bundle
from pocketgan.concepts.conditioned import CONCEPT_TOKENS
from pocketgan.export.parity import check_parity, parity_inputs
from pocketgan.runtime.errors import PocketganError
from pocketgan.runtime.manifest import sha256_file

ET_DIR = "executorch"
BACKEND_ID = "XnnpackBackend"
PROGRAMS = {"separate": f"{ET_DIR}/generator.pte", "merged": f"{ET_DIR}/merged.pte"}
BASE_DATA = f"{ET_DIR}/base.ptd"
EXTERNAL_METHOD = "forward"
EXTERNAL_PARITY_KEY = "separate_ptd"
# Ops whose cost dominates the generator; the export fails if any of them runs outside
# XNNPACK (ExecuTorch's portable kernels are reference implementations, 10-100x slower).
HEAVY_OPS = frozenset({"convolution", "linear", "addmm", "mm", "bmm", "matmul", "baddbmm"})
_BASE_TAG = "base"  # the .ptd file name (without extension) the base weights go to
PRECISIONS = ("fp32", "int8")
PARITY_THRESHOLD_DB = {"fp32": 35.0, "int8": 30.0}  # default gate per precision (PSNR vs fp32 PyTorch)
# Quantize/dequantize ops of PT2E; with int8 they must sit inside the XNNPACK subgraphs.
_QDQ_OPS = ("quantize_per_tensor", "dequantize_per_tensor", "quantize_per_channel", "dequantize_per_channel")


class DelegationError(PocketganError):
    """A heavy op of the generator was not delegated to XNNPACK."""


def _executorch():
    try:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import ExecutorchBackendConfig, to_edge_transform_and_lower
    except ImportError as e:
        raise PocketganError(
            "the ExecuTorch export needs executorch (built for torch 2.13.0): pip install 'pocketgan[executorch]'"
        ) from e
    return XnnpackPartitioner, ExecutorchBackendConfig, to_edge_transform_and_lower


def _export(model: torch.nn.Module, example: tuple[torch.Tensor, ...]) -> torch.export.ExportedProgram:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return drop_identity_muls(torch.export.export(model, example, strict=False))


_MULS = (torch.ops.aten.mul.Tensor, torch.ops.aten.mul.Scalar)


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
        if node.op != "call_function" or node.target not in _MULS or node.kwargs or len(node.args) != 2:
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


def _label(precision: str) -> str:
    """Prefix of error messages: nothing for fp32 (unchanged messages), ``int8 `` else."""
    return "" if precision == "fp32" else f"{precision} "


def quantize_pt2e(model: torch.nn.Module, example: tuple[torch.Tensor, ...], calibration: list[np.ndarray]):
    """PT2E int8 for XNNPACK: the ``ExportedProgram`` of ``model`` with int8 weights and
    activations, calibrated on ``calibration`` ((1, 3, S, S) float32 inputs)."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = _export(model, example).module()
        quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
        prepared = prepare_pt2e(module, quantizer)
        with torch.no_grad():
            for x in calibration:
                prepared(torch.from_numpy(x))
        converted = convert_pt2e(prepared)
    return _export(converted, example)


def check_int8_delegation(summary: dict, where: str) -> None:
    """int8: the quantized weights (per-channel dequantize) must be inside XNNPACK and no
    quantize/dequantize op may be left to the portable kernels."""
    delegated = {_base_op(op) for op in summary["_delegated"]}
    if "dequantize_per_channel" not in delegated:
        raise DelegationError(f"{where}: no per-channel int8 weight was delegated to XNNPACK; nothing was written")
    stray = {op: n for op, n in summary["non_delegated"].items() if _base_op(op) in _QDQ_OPS}
    if stray:
        raise DelegationError(f"{where}: int8 (de)quantize ops left outside XNNPACK: {stray}; nothing was written")


def _lower(programs, methods: list[str], where: str, external_constants=None, precision: str = "fp32"):
    """ATen program(s) -> edge, delegated to XNNPACK -> ExecuTorch program manager.

    Returns ``(program manager, delegation summary)``; the summary is taken (and the
    heavy ops checked) on the edge graphs, before ``to_executorch`` rewrites them into
    out-variants and memory-planning nodes.
    """
    XnnpackPartitioner, ExecutorchBackendConfig, to_edge_transform_and_lower = _executorch()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        edge = to_edge_transform_and_lower(programs, partitioner=[XnnpackPartitioner()])
        delegation = _program_delegation(edge, methods, where, precision)
        config = ExecutorchBackendConfig(external_constants=external_constants) if external_constants else None
        program = edge.to_executorch(config) if config else edge.to_executorch()
    return program, delegation


# --- delegation summary ------------------------------------------------------------------


def _op_name(target) -> str:
    return getattr(target, "__name__", str(target))


def _base_op(name: str) -> str:
    """``aten.convolution.default`` -> ``convolution``."""
    parts = name.split(".")
    return parts[1] if len(parts) >= 2 else name


def delegation_summary(graph_module: torch.fx.GraphModule) -> dict:
    """What XNNPACK runs and what stays on ExecuTorch's portable kernels, for one method.

    The same count as ``executorch.devtools.backend_debug.get_delegation_info`` (which
    needs pandas), minus the ``getitem`` nodes that only unpack tuples.
    """
    delegated: Counter = Counter()
    non_delegated: Counter = Counter()
    subgraphs = 0
    for node in graph_module.graph.nodes:
        if node.op == "get_attr" and node.name.startswith("lowered_module_"):
            lowered = getattr(graph_module, node.name)
            if lowered.backend_id != BACKEND_ID:
                continue
            subgraphs += 1
            for inner in lowered.original_module.graph.nodes:
                if inner.op == "call_function" and inner.target is not operator.getitem:
                    delegated[_op_name(inner.target)] += 1
        elif node.op == "call_function" and node.target is not operator.getitem:
            name = _op_name(node.target)
            if name != "executorch_call_delegate":
                non_delegated[name] += 1
    return {
        "backend": BACKEND_ID,
        "delegated_subgraphs": subgraphs,
        "delegated_ops": sum(delegated.values()),
        "non_delegated_ops": sum(non_delegated.values()),
        "non_delegated": dict(sorted(non_delegated.items())),
        "_delegated": dict(delegated),
    }


def check_delegation(summary: dict, where: str) -> None:
    """Raise :class:`DelegationError` unless every heavy op runs in XNNPACK."""
    stray = {op: n for op, n in summary["non_delegated"].items() if _base_op(op) in HEAVY_OPS}
    if stray:
        raise DelegationError(
            f"{where}: heavy ops not delegated to XNNPACK: {stray}; they would run on ExecuTorch's "
            "portable kernels (slow). Nothing was written."
        )
    if not any(_base_op(op) == "convolution" for op in summary["_delegated"]):
        raise DelegationError(f"{where}: no convolution was delegated to XNNPACK; nothing was written")


def _program_delegation(edge, methods: list[str], where: str, precision: str = "fp32") -> dict:
    """Check every method; return the (shared) per-method summary for the manifest."""
    summaries = {}
    for method in methods:
        summary = delegation_summary(edge.exported_program(method).graph_module)
        check_delegation(summary, f"{where} method {method!r}")
        if precision == "int8":
            check_int8_delegation(summary, f"{where} method {method!r}")
        summaries[method] = summary
    first = summaries[methods[0]]
    public = {k: v for k, v in first.items() if not k.startswith("_")}
    for method, summary in summaries.items():
        if {k: v for k, v in summary.items() if not k.startswith("_")} != public:
            # Different graphs per method (should not happen: one rank pattern): report totals.
            public = _sum_summaries(summaries.values())
            break
    return public


def _sum_summaries(summaries) -> dict:
    total: dict = {"backend": BACKEND_ID, "delegated_subgraphs": 0, "delegated_ops": 0, "non_delegated_ops": 0}
    counts: Counter = Counter()
    for s in summaries:
        for key in ("delegated_subgraphs", "delegated_ops", "non_delegated_ops"):
            total[key] += s[key]
        counts.update(s["non_delegated"])
    total["non_delegated"] = dict(sorted(counts.items()))
    return total


# --- running programs ----------------------------------------------------------------------


def _run_methods(pte: bytes, methods: list[str], inputs: list[np.ndarray], data_path: Path | None = None):
    """method -> outputs of the ExecuTorch runtime on ``inputs`` (program loaded from bytes)."""
    from executorch.runtime import Runtime

    program = Runtime.get().load_program(pte, data_path=data_path)
    out = {}
    for method in methods:
        m = program.load_method(method)
        out[method] = [m.execute([torch.from_numpy(x)])[0].numpy().copy() for x in inputs]
    return out


def _torch_outputs(model: torch.nn.Module, inputs: list[np.ndarray]) -> list[np.ndarray]:
    with torch.no_grad():
        return [model(torch.from_numpy(x)).numpy() for x in inputs]


# --- layouts -----------------------------------------------------------------------------


def build_program(bundle: Bundle, mode: str, concepts: list[str] | None = None, progress=None, *,
                  precision: str = "fp32", calibration: list[np.ndarray] | None = None):
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
            programs[name] = quantize_pt2e(models[name], example, calibration)
        else:
            step(f"torch.export {mode} {name}")
            programs[name] = _export(models[name], example)
    step(f"lower {len(names)} {precision} method(s) to XNNPACK ({mode})")
    program, delegation = _lower(programs, names, f"ExecuTorch {_label(precision)}{mode} program", precision=precision)
    return program.buffer, delegation, models


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
    module = _export(model, example).module()
    delegate_external_constants_pass_unlifted(
        module=module, gen_tag_fn=lambda node: None if _is_concept_tensor(str(node.target)) else _BASE_TAG
    )
    ep = _export(module, example)
    program, delegation = _lower(
        ep, [EXTERNAL_METHOD], f"ExecuTorch external-data program {name!r}",
        external_constants=lambda node: None if _is_concept_tensor(node.name) else _BASE_TAG,
    )
    with tempfile.TemporaryDirectory() as tmp:
        program.write_tensor_data_to_file(tmp)
        written = sorted(p.name for p in Path(tmp).iterdir())
        if written != [f"{_BASE_TAG}.ptd"]:
            raise PocketganError(f"ExecuTorch wrote external data {written}, expected only {_BASE_TAG}.ptd")
        data = (Path(tmp) / f"{_BASE_TAG}.ptd").read_bytes()
    return program.buffer, data, delegation, model


SEPARATE_LAYOUTS = ("program", "ptd", "both")


def _write_external(bundle: Bundle, names: list[str], inputs, threshold_db: float, step):
    """The shared-``.ptd`` layout, checked: (files, entry part, delegation, parity scores)."""
    base_data: bytes | None = None
    files: dict[str, bytes] = {}
    programs: dict[str, str] = {}
    scores: dict[str, float] = {}
    delegation = None
    with tempfile.TemporaryDirectory() as tmp:
        data_path = Path(tmp) / "base.ptd"
        for name in names:
            step(f"external-data program {name}")
            pte, data, delegation, model = build_external(bundle, name)
            if base_data is None:
                base_data = data
                data_path.write_bytes(data)
            elif data != base_data:
                raise PocketganError(f"the base .ptd exported with concept {name!r} differs from the first one")
            got = _run_methods(pte, [EXTERNAL_METHOD], inputs, data_path=data_path)[EXTERNAL_METHOD]
            scores[name] = check_parity(
                f"ExecuTorch external-data program {name!r}", _torch_outputs(model, inputs), got, threshold_db
            )
            rel = f"{ET_DIR}/concepts/{name}.pte"
            files[rel] = pte
            programs[name] = rel
    files[BASE_DATA] = base_data
    return files, {"data": BASE_DATA, "method": EXTERNAL_METHOD, "programs": programs}, delegation, scores


def write_executorch_target(
    bundle: Bundle,
    staging: Path,
    *,
    concept_mode: str,
    photos: list[Path],
    threshold_db: float | None,
    progress=None,
    layout: str = "program",
    precision: str = "fp32",
    calibration_photos: Path | None = None,
) -> dict:
    """Write ``executorch/`` into a staging bundle; return the manifest's ``targets.executorch``.

    Args:
        concept_mode: ``separate`` (base weights shared by the concepts), ``merged`` (one
            program, LoRA folded into each concept's method) or ``both``.
        photos: real photos for the parity gate (the same ones as the ONNX target).
        threshold_db: lowest acceptable PSNR against the fp32 PyTorch model; ``None``: the
            precision's default (``PARITY_THRESHOLD_DB``: 35 dB fp32, 30 dB int8).
        layout: how the separate mode is stored: ``program`` (one ``.pte``, a method per
            concept; what Android's stock ``Module`` can open), ``ptd`` (shared
            ``base.ptd`` + one small ``.pte`` per concept) or ``both``.
        precision: ``fp32`` or ``int8`` (PT2E + XNNPACKQuantizer; layout ``program`` only).
        calibration_photos: int8 only: a folder of calibration photos; ``None``: the
            offline training photos (held out from the parity photos).
    Raises:
        ParityError, DelegationError: raised before any file is written (and the
        staging directory is discarded by ``save_bundle``).
    """
    if concept_mode not in ("separate", "merged", "both"):
        raise ValueError(f"concept_mode must be 'separate', 'merged' or 'both', got {concept_mode!r}")
    if layout not in SEPARATE_LAYOUTS:
        raise ValueError(f"layout must be one of {list(SEPARATE_LAYOUTS)}, got {layout!r}")
    if layout != "program" and concept_mode == "merged":
        raise ValueError(f"layout {layout!r} (shared base .ptd) needs the separate concept mode")
    if precision not in PRECISIONS:
        raise ValueError(f"ExecuTorch precision must be one of {list(PRECISIONS)}, got {precision!r}")
    if precision == "int8" and layout != "program":
        raise ValueError(f"int8 ExecuTorch exports support layout 'program' only, got {layout!r}")
    if threshold_db is None:
        threshold_db = PARITY_THRESHOLD_DB[precision]
    _executorch()
    step = progress or (lambda message: None)
    staging = Path(staging)
    inputs = parity_inputs(photos, bundle.config.image_size)
    names = bundle.concept_names
    modes = ("separate", "merged") if concept_mode == "both" else (concept_mode,)
    entry: dict = {"precision": precision, "concept_mode": concept_mode,
                   "source_base_sha256": sha256_file(staging / BASE_WEIGHTS)}
    calibration = None
    if precision == "int8":
        from pocketgan.export.calibration import calibration_set

        calibration = calibration_set(bundle.config.image_size, calibration_photos)
        entry["calibration"] = calibration.manifest_entry()
    files: dict[str, bytes] = {}
    scores: dict[str, dict[str, float]] = {}
    delegation: dict[str, dict] = {}
    for mode in modes:
        if mode == "separate" and layout == "ptd":
            continue
        pte, delegation[mode], models = build_program(
            bundle, mode, names, progress=step, precision=precision,
            calibration=calibration.inputs if calibration else None,
        )
        step(f"parity {mode} program ({len(pte) / 1e6:.2f} MB)")
        got = _run_methods(pte, names, inputs)
        scores[mode] = {
            name: check_parity(
                f"ExecuTorch {_label(precision)}{mode} method {name!r}", _torch_outputs(models[name], inputs), got[name], threshold_db
            )
            for name in names
        }
        files[PROGRAMS[mode]] = pte
        entry["program" if mode == "separate" else "merged_program"] = PROGRAMS[mode]
    if files:
        entry["methods"] = {name: name for name in names}
    if "separate" in modes and layout in ("ptd", "both"):
        ext_files, entry["external_data"], delegation[EXTERNAL_PARITY_KEY], scores[EXTERNAL_PARITY_KEY] = (
            _write_external(bundle, names, inputs, threshold_db, step)
        )
        files.update(ext_files)
    # Every check passed: only now write the files.
    for rel, data in files.items():
        path = staging / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    entry["delegation"] = delegation
    entry["parity"] = {"metric": "psnr", "threshold_db": threshold_db, "photos": [p.name for p in photos], "psnr_db": scores}
    return entry
