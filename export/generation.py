"""Export a one-step text-to-image generator to ONNX, ExecuTorch and Core ML, parity-gated.

Each backend gets the same model, :class:`~pocketgan.generation.student.OneStepGenerator`
(the diffusers UNet with its timestep baked in as a constant, ``pixel_unshuffle`` in and
``pixel_shuffle`` out), with the same interface (``docs/bundle-format.md``, "Generation
bundles"):

    noise          float32 (1, 3, S, S)         standard normal (``seeded_noise``)
    prompt_states  float32 (1, TOKENS, width)   the prompt table's rows
    -> image       float32 (1, 3, S, S)         in [-1, 1]

The converters are the editing exporters' own (:func:`~pocketgan.export.onnx_target.export_onnx_model`,
:func:`~pocketgan.export.executorch_target.export_executorch_program`,
:func:`~pocketgan.export.coreml_target.convert_function`); only the output, which they name
``edited``, is renamed ``image``.

Parity gate (as apple/ml-stable-diffusion checks its conversions): every artifact is run by
its own runtime on the bundle's golden (prompt, seed) cases and compared with PyTorch; the
export fails below ``parity_threshold_db`` (35 dB for fp32/fp16) with :class:`ParityError`
and nothing is written. Core ML predicts only on macOS: elsewhere the package's structure
is checked (spec version, input/output names, shapes, dtypes) and the entry records
``parity_psnr_db: null`` with the reason, as the editing Core ML target does.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from pocketgan._quiet import library_warnings_filtered
from pocketgan.export.parity import ParityError, psnr
from pocketgan.runtime.targets import TARGET_SPECS, TARGETS, parity_threshold_db

__all__ = [
    "GENERATION_PRECISIONS",
    "GoldenGate",
    "ParityError",
    "export_generation_targets",
    "run_generation_export",
]

INPUT_NAMES = ("noise", "prompt_states")
OUTPUT_NAME = "image"
#: the name the editing converters give their output (renamed OUTPUT_NAME here)
_CONVERTED_OUTPUT = "edited"
ONNX_MODEL = "onnx/generator.onnx"
ET_PROGRAM = "executorch/generator.pte"
ET_METHOD = "forward"
COREML_PACKAGE = "coreml/generator.mlpackage"
#: one single-function package: no multifunction needed, so iOS 17 / macOS 14 run it
COREML_DEPLOYMENT_TARGET = "iOS17"
#: what each target exports a generator at (first: the default); int8 is not offered yet
GENERATION_PRECISIONS = {"onnx": ("fp32",), "executorch": ("fp32",), "coreml": ("fp16", "fp32")}


@dataclass
class GoldenGate:
    """The golden cases every export is gated on, and PyTorch's images of them.

    Attributes:
        cases: ``(prompt, seed)`` pairs.
        noise: per case, float32 (1, 3, S, S) from ``seeded_noise(seed)``.
        states: per case, float32 (1, tokens, width), the prompt table's rows.
        reference: per case, the PyTorch generator's image, float32 (1, 3, S, S) in [-1, 1].
        threshold_db: the caller's gate; ``None``: the precision's default (35 dB).
    """

    cases: list[tuple[str, int]]
    noise: list[np.ndarray]
    states: list[np.ndarray]
    reference: list[np.ndarray]
    threshold_db: float | None = None

    @classmethod
    def build(cls, generator, table: np.ndarray, cases, threshold_db: float | None = None) -> GoldenGate:
        """Inputs and PyTorch references of ``cases`` for ``generator`` and ``table`` (buckets + 1, width)."""
        from pocketgan.runtime.prompt_hashing import prompt_states
        from pocketgan.runtime.seeded_noise import seeded_noise

        side = generator.arch.image_size
        cases = [(str(p), int(s)) for p, s in cases]
        noise = [seeded_noise(s, (1, 3, side, side)) for _, s in cases]
        states = [prompt_states(table, p) for p, _ in cases]
        was_training = generator.training
        generator.eval()
        try:
            with torch.no_grad():
                reference = [generator(torch.from_numpy(n), torch.from_numpy(s)).numpy() for n, s in zip(noise, states)]
        finally:
            generator.train(was_training)
        return cls(cases, noise, states, reference, threshold_db)

    def examples(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The first case's inputs as tensors (what the exporters trace)."""
        # C strides (ExecuTorch refuses the stride 0 numpy may give a size-1 axis)
        dense = torch.contiguous_format
        return tuple(torch.from_numpy(x).clone(memory_format=dense) for x in (self.noise[0], self.states[0]))

    def check(self, where: str, outputs: list[np.ndarray], precision: str) -> dict:
        """The entry's parity fields; raises :class:`ParityError` below the threshold."""
        threshold = parity_threshold_db(precision, self.threshold_db)
        scores = [psnr(r, c) for r, c in zip(self.reference, outputs, strict=True)]
        worst = min(scores)
        if worst < threshold:
            case = self.cases[scores.index(worst)]
            raise ParityError(
                f"{where}: exported output differs from PyTorch: {worst:.2f} dB PSNR on golden case "
                f"{case[0]!r} seed {case[1]}, below the {threshold:.1f} dB gate; nothing was written"
            )
        return {"parity_threshold_db": threshold, "parity_psnr_db": round(worst, 2) if np.isfinite(worst) else 999.0}


