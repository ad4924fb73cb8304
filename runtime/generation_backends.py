"""Backends of a generation bundle: each runs ``(noise, prompt states) -> image`` (no torch import here).

Every backend reads its file through :func:`~pocketgan.runtime.bundle_files.read_artifact`
(contained in the bundle, checksum verified), loads the library's model from those bytes
(or from a private copy of them), and checks the model's real inputs and outputs against
the manifest's ``io`` before the first run, as the editing backends do
(:mod:`pocketgan.runtime.backends`, whose helpers these reuse):

- ONNX Runtime: the session's inputs are exactly ``io.inputs`` (names, float32, static
  shapes, in order), its output exactly ``io.output``, and it has no overridable initializer;
- ExecuTorch: the method takes two float32 tensors of the ``io.inputs`` shapes and returns
  one of ``io.output``'s; the program is first loaded in a child process
  (:func:`~pocketgan.runtime.backends.executorch_probe.probe_program`) so a native abort
  on a corrupted program is a typed error;
- Core ML (macOS only): the package's structure, then the loaded model's description.

A mismatch is :class:`InterfaceMismatchError`, a file the library cannot load or run
:class:`ArtifactFormatError`, an output of another shape or with NaN/inf too: never a picture.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Protocol

import numpy as np

from pocketgan.runtime.backends import library_reason
from pocketgan.runtime.bundle_files import PrivateCopies, read_artifact
from pocketgan.runtime.errors import (
    ArtifactFormatError,
    BackendUnavailableError,
    InterfaceMismatchError,
    TargetNotFoundError,
)
from pocketgan.runtime.generation_manifest import GenerationManifest
from pocketgan.runtime.manifest_view import TensorSpec
from pocketgan.runtime.targets import TARGETS, target_title

_ORT_FLOAT = "tensor(float)"
_ET_FLOAT32 = 6  # ExecuTorch ScalarType::Float
_CT_FLOAT32 = "FLOAT32"


class GenerationBackend(Protocol):
    """What :class:`~pocketgan.runtime.generation.GenerationRuntime` needs from a backend."""

    name: str

    def run(self, noise: np.ndarray, prompt_states: np.ndarray) -> np.ndarray:
        """float32 (1, 3, S, S) noise and (1, tokens, width) states -> float32 (1, 3, S, S) in [-1, 1]."""
        ...


def _target(bundle_dir: Path, manifest: GenerationManifest, name: str):
    target = manifest.targets.get(name)
    if target is None:
        raise TargetNotFoundError(
            f"generation bundle {bundle_dir} has no {target_title(name)} export; "
            f"run: pocketgan export {bundle_dir} --targets {name}",
            field=f"targets.{name}",
        )
    return target


def _want(manifest: GenerationManifest) -> tuple[list, list]:
    """(inputs, outputs) as ``(name, shape, "float32")`` each, from ``io``."""
    return (
        [(t.name, list(t.shape), "float32") for t in manifest.inputs],
        [(manifest.output.name, list(manifest.output.shape), "float32")],
    )


def checked_image(y, spec: TensorSpec, relpath: str) -> np.ndarray:
    """``y`` when it is a finite float32 array of ``io.output``'s shape, else a typed error."""
    if not isinstance(y, np.ndarray) or y.dtype != np.float32 or y.shape != spec.shape:
        got = f"{getattr(y, 'dtype', type(y).__name__)} {list(getattr(y, 'shape', ()))}"
        raise InterfaceMismatchError(
            f"{relpath} returned {got}, the manifest's io.output says float32 {list(spec.shape)}",
            file=relpath,
            field="io.output",
        )
    if not np.isfinite(y).all():
        raise ArtifactFormatError(f"{relpath} returned non-finite values", file=relpath)
    return y


# --- ONNX Runtime -----------------------------------------------------------------------------


def check_onnx_session(session, manifest: GenerationManifest, relpath: str) -> None:
    """The session's inputs/outputs are exactly ``io`` and it has no overridable initializer."""
    inputs, outputs = _want(manifest)
    for kind, args, want in (("inputs", session.get_inputs(), inputs), ("output", session.get_outputs(), outputs)):
        got = [(a.name, list(a.shape), "float32" if a.type == _ORT_FLOAT else a.type) for a in args]
        if got != want:
            raise InterfaceMismatchError(
                f"{relpath}: the model's {kind} are {got}, the manifest's io.{kind} says {want}",
                file=relpath,
                field=f"io.{kind}",
            )
    extra = [a.name for a in session.get_overridable_initializers()]
    if extra:
        raise InterfaceMismatchError(
            f"{relpath}: the model has overridable initializers {extra[:3]}; a generator has none",
            file=relpath,
            field="targets.onnx.model",
        )


