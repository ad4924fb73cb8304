"""Pre- and post-processing shared by every backend (numpy + Pillow only).

``open_image`` reads a photo file with a pixel limit checked on the header, before any pixel
is decoded. ``to_model_input`` letterboxes a photo of any size into the model's square input
with reflected borders (aspect ratio kept, no content cropped); ``from_model_output`` undoes
it, so the edited image has exactly the size of the photo that went in.

Memory is bounded by the image size: each photo is resized by one Pillow ``resize`` in uint8
(nothing full-size becomes float), and every conversion between numpy and Pillow runs a strip
of rows at a time, so the only full-size buffers are Pillow's RGB copy of an array (4 bytes a
pixel) and the result. Every bad image raises ``InvalidImageError`` (``ImageTooLargeError``
past ``max_pixels``); docs/runtime.md, "Image limits", has the measured figures.
"""

from __future__ import annotations

import io
import numbers
import os
import threading
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from pocketgan.runtime.errors import ImageTooLargeError, InvalidImageError

# 50 Mpx: the largest phone-camera photos (48-50 MP sensors) pass. Measured through open_image +
# Runtime.edit on the embedded bundle, a 50 Mpx JPEG peaks at about 540 MiB RSS (640 MiB given as a
# numpy array), 123 of them the opened runtime: within a 1 GB budget with room to spare. Memory grows
# about 9 bytes a pixel (11 for arrays): see docs/runtime.md, "Image limits". Callers with more
# memory may raise it per Runtime or per open_image call.
DEFAULT_MAX_PIXELS = 50_000_000
_pillow_warnings_lock = threading.Lock()

# Pixels per strip in the strip-wise conversions: big enough that the per-strip Python overhead is
# negligible, small enough (a few MB) that it does not add to the peak memory.
_STRIP_PIXELS = 1 << 20

_BICUBIC = Image.Resampling.BICUBIC


def check_max_pixels(max_pixels) -> int | None:
    """``max_pixels`` as an int, after checking it is a positive integer, or ``None`` (no limit)."""
    if max_pixels is None:
        return None
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, numbers.Integral) or max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive int or None, got {max_pixels!r}")
    return int(max_pixels)


def _check_size(width: int, height: int, max_pixels: int | None, what: str) -> None:
    if width <= 0 or height <= 0:
        raise InvalidImageError(f"{what} is empty ({width}x{height})")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLargeError(
            f"{what} is {width}x{height} = {width * height:,} pixels, more than max_pixels = {max_pixels:,} "
            "(refused before decoding; pass a larger max_pixels to accept it)"
        )