def _onnx_rename_output(proto, old: str, new: str) -> None:
    """Rename a graph output (and every reference to it) in place."""
    for node in proto.graph.node:
        node.output[:] = [new if n == old else n for n in node.output]
        node.input[:] = [new if n == old else n for n in node.input]
    for value in [*proto.graph.output, *proto.graph.value_info]:
        if value.name == old:
            value.name = new


def export_onnx(generator, gate: GoldenGate, staging: Path, precision: str, step) -> dict:
    """``onnx/generator.onnx`` (torch.onnx dynamo, opset 18), gated with ONNX Runtime."""
    import onnx

    from pocketgan.export.onnx_target import OPSET, export_onnx_model
    from pocketgan.runtime.backends.onnx import open_session, session_options

    step("ONNX: export the generator (torch.onnx, dynamo)")
    proto = export_onnx_model(generator, gate.examples(), INPUT_NAMES)
    _onnx_rename_output(proto, _CONVERTED_OUTPUT, OUTPUT_NAME)
    onnx.checker.check_model(proto)
    data = proto.SerializeToString()
    session = open_session(data, ONNX_MODEL, session_options(None))
    got = [session.run([OUTPUT_NAME], dict(zip(INPUT_NAMES, x)))[0] for x in zip(gate.noise, gate.states)]
    entry = {"model": ONNX_MODEL, "opset": OPSET, "precision": precision}
    entry |= gate.check("ONNX generator", got, precision)
    (staging / ONNX_MODEL).parent.mkdir(parents=True, exist_ok=True)
    (staging / ONNX_MODEL).write_bytes(data)
    return entry


def export_executorch(generator, gate: GoldenGate, staging: Path, precision: str, step) -> dict:
    """``executorch/generator.pte`` (XNNPACK-lowered, method ``forward``), gated with the ExecuTorch runtime."""
    from executorch.runtime import Runtime

    from pocketgan._quiet import start_executorch_threadpool
    from pocketgan.export.executorch_target import export_executorch_program

    step("ExecuTorch: torch.export and lower to XNNPACK")
    pte, delegation = export_executorch_program(generator, gate.examples())
    start_executorch_threadpool()
    method = Runtime.get().load_program(pte).load_method(ET_METHOD)
    got = [
        method.execute([torch.from_numpy(n.copy()), torch.from_numpy(s.copy())])[0].numpy().copy()
        for n, s in zip(gate.noise, gate.states)
    ]
    entry = {"program": ET_PROGRAM, "method": ET_METHOD, "precision": precision, "delegation": delegation}
    entry |= gate.check("ExecuTorch generator", got, precision)
    (staging / ET_PROGRAM).parent.mkdir(parents=True, exist_ok=True)
    (staging / ET_PROGRAM).write_bytes(pte)
    return entry