def load_onnx_session(bundle_dir: Path, manifest: GenerationManifest, *, threads: int | None, optimize: bool = True):
    """The ONNX model's session, built from its verified bytes and checked against ``io``."""
    from pocketgan.runtime.backends.onnx import open_session, session_options

    relpath = _target(bundle_dir, manifest, "onnx")["model"]
    session = open_session(
        read_artifact(bundle_dir, manifest, relpath), relpath, session_options(threads, optimize=optimize)
    )
    check_onnx_session(session, manifest, relpath)
    return session


class OnnxGenerationBackend:
    name = "onnx"

    def __init__(self, bundle_dir: Path, manifest: GenerationManifest, *, threads: int | None) -> None:
        self._relpath = _target(bundle_dir, manifest, "onnx")["model"]
        self._session = load_onnx_session(bundle_dir, manifest, threads=threads)
        self._names = [t.name for t in manifest.inputs]
        self._output = manifest.output

    def run(self, noise: np.ndarray, prompt_states: np.ndarray) -> np.ndarray:
        try:  # an ONNX Runtime session runs on several threads at once
            y = self._session.run([self._output.name], dict(zip(self._names, (noise, prompt_states))))[0]
        except Exception as e:  # onnxruntime Fail / InvalidArgument: the bundle's model, not the caller
            raise ArtifactFormatError(
                f"{self._relpath}: ONNX Runtime failed running it ({library_reason(e)})", file=self._relpath
            ) from None
        return checked_image(y, self._output, self._relpath)


# --- ExecuTorch -------------------------------------------------------------------------------


def check_method(meta, where: str, relpath: str, manifest: GenerationManifest) -> None:
    """Two float32 inputs of the ``io.inputs`` shapes, one float32 output of ``io.output``'s."""
    try:
        counts = (meta.num_inputs(), meta.num_outputs())
        tensors = [meta.input_tensor_meta(i) for i in range(counts[0])] + [
            meta.output_tensor_meta(i) for i in range(counts[1])
        ]
        got = [(list(t.sizes()), t.dtype()) for t in tensors]
    except Exception as e:  # a corrupted method table: RuntimeError/IndexError from the pybindings
        raise ArtifactFormatError(f"{where}: unreadable method metadata ({library_reason(e)})", file=relpath) from None
    want = [(list(t.shape), _ET_FLOAT32) for t in (*manifest.inputs, manifest.output)]
    if counts != (2, 1) or got != want:
        raise InterfaceMismatchError(
            f"{where} takes/returns {got} (sizes, dtype code), the manifest's io says {want} (6: float32)",
            file=relpath,
            field="io",
        )


def _dense(torch, x: np.ndarray):
    """``x`` as a tensor with C strides: ExecuTorch refuses a stride of 0, which numpy gives a
    size-1 axis made with ``[None]`` (such an array still counts as contiguous)."""
    return torch.from_numpy(x.copy() if 0 in x.strides else x)


