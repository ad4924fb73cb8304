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
threshold is ``threshold_db`` for fp32/fp16; for the weight-compressed precisions the
default 35 dB gate is lowered to :data:`COMPRESSED_THRESHOLD_DB` (30 dB), since their
weights differ from PyTorch's on purpose. Elsewhere (Linux) nothing is predicted: the entry
says ``"parity_checked": false`` with the reason and ``psnr_db`` stays empty, and a
structural check runs instead on every saved package (spec version, function names,
default function, input/output names, shapes and dtypes).
"""

from __future__ import annotations

import logging
import platform
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from pocketgan.bundle import BASE_WEIGHTS, INPUT_NAME, OUTPUT_NAME, Bundle
from pocketgan.export.parity import check_parity, parity_inputs
from pocketgan.runtime.errors import PocketganError
from pocketgan.runtime.manifest import sha256_file

COREML_DIR = "coreml"
PACKAGES = {"separate": f"{COREML_DIR}/generator.mlpackage", "merged": f"{COREML_DIR}/merged.mlpackage"}
IOS17_DIR = f"{COREML_DIR}/ios17"
IOS17_MODE = "merged"  # the iOS 17 packages share nothing, so they carry the folded model
PRECISIONS = ("fp32", "fp16", "int8", "palettize4")
FRONTENDS = ("export", "trace")
CONCEPT_MODES = ("separate", "merged", "both")
DEFAULT_THRESHOLD_DB = 35.0
COMPRESSED_THRESHOLD_DB = 30.0
# Core ML spec versions (coremltools' _SPECIFICATION_VERSION_IOS_17/18)
SPEC_VERSIONS = {"iOS17": 8, "iOS18": 9}
# macOS release that runs a model of each target (multifunction needs macOS 15 / iOS 18)
_MACOS_FOR_TARGET = {"iOS17": 14, "iOS18": 15}
_FLOAT32 = "FLOAT32"
# weights below this many elements are left in fp16 by the compressors (coremltools' default)
WEIGHT_THRESHOLD = 2048
WEIGHT_COMPRESSION = {
    "int8": {"method": "linear_symmetric", "dtype": "int8", "granularity": "per_channel",
             "weight_threshold": WEIGHT_THRESHOLD},
    "palettize4": {"method": "kmeans", "nbits": 4, "granularity": "per_tensor",
                   "weight_threshold": WEIGHT_THRESHOLD},
}


class CoreMLStructureError(PocketganError):
    """A saved Core ML package does not have the functions or tensors the manifest promises."""


def _ct():
    """Import coremltools quietly (its import logs about optional native libraries)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            logging.getLogger("coremltools").setLevel(logging.ERROR)
            import coremltools as ct
    except ImportError as e:
        raise PocketganError("the Core ML export needs coremltools: pip install 'pocketgan[coreml]'") from e
    return ct


# --- conversion ----------------------------------------------------------------------------


def _source(model: torch.nn.Module, example: tuple[torch.Tensor, ...], frontend: str):
    """What ``ct.convert`` takes: an ATen ExportedProgram (default) or a TorchScript trace."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if frontend == "trace":
            return torch.jit.trace(model, example)
        return torch.export.export(model, example, strict=False).run_decompositions({})


def _compress(mlmodel, precision: str):
    """Apply the precision's weight compression (``int8``/``palettize4``) to one function."""
    if precision not in WEIGHT_COMPRESSION:
        return mlmodel
    ct = _ct()
    cto = ct.optimize.coreml
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if precision == "int8":
            op = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel",
                                             weight_threshold=WEIGHT_THRESHOLD)
            return cto.linear_quantize_weights(mlmodel, cto.OptimizationConfig(global_config=op))
        op = cto.OpPalettizerConfig(mode="kmeans", nbits=4, granularity="per_tensor", weight_threshold=WEIGHT_THRESHOLD)
        return cto.palettize_weights(mlmodel, cto.OptimizationConfig(global_config=op))


