"""Bad-image corpus for `make fuzz` (issue 17, "Images"): every case through ``open_image`` and
``Runtime.edit`` on the embedded default bundle (ONNX), outcomes counted, plus the peak RSS of
a 12 Mpx photo and of the largest photo the default ``max_pixels`` accepts.

Everything is generated in code (no committed images): decompression bombs (a valid 400 Mpx
PNG of a few kB, a 150 Mpx one-row PNG, headers declaring more than they hold), truncated
PNG/JPEG files cut at several points (decoded eagerly by ``open_image`` and lazily by
``Runtime.edit``), random byte flips, every PIL mode in memory and through files, arrays with
odd strides, closed images, empty images, non-image bytes and paths, and huge arrays (zero
strides, so they cost no memory).

    run(work_dir, scale=1.0) -> {"title", "markdown", "failures"}

A failure is an untyped exception (anything not a ``PocketganError``), an outcome other than
the expected one (a bomb accepted, a valid image refused), or an accepted edit whose result
differs from the edit of the same pixels given plainly (odd strides, modes). The peak RSS is
measured in a fresh interpreter per photo: ``python tests/reliability/images.py PHOTO``.
"""

from __future__ import annotations

import io
import json
import resource
import struct
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from pocketgan.runtime.errors import ImageTooLargeError, PocketganError
from pocketgan.runtime.imaging import DEFAULT_MAX_PIXELS, open_image

TITLE = "Bad images"
OK, TYPED, TOO_LARGE, OK_OR_TYPED = "ok", "typed", "too large", "ok or typed"
# every mode Pillow has; "La" (premultiplied LA) is the one it cannot convert to RGB
PIL_MODES = (
    "1",
    "L",
    "LA",
    "La",
    "P",
    "PA",
    "RGB",
    "RGBA",
    "RGBa",
    "RGBX",
    "CMYK",
    "YCbCr",
    "LAB",
    "HSV",
    "I",
    "I;16",
    "I;16L",
    "I;16B",
    "I;16N",
    "F",
)
UNCONVERTIBLE_MODES = ("La",)
PHOTO_12MP = (3000, 4000)
# the largest 3:2 photo within DEFAULT_MAX_PIXELS (8660 x 5773 = 49.99 Mpx)
PHOTO_LARGEST = (5773, 8660)


# --- generators -------------------------------------------------------------------------------


def photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A photo-like (H, W, 3) uint8 array: smooth gradients plus noise, built a strip at a time."""
    rng = np.random.default_rng(seed)
    out = np.empty((height, width, 3), np.uint8)
    cols = np.linspace(0, 160, width, dtype=np.float32)[None, :, None]
    tint = np.array([1.0, 0.8, 0.6], np.float32)
    for y0 in range(0, height, 256):
        y1 = min(height, y0 + 256)
        rows = np.linspace(0, 80, height, dtype=np.float32)[y0:y1, None, None]
        noise = rng.integers(0, 16, (y1 - y0, width, 1), dtype=np.uint8)
        out[y0:y1] = ((rows + cols) * tint).astype(np.uint8) + noise
    return out


def encode(image: np.ndarray | Image.Image, fmt: str, **options) -> bytes:
    """An array or PIL image -> the bytes of an image file in ``fmt`` (PNG, JPEG, TIFF, ...)."""
    im = Image.fromarray(image) if isinstance(image, np.ndarray) else image
    buf = io.BytesIO()
    im.save(buf, fmt, **options)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_declaring(
    width: int,
    height: int,
    *,
    color_type: int = 2,
    bit_depth: int = 8,
    rows: int | None = None,
    extra_chunks: bytes = b"",
) -> bytes:
    """A PNG whose header says ``width`` x ``height``, holding ``rows`` rows of black (all of them by
    default: then it is a valid image). Compressed in 1 MB blocks of zeros, so a 400 Mpx bomb is
    built in bounded memory and is a few kB (1-bit) to about 1 MB (RGB) on disk."""
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[color_type]
    row_bytes = 1 + (width * channels * bit_depth + 7) // 8  # filter byte 0 + pixels: all zero
    left = row_bytes * (height if rows is None else rows)
    comp, block, idat = zlib.compressobj(1), bytes(1 << 20), []
    while left:
        n = min(left, len(block))
        idat.append(comp.compress(block[:n]))
        left -= n
    idat.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + extra_chunks
        + _chunk(b"IDAT", b"".join(idat))
        + _chunk(b"IEND", b"")
    )


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small JPEG whose SOF header is patched to say ``width`` x ``height`` (data for 16 x 16)."""
    data = bytearray(encode(photo(16, 16), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def bmp_declaring(width: int, height: int) -> bytes:
    """A small BMP whose header is patched to say ``width`` x ``height``."""
    data = bytearray(encode(photo(8, 8), "BMP"))
    data[18:26] = struct.pack("<ii", width, height)
    return bytes(data)


def png_text_bomb(decompressed: int = 64 << 20) -> bytes:
    """A valid 8 x 8 PNG with a zTXt chunk that inflates to ``decompressed`` bytes."""
    ztxt = b"Comment\x00\x00" + zlib.compress(bytes(decompressed), 9)
    return png_declaring(8, 8, extra_chunks=_chunk(b"zTXt", ztxt))


def mode_image(mode: str, size: tuple[int, int] = (37, 23), seed: int = 0) -> Image.Image:
    """A PIL image in ``mode`` filled with random bytes (``size`` is (width, height))."""
    probe = Image.new(mode, (1, 1))
    nbytes = len(probe.tobytes()) * size[0] * size[1] + size[1]  # "1" packs bits: generous is fine
    raw = np.random.default_rng(seed).integers(0, 256, nbytes, dtype=np.uint8).tobytes()
    if mode == "F":  # random float bytes hold NaNs and infinities: keep them finite photos
        values = np.random.default_rng(seed).uniform(0, 255, size[0] * size[1]).astype(np.float32)
        raw = values.tobytes()
    return Image.frombytes(mode, size, raw)


def odd_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """(H, W, 3) uint8 arrays whose memory layout is anything but plain C order."""
    base = photo(48, 64, seed)
    padded = np.zeros((48, 80, 4), np.uint8)
    padded[:, :64, :3] = base
    readonly = base.copy()
    readonly.flags.writeable = False
    return {
        "negative row stride": base[::-1],
        "negative column stride": base[:, ::-1],
        "negative strides everywhere": base[::-1, ::-1, ::-1],
        "every other row and column": photo(96, 128, seed)[::2, ::2],
        "Fortran order": np.asfortranarray(base),
        "transposed axes": np.ascontiguousarray(base.transpose(1, 0, 2)).transpose(1, 0, 2),
        "channel-last view of a padded RGBA buffer": padded[:, :64, :3],
        "zero strides (broadcast one pixel)": np.broadcast_to(base[:1, :1], base.shape),
        "overlapping rows (as_strided)": np.lib.stride_tricks.as_strided(base, (40, 64, 3), (64 * 3 // 2, 3, 1)),
        "read-only": readonly,
        "one row": base[:1],
        "one column": base[:, :1],
    }


def closed_images(work_dir: Path) -> dict[str, Callable[[], Image.Image]]:
    """Makers of PIL images that cannot give pixels any more."""
    path = work_dir / "closed.png"
    path.write_bytes(encode(photo(24, 32), "PNG"))

    def closed_new():
        im = Image.new("RGB", (32, 24))
        im.close()
        return im

    def closed_after_load():
        im = Image.open(path)
        im.load()
        im.close()
        return im

    def lazy_then_closed():
        with Image.open(path) as im:  # never loaded: its file is gone when edit asks for pixels
            pass
        return im

    return {
        "Image.new then close()": closed_new,
        "opened, loaded, closed": closed_after_load,
        "lazily opened, file closed": lazy_then_closed,
    }


def cut_points(size: int, n: int) -> list[int]:
    """``n`` spread-out cut positions in a file of ``size`` bytes, plus the edges that matter."""
    spread = {int(size * f) for f in np.linspace(0.02, 0.98, n)}
    return sorted(spread | {0, 8, 33, size // 2, size - 12, size - 2, size - 1})


# --- the corpus -------------------------------------------------------------------------------


@dataclass
class Case:
    group: str
    name: str
    expect: str
    run: Callable[[], object]  # returns the edit's result (or None); raises on a refusal


def _file_case(rt, group: str, name: str, expect: str, data, max_pixels=DEFAULT_MAX_PIXELS) -> Case:
    return Case(group, name, expect, lambda: rt.edit(open_image(data, max_pixels=max_pixels)))


def _lazy_case(rt, group: str, name: str, expect: str, data: bytes) -> Case | None:
    """Pillow's lazy open then ``Runtime.edit``: the decode happens inside the library."""
    try:
        image = Image.open(io.BytesIO(data))
    except Exception:  # the caller's own Image.open refused it: not the library's outcome
        return None
    return Case(group, name + " (lazy)", expect, lambda: rt.edit(image))


def _bomb_cases(rt) -> list[Case]:
    g = "bombs and limits"
    side = int(DEFAULT_MAX_PIXELS**0.5) + 100  # just over the limit, under Pillow's own warning
    lazy_big = Image.open(io.BytesIO(png_declaring(side, side, rows=1)))
    at_limit = np.broadcast_to(np.zeros(3, np.uint8), (5000, DEFAULT_MAX_PIXELS // 5000, 3))
    over_limit = np.broadcast_to(np.zeros(3, np.uint8), (5000, DEFAULT_MAX_PIXELS // 5000 + 1, 3))
    return [
        _file_case(
            rt, g, "valid 400 Mpx 1-bit PNG bomb", TOO_LARGE, png_declaring(20000, 20000, color_type=0, bit_depth=1)
        ),
        _file_case(rt, g, "400 Mpx RGB PNG header, 1 row of data", TOO_LARGE, png_declaring(20000, 20000, rows=1)),
        _file_case(
            rt,
            g,
            "400 Mpx PNG, max_pixels=None (Pillow's bomb error)",
            TOO_LARGE,
            png_declaring(20000, 20000, rows=1),
            max_pixels=None,
        ),
        _file_case(rt, g, "valid 150 Mpx one-row PNG", TOO_LARGE, png_declaring(150_000_000, 1, color_type=0)),
        _file_case(
            rt, g, f"{side}x{side} PNG header (just over the limit)", TOO_LARGE, png_declaring(side, side, rows=1)
        ),
        _file_case(rt, g, "JPEG header declaring 65535x65535", TOO_LARGE, jpeg_declaring(65535, 65535)),
        _file_case(rt, g, "JPEG header declaring 10000x6000", TOO_LARGE, jpeg_declaring(10000, 6000)),
        _file_case(rt, g, "BMP header declaring 30000x30000", TOO_LARGE, bmp_declaring(30000, 30000)),
        _file_case(rt, g, "PNG with a 64 MB zTXt text bomb", TYPED, png_text_bomb()),
        Case(g, f"lazily opened {side}x{side} PNG passed to edit", TOO_LARGE, lambda: rt.edit(lazy_big)),
        Case(
            g,
            "array 20000x20000 (zero strides)",
            TOO_LARGE,
            lambda: rt.edit(np.broadcast_to(np.zeros(3, np.uint8), (20000, 20000, 3))),
        ),
        Case(
            g,
            "array 1 x 150,000,000 (zero strides)",
            TOO_LARGE,
            lambda: rt.edit(np.broadcast_to(np.zeros(3, np.uint8), (1, 150_000_000, 3))),
        ),
        Case(
            g, f"array of exactly max_pixels ({at_limit.shape[0]}x{at_limit.shape[1]})", OK, lambda: rt.edit(at_limit)
        ),
        Case(g, "array of max_pixels + 5000", TOO_LARGE, lambda: rt.edit(over_limit)),
    ]


def _truncation_cases(rt, scale: float) -> list[Case]:
    cases = []
    files = {
        "PNG": encode(photo(240, 320), "PNG"),
        "JPEG": encode(photo(240, 320), "JPEG", quality=90),
        "progressive JPEG": encode(photo(240, 320), "JPEG", progressive=True),
    }
    for fmt, data in files.items():
        for cut in cut_points(len(data), max(3, int(8 * scale))):
            # the last bytes are trailers (IEND, EOI) a decoder may do without: either outcome is fine
            expect = OK_OR_TYPED if cut >= len(data) - 16 else TYPED
            name = f"{fmt} cut at {cut} of {len(data)} bytes"
            cases.append(_file_case(rt, "truncated files", name, expect, data[:cut]))
            lazy = _lazy_case(rt, "truncated files", name, expect, data[:cut])
            if lazy is not None:
                cases.append(lazy)
    rng = np.random.default_rng(17)
    for i in range(int(40 * scale)):
        fmt = ("PNG", "JPEG")[i % 2]
        data = bytearray(files[fmt])
        for pos in rng.integers(0, len(data), 1 + i % 4):
            data[pos] ^= 1 << int(rng.integers(0, 8))
        cases.append(_file_case(rt, "byte flips", f"{fmt} #{i}: {1 + i % 4} bit flips", OK_OR_TYPED, bytes(data)))
    return cases


def _mode_cases(rt) -> list[Case]:
    cases = []
    for mode in PIL_MODES:
        expect = TYPED if mode in UNCONVERTIBLE_MODES else OK
        cases.append(Case("PIL modes", f"in memory: {mode}", expect, _same_as_rgb(rt, mode_image(mode))))
    saved = {
        "1": "PNG",
        "L": "PNG",
        "LA": "PNG",
        "P": "GIF",
        "RGBA": "WEBP",
        "CMYK": "JPEG",
        "YCbCr": "TIFF",
        "LAB": "TIFF",
        "I": "TIFF",
        "I;16": "PNG",
        "F": "TIFF",
    }
    for mode, fmt in saved.items():
        data = encode(mode_image(mode), fmt)
        cases.append(_file_case(rt, "PIL modes", f"{mode} saved as {fmt}", OK, data))
    data = encode(mode_image("P"), "PNG", transparency=0)
    cases.append(_file_case(rt, "PIL modes", "P with a transparent colour, PNG", OK, data))
    return cases


def _same_as_rgb(rt, image: Image.Image) -> Callable[[], object]:
    """Edit ``image`` and require the bytes of editing ``image.convert("RGB")``."""

    def check():
        out = rt.edit(image)
        want = rt.edit(image.convert("RGB"))
        if out.size != image.size or not np.array_equal(np.asarray(out), np.asarray(want)):
            raise AssertionError(f"{image.mode}: edit differs from the edit of its RGB conversion")
        return out

    return check


def _same_as_contiguous(rt, array: np.ndarray) -> Callable[[], object]:
    def check():
        out = rt.edit(array)
        if not np.array_equal(out, rt.edit(np.ascontiguousarray(array))):
            raise AssertionError("edit of a strided array differs from the edit of its contiguous copy")
        return out

    return check


def _misc_cases(rt, work_dir: Path) -> list[Case]:
    cases = [Case("odd strides", name, OK, _same_as_contiguous(rt, a)) for name, a in odd_arrays().items()]
    cases += [
        Case("closed images", name, TYPED, lambda make=make: rt.edit(make()))
        for name, make in closed_images(work_dir).items()
    ]
    g = "empty"
    cases += [
        Case(g, "PIL 0x5", TYPED, lambda: rt.edit(Image.new("RGB", (0, 5)))),
        Case(g, "PIL 5x0", TYPED, lambda: rt.edit(Image.new("RGB", (5, 0)))),
        Case(g, "array 0x5x3", TYPED, lambda: rt.edit(np.zeros((0, 5, 3), np.uint8))),
        Case(g, "array 5x0x3", TYPED, lambda: rt.edit(np.zeros((5, 0, 3), np.uint8))),
        _file_case(rt, g, "PNG header 0x0", TYPED, png_declaring(0, 0, rows=0)),
        _file_case(rt, g, "PNG header 0x100", TYPED, png_declaring(0, 100)),
    ]
    (work_dir / "notes.txt").write_text("not an image\n")
    g = "not images"
    junk = {
        "empty bytes": b"",
        "text": b"hello, world\n",
        "PNG signature only": b"\x89PNG\r\n\x1a\n",
        "PDF header": b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n",
        "HTML": b"<!doctype html><title>x</title>",
        "random bytes": np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
    }
    cases += [_file_case(rt, g, name, TYPED, data) for name, data in junk.items()]
    cases += [
        _file_case(rt, g, name, TYPED, path)
        for name, path in {
            "a text file": work_dir / "notes.txt",
            "a directory": work_dir,
            "a missing path": work_dir / "missing.png",
            "a path with a NUL": "photo\x00.png",
        }.items()
    ]
    cases += [
        Case(g, f"edit({label})", TYPED, lambda v=value: rt.edit(v))
        for label, value in {
            "None": None,
            "a str": "photo.jpg",
            "bytes": b"\x89PNG",
            "a list": [[[0, 0, 0]]],
            "float array": np.zeros((8, 8, 3), np.float32),
            "bool array": np.zeros((8, 8, 3), bool),
            "4 channels": np.zeros((8, 8, 4), np.uint8),
            "2-D": np.zeros((8, 8), np.uint8),
        }.items()
    ]
    return cases


def build_cases(rt, work_dir: Path, scale: float = 1.0) -> list[Case]:
    """The whole corpus against the opened runtime ``rt``."""
    return _bomb_cases(rt) + _truncation_cases(rt, scale) + _mode_cases(rt) + _misc_cases(rt, work_dir)


def outcome(case: Case) -> tuple[str, str]:
    """(ok | too large | typed | untyped, detail) of running one case."""
    try:
        case.run()
        return OK, ""
    except ImageTooLargeError as e:
        return TOO_LARGE, f"ImageTooLargeError: {e}"
    except PocketganError as e:
        return TYPED, f"{type(e).__name__}: {e}"
    except Exception as e:  # the finding this corpus exists for
        return "untyped", f"{type(e).__name__}: {e}"


def is_failure(expect: str, got: str) -> bool:
    if got == "untyped":
        return True
    if expect == OK_OR_TYPED:
        return False
    if expect == TYPED:
        return got not in (TYPED, TOO_LARGE)
    return got != expect


# --- peak memory ------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    """This process's peak RSS in MB: VmHWM on Linux, where ``ru_maxrss`` is no use in a child (it
    keeps the high-water mark of the process that forked it across exec), else ``ru_maxrss``."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return maxrss / 2**20 if sys.platform == "darwin" else maxrss / 1024  # bytes on macOS, kB elsewhere


def measure_peak_rss(path: Path, *, as_array: bool = False, timeout: float = 300) -> dict:
    """Peak RSS of ``open_image(path)`` + ``Runtime.edit`` in a fresh interpreter (see ``peak_rss_mb``)."""
    # -P: the script's folder (this package's modules) stays off sys.path
    cmd = [sys.executable, "-P", str(Path(__file__).resolve()), str(path)] + (["--array"] if as_array else [])
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"peak RSS measurement failed:\n{r.stderr[-4000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _measure_main(argv: list[str]) -> None:
    """Subprocess side of :func:`measure_peak_rss`: prints one JSON line."""
    from pocketgan.runtime import open_bundle
    from pocketgan.runtime.imaging import as_rgb_array

    rt = open_bundle()
    rt.edit(np.zeros((64, 64, 3), np.uint8))  # sessions warm: the baseline includes them
    baseline = peak_rss_mb()
    t = time.perf_counter()
    image = open_image(argv[0])
    w, h = image.size
    if "--array" in argv:  # the array alone goes in, as an app holding pixels in numpy would
        image = as_rgb_array(image)
    out = rt.edit(image)
    seconds = time.perf_counter() - t
    peak = peak_rss_mb()
    assert (out.size if isinstance(out, Image.Image) else out.shape[1::-1]) == (w, h)
    print(json.dumps({"width": w, "height": h, "baseline_mb": baseline, "peak_mb": peak, "seconds": seconds}))


def _memory_table(work_dir: Path) -> tuple[str, list[dict]]:
    rows = []
    for label, (h, w) in (("12 Mpx photo", PHOTO_12MP), ("largest accepted photo", PHOTO_LARGEST)):
        path = work_dir / f"photo-{w}x{h}.jpg"
        Image.fromarray(photo(h, w)).save(path, quality=92)
        for as_array in (False, True):
            m = measure_peak_rss(path, as_array=as_array)
            m.update(label=label, input="numpy array" if as_array else "PIL image (file)")
            rows.append(m)
        path.unlink()
    lines = [
        "| photo | size | edit input | peak RSS | above the opened runtime | per pixel | time |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in rows:
        extra = m["peak_mb"] - m["baseline_mb"]
        px = m["width"] * m["height"]
        lines.append(
            f"| {m['label']} | {m['width']}x{m['height']} ({px / 1e6:.1f} Mpx) | {m['input']} | "
            f"{m['peak_mb']:.0f} MB | {extra:.0f} MB | {extra * 2**20 / px:.1f} B | {m['seconds']:.1f} s |"
        )
    return "\n".join(lines), rows


# --- report -----------------------------------------------------------------------------------


def run(work_dir: Path, scale: float = 1.0) -> dict:
    """Run the corpus and the memory measurement; markdown for docs/reliability.md."""
    from pocketgan.runtime import open_bundle

    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    rt = open_bundle()
    results = []
    for case in build_cases(rt, work_dir, scale):
        got, detail = outcome(case)
        results.append((case, got, detail, is_failure(case.expect, got)))
    memory, _ = _memory_table(work_dir)
    return {"title": TITLE, "markdown": _markdown(results, memory), "failures": sum(r[3] for r in results)}


def _markdown(results, memory: str) -> str:
    groups: dict[str, list] = {}
    for r in results:
        groups.setdefault(r[0].group, []).append(r)
    failures = sum(r[3] for r in results)
    untyped = sum(r[1] == "untyped" for r in results)
    lines = [
        f"{len(results)} bad or unusual images through `open_image` and `Runtime.edit` (ONNX, embedded default "
        f"bundle, `max_pixels` = {DEFAULT_MAX_PIXELS:,}): **{untyped} untyped exceptions, {failures} failures**.",
        "",
        "| group | cases | ok | typed error | of which ImageTooLargeError | untyped | failures |",
        "|---|---|---|---|---|---|---|",
    ]
    for group, rs in groups.items():
        n = {k: sum(r[1] == k for r in rs) for k in (OK, TYPED, TOO_LARGE, "untyped")}
        lines.append(
            f"| {group} | {len(rs)} | {n[OK]} | {n[TYPED] + n[TOO_LARGE]} | {n[TOO_LARGE]} | "
            f"{n['untyped']} | {sum(r[3] for r in rs)} |"
        )
    lines += [
        "",
        "Peak memory (`python tests/reliability/images.py PHOTO.jpg [--array]`: a fresh interpreter "
        "opens the bundle, edits a 64x64 image, then times `open_image` + `edit`; peak RSS is "
        "the kernel's high-water mark, VmHWM, read before and after):",
        "",
        memory,
        "",
        "<details><summary>every case</summary>",
        "",
        "| group | case | expected | outcome | detail |",
        "|---|---|---|---|---|",
    ]
    for case, got, detail, failed in results:
        shown = detail.replace("|", "\\|").replace("\n", " ")[:140]
        lines.append(f"| {case.group} | {case.name} | {case.expect} | {'**FAIL** ' if failed else ''}{got} | {shown} |")
    lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    _measure_main(sys.argv[1:])
