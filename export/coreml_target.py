"""Core ML export: one multifunction ``.mlpackage``, a function per concept (iOS 18+),
plus one single-function ``.mlpackage`` per concept for iOS 17.

Layouts (``docs/coreml.md`` says which app should load which):

- ``separate`` (default): ``coreml/generator.mlpackage``. Every concept is converted on
  its own (``bundle.model_for(name, "separate")``: the base generator with the concept's
  LoRA kept as a low-rank branch, padded to the bundle's rank pattern) to an ML program,
  compressed the same way, and the single-function packages are merged with
  ``ct.utils.MultiFunctionDescriptor`` + ``ct.utils.save_multifunction``: function name =
  concept name, default function = the first concept. ``save_multifunction`` runs
  ``const_deduplication`` across functions, so the base weights (identical bytes in every
  function) are stored once; each extra concept costs its LoRA tensors, its folded
  concept-token projections and the function's program text. An iOS 18 app picks the
  concept with ``MLModelConfiguration.functionName``.
- ``merged``: ``coreml/merged.mlpackage``, the same packaging of
  ``bundle.model_for(name, "merged")`` (LoRA folded into the weights: only the layers LoRA
  does not adapt are shared between functions).
- iOS 17 fallback (``ios17_fallback=True``): ``coreml/ios17/<concept>.mlpackage``, one
  single-function package per concept (``minimum_deployment_target=iOS17``; multifunction
  models need iOS 18). Nothing is shared between packages there, so each is the concept's
  *merged* model: smaller and faster than the separate graph, same output up to rounding.

Precisions: ``fp32`` (compute in float32), ``fp16`` (float16 compute and weights; the
default), ``int8`` (fp16 compute, weights linearly quantized to int8 per output channel,
symmetric) and ``palettize4`` (fp16 compute, 4-bit k-means palettized weights). Compression
is applied to each single-function model before merging, identically for every function
(the same base weight gives the same compressed bytes, so it is still deduplicated).
Input ``image`` and output ``edited`` stay float32 tensors (1, 3, S, S) in every precision.
After compression every internal variable and op of each function is renamed ``v0``,
``v1``, ... (:func:`compact_names`; the interface names stay): the converter's long names
were about a third of each function's program text.

Parity: Core ML prediction exists only on macOS. On macOS every function of every package
is run on the real parity photos (``compute_units=CPU_ONLY``) and compared with PyTorch;
below the threshold the export raises :class:`ParityError` before writing anything. The
threshold is ``parity_threshold_db(precision, requested)`` (``pocketgan.runtime.targets``),
as for every target: a requested threshold is used as given; by default 35 dB for
fp32/fp16 and 30 dB for the weight-compressed precisions, whose weights differ from
PyTorch's on purpose. Elsewhere (Linux) nothing is predicted: the entry
says ``"parity_checked": false`` with the reason and ``psnr_db`` stays empty, and a
structural check runs instead on every saved package (spec version, function names,
default function, input/output names, shapes and dtypes).

:func:`convert_function` is the public ``(model, example inputs) -> MLModel`` step (the
pix2pix benchmark peer uses it); :class:`CoreMLTarget` is the target run by
``pocketgan.export.target.export_target``.
"""

from __future__ import annotations

import platform
import shutil
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar

import numpy as np
import torch

from pocketgan._quiet import coreml_progress, library_warnings_filtered
from pocketgan.bundle import INPUT_NAME, OUTPUT_NAME, Bundle
from pocketgan.concepts.mixing import WEIGHTS_INPUT, mix_model, mix_weights
from pocketgan.export.coreml_names import compact_names
from pocketgan.export.coreml_structure import (  # noqa: F401  (re-exported: the target's public API)
    COMPRESSED_PRECISIONS,
    MIX_FUNCTION,
    SPEC_VERSIONS,
    CoreMLStructureError,
    _ct,
    check_structure,
    describe_package,
    package_bytes,
    weight_bytes,
)
from pocketgan.export.target import ExportJob, export_target, gate_mixes
from pocketgan.runtime.errors import PocketganError

