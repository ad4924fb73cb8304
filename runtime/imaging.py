"""Pre- and post-processing shared by every backend (numpy + Pillow only).

``to_model_input`` letterboxes a photo of any size into the model's square input with
reflected borders (aspect ratio kept, no content cropped); ``from_model_output`` undoes
it, so the edited image has exactly the size of the photo that went in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from pocketgan.runtime.errors import InvalidImageError


def as_rgb_array(image) -> np.ndarray:
    """A PIL image or an (H, W, 3) uint8 array -> a C-contiguous (H, W, 3) uint8 array."""
    if isinstance(image, Image.Image):
        if image.width == 0 or image.height == 0:
            raise InvalidImageError(f"image is empty ({image.width}x{image.height})")
        if image.mode != "RGB":
            image = image.convert("RGB")
        return np.asarray(image, dtype=np.uint8)
    if not isinstance(image, np.ndarray):
        raise InvalidImageError(f"expected a PIL.Image or a numpy uint8 array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise InvalidImageError(f"image array must be uint8 (0..255), got dtype {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise InvalidImageError(f"image array must be H x W x 3 (RGB), got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InvalidImageError(f"image is empty (shape {image.shape})")
    return np.ascontiguousarray(image)


@dataclass(frozen=True)
class Placement:
    """Where the photo sits inside the model's square input."""

    height: int
    width: int
    top: int
    left: int
    inner_height: int
    inner_width: int


def to_model_input(rgb: np.ndarray, size: int) -> tuple[np.ndarray, Placement]:
    """(H, W, 3) uint8 -> ((1, 3, size, size) float32 in [-1, 1], placement)."""
    h, w = rgb.shape[:2]
    scale = size / max(h, w)
    ih, iw = max(1, round(h * scale)), max(1, round(w * scale))
    resized = rgb if (ih, iw) == (h, w) else np.asarray(Image.fromarray(rgb).resize((iw, ih), Image.Resampling.BICUBIC))
    top, left = (size - ih) // 2, (size - iw) // 2
    pad = ((top, size - ih - top), (left, size - iw - left), (0, 0))
    # reflect needs the border to be thinner than the image; fall back to edge for slivers
    mode = "reflect" if max(pad[0]) < ih and max(pad[1]) < iw else "edge"
    square = np.pad(resized, pad, mode=mode)
    x = square.astype(np.float32).transpose(2, 0, 1)[None] / 127.5 - 1.0
    return np.ascontiguousarray(x), Placement(h, w, top, left, ih, iw)


def from_model_output(y: np.ndarray, placement: Placement) -> np.ndarray:
    """(1, 3, S, S) float in [-1, 1] -> (H, W, 3) uint8 of the original photo's size."""
    p = placement
    crop = y[0, :, p.top : p.top + p.inner_height, p.left : p.left + p.inner_width]
    rgb = np.clip(np.rint((crop.transpose(1, 2, 0) + 1.0) * 127.5), 0, 255).astype(np.uint8)
    if (p.inner_height, p.inner_width) != (p.height, p.width):
        rgb = np.asarray(Image.fromarray(rgb).resize((p.width, p.height), Image.Resampling.BICUBIC))
    return rgb
