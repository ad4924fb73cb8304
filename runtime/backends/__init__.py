"""Inference backends. Each one runs the generator for a named concept.

A backend is opened with the bundle directory and its typed manifest
(:class:`~pocketgan.runtime.manifest_view.Manifest`; a manifest dict is accepted and
viewed as is). It reads every file through :func:`~pocketgan.runtime.bundle_files.read_artifact`
(contained in the bundle, checksum verified), loads the library's model from those
verified bytes, and checks the model's real inputs and outputs against the manifest
before the first run. Library exceptions raised while loading or running become typed
:class:`~pocketgan.runtime.errors.BundleError` subclasses naming the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np

from pocketgan.runtime.errors import (
    ArtifactFormatError,
    BackendUnavailableError,
    InterfaceMismatchError,
    TargetNotFoundError,
)
from pocketgan.runtime.manifest_view import Manifest, Target, TensorSpec, as_manifest
from pocketgan.runtime.targets import TARGETS, target_title


class Backend(Protocol):
    """What :class:`~pocketgan.runtime.Runtime` needs from a backend."""

    name: str
    concept_mode: str

    def run(self, x: np.ndarray, concept: str) -> np.ndarray:
        """(1, 3, S, S) float32 in [-1, 1] -> same shape, edited with ``concept``."""
        ...

    def activate(self, concept: str) -> None:
        """Make ``concept`` ready to run (cheap: no base reload)."""
        ...


def resolve_target(bundle_dir, manifest: Manifest | Mapping, target_name: str, concept_mode: str) -> tuple[Target, str]:
    """The manifest's typed ``targets[target_name]`` and the concept mode to run it in.

    ``concept_mode="auto"`` takes ``separate`` when the export has it. Raises
    :class:`TargetNotFoundError` when the bundle has no such export or mode.
    """
    title = target_title(target_name)
    target = as_manifest(manifest).targets.get(target_name)
    if target is None:
        raise TargetNotFoundError(
            f"bundle {bundle_dir} has no {title} export; "
            f"run: pocketgan export {bundle_dir} --targets {target_name} --out DIR",
            field=f"targets.{target_name}",
        )
    available = target.runnable_modes
    if concept_mode == "auto":
        concept_mode = available[0]
    if concept_mode not in available:
        raise TargetNotFoundError(
            f"the {title} export has concept mode(s) {list(available)}, not {concept_mode!r}",
            field=f"targets.{target_name}.concept_mode",
        )
    return target, concept_mode


def library_reason(e: Exception) -> str:
    """A library exception in one line (type and first line of its message), for messages."""
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:300] if text else ''}"


def checked_output(y: np.ndarray, spec: TensorSpec, relpath: str, concept: str) -> np.ndarray:
    """``y`` when it is a finite float32 array of ``io.output``'s shape.

    A corrupted model whose checksum was rewritten can still load; one that returns
    another shape or NaN/inf is refused here (typed, naming ``relpath``) instead of turning
    into a wrong picture. Costs one pass over the output (well under a millisecond at S=256).
    """
    if not isinstance(y, np.ndarray) or y.dtype != np.float32 or y.shape != spec.shape:
        got = f"{getattr(y, 'dtype', type(y).__name__)} {list(getattr(y, 'shape', ()))}"
        raise InterfaceMismatchError(
            f"{relpath} returned {got} for concept {concept!r}, the manifest's io.output says "
            f"float32 {list(spec.shape)}",
            file=relpath,
            field="io.output",
        )
    if not np.isfinite(y).all():
        raise ArtifactFormatError(f"{relpath} returned non-finite values for concept {concept!r}", file=relpath)
    return y


def create_backend(
    name: str, bundle_dir, manifest: Manifest | Mapping, *, threads: int | None, concept_mode: str
) -> Backend:
    manifest = as_manifest(manifest)
    if name == "onnx":
        from pocketgan.runtime.backends.onnx import OnnxBackend

        return OnnxBackend(bundle_dir, manifest, threads=threads, concept_mode=concept_mode)
    if name == "executorch":
        from pocketgan.runtime.backends.executorch import ExecuTorchBackend

        return ExecuTorchBackend(bundle_dir, manifest, threads=threads, concept_mode=concept_mode)
    if name == "coreml":
        from pocketgan.runtime.backends.coreml import CoreMLBackend

        return CoreMLBackend(bundle_dir, manifest, threads=threads, concept_mode=concept_mode)
    known = ", ".join(repr(t) for t in TARGETS)
    raise BackendUnavailableError(f"unknown backend {name!r}; available: {known}")