COREML_DIR = "coreml"
PACKAGES = {"separate": f"{COREML_DIR}/generator.mlpackage", "merged": f"{COREML_DIR}/merged.mlpackage"}
IOS17_DIR = f"{COREML_DIR}/ios17"
IOS17_MODE = "merged"  # the iOS 17 packages share nothing, so they carry the folded model
FRONTENDS = ("export", "trace")
# macOS release that runs a model of each target (multifunction needs macOS 15 / iOS 18)
_MACOS_FOR_TARGET = {"iOS17": 14, "iOS18": 15}
# weights below this many elements are left in fp16 by the compressors (coremltools' default)
WEIGHT_THRESHOLD = 2048
WEIGHT_COMPRESSION = {
    "int8": {
        "method": "linear_symmetric",
        "dtype": "int8",
        "granularity": "per_channel",
        "weight_threshold": WEIGHT_THRESHOLD,
    },
    "palettize4": {"method": "kmeans", "nbits": 4, "granularity": "per_tensor", "weight_threshold": WEIGHT_THRESHOLD},
}
assert tuple(WEIGHT_COMPRESSION) == COMPRESSED_PRECISIONS, "the structure check must know every compression"


# --- conversion ----------------------------------------------------------------------------


def _source(model: torch.nn.Module, example: tuple[torch.Tensor, ...], frontend: str):
    """What ``ct.convert`` takes: an ATen ExportedProgram (default) or a TorchScript trace."""
    with library_warnings_filtered(), torch.no_grad():
        if frontend == "trace":
            return torch.jit.trace(model, example)
        return torch.export.export(model, example, strict=False).run_decompositions({})


def _compress(mlmodel, precision: str):
    """Apply the precision's weight compression (``int8``/``palettize4``) to one function."""
    if precision not in WEIGHT_COMPRESSION:
        return mlmodel
    ct = _ct()
    cto = ct.optimize.coreml
    with library_warnings_filtered():
        if precision == "int8":
            op = cto.OpLinearQuantizerConfig(
                mode="linear_symmetric", dtype="int8", granularity="per_channel", weight_threshold=WEIGHT_THRESHOLD
            )
            return cto.linear_quantize_weights(mlmodel, cto.OptimizationConfig(global_config=op))
        op = cto.OpPalettizerConfig(mode="kmeans", nbits=4, granularity="per_tensor", weight_threshold=WEIGHT_THRESHOLD)
        return cto.palettize_weights(mlmodel, cto.OptimizationConfig(global_config=op))


def convert_function(
    model: torch.nn.Module,
    example: tuple[torch.Tensor, ...],
    *,
    precision: str,
    target: str,
    frontend: str = "export",
    progress: Callable[[str], None] | None = None,
    input_names: tuple[str, ...] = (INPUT_NAME,),
):
    """One model -> a compressed single-function ``ct.models.MLModel`` (not loaded); its inputs
    are named ``input_names`` (the mix function's are ``image`` and ``concept_weights``).

    Input ``image`` and output ``edited`` are float32 (1, 3, S, S) whatever the precision
    (Core ML inserts the casts for fp16 compute). Core ML's own progress bars are not drawn;
    their titles go to ``progress`` (``None``: nowhere), see :func:`pocketgan._quiet.coreml_progress`.
    """
    ct = _ct()
    source = _source(model, example, frontend)
    with library_warnings_filtered(), coreml_progress(progress), warnings.catch_warnings():
        # ct.convert keeps the program's weights in a TemporaryDirectory it never closes
        # (coremltools/converters/mil/converter.py); it is removed, with this warning, when
        # ct.convert returns, after the weights were copied into the package. Harmless.
        warnings.filterwarnings("ignore", r"Implicitly cleaning up <TemporaryDirectory", ResourceWarning)
        mlmodel = ct.convert(
            source,
            inputs=[
                ct.TensorType(name=name, shape=tuple(x.shape), dtype=np.float32)
                for name, x in zip(input_names, example)
            ],
            outputs=[ct.TensorType(name=OUTPUT_NAME, dtype=np.float32)],
            convert_to="mlprogram",
            minimum_deployment_target=getattr(ct.target, target),
            compute_precision=ct.precision.FLOAT32 if precision == "fp32" else ct.precision.FLOAT16,
            compute_units=ct.ComputeUnit.CPU_ONLY,
            skip_model_load=True,  # loading (compiling) only works on macOS; parity loads it there
        )
        if len(input_names) == 1:
            mlmodel = _rename_io(mlmodel)
        mlmodel = _compress(mlmodel, precision)  # compression runs MIL passes too (their bars)
    return compact_names(mlmodel)


