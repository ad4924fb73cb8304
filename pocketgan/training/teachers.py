"""Procedural teachers: OpenCV non-photorealistic effects that stand in for a diffusion
editor offline. Each maps an (H, W, 3) uint8 RGB photo to an edited one of the same size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np


def _bgr(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    def wrapped(rgb: np.ndarray) -> np.ndarray:
        return cv2.cvtColor(fn(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)), cv2.COLOR_BGR2RGB)

    return wrapped


def pencil_sketch(bgr: np.ndarray) -> np.ndarray:
    gray, _ = cv2.pencilSketch(bgr, sigma_s=40, sigma_r=0.08, shade_factor=0.05)
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)


def color_pencil(bgr: np.ndarray) -> np.ndarray:
    return cv2.pencilSketch(bgr, sigma_s=40, sigma_r=0.08, shade_factor=0.05)[1]


def stylize(bgr: np.ndarray) -> np.ndarray:
    return cv2.stylization(bgr, sigma_s=40, sigma_r=0.45)


def detail_enhance(bgr: np.ndarray) -> np.ndarray:
    return cv2.detailEnhance(bgr, sigma_s=10, sigma_r=0.15)


def smooth(bgr: np.ndarray) -> np.ndarray:
    return cv2.edgePreservingFilter(bgr, flags=cv2.RECURS_FILTER, sigma_s=40, sigma_r=0.4)


def cartoon(bgr: np.ndarray) -> np.ndarray:
    color = bgr
    for _ in range(2):
        color = cv2.bilateralFilter(color, 7, 60, 7)
    levels = 6
    color = (np.floor(color.astype(np.float32) / 256 * levels) * (256 / levels) + 128 / levels).astype(np.uint8)
    gray = cv2.medianBlur(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), 5)
    edges = cv2.adaptiveThreshold(gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, 9, 4)
    return cv2.bitwise_and(color, color, mask=edges)


@dataclass(frozen=True)
class ProceduralTeacher:
    """A named OpenCV effect. ``__call__``: (H, W, 3) uint8 RGB -> same."""

    name: str
    description: str
    effect: Callable[[np.ndarray], np.ndarray]

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"teacher {self.name!r} needs an H x W x 3 uint8 image, got {rgb.dtype} {rgb.shape}")
        return _bgr(self.effect)(np.ascontiguousarray(rgb))

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
