"""Core ML backend (macOS only): one ``MLModel`` per concept, loaded once at open.

Separate mode loads the functions of ``coreml/generator.mlpackage`` (function name =
concept name: the base weights are stored once in the package); merged mode those of
``coreml/merged.mlpackage``. On a Mac too old for multifunction models (macOS < 15) the
iOS 17 fallback packages ``coreml/ios17/<concept>.mlpackage`` are used when the bundle
has them. A concept swap is a dict lookup.

An ``.mlpackage`` is a directory: every file of it is listed in the manifest's
``artifacts``. The backend reads each listed file through :func:`read_artifact` (size and
sha256 checked, a mismatch is :class:`ChecksumError`) and rebuilds the package from those
verified bytes in a private temporary directory, which is what Core ML loads: a file
added to the bundle's package but not listed in the manifest is never read.

Core ML exists only on macOS (and iOS): elsewhere the constructor raises
:class:`BackendUnavailableError` at once. coremltools is imported lazily, so
``import pocketgan.runtime`` never imports it (nor torch).
"""

from __future__ import annotations

import platform
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

from pocketgan.runtime.backends import resolve_target
from pocketgan.runtime.errors import BackendUnavailableError, BundleError
from pocketgan.runtime.manifest import read_artifact

INSTALL_HINT = "pip install 'pocketgan[coreml]' (coremltools==9.0)"
MULTIFUNCTION_MACOS = 15  # multifunction models (iOS 18 targets) need macOS 15+
_FLOAT32 = "FLOAT32"


def platform_supported() -> bool:
    """Core ML prediction runs only on macOS."""
    return sys.platform == "darwin"


def macos_major() -> int:
    release = platform.mac_ver()[0]
    return int(release.split(".")[0]) if release else 0


def _coremltools():
    try:
        import coremltools
    except ImportError as e:
        raise BackendUnavailableError(f"the coreml backend needs coremltools: {INSTALL_HINT}") from e
    return coremltools


def load_function(package: Path, function: str | None):
    """Load one function of a package with Core ML (all compute units)."""
    ct = _coremltools()
    kwargs = {"function_name": function} if function else {}
    return ct.models.MLModel(str(package), compute_units=ct.ComputeUnit.ALL, **kwargs)


def package_files(manifest: dict, relpath: str) -> list[str]:
    """The artifacts that make up the package directory ``relpath``."""
    prefix = relpath.rstrip("/") + "/"
    return sorted(p for p in manifest["artifacts"] if p.startswith(prefix))


class CoreMLBackend:
    name = "coreml"

    def __init__(self, bundle_dir: Path, manifest: dict, *, threads: int | None, concept_mode: str = "auto") -> None:
        if not platform_supported():
            raise BackendUnavailableError(
                f"Core ML runs only on macOS (and iOS); this is {sys.platform}. "
                "Open the bundle with backend='onnx' or backend='executorch' here."
            )
        target, concept_mode = resolve_target(bundle_dir, manifest, "coreml", concept_mode)
        _coremltools()
        # threads: Core ML schedules its own work (CPU/GPU/Neural Engine); nothing to set.
        self.concept_mode = concept_mode
        self._io = manifest["io"]
        self._bundle_dir = Path(bundle_dir)
        self._lock = threading.Lock()
        self._tmp = tempfile.TemporaryDirectory(prefix="pocketgan-coreml-")  # verified copies, alive with the models
        self._models: dict[str, object] = {}
        concepts = [c["name"] for c in manifest["concepts"]]
        if macos_major() >= MULTIFUNCTION_MACOS:
            package = self._materialize(manifest, target["package" if concept_mode == "separate" else "merged_package"])
            for concept in concepts:
                function = target["functions"].get(concept)
                if function is None:
                    raise BundleError(f"the Core ML export has no function for concept {concept!r}")
                self._models[concept] = self._load(package, function, concept)
        elif "ios17" in target:
            for concept in concepts:
                relpath = target["ios17"]["packages"].get(concept)
                if relpath is None:
                    raise BundleError(f"the Core ML iOS 17 fallback has no package for concept {concept!r}")
                self._models[concept] = self._load(self._materialize(manifest, relpath), None, concept)
        else:
            raise BackendUnavailableError(
                f"this Core ML export is a multifunction package, which needs macOS {MULTIFUNCTION_MACOS}+ "
                f"(this is macOS {platform.mac_ver()[0]}), and it has no iOS 17 fallback packages"
            )

    def _materialize(self, manifest: dict, relpath: str) -> Path:
        """Rebuild package ``relpath`` in the private directory from checksum-verified bytes."""
        files = package_files(manifest, relpath)
        if not files:
            raise BundleError(f"the manifest lists no files of the Core ML package {relpath}")
        dest = Path(self._tmp.name) / relpath
        for rel in files:
            data = read_artifact(self._bundle_dir, manifest, rel)
            path = Path(self._tmp.name) / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        return dest

    def _load(self, package: Path, function: str | None, concept: str):
        where = f"{package.name}" + (f":{function}" if function else "")
        try:
            model = load_function(package, function)
        except Exception as e:  # Core ML reports load failures as RuntimeError/ValueError
            raise BundleError(f"Core ML cannot load {where} (concept {concept!r}): {e}") from e
        self._check_io(model, where)
        return model

    def _check_io(self, model, where: str) -> None:
        """The loaded function takes float32 io.input and returns float32 io.output (same names/shapes)."""
        ct = _coremltools()
        spec = model.get_spec()
        desc = spec.description
        function = getattr(model, "function_name", None)
        if len(desc.functions):
            matches = [f for f in desc.functions if f.name == (function or desc.defaultFunctionName)]
            if not matches:
                raise BundleError(f"{where}: no such function in the package")
            inputs, outputs = matches[0].input, matches[0].output
        else:
            inputs, outputs = desc.input, desc.output
        name_of = ct.proto.FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name
        for kind, features, spec_io in (("input", inputs, self._io["input"]), ("output", outputs, self._io["output"])):
            got = [(f.name, list(f.type.multiArrayType.shape), name_of(f.type.multiArrayType.dataType)) for f in features]
            want = [(spec_io["name"], list(spec_io["shape"]), _FLOAT32)]
            if got != want:
                raise BundleError(f"{where}: {kind}s {got}, the manifest's io says {want}")

    def activate(self, concept: str) -> None:
        if concept not in self._models:
            raise BundleError(f"concept {concept!r} has no Core ML function in this bundle")

    def run(self, x: np.ndarray, concept: str) -> np.ndarray:
        model = self._models[concept]
        with self._lock:
            out = model.predict({self._io["input"]["name"]: np.ascontiguousarray(x, dtype=np.float32)})
        return np.asarray(out[self._io["output"]["name"]], dtype=np.float32)
