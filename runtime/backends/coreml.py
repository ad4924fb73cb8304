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
added to the bundle's package but not listed in the manifest is never read. Before that,
:func:`check_package` checks the package's structure (possible on any platform, and done
by ``verify_bundle``): its ``Manifest.json`` parses within bounds, every item path in it is
a plain relative path to listed files, and the root model is one of them.

Core ML exists only on macOS (and iOS): elsewhere the constructor raises
:class:`BackendUnavailableError` at once. coremltools is imported lazily, so
``import pocketgan.runtime`` never imports it (nor torch).
"""

from __future__ import annotations

import platform
import sys
import threading
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from pocketgan.runtime.backends import checked_output, resolve_target
from pocketgan.runtime.bundle_files import PrivateCopies, parse_json, path_problem, read_artifact
from pocketgan.runtime.concept_mix import ConceptMix, MixError
from pocketgan.runtime.errors import ArtifactFormatError, BackendUnavailableError, BundleError, InterfaceMismatchError
from pocketgan.runtime.manifest_view import Manifest, as_manifest

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


def package_files(manifest: Manifest | Mapping, relpath: str) -> list[str]:
    """The artifacts that make up the package directory ``relpath``."""
    prefix = relpath.rstrip("/") + "/"
    return sorted(p for p in as_manifest(manifest).artifacts if p.startswith(prefix))


def check_package(bundle_dir: Path, manifest: Manifest, relpath: str) -> list[str]:
    """Check the structure of package ``relpath``; return its listed files.

    Its ``Manifest.json`` (read verified, parsed within bounds) has ``itemInfoEntries``
    whose ``path`` values are plain relative paths naming listed files or folders under
    ``Data/``, and a ``rootModelIdentifier`` among them that names a listed file.
    """
    files = package_files(manifest, relpath)
    index = f"{relpath}/Manifest.json"
    if index not in files:
        raise ArtifactFormatError(f"the Core ML package {relpath} lists no Manifest.json", file=index)
    doc = parse_json(read_artifact(bundle_dir, manifest, index), file=index, error=ArtifactFormatError)
    entries = doc.get("itemInfoEntries") if isinstance(doc, dict) else None
    root = doc.get("rootModelIdentifier") if isinstance(doc, dict) else None
    if not isinstance(entries, dict) or not isinstance(root, str) or not isinstance(entries.get(root), dict):
        raise ArtifactFormatError(f"{index}: no itemInfoEntries with its rootModelIdentifier", file=index)
    for key, entry in entries.items():
        item = entry.get("path") if isinstance(entry, dict) else None
        problem = path_problem(item)
        if problem is not None:
            raise ArtifactFormatError(f"{index}: item {key!r} path {item!r} {problem}", file=index)
        full = f"{relpath}/Data/{item}"
        if full not in files and not any(f.startswith(full + "/") for f in files):
            raise ArtifactFormatError(f"{index}: item {item!r} is none of the package's listed files", file=index)
    if f"{relpath}/Data/{entries[root]['path']}" not in files:
        raise ArtifactFormatError(f"{index}: the root model {entries[root]['path']!r} is not a listed file", file=index)
    return files


class CoreMLBackend:
    name = "coreml"

    def __init__(
        self, bundle_dir: Path, manifest: Manifest | Mapping, *, threads: int | None, concept_mode: str = "auto"
    ) -> None:
        if not platform_supported():
            raise BackendUnavailableError(
                f"Core ML runs only on macOS (and iOS); this is {sys.platform}. "
                "Open the bundle with backend='onnx' or backend='executorch' here."
            )
        manifest = as_manifest(manifest)
        target, concept_mode = resolve_target(bundle_dir, manifest, "coreml", concept_mode)
        _coremltools()
        # threads: Core ML schedules its own work (CPU/GPU/Neural Engine); nothing to set.
        self.concept_mode = concept_mode
        self._io = (manifest.input, manifest.output)
        self._bundle_dir = Path(bundle_dir)
        self._lock = threading.Lock()
        self._copies = PrivateCopies("pocketgan-coreml-")  # verified copies, alive with the models
        self._models: dict[str, object] = {}
        self._files: dict[str, str] = {}  # concept -> the package it runs from, for errors
        self._mix = None  # (model, concept order) of strength and blending
        if macos_major() >= MULTIFUNCTION_MACOS:
            relpath = target.package if concept_mode == "separate" else target.merged_package
            package = self._materialize(manifest, relpath)
            for concept in manifest.concept_names:
                function = target.functions.get(concept)
                if function is None:
                    raise BundleError(f"the Core ML export has no function for concept {concept!r}")
                self._models[concept] = self._load(package, function, concept)
                self._files[concept] = relpath
            if concept_mode == "separate" and target.mix_function is not None:
                self._weights_input = target.mix_weights_input
                model = self._load(package, target.mix_function, "(mix)", weights=len(target.mix_concepts))
                self._mix = (model, target.mix_concepts)
                self._mix_file = relpath
        elif target.ios17_packages:
            for concept in manifest.concept_names:
                relpath = target.ios17_packages.get(concept)
                if relpath is None:
                    raise BundleError(f"the Core ML iOS 17 fallback has no package for concept {concept!r}")
                self._models[concept] = self._load(self._materialize(manifest, relpath), None, concept)
                self._files[concept] = relpath
        else:
            raise BackendUnavailableError(
                f"this Core ML export is a multifunction package, which needs macOS {MULTIFUNCTION_MACOS}+ "
                f"(this is macOS {platform.mac_ver()[0]}), and it has no iOS 17 fallback packages"
            )

    def _materialize(self, manifest: Manifest, relpath: str) -> Path:
        """Rebuild package ``relpath`` in the private directory from checksum-verified bytes."""
        files = check_package(self._bundle_dir, manifest, relpath)
        for rel in files:
            self._copies.write(rel, read_artifact(self._bundle_dir, manifest, rel))
        return self._copies.root / relpath

    def _load(self, package: Path, function: str | None, concept: str, weights: int = 0):
        where = f"{package.name}" + (f":{function}" if function else "")
        try:
            model = load_function(package, function)
        except Exception as e:  # Core ML reports load failures as RuntimeError/ValueError
            raise ArtifactFormatError(f"Core ML cannot load {where} (concept {concept!r}): {e}") from None
        self._check_io(model, where, weights)
        return model

    def _check_io(self, model, where: str, weights: int = 0) -> None:
        """The loaded function takes float32 io.input (and, for the mix function, float32
        ``concept_weights`` of ``weights`` values) and returns float32 io.output."""
        ct = _coremltools()
        try:
            desc = model.get_spec().description
        except Exception as e:
            raise ArtifactFormatError(f"{where}: unreadable model description ({e})") from None
        function = getattr(model, "function_name", None)
        if len(desc.functions):
            matches = [f for f in desc.functions if f.name == (function or desc.defaultFunctionName)]
            if not matches:
                raise InterfaceMismatchError(
                    f"{where}: no such function in the package", field="targets.coreml.functions"
                )
            inputs, outputs = matches[0].input, matches[0].output
        else:
            inputs, outputs = desc.input, desc.output
        name_of = ct.proto.FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name
        for kind, features, spec in (("input", inputs, self._io[0]), ("output", outputs, self._io[1])):
            got = [
                (f.name, list(f.type.multiArrayType.shape), name_of(f.type.multiArrayType.dataType)) for f in features
            ]
            want = [(spec.name, list(spec.shape), _FLOAT32)]
            if kind == "input" and weights:
                want.append((self._weights_input, [weights], _FLOAT32))
            if got != want:
                raise InterfaceMismatchError(
                    f"{where}: {kind}s {got}, the manifest's io says {want}", field=f"io.{kind}"
                )

    def check_mix(self, mix: ConceptMix) -> None:
        """Raise :class:`MixError` unless this export can run ``mix``."""
        if self._mix is None:
            raise MixError(
                "strength and blending need the separate package's mix function: "
                + (
                    "merged mode bakes each concept into its own function (open with concept_mode='separate')"
                    if self.concept_mode == "merged"
                    else "this Core ML export has none (a bundle without a neutral concept, or macOS before 15)"
                )
            )

    def run_mix(self, x: np.ndarray, mix: ConceptMix) -> np.ndarray:
        """(1, 3, S, S) float32 in [-1, 1] -> same shape, edited with a strength or blend."""
        self.check_mix(mix)
        model, order = self._mix
        weights = mix.as_dict()
        w = np.array([weights.get(c, 0.0) for c in order], dtype=np.float32)
        spec_in, spec_out = self._io
        try:
            with self._lock:
                out = model.predict({spec_in.name: np.ascontiguousarray(x, dtype=np.float32), self._weights_input: w})
            y = np.asarray(out[spec_out.name], dtype=np.float32)
        except Exception as e:
            raise ArtifactFormatError(
                f"{self._mix_file}: Core ML failed running {mix.label()}: {e}", file=self._mix_file
            ) from None
        return checked_output(y, spec_out, self._mix_file, mix.label())

    def activate(self, concept: str) -> None:
        if concept not in self._models:
            raise BundleError(f"concept {concept!r} has no Core ML function in this bundle")

    def run(self, x: np.ndarray, concept: str) -> np.ndarray:
        model = self._models[concept]
        spec_in, spec_out = self._io
        try:
            with self._lock:
                out = model.predict({spec_in.name: np.ascontiguousarray(x, dtype=np.float32)})
            y = np.asarray(out[spec_out.name], dtype=np.float32)
        except Exception as e:  # Core ML prediction errors, a missing output name
            raise ArtifactFormatError(
                f"{self._files[concept]}: Core ML failed running concept {concept!r}: {e}", file=self._files[concept]
            ) from None
        return checked_output(y, spec_out, self._files[concept], concept)