def _reason(e: BaseException) -> str:
    """'Type: message' of a library's exception (some, like Pillow's asserts, have no message)."""
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def _describe(source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return f"image {os.fspath(source)!r}"
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"image of {memoryview(source).nbytes} bytes"
    return f"image {getattr(source, 'name', '<file object>')}"


def open_image(source, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open and fully decode a photo, refusing one of more than ``max_pixels`` pixels first.

    Args:
        source: a path, a binary file object (read from its current position; not closed)
            or the file's bytes.
        max_pixels: largest ``width * height`` accepted, checked on the header before any pixel
            is decoded; ``None``: no limit of ours (Pillow's ``Image.MAX_IMAGE_PIXELS`` then
            applies, as ``ImageTooLargeError``).
    Returns:
        the decoded ``PIL.Image`` in the file's own mode (``Runtime.edit`` converts to RGB);
        it holds no open file.
    Raises:
        ImageTooLargeError: more than ``max_pixels`` pixels, or a Pillow decompression bomb.
        InvalidImageError: not an image, unreadable, empty, truncated or corrupt.
    """
    max_pixels = check_max_pixels(max_pixels)
    what = _describe(source)
    if isinstance(source, (str, os.PathLike)):
        try:
            f = open(source, "rb")
        except (OSError, ValueError) as e:  # missing, a directory, no permission, a NUL in the name
            raise InvalidImageError(f"cannot read {what}: {getattr(e, 'strerror', None) or e}") from None
        with f:  # ours, so closed here even for multi-frame formats
            return _decode(f, max_pixels, what)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _decode(io.BytesIO(bytes(source)), max_pixels, what)
    if not hasattr(source, "read"):
        raise InvalidImageError(f"expected a path, a binary file or bytes, got {type(source).__name__}")
    return _decode(source, max_pixels, what)


def _open_header(fp) -> Image.Image:
    """``Image.open`` (the header only) without Pillow's ``DecompressionBombWarning``.

    Pillow warns on a header of more than ``Image.MAX_IMAGE_PIXELS`` (about 89 Mpx) and
    raises past twice that. The warning would reach the user's stderr just before our own
    typed error, or contradict a larger ``max_pixels`` they chose; :func:`_check_size`
    decides instead. The filter is set for this call only, under a lock, since
    ``catch_warnings`` swaps the process-wide filter list (concurrent uses could restore
    each other's state).
    """
    with _pillow_warnings_lock, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(fp)


def _decode(fp, max_pixels: int | None, what: str) -> Image.Image:
    """Header, size check, then the full decode; every failure becomes a typed error."""
    try:
        image = _open_header(fp)
    except Image.DecompressionBombError as e:  # past twice Image.MAX_IMAGE_PIXELS
        raise ImageTooLargeError(f"{what} is a decompression bomb: {e}") from None
    except UnidentifiedImageError:
        raise InvalidImageError(f"{what} is not an image format Pillow can read") from None
    except Exception as e:  # a header the format plugin chokes on
        raise InvalidImageError(f"cannot read {what}: {_reason(e)}") from e
    _check_size(image.width, image.height, max_pixels, what)
    pillow_limit = Image.MAX_IMAGE_PIXELS
    if max_pixels is None and pillow_limit and image.width * image.height > pillow_limit:
        # no limit of ours: Pillow's decompression-bomb limit applies, as a typed error
        raise ImageTooLargeError(
            f"{what} is a decompression bomb: {image.width}x{image.height} = {image.width * image.height} pixels, "
            f"more than Pillow's Image.MAX_IMAGE_PIXELS ({pillow_limit})"
        )
    try:
        image.load()
    except MemoryError:
        raise ImageTooLargeError(f"{what} ({image.width}x{image.height}) does not fit in memory") from None
    except Exception as e:  # truncated (OSError), corrupt data (ValueError, SyntaxError, EOFError, ...)
        raise InvalidImageError(f"cannot decode {what}: {_reason(e)}") from e
    return image


def check_image(image, *, max_pixels: int | None = DEFAULT_MAX_PIXELS):
    """Validate a photo without copying its pixels; returns the same object.

    Accepts an (H, W, 3) ``uint8`` array with any strides (negative, zero, Fortran, read-only)
    or a ``PIL.Image`` in any mode Pillow converts to RGB. A lazily opened PIL image is decoded
    here, after the size check. Raises ``ImageTooLargeError`` past ``max_pixels`` and
    ``InvalidImageError`` for anything else that is not a usable photo.
    """
    max_pixels = check_max_pixels(max_pixels)
    if isinstance(image, Image.Image):
        return _check_pil(image, max_pixels)
    if not isinstance(image, np.ndarray):
        raise InvalidImageError(f"expected a PIL.Image or a numpy uint8 array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise InvalidImageError(f"image array must be uint8 (0..255), got dtype {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise InvalidImageError(f"image array must be H x W x 3 (RGB), got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InvalidImageError(f"image is empty (shape {image.shape})")
    _check_size(image.shape[1], image.shape[0], max_pixels, "image array")
    return image


def _check_pil(image: Image.Image, max_pixels: int | None) -> Image.Image:
    _check_size(image.width, image.height, max_pixels, f"{image.mode} image")
    try:
        image.load()  # decodes a lazily opened file; raises on a closed image
    except MemoryError:
        raise ImageTooLargeError(f"image {image.width}x{image.height} does not fit in memory") from None
    except Exception as e:  # closed (ValueError), truncated (OSError), file gone (AssertionError), ...
        raise InvalidImageError(
            f"cannot get the pixels of {image.mode} image {image.width}x{image.height} "
            f"(closed, its file closed before loading, truncated or corrupt?): {_reason(e)}"
        ) from e
    if image.mode != "RGB":
        try:  # a mode Pillow cannot convert fails here, not halfway through an edit
            image.crop((0, 0, 1, 1)).convert("RGB")
        except Exception as e:
            raise InvalidImageError(f"cannot convert a {image.mode} image to RGB: {_reason(e)}") from e
    return image


def _rows(image, y0: int, y1: int) -> Image.Image:
    """Rows ``y0:y1`` of a checked image as a PIL RGB image (a copy of those rows only)."""
    if isinstance(image, np.ndarray):
        return Image.fromarray(np.ascontiguousarray(image[y0:y1]))
    strip = image.crop((0, y0, image.width, y1))
    # conversion to RGB is per pixel, so converting a strip equals the strip of the converted image
    return strip if strip.mode == "RGB" else strip.convert("RGB")


def _size(image) -> tuple[int, int]:
    """(height, width) of a checked image."""
    return (image.height, image.width) if isinstance(image, Image.Image) else image.shape[:2]


def _strip_height(width: int) -> int:
    return max(1, _STRIP_PIXELS // width)


def as_rgb_array(image, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A PIL image (any mode Pillow converts to RGB) or an (H, W, 3) uint8 array -> a C-contiguous
    (H, W, 3) uint8 array, after :func:`check_image`. Arrays already C-contiguous are not copied."""
    image = check_image(image, max_pixels=max_pixels)
    if isinstance(image, np.ndarray):
        return np.ascontiguousarray(image)
    return _to_array(image)


def _to_array(image: Image.Image) -> np.ndarray:
    """PIL image -> C-contiguous (H, W, 3) uint8, a strip at a time: ``np.asarray(image)`` would
    hold the result twice more (Pillow's ``tobytes`` chunks and their join) on top of the image."""
    h, w = _size(image)
    out = np.empty((h, w, 3), np.uint8)
    step = _strip_height(w)
    for y0 in range(0, h, step):
        out[y0 : y0 + step] = np.asarray(_rows(image, y0, min(h, y0 + step)))
    return out


def _to_pil_rgb(image) -> Image.Image:
    """A checked image as one PIL RGB image: the image itself when it is one already, else built
    a strip at a time (4 bytes a pixel, as Pillow stores RGB, and no other full-size temporary)."""
    if isinstance(image, Image.Image) and image.mode == "RGB":
        return image
    h, w = _size(image)
    out = Image.new("RGB", (w, h))
    step = _strip_height(w)
    for y0 in range(0, h, step):
        out.paste(_rows(image, y0, min(h, y0 + step)), (0, y0))
    return out


@dataclass(frozen=True)
class Placement:
    """Where the photo sits inside the model's square input."""

    height: int
    width: int
    top: int
    left: int
    inner_height: int
    inner_width: int


def to_model_input(image, size: int) -> tuple[np.ndarray, Placement]:
    """(H, W, 3) uint8 array or PIL image -> ((1, 3, size, size) float32 in [-1, 1], placement).

    ``image`` must have passed :func:`check_image`. The photo is resized in uint8 by one Pillow
    bicubic ``resize`` (the bytes every platform's letterbox is checked against); only the
    model-sized square is converted to float.
    """
    h, w = _size(image)
    scale = size / max(h, w)
    ih, iw = max(1, round(h * scale)), max(1, round(w * scale))
    try:
        if (ih, iw) == (h, w) and isinstance(image, np.ndarray):
            resized = np.ascontiguousarray(image)
        else:
            resized = np.asarray(_to_pil_rgb(image).resize((iw, ih), _BICUBIC))
    except MemoryError:
        raise ImageTooLargeError(f"image {w}x{h} does not fit in memory") from None
    top, left = (size - ih) // 2, (size - iw) // 2
    pad = ((top, size - ih - top), (left, size - iw - left), (0, 0))
    # reflect needs the border to be thinner than the image; fall back to edge for slivers
    mode = "reflect" if max(pad[0]) < ih and max(pad[1]) < iw else "edge"
    square = np.pad(resized, pad, mode=mode)
    x = square.astype(np.float32).transpose(2, 0, 1)[None] / 127.5 - 1.0
    return np.ascontiguousarray(x), Placement(h, w, top, left, ih, iw)


def from_model_output(y: np.ndarray, placement: Placement, *, as_image: bool = False):
    """(1, 3, S, S) float in [-1, 1] -> (H, W, 3) uint8 of the original photo's size
    (a ``PIL.Image`` in mode RGB when ``as_image``)."""
    p = placement
    crop = y[0, :, p.top : p.top + p.inner_height, p.left : p.left + p.inner_width]
    rgb = np.clip(np.rint((crop.transpose(1, 2, 0) + 1.0) * 127.5), 0, 255).astype(np.uint8)
    if (p.inner_height, p.inner_width) == (p.height, p.width):
        return Image.fromarray(rgb) if as_image else rgb
    try:
        edited = Image.fromarray(rgb).resize((p.width, p.height), _BICUBIC)
        return edited if as_image else _to_array(edited)
    except MemoryError:
        raise ImageTooLargeError(f"an edited image of {p.width}x{p.height} does not fit in memory") from None


def model_crops(x: np.ndarray, y: np.ndarray, placement: Placement) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The photo's part of the model's input ``x`` and output ``y`` ((1, 3, S, S) in [-1, 1]):
    (3, h, w) float32 photo and edit with values 0..1, and the edit as (h, w, 3) uint8."""
    p = placement
    rows, cols = slice(p.top, p.top + p.inner_height), slice(p.left, p.left + p.inner_width)
    low_photo = (x[0, :, rows, cols] + 1.0) * 0.5
    edit = np.clip(np.rint((y[0, :, rows, cols] + 1.0) * 127.5), 0, 255).astype(np.uint8)
    return low_photo.astype(np.float32), edit.astype(np.float32) / 255, np.ascontiguousarray(edit.transpose(1, 2, 0))