def _rename_io(mlmodel):
    """Make sure the single input/output carry the manifest's names (the converter already
    applies ``inputs=``/``outputs=`` names today; this guards against a frontend that does not)."""
    ct = _ct()
    spec = mlmodel.get_spec()
    ins, outs = [i.name for i in spec.description.input], [o.name for o in spec.description.output]
    if ins == [INPUT_NAME] and outs == [OUTPUT_NAME]:
        return mlmodel
    if len(ins) != 1 or len(outs) != 1:
        raise CoreMLStructureError(f"converted model has inputs {ins} and outputs {outs}, expected one of each")
    ct.utils.rename_feature(spec, ins[0], INPUT_NAME, rename_outputs=False)
    ct.utils.rename_feature(spec, outs[0], OUTPUT_NAME, rename_inputs=False)
    return ct.models.MLModel(spec, weights_dir=mlmodel.weights_dir, skip_model_load=True)


# An ExecuTorch debug aid that ``MLModel.save`` drops into packages converted from
# torch.export; it is not part of the Core ML model (not in the package's Manifest.json).
_DEBUG_MAPPING = "executorch_debug_handle_mapping.json"


def save_package(mlmodel, path: Path) -> None:
    """Save an ML program as ``.mlpackage`` (only the Core ML model: no debug side files)."""
    mlmodel.save(str(path))
    (Path(path) / _DEBUG_MAPPING).unlink(missing_ok=True)


def merge_functions(
    packages: dict[str, Path], dest: Path, default: str, progress: Callable[[str], None] | None = None
) -> None:
    """Single-function packages -> one multifunction package (function = dict key); the
    titles of Core ML's progress bars go to ``progress`` (``None``: nowhere)."""
    ct = _ct()
    desc = ct.utils.MultiFunctionDescriptor()
    for function, path in packages.items():
        desc.add_function(str(path), "main", function)
    desc.default_function_name = default
    with library_warnings_filtered(), coreml_progress(progress):
        ct.utils.save_multifunction(desc, str(dest))


# --- prediction (macOS only) ---------------------------------------------------------------


def _macos_major() -> int:
    release = platform.mac_ver()[0]
    return int(release.split(".")[0]) if release else 0


def can_predict(target: str) -> tuple[bool, str]:
    """Whether Core ML can run a ``target`` model here, and if not, why."""
    if sys.platform != "darwin":
        return False, (
            f"Core ML prediction runs only on macOS; exported on {sys.platform}, where only the packages' "
            "structure was checked (functions, input/output names, shapes, dtypes)"
        )
    if _macos_major() < _MACOS_FOR_TARGET[target]:
        return False, f"{target} models need macOS {_MACOS_FOR_TARGET[target]}+, this is macOS {platform.mac_ver()[0]}"
    return True, ""


def predict(path: Path, function: str | None, inputs: list[np.ndarray], extra: dict | None = None) -> list[np.ndarray]:
    """Run one function of a package on ``inputs`` (plus ``extra`` inputs) with Core ML (macOS), CPU only."""
    ct = _ct()
    kwargs = {"function_name": function} if function else {}
    model = ct.models.MLModel(str(path), compute_units=ct.ComputeUnit.CPU_ONLY, **kwargs)
    return [np.asarray(model.predict({INPUT_NAME: x, **(extra or {})})[OUTPUT_NAME], dtype=np.float32) for x in inputs]


