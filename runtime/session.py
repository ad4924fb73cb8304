"""The runtime an app embeds: open a bundle once, hot-swap concepts, edit images."""

from __future__ import annotations

import threading
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from pocketgan.runtime.backends import Backend, create_backend
from pocketgan.runtime.errors import InvalidImageError, UnknownConceptError
from pocketgan.runtime.imaging import (
    DEFAULT_MAX_PIXELS,
    check_image,
    check_max_pixels,
    from_model_output,
    to_model_input,
)
from pocketgan.runtime.manifest import Manifest, read_manifest


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
        max_pixels: largest ``width * height`` that ``edit`` accepts (``ImageTooLargeError``
            past it); ``None``: no limit. See docs/runtime.md, "Image limits".
    """

    def __init__(
        self,
        bundle: str | Path | None = None,
        *,
        backend: str = "onnx",
        threads: int | None = None,
        concept_mode: str = "auto",
        concept: str | None = None,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.max_pixels = check_max_pixels(max_pixels)
        self.path = Path(bundle) if bundle is not None else default_bundle_path()
        #: the bundle's validated manifest, typed and read-only (``.raw``: the dict)
        self.manifest: Manifest = read_manifest(self.path)
        self.concepts: tuple[str, ...] = self.manifest.concept_names
        if not self.concepts:
            raise UnknownConceptError(f"bundle {self.path} has no concepts")
        self.input_size: int = self.manifest.input_size
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
                uint8 RGB array (any strides), up to ``max_pixels`` pixels. Memory: the result
                plus a few MB; the photo is resized a strip at a time.
        Returns:
            the edited image, same type and size as ``image`` (PIL images come back RGB).
        """
        name = self._check_concept(concept) if concept is not None else self._concept
        image = check_image(image, max_pixels=self.max_pixels)
        x, placement = to_model_input(image, self.input_size)
        return from_model_output(self._backend.run(x, name), placement, as_image=isinstance(image, Image.Image))

    def run_tensor(self, x: np.ndarray, *, concept: str | None = None) -> np.ndarray:
        """Raw model call: (1, 3, S, S) float32 in [-1, 1] -> same shape, no resizing."""
        name = self._check_concept(concept) if concept is not None else self._concept
        expected = self.manifest.input.shape
        if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.shape != expected:
            got = (getattr(x, "dtype", type(x).__name__), getattr(x, "shape", None))
            raise InvalidImageError(f"run_tensor expects float32 {expected}, got {got}")
        return self._backend.run(np.ascontiguousarray(x), name)

    def __repr__(self) -> str:
        return (
            f"Runtime({str(self.path)!r}, backend={self.backend!r}, concept={self.concept!r}, "
            f"concepts={list(self.concepts)})"
        )


def open_bundle(bundle: str | Path | None = None, **kwargs) -> Runtime:
    """Open a bundle (``None``: the embedded default). See :class:`Runtime`."""
    return Runtime(bundle, **kwargs)
