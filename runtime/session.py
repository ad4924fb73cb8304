"""The runtime an app embeds: open a bundle once, hot-swap concepts, edit images."""

from __future__ import annotations

import threading
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from pocketgan.runtime.backends import Backend, create_backend
from pocketgan.runtime.concept_mix import ConceptMix, MixError, concept_mix, strength_weight
from pocketgan.runtime.errors import InvalidImageError, UnknownConceptError
from pocketgan.runtime.imaging import (
    DEFAULT_MAX_PIXELS,
    check_image,
    check_max_pixels,
    from_model_output,
    model_crops,
    to_model_input,
)
from pocketgan.runtime.manifest import Manifest, read_manifest
from pocketgan.runtime.upsampling import (
    GuidedUpsampling,
    check_resolution,
    guided_upsample,
    load_upsamplers,
    mixed_upsampling,
)

if TYPE_CHECKING:
    from pocketgan.runtime.generation import GenerationRuntime


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
        upsampling: settings of the full-resolution path (``edit(resolution="full")``) for every
            concept; default: each concept's learned stage from the bundle, or the plain guided
            filter (:class:`~pocketgan.runtime.upsampling.GuidedUpsampling`) for bundles without.
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
        upsampling: GuidedUpsampling | None = None,
    ) -> None:
        self.max_pixels = check_max_pixels(max_pixels)
        self.path = Path(bundle) if bundle is not None else default_bundle_path()
        #: the bundle's validated manifest, typed and read-only (``.raw``: the dict)
        self.manifest: Manifest = read_manifest(self.path)
        self.concepts: tuple[str, ...] = self.manifest.concept_names
        if not self.concepts:
            raise UnknownConceptError(f"bundle {self.path} has no concepts")
        self.input_size: int = self.manifest.input_size
        #: per concept, how ``edit(resolution="full")`` lifts the model's edit to the photo's size
        self.upsampling: dict[str, GuidedUpsampling] = (
            load_upsamplers(self.path, self.manifest)
            if upsampling is None
            else dict.fromkeys(self.concepts, upsampling)
        )
        self._backend: Backend = create_backend(
            backend, self.path, self.manifest, threads=threads, concept_mode=concept_mode
        )
        self._lock = threading.Lock()
        self._concept = self.concepts[0]
        self._mix = concept_mix({self._concept: 1.0})
        self.set_concept(concept or self.concepts[0])

    @property
    def backend(self) -> str:
        return self._backend.name

    @property
    def concept_mode(self) -> str:
        return self._backend.concept_mode

    @property
    def concept(self) -> str:
        """The active concept's name (of a blend: the one with the largest weight)."""
        return self._concept

    @property
    def mix(self) -> dict[str, float]:
        """The active mix as it runs, ``{name: weight}``: a concept at strength ``s`` is
        ``{name: w(s)}`` (its calibration curve, docs/strength-and-blending.md), a blend its weights."""
        return self._mix.as_dict()

    def _check_concept(self, name: str) -> str:
        if name not in self.concepts:
            raise UnknownConceptError(f"unknown concept {name!r}; this bundle has {list(self.concepts)}")
        return name

    def _checked_mix(self, weights) -> ConceptMix:
        mix = concept_mix(weights, self.concepts)
        for name, _ in mix.weights:
            self._backend.activate(name)
        if not mix.is_plain:
            check = getattr(self._backend, "check_mix", None)
            if check is None:
                raise MixError(f"the {self.backend} backend has no strength or blending")
            check(mix)
        return mix

    def set_concept(self, name: str, strength: float = 1.0) -> None:
        """Make ``name`` the active concept, at ``strength`` (0: the photo back, 1: the concept as
        trained, up to 1.5; docs/strength-and-blending.md). Cheap: the base model is not reloaded.

        Raises :class:`~pocketgan.runtime.concept_mix.MixError` for a strength out of [0, 1.5],
        or other than 1 on an export that cannot mix (merged mode, a bundle without a neutral concept).
        """
        self._check_concept(name)
        mix = self._checked_mix({name: self._weight(name, strength)})
        with self._lock:
            self._concept, self._mix = name, mix

    def set_blend(self, weights: dict[str, float]) -> None:
        """Blend concepts in one pass: ``{"cartoon": 0.6, "stylize": 0.4}``. Each weight in
        [0, 1.5], their sum at most 1.5; what the weights leave goes to the neutral concept
        (weights summing to 1: none). Two concepts are exact; more are reduced to the
        bundle's rank (docs/strength-and-blending.md)."""
        mix = self._checked_mix(weights)
        with self._lock:
            self._concept, self._mix = max(mix.weights, key=lambda nw: nw[1])[0], mix

    def _call_mix(self, concept: str | None, strength: float | None, blend: dict | None) -> ConceptMix:
        """The mix one ``edit`` runs: the active one unless the call names another."""
        if blend is not None:
            if concept is not None or strength is not None:
                raise MixError("give either blend or concept/strength, not both")
            return self._checked_mix(blend)
        if concept is None and strength is None:
            return self._mix
        if concept is None:
            if len(self._mix.weights) != 1:
                raise MixError("strength applies to one concept; the active mix is a blend (pass concept=...)")
            concept = self._concept
        self._check_concept(concept)
        return self._checked_mix({concept: 1.0 if strength is None else self._weight(concept, strength)})

    def _weight(self, concept: str, strength: float) -> float:
        """The mix weight of ``strength`` (the concept's calibration curve; range checked first)."""
        concept_mix({concept: strength}, self.concepts)  # MixError for a strength out of [0, 1.5]
        return strength_weight(self.manifest.strength_curves.get(concept), strength)

    def _run(self, x: np.ndarray, mix: ConceptMix) -> np.ndarray:
        if mix.is_plain:
            return self._backend.run(x, mix.weights[0][0])
        return self._backend.run_mix(x, mix)

    def edit(
        self,
        image,
        *,
        concept: str | None = None,
        strength: float | None = None,
        blend: dict[str, float] | None = None,
        resolution: str = "full",
    ):
        """Edit one photo with the active concept or blend (or, for this call only, ``concept``
        at ``strength``, or ``blend``; see :meth:`set_concept` and :meth:`set_blend`).

        Args:
            image: a ``PIL.Image`` (any mode Pillow can convert to RGB) or an (H, W, 3)
                uint8 RGB array (any strides), up to ``max_pixels`` pixels. Memory: the result
                plus a few tens of MB; the photo is processed a strip at a time.
            resolution: ``"full"`` (default): the photo's size, with the photo's own detail
                (guided upsampling, docs/full-resolution.md); ``"upscale"``: the photo's size,
                the model's output resized bicubically (cheaper, soft); ``"model"``: the model's
                working size, aspect kept (the fast mode for camera previews).
        Returns:
            the edited image, same type as ``image`` (PIL images come back RGB); the photo's size,
            or for ``"model"`` the photo's size scaled to fit the model's input.
        """
        mix = self._call_mix(concept, strength, blend)
        name = mix.weights[0][0]
        check_resolution(resolution)
        image = check_image(image, max_pixels=self.max_pixels)
        as_image = isinstance(image, Image.Image)
        x, placement = to_model_input(image, self.input_size)
        y = self._run(x, mix)
        if resolution == "upscale":
            return from_model_output(y, placement, as_image=as_image)
        low_photo, low_edit, at_model_size = model_crops(x, y, placement)
        if resolution == "model" or (placement.inner_height, placement.inner_width) == (
            placement.height,
            placement.width,
        ):
            return Image.fromarray(at_model_size) if as_image else at_model_size
        stage = self.upsampling[name] if mix.is_plain else mixed_upsampling(self.upsampling, mix.as_dict())
        return guided_upsample(image, low_photo, low_edit, stage, as_image=as_image)

    def run_tensor(
        self,
        x: np.ndarray,
        *,
        concept: str | None = None,
        strength: float | None = None,
        blend: dict[str, float] | None = None,
    ) -> np.ndarray:
        """Raw model call: (1, 3, S, S) float32 in [-1, 1] -> same shape, no resizing."""
        mix = self._call_mix(concept, strength, blend)
        expected = self.manifest.input.shape
        if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.shape != expected:
            got = (getattr(x, "dtype", type(x).__name__), getattr(x, "shape", None))
            raise InvalidImageError(f"run_tensor expects float32 {expected}, got {got}")
        return self._run(np.ascontiguousarray(x), mix)

    def __repr__(self) -> str:
        return (
            f"Runtime({str(self.path)!r}, backend={self.backend!r}, concept={self.concept!r}, "
            f"concepts={list(self.concepts)})"
        )


def open_bundle(bundle: str | Path | None = None, **kwargs) -> Runtime | GenerationRuntime:
    """Open a bundle (``None``: the embedded default editing bundle). See :class:`Runtime`; a
    generation bundle (manifest ``"kind": "generation"``) opens as a
    :class:`~pocketgan.runtime.generation.GenerationRuntime` (``backend`` and ``threads`` apply)."""
    if bundle is not None:
        from pocketgan.runtime.generation_manifest import GENERATION_KIND, manifest_kind

        if manifest_kind(bundle) == GENERATION_KIND:
            from pocketgan.runtime.generation import GenerationRuntime

            return GenerationRuntime(bundle, **kwargs)
    return Runtime(bundle, **kwargs)