def _build_package(
    bundle: Bundle, mode: str, names: list[str], work: Path, *, precision: str, frontend: str, step
) -> tuple[Path, dict, dict[str, torch.nn.Module], dict]:
    """Convert every concept (iOS 18), compress, merge: (package, sizes, models, timings)."""
    example = bundle.example_inputs()
    singles: dict[str, Path] = {}
    models: dict[str, torch.nn.Module] = {}
    timings = {"convert_s": 0.0}
    for name in names:
        step(f"Core ML convert {mode} {name} ({precision})")
        t0 = time.perf_counter()
        models[name] = bundle.model_for(name, mode)
        mlmodel = convert_function(
            models[name], example, precision=precision, target="iOS18", frontend=frontend, progress=step
        )
        singles[name] = work / f"single-{mode}-{name}.mlpackage"
        save_package(mlmodel, singles[name])
        timings["convert_s"] += time.perf_counter() - t0
    if mode == "separate" and bundle.neutral is not None and names == bundle.concept_names:
        step(f"Core ML convert the mix function {MIX_FUNCTION} ({precision})")
        t0 = time.perf_counter()
        models[MIX_FUNCTION] = mix_model(bundle)
        mlmodel = convert_function(
            models[MIX_FUNCTION],
            (*example, torch.zeros(len(names))),
            precision=precision,
            target="iOS18",
            frontend=frontend,
            progress=step,
            input_names=(INPUT_NAME, WEIGHTS_INPUT),
        )
        singles[MIX_FUNCTION] = work / f"single-{mode}-mix.mlpackage"
        save_package(mlmodel, singles[MIX_FUNCTION])
        timings["convert_s"] += time.perf_counter() - t0
    step(f"Core ML merge {len(singles)} function(s) ({mode})")
    t0 = time.perf_counter()
    package = work / f"{mode}.mlpackage"
    merge_functions(singles, package, default=names[0], progress=step)
    timings["merge_s"] = time.perf_counter() - t0
    first = singles[names[0]]
    sizes = {
        "package": package_bytes(package),
        "package_weights": weight_bytes(package),
        "single_function_package": package_bytes(first),
        "single_function_weights": weight_bytes(first),
    }
    if mode == "separate" and len(singles) > 1:
        _check_dedup(sizes, len(singles))
    return package, sizes, models, timings


def _check_dedup(sizes: dict, k: int) -> None:
    """Separate mode: every function has the same base weights, so K functions must store
    them once. Fail if the weight blob grew by more than half a base per extra concept."""
    single, multi = sizes["single_function_weights"], sizes["package_weights"]
    if multi > single + 0.5 * single * (k - 1):
        raise PocketganError(
            f"Core ML multifunction package: {k} functions hold {multi} bytes of weights vs {single} for one; "
            "the base weights were not deduplicated (were the functions compressed differently?)"
        )