class ExecuTorchGenerationBackend:
    name = "executorch"

    def __init__(self, bundle_dir: Path, manifest: GenerationManifest, *, threads: int | None) -> None:
        from pocketgan.runtime.backends.executorch import _executorch, check_pte_identifier, set_threads
        from pocketgan.runtime.backends.executorch_probe import probe_program

        target = _target(bundle_dir, manifest, "executorch")
        runtime = _executorch()
        if threads:
            set_threads(threads)
        relpath, method = target["program"], target["method"]
        self._relpath, self._output = relpath, manifest.output
        data = read_artifact(bundle_dir, manifest, relpath)
        check_pte_identifier(data, relpath)
        # the probe child loads the program and its method (where a corrupted XNNPACK payload
        # aborts natively); its one-input test run fails in Python, which it leaves to us
        probe_program(data, relpath, [method], tuple(manifest.inputs[0].shape))
        try:
            self._program = runtime.load_program(data)
            names = set(self._program.method_names)
        except Exception as e:
            raise ArtifactFormatError(f"ExecuTorch cannot load {relpath} ({library_reason(e)})", file=relpath) from None
        if method not in names:
            raise InterfaceMismatchError(
                f"{relpath} has no method {method!r}; it has {sorted(names)}",
                file=relpath,
                field="targets.executorch.method",
            )
        where = f"{relpath}:{method}"
        try:
            self._method = self._program.load_method(method)
            meta = self._method.metadata
        except Exception as e:
            raise ArtifactFormatError(
                f"ExecuTorch cannot load method {where} ({library_reason(e)})", file=relpath
            ) from None
        check_method(meta, where, relpath, manifest)
        self._lock = threading.Lock()  # a method's memory-planned arena serves one run at a time

    def run(self, noise: np.ndarray, prompt_states: np.ndarray) -> np.ndarray:
        import torch

        try:
            with self._lock:
                out = self._method.execute([_dense(torch, noise), _dense(torch, prompt_states)])
            y = out[0].numpy().copy()  # the output lives in the method's arena: copy before the next run
        except Exception as e:
            raise ArtifactFormatError(
                f"{self._relpath} failed to run ({library_reason(e)})", file=self._relpath
            ) from None
        return checked_image(y, self._output, self._relpath)


# --- Core ML (macOS) --------------------------------------------------------------------------


class CoreMLGenerationBackend:
    name = "coreml"

    def __init__(self, bundle_dir: Path, manifest: GenerationManifest, *, threads: int | None) -> None:
        from pocketgan.runtime.backends.coreml import check_package, load_function, platform_supported

        if not platform_supported():
            raise BackendUnavailableError(
                f"Core ML runs only on macOS (and iOS); this is {sys.platform}. "
                "Open the bundle with backend='onnx' or backend='executorch' here."
            )
        relpath = _target(bundle_dir, manifest, "coreml")["package"]
        self._relpath, self._output = relpath, manifest.output
        self._names = [t.name for t in manifest.inputs]
        view = manifest.artifacts_view()
        # Core ML loads a package from a path: rebuild it from verified bytes in a private directory
        self._copies = PrivateCopies("pocketgan-coreml-")
        for rel in check_package(bundle_dir, view, relpath):
            self._copies.write(rel, read_artifact(bundle_dir, manifest, rel))
        try:
            self._model = load_function(self._copies.root / relpath, None)
            desc = self._model.get_spec().description
        except Exception as e:  # Core ML reports load failures as RuntimeError/ValueError
            raise ArtifactFormatError(f"Core ML cannot load {relpath} ({library_reason(e)})", file=relpath) from None
        self._check(desc, manifest)
        self._lock = threading.Lock()

    def _check(self, desc, manifest: GenerationManifest) -> None:
        import coremltools as ct

        name_of = ct.proto.FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name
        got = [
            (f.name, list(f.type.multiArrayType.shape), name_of(f.type.multiArrayType.dataType))
            for f in (*desc.input, *desc.output)
        ]
        want = [(n, s, _CT_FLOAT32) for n, s, _ in sum(_want(manifest), [])]
        if got != want:
            raise InterfaceMismatchError(
                f"{self._relpath}: the model's inputs and output are {got}, the manifest's io says {want}",
                file=self._relpath,
                field="io",
            )

    def run(self, noise: np.ndarray, prompt_states: np.ndarray) -> np.ndarray:
        try:
            with self._lock:
                out = self._model.predict(dict(zip(self._names, (noise, prompt_states))))
            y = np.asarray(out[self._output.name], dtype=np.float32)
        except Exception as e:
            raise ArtifactFormatError(f"{self._relpath}: Core ML failed running it ({library_reason(e)})") from None
        return checked_image(y, self._output, self._relpath)


BACKENDS = {"onnx": OnnxGenerationBackend, "executorch": ExecuTorchGenerationBackend, "coreml": CoreMLGenerationBackend}
assert tuple(BACKENDS) == TARGETS, "a generation backend per export target"


def create_generation_backend(
    name: str, bundle_dir: Path, manifest: GenerationManifest, *, threads: int | None
) -> GenerationBackend:
    """The backend ``name`` over the bundle's export of it (``TargetNotFoundError`` without one)."""
    if name not in BACKENDS:
        raise BackendUnavailableError(f"unknown backend {name!r}; available: {', '.join(map(repr, TARGETS))}")
    return BACKENDS[name](Path(bundle_dir), manifest, threads=threads)
