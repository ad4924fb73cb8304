"""What a saved Core ML package holds, read without loading it (any platform).

:func:`check_structure` is the check every Core ML export runs on Linux in place of
prediction (spec version, functions, default function, input and output names, shapes
and dtypes, compressed weights); :func:`describe_package` what it reads; the byte counts
the manifest's ``sizes`` report.
"""

from __future__ import annotations

from pathlib import Path

from pocketgan._quiet import library_warnings_filtered, quiet_library_logs
from pocketgan.bundle import INPUT_NAME, OUTPUT_NAME
from pocketgan.concepts.mixing import WEIGHTS_INPUT
from pocketgan.runtime.errors import PocketganError

# Core ML spec versions (coremltools' _SPECIFICATION_VERSION_IOS_17/18)
SPEC_VERSIONS = {"iOS17": 8, "iOS18": 9}
_FLOAT32 = "FLOAT32"
#: precisions whose weights are compressed (``coreml_target.WEIGHT_COMPRESSION``'s keys)
COMPRESSED_PRECISIONS = ("int8", "palettize4")
#: the separate package's function of every concept's weight (strength, blending); not a concept name
MIX_FUNCTION = "_mix"


class CoreMLStructureError(PocketganError):
    """A saved Core ML package does not have the functions or tensors the manifest promises."""


def _ct():
    """Import coremltools quietly (its import logs about optional native libraries)."""
    quiet_library_logs()
    try:
        with library_warnings_filtered():
            import coremltools as ct
    except ImportError as e:
        raise PocketganError("the Core ML export needs coremltools: pip install 'pocketgan[coreml]'") from e
    return ct


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
        out["functions"][name] = {
            "inputs": [_tensor(i) for i in inputs],
            "outputs": [_tensor(o) for o in outputs],
            "ops": sorted(ops),
        }
    return out


def check_structure(
    path: Path, functions: list[str], size: int, target: str, precision: str | None = None, mix_concepts: int = 0
) -> dict:
    """Raise :class:`CoreMLStructureError` unless the package at ``path`` has exactly
    ``functions`` (``["main"]`` for a single-function package), each taking float32
    ``image`` (1, 3, S, S) and returning float32 ``edited`` of the same shape, the spec
    version of ``target``, and, for compressed precisions, compressed weights in every
    function. With ``mix_concepts``, the last function is the mix function, which also takes
    float32 ``concept_weights`` of that many values. Returns :func:`describe_package`'s dict."""
    info = describe_package(path)
    where = Path(path).name
    if info["specification_version"] != SPEC_VERSIONS[target]:
        raise CoreMLStructureError(
            f"{where}: specification version {info['specification_version']}, "
            f"expected {SPEC_VERSIONS[target]} ({target})"
        )
    if list(info["functions"]) != list(functions):
        raise CoreMLStructureError(f"{where}: functions {list(info['functions'])}, expected {list(functions)}")
    if info["default_function"] != functions[0]:
        raise CoreMLStructureError(f"{where}: default function {info['default_function']!r}, expected {functions[0]!r}")
    want = [{"name": n, "shape": [1, 3, size, size], "dtype": _FLOAT32} for n in (INPUT_NAME, OUTPUT_NAME)]
    weights = {"name": WEIGHTS_INPUT, "shape": [mix_concepts], "dtype": _FLOAT32}
    for name, fn in info["functions"].items():
        got = fn["inputs"] + fn["outputs"]
        if mix_concepts and name == MIX_FUNCTION:
            if got != [want[0], weights, want[1]]:
                raise CoreMLStructureError(
                    f"{where} mix function: inputs {fn['inputs']}, outputs {fn['outputs']}; expected "
                    f"{want[0]} and {weights}, output {want[1]}"
                )
        elif len(fn["inputs"]) != 1 or len(fn["outputs"]) != 1 or got != want:
            raise CoreMLStructureError(
                f"{where} function {name!r}: inputs {fn['inputs']}, outputs {fn['outputs']}; "
                f"expected input {want[0]} and output {want[1]}"
            )
        if precision in COMPRESSED_PRECISIONS and not any(op.startswith("constexpr_") for op in fn["ops"]):
            raise CoreMLStructureError(f"{where} function {name!r}: no compressed ({precision}) weights")
    return info
