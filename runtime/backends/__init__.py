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


def create_backend(name: str, bundle_dir, manifest: dict, *, threads: int | None, concept_mode: str) -> Backend:
    if name == "onnx":
        from pocketgan.runtime.backends.onnx import OnnxBackend

        return OnnxBackend(bundle_dir, manifest, threads=threads, concept_mode=concept_mode)
    if name == "executorch":
        from pocketgan.runtime.backends.executorch import ExecuTorchBackend

        return ExecuTorchBackend(bundle_dir, manifest, threads=threads, concept_mode=concept_mode)
    from pocketgan.runtime.errors import BackendUnavailableError

    raise BackendUnavailableError(f"unknown backend {name!r}; available: 'onnx', 'executorch'")