def convert_function(model: torch.nn.Module, example: tuple[torch.Tensor, ...], *, precision: str, target: str,
                     frontend: str = "export"):
    """One single-input model -> a compressed single-function ``ct.models.MLModel`` (not loaded).

    Input ``image`` and output ``edited`` are float32 (1, 3, S, S) whatever the precision
    (Core ML inserts the casts for fp16 compute).
    """
    ct = _ct()
    shape = tuple(example[0].shape)
    source = _source(model, example, frontend)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlmodel = ct.convert(
            source,
            inputs=[ct.TensorType(name=INPUT_NAME, shape=shape, dtype=np.float32)],
            outputs=[ct.TensorType(name=OUTPUT_NAME, dtype=np.float32)],
            convert_to="mlprogram",
            minimum_deployment_target=getattr(ct.target, target),
            compute_precision=ct.precision.FLOAT32 if precision == "fp32" else ct.precision.FLOAT16,
            compute_units=ct.ComputeUnit.CPU_ONLY,
            skip_model_load=True,  # loading (compiling) only works on macOS; parity loads it there
        )
    mlmodel = _rename_io(mlmodel)
    return compact_names(_compress(mlmodel, precision))


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


def _interface_names(spec) -> set[str]:
    """Names the model description refers to (inputs, outputs, states, predicted features),
    over the single function and every function of a multifunction model."""
    desc = spec.description
    names = {desc.predictedFeatureName, desc.predictedProbabilitiesName}
    for d in [desc, *desc.functions]:
        names |= {f.name for f in (*d.input, *d.output, *d.state)}
        names |= {d.predictedFeatureName, d.predictedProbabilitiesName}
    return names - {""}


def compact_program(program, keep: set[str] = frozenset()) -> dict[str, dict[str, str]]:
    """Rename, in place, every internal variable and op of an ML program (``MIL_pb2.Program``)
    to a short name (``v0``, ``v1``, ... per function), like the ONNX exporter's ``_compact``.

    The converter names variables after PyTorch parameters and passes
    (``p_generator_down2_conv_base_layer_weight_to_fp16_quantized``), and each name is
    stored three times (op output, every argument that reads it, the op's ``name``
    attribute): over a third of the program text (tiny: 72 -> 46 KB). Names are not part of
    the model's interface. Left as they are: function input names, the outputs of each
    function's top-level block, and ``keep`` (what the model description refers to). The
    renaming is one-to-one within a function, applied to every definition (op outputs,
    nested block inputs) and every reference (argument bindings, block outputs), so the
    graph is unchanged; an op's ``name`` attribute becomes its first output's new name.
    Constant values, blob offsets and types are not touched. Returns ``{function: {old: new}}``.
    """
    renamed: dict[str, dict[str, str]] = {}
    for fname, function in program.functions.items():
        fixed = set(keep) | {i.name for i in function.inputs}
        for block in function.block_specializations.values():
            fixed |= set(block.outputs)
        rename: dict[str, str] = {}
        counter = iter(range(sys.maxsize))

        def fresh() -> str:
            new = f"v{next(counter)}"
            while new in fixed:
                new = f"v{next(counter)}"
            return new

        def short(name: str) -> str:
            if name in fixed:
                return name
            if name not in rename:
                rename[name] = fresh()
            return rename[name]

        def walk(block) -> None:
            for value in block.inputs:
                value.name = short(value.name)
            for op in block.operations:
                for argument in op.inputs.values():
                    for binding in argument.arguments:
                        if binding.WhichOneof("binding") == "name":
                            binding.name = short(binding.name)
                for value in op.outputs:
                    value.name = short(value.name)
                for nested in op.blocks:
                    walk(nested)
                if "name" in op.attributes:
                    strings = op.attributes["name"].immediateValue.tensor.strings.values
                    if len(strings) == 1:
                        strings[0] = op.outputs[0].name if len(op.outputs) else fresh()
            block.outputs[:] = [short(n) for n in block.outputs]

        for block in function.block_specializations.values():
            walk(block)
        renamed[fname] = rename
    return renamed


def compact_names(mlmodel):
    """:func:`compact_program` on a converted ML program -> a new ``MLModel`` (not loaded)
    over the same weights; the model description is unchanged."""
    ct = _ct()
    spec = mlmodel.get_spec()
    compact_program(spec.mlProgram, _interface_names(spec))
    return ct.models.MLModel(spec, weights_dir=mlmodel.weights_dir, skip_model_load=True)


# An ExecuTorch debug aid that ``MLModel.save`` drops into packages converted from
# torch.export; it is not part of the Core ML model (not in the package's Manifest.json).
_DEBUG_MAPPING = "executorch_debug_handle_mapping.json"


def save_package(mlmodel, path: Path) -> None:
    """Save an ML program as ``.mlpackage`` (only the Core ML model: no debug side files)."""
    mlmodel.save(str(path))
    (Path(path) / _DEBUG_MAPPING).unlink(missing_ok=True)