def export_coreml(generator, gate: GoldenGate, staging: Path, precision: str, step) -> dict:
    """``coreml/generator.mlpackage`` (ML program, iOS 17): structure-checked everywhere, gated on macOS."""
    import shutil

    from pocketgan.export.coreml_structure import SPEC_VERSIONS, CoreMLStructureError, _ct, describe_package
    from pocketgan.export.coreml_target import can_predict, convert_function, save_package

    ct = _ct()
    step(f"Core ML: convert the generator ({precision})")
    examples = gate.examples()
    mlmodel = convert_function(
        generator,
        examples,
        precision=precision,
        target=COREML_DEPLOYMENT_TARGET,
        input_names=INPUT_NAMES,
        progress=step,
    )
    spec = mlmodel.get_spec()
    ct.utils.rename_feature(spec, _CONVERTED_OUTPUT, OUTPUT_NAME, rename_inputs=False)
    mlmodel = ct.models.MLModel(spec, weights_dir=mlmodel.weights_dir, skip_model_load=True)
    with tempfile.TemporaryDirectory(prefix=".coreml-work-", dir=staging) as tmp:
        package = Path(tmp) / "generator.mlpackage"
        save_package(mlmodel, package)
        info = describe_package(package)
        want = [{"name": n, "shape": list(x.shape), "dtype": "FLOAT32"} for n, x in zip(INPUT_NAMES, examples)]
        want_out = [{"name": OUTPUT_NAME, "shape": list(examples[0].shape), "dtype": "FLOAT32"}]
        main, version = info["functions"].get("main", {}), SPEC_VERSIONS[COREML_DEPLOYMENT_TARGET]
        if info["specification_version"] != version or [main.get("inputs"), main.get("outputs")] != [want, want_out]:
            raise CoreMLStructureError(
                f"Core ML generator package: spec {info['specification_version']}, inputs {main.get('inputs')}, "
                f"outputs {main.get('outputs')}; expected spec {version} ({COREML_DEPLOYMENT_TARGET}), "
                f"inputs {want}, outputs {want_out}"
            )
        entry = {"package": COREML_PACKAGE, "minimum_deployment_target": COREML_DEPLOYMENT_TARGET}
        entry["precision"] = precision
        ok, why = can_predict(COREML_DEPLOYMENT_TARGET)
        if ok:
            model = ct.models.MLModel(str(package), compute_units=ct.ComputeUnit.CPU_ONLY)
            got = [
                np.asarray(model.predict(dict(zip(INPUT_NAMES, x)))[OUTPUT_NAME], dtype=np.float32)
                for x in zip(gate.noise, gate.states)
            ]
            entry |= gate.check(f"Core ML generator ({precision})", got, precision)
        else:
            entry |= {"parity_threshold_db": parity_threshold_db(precision, gate.threshold_db), "parity_psnr_db": None}
            entry["parity_note"] = why
        (staging / COREML_PACKAGE).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(package), str(staging / COREML_PACKAGE))
    return entry


EXPORTERS = {"onnx": export_onnx, "executorch": export_executorch, "coreml": export_coreml}


def check_targets(targets, coreml_precision: str | None = None) -> tuple[str, ...]:
    """``targets`` in canonical order, each known; raises ``ValueError`` before any work."""
    targets = tuple(targets)
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        raise ValueError(f"unknown export target(s) {unknown}; available: {list(TARGETS)}")
    if coreml_precision is not None and coreml_precision not in GENERATION_PRECISIONS["coreml"]:
        raise ValueError(
            f"a generator's Core ML precision is one of {list(GENERATION_PRECISIONS['coreml'])}, "
            f"got {coreml_precision!r}"
        )
    return tuple(t for t in TARGETS if t in targets)


def export_generation_targets(
    generator,
    gate: GoldenGate,
    staging: Path,
    targets,
    *,
    coreml_precision: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, dict]:
    """Write each target's files into the staging bundle ``staging``; return their manifest
    entries (``targets`` of the manifest). Raises :class:`ParityError` (or the converter's
    error) at the first target that fails: the caller's staging directory is then discarded."""
    from pocketgan._quiet import quiet_library_logs

    quiet_library_logs()  # before executorch / coremltools import torchao, which logs then
    step = progress or (lambda message: None)
    entries = {}
    with library_warnings_filtered():
        for name in check_targets(targets, coreml_precision):
            precision = coreml_precision if name == "coreml" and coreml_precision else GENERATION_PRECISIONS[name][0]
            entries[name] = EXPORTERS[name](generator, gate, Path(staging), precision, step)
            score = entries[name]["parity_psnr_db"]
            step(
                f"{TARGET_SPECS[name].title}: "
                + (f"parity {score:.1f} dB" if score is not None else "parity not checked")
            )
    return entries


def run_generation_export(
    bundle_dir: str | Path,
    targets,
    *,
    out: str | Path | None = None,
    threshold_db: float | None = None,
    coreml_precision: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Add ``targets`` to the generation bundle at ``bundle_dir``; return the new manifest.

    The bundle is rewritten atomically (in place, or at ``out``): its generator, table and
    golden cases as they are, the targets it already had copied (checksums verified), the
    requested ones exported (again, if it had them) and parity-gated. On any failure the
    bundle at the destination is the one that was there.
    """
    from pocketgan.generation.bundle import load_generation_bundle, rewrite_generation_bundle

    targets = check_targets(targets, coreml_precision)
    if not targets:
        raise ValueError("name at least one export target")
    generator, table, manifest = load_generation_bundle(bundle_dir)
    return rewrite_generation_bundle(
        bundle_dir,
        Path(out) if out is not None else Path(bundle_dir),
        generator,
        table,
        manifest,
        targets,
        threshold_db=threshold_db,
        coreml_precision=coreml_precision,
        progress=progress,
    )
