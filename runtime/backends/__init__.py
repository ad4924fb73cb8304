"""Inference backends. Each one runs the generator for a named concept."""

from __future__ import annotations

from typing import Protocol

import numpy as np


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


_MODES = {"separate": ("separate",), "merged": ("merged",), "both": ("separate", "merged")}
_TITLES = {"onnx": "ONNX", "executorch": "ExecuTorch", "coreml": "Core ML"}


def resolve_target(bundle_dir, manifest: dict, target_name: str, concept_mode: str) -> tuple[dict, str]:
    """The manifest's ``targets[target_name]`` and the concept mode to run it in.

    ``concept_mode="auto"`` takes ``separate`` when the export has it. Raises
    :class:`TargetNotFoundError` when the bundle has no such export or mode.
    """
    from pocketgan.runtime.errors import TargetNotFoundError

    title = _TITLES.get(target_name, target_name)
    target = manifest["targets"].get(target_name)
    if target is None:
        raise TargetNotFoundError(
            f"bundle {bundle_dir} has no {title} export; "
            f"run: pocketgan export {bundle_dir} --targets {target_name} --out DIR"
        )
    available = _MODES[target["concept_mode"]]
    if concept_mode == "auto":
        concept_mode = available[0]
    if concept_mode not in available:
        raise TargetNotFoundError(f"the {title} export has concept mode(s) {list(available)}, not {concept_mode!r}")
    return target, concept_mode


def create_backend(name: str, bundle_dir, manifest: dict, *, threads: int | None, concept_mode: str) -> Backend:
    if name == "onnx":
        from pocketgan.runtime.backends.onnx import OnnxBackend

        return OnnxBackend(bundle_dir, manifest, threads=threads, concept_mode=concept_mode)
    if name == "executorch":
        from pocketgan.runtime.backends.executorch import ExecuTorchBackend

        return ExecuTorchBackend(bundle_dir, manifest, threads=threads, concept_mode=concept_mode)
    if name == "coreml":
        from pocketgan.runtime.backends.coreml import CoreMLBackend

        return CoreMLBackend(bundle_dir, manifest, threads=threads, concept_mode=concept_mode)
    from pocketgan.runtime.errors import BackendUnavailableError

    raise BackendUnavailableError(f"unknown backend {name!r}; available: 'onnx', 'executorch', 'coreml'")