@dataclass
class CoreMLTarget:
    """``coreml/``: a multifunction package per concept mode (a function per concept, iOS
    18) and, with ``ios17_fallback``, one merged single-function package per concept.

    Attributes:
        ios17_fallback: also write ``coreml/ios17/<concept>.mlpackage`` (one merged
            single-function package per concept, ``minimum_deployment_target`` iOS 17).
        frontend: ``export`` (``torch.export`` + ``run_decompositions({})``, default) or
            ``trace`` (TorchScript); both convert this generator to the same program.
    """

    name: ClassVar[str] = "coreml"
    parity_may_be_skipped: ClassVar[bool] = True  # Core ML predicts only on macOS
    ios17_fallback: bool = True
    frontend: str = "export"

    @classmethod
    def from_config(cls, config) -> CoreMLTarget:
        return cls(ios17_fallback=config.coreml_ios17_fallback)

    def check(self, concept_mode: str, precision: str) -> None:
        if self.frontend not in FRONTENDS:
            raise ValueError(f"frontend must be one of {list(FRONTENDS)}, got {self.frontend!r}")
        _ct()

    def build(self, job: ExportJob, work: Path) -> dict:
        size = job.bundle.config.image_size
        entry = job.entry_head(compute_precision="float32" if job.precision == "fp32" else "float16")
        entry["minimum_deployment_target"] = "iOS18"
        entry["converter"] = {
            "coremltools": _ct().__version__,
            "frontend": "torch.export" if self.frontend == "export" else "torchscript",
        }
        if job.precision in WEIGHT_COMPRESSION:
            entry["weight_compression"] = dict(WEIGHT_COMPRESSION[job.precision])
        sizes: dict[str, int] = {}
        self._has_mix = False
        for mode in job.modes:
            prefix = "" if mode == "separate" else "merged_"
            sizes.update({prefix + k: v for k, v in self._multifunction(job, work, mode).items()})
            entry["package" if mode == "separate" else "merged_package"] = PACKAGES[mode]
        entry["functions"] = {name: name for name in job.names}
        entry["default_function"] = job.names[0]
        if self._has_mix:
            entry["mix"] = {"function": MIX_FUNCTION, "weights_input": WEIGHTS_INPUT, "concepts": list(job.names)}
        io = [{"name": n, "shape": [1, 3, size, size], "dtype": "float32"} for n in (INPUT_NAME, OUTPUT_NAME)]
        entry["inputs"], entry["outputs"] = io[:1], io[1:]
        if self.ios17_fallback:
            entry["ios17"], sizes["ios17_packages"] = self._ios17(job, work)
        entry["sizes"] = sizes
        return entry

    def _multifunction(self, job: ExportJob, work: Path, mode: str) -> dict[str, int]:
        """The iOS 18 package of ``mode``, checked (structure; parity where Core ML runs); its sizes."""
        package, sizes, models, t = _build_package(
            job.bundle, mode, job.names, work, precision=job.precision, frontend=self.frontend, step=job.step
        )
        mix = MIX_FUNCTION in models
        functions = job.names + ([MIX_FUNCTION] if mix else [])
        check_structure(
            package, functions, job.bundle.config.image_size, "iOS18", job.precision, len(job.names) if mix else 0
        )
        job.step(
            f"Core ML {mode} package: converted in {t['convert_s']:.1f} s, merged in {t['merge_s']:.1f} s, "
            f"{sizes['package'] / 1e6:.2f} MB"
        )
        ok, why = can_predict("iOS18")
        if ok:
            for name in job.names:
                job.step(f"Core ML parity {mode} {name}")
                got = predict(package, name, job.gate.inputs)
                job.gate.check(mode, name, f"Core ML {mode} function {name!r} ({job.precision})", models[name], got)
            if mix:
                for key, weights in gate_mixes(job.names):
                    w = mix_weights(job.names, weights).numpy()
                    got = predict(package, MIX_FUNCTION, job.gate.inputs, extra={WEIGHTS_INPUT: w})
                    job.gate.check("mix", key, f"Core ML mix {key}", job.bundle.model_for_mix(weights), got)
        else:
            job.gate.skip(why)
        shutil.move(str(package), str(work / PACKAGES[mode]))
        self._has_mix = self._has_mix or mix
        return sizes

    def _ios17(self, job: ExportJob, work: Path) -> tuple[dict, int]:
        """One merged single-function iOS 17 package per concept, checked: (manifest part, bytes)."""
        (work / IOS17_DIR).mkdir(parents=True)
        packages: dict[str, str] = {}
        t0 = time.perf_counter()
        ok, why = can_predict("iOS17")
        for name in job.names:
            job.step(f"Core ML convert iOS 17 {name} ({job.precision})")
            model = job.bundle.model_for(name, IOS17_MODE)
            mlmodel = convert_function(
                model,
                job.bundle.example_inputs(),
                precision=job.precision,
                target="iOS17",
                frontend=self.frontend,
                progress=job.step,
            )
            rel = f"{IOS17_DIR}/{name}.mlpackage"
            save_package(mlmodel, work / rel)
            check_structure(work / rel, ["main"], job.bundle.config.image_size, "iOS17", job.precision)
            if ok:
                got = predict(work / rel, None, job.gate.inputs)
                job.gate.check("ios17", name, f"Core ML iOS 17 package {name!r} ({job.precision})", model, got)
            packages[name] = rel
        job.step(f"Core ML iOS 17 packages: converted in {time.perf_counter() - t0:.1f} s")
        if not ok:
            job.gate.skip(why)
        entry = {"minimum_deployment_target": "iOS17", "concept_mode": IOS17_MODE, "packages": packages}
        return entry, sum(package_bytes(work / p) for p in packages.values())


def write_coreml_target(
    bundle: Bundle, staging: Path, *, ios17_fallback: bool = True, frontend: str = "export", **common
) -> dict:
    """Write ``coreml/`` into a staging bundle; return the manifest's ``targets.coreml``.

    ``common``: ``concept_mode``, ``photos``, ``threshold_db`` (``None``: 35 dB fp32/fp16,
    30 dB int8/palettize4; only enforced where Core ML predicts, macOS), ``precision``
    (``fp16`` by default, ``fp32``, ``int8``, ``palettize4``), ``progress``, as
    :func:`~pocketgan.export.target.export_target` takes them. Raises ``ParityError``
    (macOS), :class:`CoreMLStructureError` or ``PocketganError`` before any file is written.
    """
    return export_target(CoreMLTarget(ios17_fallback, frontend), bundle, staging, **common)


TARGET = CoreMLTarget