def merge_functions(packages: dict[str, Path], dest: Path, default: str) -> None:
    """Single-function packages -> one multifunction package (function = dict key)."""
    ct = _ct()
    desc = ct.utils.MultiFunctionDescriptor()
    for function, path in packages.items():
        desc.add_function(str(path), "main", function)
    desc.default_function_name = default
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ct.utils.save_multifunction(desc, str(dest))


# --- sizes and structure -------------------------------------------------------------------


def package_bytes(path: Path) -> int:
    """Bytes of every file of a package (what ships)."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def weight_bytes(path: Path) -> int:
    """Bytes of the package's weight blobs (``Data/com.apple.CoreML/weights``), without the program text."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file() and p.parent.name == "weights")


def _tensor(feature) -> dict:
    ct = _ct()
    array = feature.type.multiArrayType
    dtype = ct.proto.FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(array.dataType)
    return {"name": feature.name, "shape": [int(d) for d in array.shape], "dtype": dtype}


def describe_package(path: Path) -> dict:
    """What a saved package declares: spec version, default function, and per function its
    inputs/outputs (``{name, shape, dtype}``) and ML-program op types. No model is loaded."""
    ct = _ct()
    spec = ct.utils.load_spec(str(path))
    desc = spec.description
    program = spec.mlProgram
    if len(desc.functions):  # multifunction (iOS 18)
        functions = {f.name: (f.input, f.output) for f in desc.functions}
        default = desc.defaultFunctionName
    else:  # single function "main"
        functions = {"main": (desc.input, desc.output)}
        default = "main"
    out = {"specification_version": spec.specificationVersion, "default_function": default, "functions": {}}
    for name, (inputs, outputs) in functions.items():
        ops: set[str] = set()
        if name in program.functions:
            fn = program.functions[name]
            for op in fn.block_specializations[fn.opset].operations:
                ops.add(op.type)
        out["functions"][name] = {"inputs": [_tensor(i) for i in inputs], "outputs": [_tensor(o) for o in outputs],
                                  "ops": sorted(ops)}
    return out


def check_structure(path: Path, functions: list[str], size: int, target: str, precision: str | None = None) -> dict:
    """Raise :class:`CoreMLStructureError` unless the package at ``path`` has exactly
    ``functions`` (``["main"]`` for a single-function package), each taking float32
    ``image`` (1, 3, S, S) and returning float32 ``edited`` of the same shape, the spec
    version of ``target``, and, for compressed precisions, compressed weights in every
    function. Returns :func:`describe_package`'s dict."""
    info = describe_package(path)
    where = Path(path).name
    if info["specification_version"] != SPEC_VERSIONS[target]:
        raise CoreMLStructureError(
            f"{where}: specification version {info['specification_version']}, expected {SPEC_VERSIONS[target]} ({target})"
        )
    if list(info["functions"]) != list(functions):
        raise CoreMLStructureError(f"{where}: functions {list(info['functions'])}, expected {list(functions)}")
    if info["default_function"] != functions[0]:
        raise CoreMLStructureError(f"{where}: default function {info['default_function']!r}, expected {functions[0]!r}")
    want = [{"name": n, "shape": [1, 3, size, size], "dtype": _FLOAT32} for n in (INPUT_NAME, OUTPUT_NAME)]
    for name, fn in info["functions"].items():
        got = fn["inputs"] + fn["outputs"]
        if len(fn["inputs"]) != 1 or len(fn["outputs"]) != 1 or got != want:
            raise CoreMLStructureError(f"{where} function {name!r}: inputs {fn['inputs']}, outputs {fn['outputs']}; "
                                       f"expected input {want[0]} and output {want[1]}")
        if precision in WEIGHT_COMPRESSION and not any(op.startswith("constexpr_") for op in fn["ops"]):
            raise CoreMLStructureError(f"{where} function {name!r}: no compressed ({precision}) weights")
    return info


# --- prediction (macOS only) ---------------------------------------------------------------


def _macos_major() -> int:
    release = platform.mac_ver()[0]
    return int(release.split(".")[0]) if release else 0


def can_predict(target: str) -> tuple[bool, str]:
    """Whether Core ML can run a ``target`` model here, and if not, why."""
    if sys.platform != "darwin":
        return False, (f"Core ML prediction runs only on macOS; exported on {sys.platform}, where only the packages' "
                       "structure was checked (functions, input/output names, shapes, dtypes)")
    if _macos_major() < _MACOS_FOR_TARGET[target]:
        return False, f"{target} models need macOS {_MACOS_FOR_TARGET[target]}+, this is macOS {platform.mac_ver()[0]}"
    return True, ""


