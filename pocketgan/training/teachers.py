"""Teachers: the image editors that pocketgan distils.

Every teacher follows the :class:`Teacher` protocol: ``edit(images, seeds)`` maps a list of
(H, W, 3) uint8 RGB photos to edited photos of the same shape and dtype, and ``source``
records its provenance in manifests and datasets.

- Procedural teachers (this module): OpenCV non-photorealistic effects that stand in for a
  diffusion editor offline. Deterministic; seeds are ignored.
- Diffusion teachers (:mod:`pocketgan.training.diffusers_teacher`): InstructPix2Pix or
  Stable Diffusion img2img through ``diffusers``; seeded.

:func:`teacher_from_spec` builds either from a short string such as ``"cartoon"`` or
``"instruct-pix2pix:/models/instruct-pix2pix"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np

# cv2 is imported inside each effect: the CLI imports this module, and runtime-only
# installs (no opencv) must still start.


# Every effect takes its spatial parameters (sigma_s, kernel sizes) in pixels of an image whose
# long side is REFERENCE_SIZE, the size the shipped concepts were distilled at, and scales them by
# ``scale`` = (long side / REFERENCE_SIZE): the same photo then gets the same look at 256 px and at
# 12 MP, and the teacher at full resolution is the ground truth of a full-resolution edit. At scale
# 1 every call is exactly the fixed-parameter effect the datasets were made with.
# docs/full-resolution.md measures how far each effect is from scale-consistent.
REFERENCE_SIZE = 256


def _odd(size: float, smallest: int = 3) -> int:
    """The odd kernel size nearest ``size`` (OpenCV's median and threshold kernels must be odd)."""
    return max(smallest, int(round((size - 1) / 2)) * 2 + 1)


def pencil_sketch(bgr: np.ndarray, scale: float = 1.0) -> np.ndarray:
    import cv2

    gray, _ = cv2.pencilSketch(bgr, sigma_s=40 * scale, sigma_r=0.08, shade_factor=0.05)
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)


def color_pencil(bgr: np.ndarray, scale: float = 1.0) -> np.ndarray:
    import cv2

    return cv2.pencilSketch(bgr, sigma_s=40 * scale, sigma_r=0.08, shade_factor=0.05)[1]


def stylize(bgr: np.ndarray, scale: float = 1.0) -> np.ndarray:
    import cv2

    return cv2.stylization(bgr, sigma_s=40 * scale, sigma_r=0.45)


def detail_enhance(bgr: np.ndarray, scale: float = 1.0) -> np.ndarray:
    import cv2

    return cv2.detailEnhance(bgr, sigma_s=10 * scale, sigma_r=0.15)


def smooth(bgr: np.ndarray, scale: float = 1.0) -> np.ndarray:
    import cv2

    return cv2.edgePreservingFilter(bgr, flags=cv2.RECURS_FILTER, sigma_s=40 * scale, sigma_r=0.4)


# The bilateral filter costs (kernel side)^2 per pixel: past this scale the colour smoothing runs on
# the photo shrunk to BILATERAL_MAX_SCALE x REFERENCE_SIZE and is scaled back (the smoothed colour
# field is flat inside regions); quantisation and the ink outlines stay at full resolution.
BILATERAL_MAX_SCALE = 4.0


def cartoon(bgr: np.ndarray, scale: float = 1.0) -> np.ndarray:
    import cv2

    h, w = bgr.shape[:2]
    work_scale = min(scale, BILATERAL_MAX_SCALE)
    color = bgr
    if work_scale < scale:
        shrink = work_scale / scale
        color = cv2.resize(bgr, (max(1, round(w * shrink)), max(1, round(h * shrink))), interpolation=cv2.INTER_AREA)
    diameter = max(3, round(7 * work_scale))
    for _ in range(2):
        color = cv2.bilateralFilter(color, diameter, 60, 7 * work_scale)
    if color.shape[:2] != (h, w):
        color = cv2.resize(color, (w, h), interpolation=cv2.INTER_LINEAR)
    levels = 6
    color = (np.floor(color.astype(np.float32) / 256 * levels) * (256 / levels) + 128 / levels).astype(np.uint8)
    gray = cv2.medianBlur(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), _odd(5 * scale))
    edges = cv2.adaptiveThreshold(gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, _odd(9 * scale), 4)
    return cv2.bitwise_and(color, color, mask=edges)


@runtime_checkable
class Teacher(Protocol):
    """An image editor to distil.

    ``name``: short identifier; ``description``: one line for humans; ``source``: provenance
    string stored in manifests and datasets (``"procedural:opencv.cartoon"``,
    ``"diffusers:instruct-pix2pix:<path or hub id>:<prompt>"``).
    """

    name: str
    description: str
    source: str

    def edit(self, images: list[np.ndarray], seeds: list[int]) -> list[np.ndarray]:
        """Edit ``images`` (each (H, W, 3) uint8 RGB, values 0..255) with one seed per image.

        Returns one (H, W, 3) uint8 RGB image per input, the same shape as that input. The
        same image with the same seed gives the same edit.
        """
        ...


