"""The runtime an app embeds: open a bundle once, hot-swap concepts, edit images."""

from __future__ import annotations

import threading
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from pocketgan.runtime.backends import Backend, create_backend
from pocketgan.runtime.errors import InvalidImageError, UnknownConceptError
from pocketgan.runtime.imaging import as_rgb_array, from_model_output, to_model_input
from pocketgan.runtime.manifest import load_manifest


def default_bundle_path() -> Path:
    """The bundle shipped inside the package (base model + default concepts, ONNX export)."""
    return Path(str(resources.files("pocketgan").joinpath("default_bundle")))


class Runtime:
    """An opened bundle. Thread-safe: ``edit`` may run on several threads at once.

    Args:
        bundle: bundle directory; ``None`` opens the embedded default bundle.
        backend: ``"onnx"`` (ONNX Runtime) or ``"executorch"`` (ExecuTorch XNNPACK; needs
            the ``executorch`` extra) or ``"coreml"`` (macOS only).
        threads: intra-op threads of the backend; ``None`` lets it decide.
        concept_mode: ``"auto"``, ``"separate"`` (base + hot-swapped adapters) or
            ``"merged"`` (one full model per concept), as the export provides.
        concept: the concept active after opening; default the manifest's first.
    """

    def __init__(
        self,
        bundle: str | Path | None = None,
        *,
        backend: str = "onnx",
        threads: int | None = None,
        concept_mode: str = "auto",
        concept: str | None = None,
    ) -> None:
        self.path = Path(bundle) if bundle is not None else default_bundle_path()
        self.manifest = load_manifest(self.path)
        self.concepts: tuple[str, ...] = tuple(c["name"] for c in self.manifest["concepts"])
        if not self.concepts:
            raise UnknownConceptError(f"bundle {self.path} has no concepts")
        spec = self.manifest["io"]["input"]["shape"]
        self.input_size: int = spec[2]
        self._backend: Backend = create_backend(
            backend, self.path, self.manifest, threads=threads, concept_mode=concept_mode
        )
        self._lock = threading.Lock()
        self._concept = self.concepts[0]
        self.set_concept(concept or self.concepts[0])

    @property
    def backend(self) -> str:
        return self._backend.name

    @property
    def concept_mode(self) -> str:
        return self._backend.concept_mode

    @property
    def concept(self) -> str:
        """The active concept's name."""
        return self._concept

    def _check_concept(self, name: str) -> str:
        if name not in self.concepts:
            raise UnknownConceptError(f"unknown concept {name!r}; this bundle has {list(self.concepts)}")
        return name

    def set_concept(self, name: str) -> None:
        """Make ``name`` the active concept. Cheap: the base model is not reloaded."""
        self._check_concept(name)
        with self._lock:
            self._backend.activate(name)
            self._concept = name

    def edit(self, image, *, concept: str | None = None):
        """Edit one photo with the active concept (or ``concept`` for this call only).

        Args:
            image: a ``PIL.Image`` (any mode Pillow can convert to RGB) or an (H, W, 3)
                uint8 RGB array, any size.
        Returns:
            the edited image, same type and size as ``image`` (PIL images come back RGB).
        """
        name = self._check_concept(concept) if concept is not None else self._concept
        rgb = as_rgb_array(image)
        x, placement = to_model_input(rgb, self.input_size)
        out = from_model_output(self._backend.run(x, name), placement)
        return Image.fromarray(out) if isinstance(image, Image.Image) else out

    def run_tensor(self, x: np.ndarray, *, concept: str | None = None) -> np.ndarray:
        """Raw model call: (1, 3, S, S) float32 in [-1, 1] -> same shape, no resizing."""
        name = self._check_concept(concept) if concept is not None else self._concept
        expected = tuple(self.manifest["io"]["input"]["shape"])
        if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.shape != expected:
            got = (getattr(x, "dtype", type(x).__name__), getattr(x, "shape", None))
            raise InvalidImageError(f"run_tensor expects float32 {expected}, got {got}")
        return self._backend.run(np.ascontiguousarray(x), name)

    def __repr__(self) -> str:
        return f"Runtime({str(self.path)!r}, backend={self.backend!r}, concept={self.concept!r}, concepts={list(self.concepts)})"


def open_bundle(bundle: str | Path | None = None, **kwargs) -> Runtime:
    """Open a bundle (``None``: the embedded default). See :class:`Runtime`."""
    return Runtime(bundle, **kwargs)