def predict(path: Path, function: str | None, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Run one function of a package on ``inputs`` with Core ML (macOS), CPU only."""
    ct = _ct()
    kwargs = {"function_name": function} if function else {}
    model = ct.models.MLModel(str(path), compute_units=ct.ComputeUnit.CPU_ONLY, **kwargs)
    return [np.asarray(model.predict({INPUT_NAME: x})[OUTPUT_NAME], dtype=np.float32) for x in inputs]


def _torch_outputs(model: torch.nn.Module, inputs: list[np.ndarray]) -> list[np.ndarray]:
    with torch.no_grad():
        return [model(torch.from_numpy(x)).numpy() for x in inputs]


def effective_threshold(precision: str, threshold_db: float) -> float:
    """The parity gate for ``precision``: compressed weights get 30 dB when the caller
    left the default 35 dB; an explicit other threshold is used as given."""
    if precision in WEIGHT_COMPRESSION and threshold_db == DEFAULT_THRESHOLD_DB:
        return COMPRESSED_THRESHOLD_DB
    return threshold_db


# --- the target ----------------------------------------------------------------------------


def _build_package(bundle: Bundle, mode: str, names: list[str], work: Path, *, precision: str, frontend: str,
                   step) -> tuple[Path, dict, dict[str, torch.nn.Module], dict]:
    """Convert every concept (iOS 18), compress, merge: (package, sizes, models, timings)."""
    example = bundle.example_inputs()
    singles: dict[str, Path] = {}
    models: dict[str, torch.nn.Module] = {}
    timings = {"convert_s": 0.0}
    for name in names:
        step(f"Core ML convert {mode} {name} ({precision})")
        t0 = time.perf_counter()
        models[name] = bundle.model_for(name, mode)
        mlmodel = convert_function(models[name], example, precision=precision, target="iOS18", frontend=frontend)
        singles[name] = work / f"single-{mode}-{name}.mlpackage"
        save_package(mlmodel, singles[name])
        timings["convert_s"] += time.perf_counter() - t0
    step(f"Core ML merge {len(names)} function(s) ({mode})")
    t0 = time.perf_counter()
    package = work / f"{mode}.mlpackage"
    merge_functions(singles, package, default=names[0])
    timings["merge_s"] = time.perf_counter() - t0
    first = singles[names[0]]
    sizes = {"package": package_bytes(package), "package_weights": weight_bytes(package),
             "single_function_package": package_bytes(first), "single_function_weights": weight_bytes(first)}
    if mode == "separate" and len(names) > 1:
        _check_dedup(sizes, len(names))
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


def write_coreml_target(
    bundle: Bundle,
    staging: Path,
    *,
    concept_mode: str,
    photos: list[Path],
    threshold_db: float,
    progress=None,
    precision: str = "fp16",
    ios17_fallback: bool = True,
    frontend: str = "export",
) -> dict:
    """Write ``coreml/`` into a staging bundle; return the manifest's ``targets.coreml``.

    Args:
        concept_mode: ``separate`` (``coreml/generator.mlpackage``: base weights shared by
            the concept functions), ``merged`` (``coreml/merged.mlpackage``: LoRA folded
            into each function) or ``both``.
        photos: real photos for the parity gate (the same ones as the other targets).
        threshold_db: lowest acceptable PSNR against PyTorch for fp32/fp16; see
            :func:`effective_threshold` for int8/palettize4. Only enforced on macOS.
        precision: ``fp32``, ``fp16`` (default), ``int8`` or ``palettize4``.
        ios17_fallback: also write ``coreml/ios17/<concept>.mlpackage`` (one merged
            single-function package per concept, ``minimum_deployment_target`` iOS 17).
        frontend: ``export`` (``torch.export`` + ``run_decompositions({})``, default) or
            ``trace`` (TorchScript); both convert this generator to the same program.
    Raises:
        ParityError (macOS), CoreMLStructureError, PocketganError: raised before any file
        is written under ``staging``.
    """
    if concept_mode not in CONCEPT_MODES:
        raise ValueError(f"concept_mode must be one of {list(CONCEPT_MODES)}, got {concept_mode!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    if frontend not in FRONTENDS:
        raise ValueError(f"frontend must be one of {list(FRONTENDS)}, got {frontend!r}")
    ct = _ct()
    step = progress or (lambda message: None)
    staging = Path(staging)
    names = bundle.concept_names
    size = bundle.config.image_size
    modes = ("separate", "merged") if concept_mode == "both" else (concept_mode,)
    gate = effective_threshold(precision, threshold_db)
    inputs = parity_inputs(photos, size)
    io = [{"name": n, "shape": [1, 3, size, size], "dtype": "float32"} for n in (INPUT_NAME, OUTPUT_NAME)]
    entry: dict = {
        "precision": precision,
        "compute_precision": "float32" if precision == "fp32" else "float16",
        "concept_mode": concept_mode,
        "source_base_sha256": sha256_file(staging / BASE_WEIGHTS),
        "minimum_deployment_target": "iOS18",
        "converter": {"coremltools": ct.__version__, "frontend": "torch.export" if frontend == "export" else "torchscript"},
    }
    if precision in WEIGHT_COMPRESSION:
        entry["weight_compression"] = dict(WEIGHT_COMPRESSION[precision])
    sizes: dict[str, int] = {}
    scores: dict[str, dict[str, float]] = {}
    not_checked: list[str] = []
    with tempfile.TemporaryDirectory(prefix="pocketgan-coreml-") as tmp:
        work = Path(tmp)
        out = work / COREML_DIR
        out.mkdir()
        for mode in modes:
            package, mode_sizes, models, t = _build_package(bundle, mode, names, work, precision=precision,
                                                            frontend=frontend, step=step)
            check_structure(package, names, size, "iOS18", precision)
            step(f"Core ML {mode} package: converted in {t['convert_s']:.1f} s, merged in {t['merge_s']:.1f} s, "
                 f"{mode_sizes['package'] / 1e6:.2f} MB")
            prefix = "" if mode == "separate" else "merged_"
            sizes.update({prefix + k: v for k, v in mode_sizes.items()})
            ok, why = can_predict("iOS18")
            if ok:
                scores[mode] = {}
                for name in names:
                    step(f"Core ML parity {mode} {name}")
                    got = predict(package, name, inputs)
                    scores[mode][name] = check_parity(f"Core ML {mode} function {name!r} ({precision})",
                                                      _torch_outputs(models[name], inputs), got, gate)
            else:
                not_checked.append(why)
            rel = PACKAGES[mode]
            shutil.move(str(package), str(work / rel))
            entry["package" if mode == "separate" else "merged_package"] = rel
        entry["functions"] = {name: name for name in names}
        entry["default_function"] = names[0]
        entry["inputs"], entry["outputs"] = io[:1], io[1:]
        if ios17_fallback:
            (work / IOS17_DIR).mkdir(parents=True)
            packages: dict[str, str] = {}
            t0 = time.perf_counter()
            ok, why = can_predict("iOS17")
            for name in names:
                step(f"Core ML convert iOS 17 {name} ({precision})")
                model = bundle.model_for(name, IOS17_MODE)
                mlmodel = convert_function(model, bundle.example_inputs(), precision=precision, target="iOS17",
                                           frontend=frontend)
                rel = f"{IOS17_DIR}/{name}.mlpackage"
                save_package(mlmodel, work / rel)
                check_structure(work / rel, ["main"], size, "iOS17", precision)
                if ok:
                    got = predict(work / rel, None, inputs)
                    scores.setdefault("ios17", {})[name] = check_parity(
                        f"Core ML iOS 17 package {name!r} ({precision})", _torch_outputs(model, inputs), got, gate)
                packages[name] = rel
            step(f"Core ML iOS 17 packages: converted in {time.perf_counter() - t0:.1f} s")
            if not ok:
                not_checked.append(why)
            entry["ios17"] = {"minimum_deployment_target": "iOS17", "concept_mode": IOS17_MODE, "packages": packages}
            sizes["ios17_packages"] = sum(package_bytes(work / p) for p in packages.values())
        # Every check passed: only now move the packages into the bundle.
        dest = staging / COREML_DIR
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(out, dest)
    entry["sizes"] = sizes
    entry["parity"] = {"metric": "psnr", "threshold_db": gate, "photos": [p.name for p in photos], "psnr_db": scores}
    entry["parity_checked"] = not not_checked
    if not_checked:
        entry["parity_note"] = "; ".join(dict.fromkeys(not_checked))
    return entry