@dataclass(frozen=True)
class ProceduralTeacher:
    """A named OpenCV effect, resolution-aware. ``__call__``: (H, W, 3) uint8 RGB -> same.

    ``effect(bgr, scale)`` takes its spatial parameters in pixels of a ``REFERENCE_SIZE`` image and
    scales them by ``scale``; ``__call__`` passes ``max(H, W) / REFERENCE_SIZE`` unless told the
    scale (a crop of a larger photo is edited at the photo's scale, not its own).
    """

    name: str
    description: str
    effect: Callable[[np.ndarray, float], np.ndarray]

    def __call__(self, rgb: np.ndarray, scale: float | None = None) -> np.ndarray:
        import cv2

        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"teacher {self.name!r} needs an H x W x 3 uint8 image, got {rgb.dtype} {rgb.shape}")
        if scale is None:
            scale = max(rgb.shape[:2]) / REFERENCE_SIZE
        if not scale > 0:
            raise ValueError(f"teacher {self.name!r}: scale must be positive, got {scale!r}")
        bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
        return cv2.cvtColor(self.effect(bgr, float(scale)), cv2.COLOR_BGR2RGB)

    def edit(self, images: list[np.ndarray], seeds: list[int] | None = None) -> list[np.ndarray]:
        """The :class:`Teacher` interface: each (H, W, 3) uint8 RGB image -> same shape, uint8 RGB.

        ``seeds`` are accepted for the interface and ignored: the effects are deterministic.
        """
        if seeds is not None and len(seeds) != len(images):
            raise ValueError(f"got {len(images)} images but {len(seeds)} seeds")
        return [self(np.asarray(image)) for image in images]

    @property
    def source(self) -> str:
        return f"procedural:opencv.{self.name}"


PROCEDURAL_TEACHERS: dict[str, ProceduralTeacher] = {
    t.name: t
    for t in (
        ProceduralTeacher("pencil_sketch", "Graphite pencil sketch", pencil_sketch),
        ProceduralTeacher("color_pencil", "Coloured pencil drawing", color_pencil),
        ProceduralTeacher("stylize", "Watercolour-like stylisation", stylize),
        ProceduralTeacher("detail_enhance", "Crisp, detail-enhanced photo", detail_enhance),
        ProceduralTeacher("smooth", "Edge-preserving smoothing (soft-focus look)", smooth),
        ProceduralTeacher("cartoon", "Flat colours with ink outlines", cartoon),
    )
}


def procedural_teacher(name: str) -> ProceduralTeacher:
    try:
        return PROCEDURAL_TEACHERS[name]
    except KeyError:
        raise ValueError(f"unknown procedural teacher {name!r}; choose one of {sorted(PROCEDURAL_TEACHERS)}") from None


DIFFUSION_KINDS = ("instruct-pix2pix", "img2img")


def teacher_from_spec(spec: str, prompt: str | None = None, **options: Any) -> Teacher:
    """Build a teacher from a short spec string.

    - ``"cartoon"`` or ``"procedural:cartoon"`` (any name in :data:`PROCEDURAL_TEACHERS`):
      an OpenCV effect; takes no prompt and no options.
    - ``"instruct-pix2pix:PATH_OR_HUB_ID"``: InstructPix2Pix through diffusers; ``prompt`` is
      the edit instruction ("turn it into a watercolour painting").
    - ``"img2img:PATH_OR_HUB_ID"``: Stable Diffusion img2img; ``prompt`` describes the result.

    ``options`` go to :class:`~pocketgan.training.diffusers_teacher.DiffusersTeacher`
    (``steps``, ``guidance_scale``, ``image_guidance_scale``, ``strength``, ``batch_size``,
    ``device``, ``name``, ``progress``, ...). Raises ``ValueError`` for an unknown spec or a
    missing prompt.
    """
    spec = spec.strip()
    choices = (
        f"procedural names {sorted(PROCEDURAL_TEACHERS)} (optionally prefixed 'procedural:'), "
        f"'instruct-pix2pix:PATH_OR_HUB_ID', 'img2img:PATH_OR_HUB_ID'"
    )
    kind, sep, rest = spec.partition(":")
    if kind in DIFFUSION_KINDS:
        if not rest:
            raise ValueError(f"teacher spec {spec!r} names no model; use '{kind}:PATH_OR_HUB_ID'")
        if not prompt or not prompt.strip():
            raise ValueError(
                f"the {kind} teacher needs a prompt (the edit to distil), e.g. --prompt 'make it a watercolour'"
            )
        from pocketgan.training.diffusers_teacher import DiffusersTeacher

        return DiffusersTeacher(kind=kind, model=rest, prompt=prompt, **options)
    name = rest if (sep and kind == "procedural") else spec
    if name in PROCEDURAL_TEACHERS and (not sep or kind == "procedural"):
        if prompt:
            raise ValueError(f"procedural teacher {name!r} takes no prompt (got {prompt!r})")
        if options:
            raise ValueError(f"procedural teacher {name!r} takes no options (got {sorted(options)})")
        return PROCEDURAL_TEACHERS[name]
    raise ValueError(f"unknown teacher {spec!r}; choose one of: {choices}")
