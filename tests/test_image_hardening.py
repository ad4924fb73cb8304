"""Bad images get typed errors; memory is bounded by the image size (issue 17, "Images").

Table-driven over the generators of tests/reliability/images.py (the `make fuzz` corpus runs
the same kinds of input at a larger scale): exact error types for bombs, pixel limits,
truncated and corrupt files, closed images, every PIL mode, odd array strides, empty images
and non-images; and the edit of a normal photo is the very bytes of the previous pipeline.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from PIL import Image

from pocketgan.runtime import open_bundle
from pocketgan.runtime.errors import ImageTooLargeError, InvalidImageError
from pocketgan.runtime.imaging import DEFAULT_MAX_PIXELS, as_rgb_array, check_image, open_image, to_model_input
from pocketgan.runtime.session import Runtime
from reliability.images import (
    PIL_MODES,
    UNCONVERTIBLE_MODES,
    bmp_declaring,
    closed_images,
    encode,
    jpeg_declaring,
    measure_peak_rss,
    mode_image,
    odd_arrays,
    photo,
    png_declaring,
    png_text_bomb,
)

PNG = encode(photo(60, 80), "PNG")
JPEG = encode(photo(60, 80), "JPEG", quality=90)
OVER = int(DEFAULT_MAX_PIXELS**0.5) + 100  # a side whose square is just over the default limit


@pytest.fixture(scope="module")
def rt():
    return open_bundle(threads=1)  # one thread: the suite shares the machine's cores


def _model_input(image) -> np.ndarray:
    return to_model_input(check_image(image), 256)[0]


# --- open_image: exact error types ------------------------------------------------------------

OPEN_CASES = {
    # bombs and limits: refused from the header, before any pixel is decoded
    "400 Mpx PNG header": (lambda: png_declaring(20000, 20000, rows=1), {}, ImageTooLargeError),
    "400 Mpx PNG, max_pixels=None": (
        lambda: png_declaring(20000, 20000, rows=1),
        {"max_pixels": None},
        ImageTooLargeError,
    ),
    "150 Mpx one-row PNG": (lambda: png_declaring(150_000_000, 1, color_type=0, rows=0), {}, ImageTooLargeError),
    "just over the default limit": (lambda: png_declaring(OVER, OVER, rows=1), {}, ImageTooLargeError),
    "JPEG declaring 65535x65535": (lambda: jpeg_declaring(65535, 65535), {}, ImageTooLargeError),
    "JPEG declaring 10000x6000": (lambda: jpeg_declaring(10000, 6000), {}, ImageTooLargeError),
    "BMP declaring 30000x30000": (lambda: bmp_declaring(30000, 30000), {}, ImageTooLargeError),
    "81 x 60 PNG, max_pixels=80*60": (
        lambda: encode(photo(60, 81), "PNG"),
        {"max_pixels": 80 * 60},
        ImageTooLargeError,
    ),
    "80 x 60 PNG, max_pixels=80*60": (lambda: PNG, {"max_pixels": 80 * 60}, None),
    "PNG text-chunk bomb": (lambda: png_text_bomb(4 << 20), {}, InvalidImageError),
    # truncated and corrupt
    "PNG cut at 0": (lambda: PNG[:0], {}, InvalidImageError),
    "PNG cut after the signature": (lambda: PNG[:8], {}, InvalidImageError),
    "PNG cut after IHDR": (lambda: PNG[:33], {}, InvalidImageError),
    "PNG cut at half": (lambda: PNG[: len(PNG) // 2], {}, InvalidImageError),
    "PNG cut at 90%": (lambda: PNG[: len(PNG) * 9 // 10], {}, InvalidImageError),
    "JPEG cut at 100 bytes": (lambda: JPEG[:100], {}, InvalidImageError),
    "JPEG cut at half": (lambda: JPEG[: len(JPEG) // 2], {}, InvalidImageError),
    "JPEG cut at 90%": (lambda: JPEG[: len(JPEG) * 9 // 10], {}, InvalidImageError),
    "PNG with a broken IDAT checksum": (
        lambda: PNG[:-20] + bytes([PNG[-20] ^ 0xFF]) + PNG[-19:],
        {},
        InvalidImageError,
    ),
    # empty and not images
    "PNG declaring 0x0": (lambda: png_declaring(0, 0, rows=0), {}, InvalidImageError),
    "empty bytes": (lambda: b"", {}, InvalidImageError),
    "text": (lambda: b"hello, world\n", {}, InvalidImageError),
    "PDF": (lambda: b"%PDF-1.7\n", {}, InvalidImageError),
    "an int": (lambda: 3, {}, InvalidImageError),
    "None": (lambda: None, {}, InvalidImageError),
}


@pytest.mark.parametrize("name", list(OPEN_CASES))
def test_open_image_gives_exact_typed_errors(name):
    make, kwargs, error = OPEN_CASES[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # Pillow's own, for the 150 Mpx header
        if error is None:
            assert open_image(make(), **kwargs).size == (80, 60)
            return
        with pytest.raises(InvalidImageError) as info:
            open_image(make(), **kwargs)
    assert type(info.value) is error, f"{type(info.value).__name__}: {info.value}"
    assert isinstance(info.value, ValueError) and str(info.value)


def test_pillow_bomb_warning_as_error_is_typed_too():
    """Where warnings are errors (python -W error), Pillow's DecompressionBombWarning is raised
    from Image.open; open_image turns it into ImageTooLargeError, with no limit of its own."""
    data = png_declaring(150_000_000, 1, color_type=0, rows=0)  # over Pillow's 89 Mpx warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(ImageTooLargeError, match="decompression bomb"):
            open_image(data, max_pixels=None)


def test_open_image_refuses_before_decoding():
    """A header just over the limit with no pixel data behind it: the size error, not a decode error."""
    with pytest.raises(ImageTooLargeError, match=f"{OVER}x{OVER}.*refused before decoding"):
        open_image(png_declaring(OVER, OVER, rows=0))


@pytest.mark.parametrize("kind", ["path", "str", "file", "bytes", "bytearray", "memoryview"])
def test_open_image_sources(tmp_path, kind):
    path = tmp_path / "photo.png"
    path.write_bytes(PNG)
    with open(path, "rb") as f:
        f.seek(0)
        source = {
            "path": path,
            "str": str(path),
            "file": f,
            "bytes": PNG,
            "bytearray": bytearray(PNG),
            "memoryview": memoryview(PNG),
        }[kind]
        image = open_image(source)
        if kind == "file":
            assert not f.closed, "a caller's file is the caller's to close"
    assert np.array_equal(np.asarray(image), photo(60, 80)), "fully decoded, readable after its file is closed"


@pytest.mark.parametrize("kind", ["missing", "directory", "text file", "NUL in the name"])
def test_open_image_bad_paths(tmp_path, kind):
    (tmp_path / "notes.txt").write_text("not an image")
    path = {
        "missing": tmp_path / "nope.png",
        "directory": tmp_path,
        "text file": tmp_path / "notes.txt",
        "NUL in the name": "photo\x00.png",
    }[kind]
    with pytest.raises(InvalidImageError) as info:
        open_image(path)
    assert type(info.value) is InvalidImageError
    assert repr(str(path)) in str(info.value), "the message names the file"


# --- Runtime.edit: exact error types ----------------------------------------------------------


def _lazy(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


EDIT_CASES = {
    "lazily opened truncated JPEG": (lambda: _lazy(JPEG[: len(JPEG) // 2]), InvalidImageError),
    "lazily opened truncated PNG": (lambda: _lazy(PNG[: len(PNG) // 2]), InvalidImageError),
    "lazily opened header over the limit": (lambda: _lazy(png_declaring(OVER, OVER, rows=0)), ImageTooLargeError),
    "array 20000x20000 (zero strides)": (
        lambda: np.broadcast_to(np.zeros(3, np.uint8), (20000, 20000, 3)),
        ImageTooLargeError,
    ),
    "array 1 x 150,000,000 (zero strides)": (
        lambda: np.broadcast_to(np.zeros(3, np.uint8), (1, 150_000_000, 3)),
        ImageTooLargeError,
    ),
    "PIL 0x5": (lambda: Image.new("RGB", (0, 5)), InvalidImageError),
    "PIL 5x0": (lambda: Image.new("L", (5, 0)), InvalidImageError),
    "array 0x5x3": (lambda: np.zeros((0, 5, 3), np.uint8), InvalidImageError),
    "bool array": (lambda: np.zeros((8, 8, 3), bool), InvalidImageError),
    "object array": (lambda: np.zeros((8, 8, 3), object), InvalidImageError),
    "bytes": (lambda: PNG, InvalidImageError),
    **{f"La mode ({m})": (lambda m=m: mode_image(m), InvalidImageError) for m in UNCONVERTIBLE_MODES},
}


@pytest.mark.parametrize("name", list(EDIT_CASES))
def test_edit_gives_exact_typed_errors(rt, name):
    make, error = EDIT_CASES[name]
    with pytest.raises(InvalidImageError) as info:
        rt.edit(make())
    assert type(info.value) is error, f"{type(info.value).__name__}: {info.value}"


@pytest.mark.parametrize("name", ["Image.new then close()", "opened, loaded, closed", "lazily opened, file closed"])
def test_closed_images_are_invalid(rt, tmp_path, name):
    image = closed_images(tmp_path)[name]()
    for call in (rt.edit, as_rgb_array):
        with pytest.raises(InvalidImageError) as info:
            call(image)
        assert type(info.value) is InvalidImageError


@pytest.mark.parametrize("mode", [m for m in PIL_MODES if m not in UNCONVERTIBLE_MODES])
def test_every_pil_mode_is_edited_as_its_rgb_conversion(rt, mode):
    image = mode_image(mode)
    out = rt.edit(image)
    assert out.mode == "RGB" and out.size == image.size
    # the model sees exactly the pixels of the RGB conversion (and the model is deterministic)
    assert np.array_equal(_model_input(image), _model_input(image.convert("RGB")))
    assert np.array_equal(as_rgb_array(image), np.asarray(image.convert("RGB")))


@pytest.mark.parametrize("name", list(odd_arrays()))
def test_odd_strides_give_the_edit_of_the_contiguous_copy(rt, name):
    array = odd_arrays()[name]
    out = rt.edit(array)
    assert out.shape == array.shape and out.dtype == np.uint8 and out.flags.c_contiguous
    assert np.array_equal(_model_input(array), _model_input(np.ascontiguousarray(array)))
    assert np.array_equal(as_rgb_array(array), np.ascontiguousarray(array))


def test_runtime_max_pixels(rt):
    small = Runtime(max_pixels=40 * 30, threads=1)
    assert small.edit(np.zeros((30, 40, 3), np.uint8)).shape == (30, 40, 3), "exactly the limit is accepted"
    for image in (np.zeros((31, 40, 3), np.uint8), Image.new("RGB", (41, 30))):
        with pytest.raises(ImageTooLargeError, match="max_pixels = 1,200"):
            small.edit(image)
    assert rt.max_pixels == DEFAULT_MAX_PIXELS
    assert Runtime(max_pixels=None).max_pixels is None


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "50e6"])
def test_max_pixels_must_be_a_positive_int(bad):
    with pytest.raises(ValueError, match="max_pixels"):
        Runtime(max_pixels=bad)
    with pytest.raises(ValueError, match="max_pixels"):
        open_image(PNG, max_pixels=bad)


# --- unchanged results ------------------------------------------------------------------------


def _previous_edit(rt, rgb: np.ndarray, concept: str) -> np.ndarray:
    """The pipeline before the memory work: full-size RGB copies, one Pillow resize each way."""
    size = rt.input_size
    h, w = rgb.shape[:2]
    ih, iw = max(1, round(h * size / max(h, w))), max(1, round(w * size / max(h, w)))
    small = rgb if (ih, iw) == (h, w) else np.asarray(Image.fromarray(rgb).resize((iw, ih), Image.BICUBIC))
    top, left = (size - ih) // 2, (size - iw) // 2
    pad = ((top, size - ih - top), (left, size - iw - left), (0, 0))
    square = np.pad(small, pad, mode="reflect" if max(pad[0]) < ih and max(pad[1]) < iw else "edge")
    x = np.ascontiguousarray(square.astype(np.float32).transpose(2, 0, 1)[None] / 127.5 - 1.0)
    y = rt.run_tensor(x, concept=concept)[0, :, top : top + ih, left : left + iw]
    out = np.clip(np.rint((y.transpose(1, 2, 0) + 1.0) * 127.5), 0, 255).astype(np.uint8)
    return out if (ih, iw) == (h, w) else np.asarray(Image.fromarray(out).resize((w, h), Image.BICUBIC))


@pytest.mark.parametrize("shape", [(600, 900), (900, 601), (170, 256), (1, 300)])
def test_a_normal_photo_edit_is_unchanged(rt, shape):
    rgb = photo(*shape, seed=shape[0])
    concept = rt.concepts[-1]
    want = _previous_edit(rt, rgb, concept)
    up = {"concept": concept, "resolution": "upscale"}  # the path the memory work rewrote
    assert np.array_equal(rt.edit(rgb, **up), want)
    assert np.array_equal(np.asarray(rt.edit(Image.fromarray(rgb), **up)), want)
    assert np.array_equal(np.asarray(rt.edit(open_image(encode(rgb, "PNG")), **up)), want)
    # the full-resolution path reads the photo the same way from an array, a PIL image and a file
    full = rt.edit(rgb, concept=concept)
    assert full.shape == rgb.shape
    assert np.array_equal(np.asarray(rt.edit(open_image(encode(rgb, "PNG")), concept=concept)), full)


# --- memory -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_peak_memory_of_a_12_mpx_photo_is_bounded(tmp_path):
    """A 12 Mpx JPEG through open_image + edit in a fresh interpreter: the decoded image and the
    result (4 bytes a pixel each in Pillow) over the opened runtime, plus decoder slack, measured
    at 10.8 bytes a pixel; the pipeline before this work needed 19.4."""
    path = tmp_path / "photo.jpg"
    Image.fromarray(photo(3000, 4000)).save(path, quality=92)
    m = measure_peak_rss(path)
    extra_bytes = (m["peak_mb"] - m["baseline_mb"]) * 2**20
    assert extra_bytes < 14 * 12e6, m
