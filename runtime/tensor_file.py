"""A strict reader of float32 safetensors files, numpy only (the runtime has no torch).

The format: an 8-byte little-endian header length, a JSON header ``{name: {"dtype", "shape",
"data_offsets": [begin, end]}, "__metadata__": {...}}``, then the raw little-endian data. Every
field is checked before a byte is interpreted, so a hostile file gives :class:`ArtifactFormatError`
naming the file, never an untyped exception or an out-of-bounds read.
"""

from __future__ import annotations

import json
import math

import numpy as np

from pocketgan.runtime.errors import ArtifactFormatError

_MAX_HEADER = 1 << 20  # a few tensors need a few hundred bytes


def _fail(file: str, why: str) -> ArtifactFormatError:
    return ArtifactFormatError(f"{file} is not a valid float32 safetensors file: {why}", file=file)


def _entry_shape(name: str, entry, file: str) -> tuple[int, ...]:
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise _fail(file, f"tensor {name!r} needs exactly dtype, shape and data_offsets")
    if entry["dtype"] != "F32":
        raise _fail(file, f"tensor {name!r} has dtype {entry['dtype']!r}, expected F32")
    shape = entry["shape"]
    if not isinstance(shape, list) or len(shape) > 8:
        raise _fail(file, f"tensor {name!r} has shape {shape!r}")
    for dim in shape:
        if type(dim) is not int or not 0 <= dim <= 1 << 24:
            raise _fail(file, f"tensor {name!r} has shape {shape!r}")
    return tuple(shape)


def read_float32_safetensors(data: bytes, file: str) -> dict[str, np.ndarray]:
    """``{name: float32 array}`` of a safetensors file's bytes (already checksum-verified).

    Raises :class:`ArtifactFormatError` for anything but a well-formed file of finite float32
    tensors whose data regions exactly tile the data section.
    """
    if len(data) < 8:
        raise _fail(file, "shorter than its 8-byte header length")
    header_len = int.from_bytes(data[:8], "little")
    if header_len > min(_MAX_HEADER, len(data) - 8):
        raise _fail(file, f"header length {header_len} does not fit the file")
    try:
        header = json.loads(data[8 : 8 + header_len].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise _fail(file, f"header is not JSON ({type(e).__name__})") from None
    if not isinstance(header, dict):
        raise _fail(file, "header is not a JSON object")
    header.pop("__metadata__", None)
    body = memoryview(data)[8 + header_len :]
    tensors, regions = {}, []
    for name, entry in header.items():
        shape = _entry_shape(name, entry, file)
        offsets = entry["data_offsets"]
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)):
            raise _fail(file, f"tensor {name!r} has data_offsets {offsets!r}")
        begin, end = offsets
        if not 0 <= begin <= end <= len(body) or end - begin != 4 * math.prod(shape):
            raise _fail(file, f"tensor {name!r}: data_offsets {offsets} do not match shape {list(shape)}")
        regions.append((begin, end))
        array = np.frombuffer(body[begin:end], dtype="<f4").reshape(shape).astype(np.float32)
        if not np.isfinite(array).all():
            raise _fail(file, f"tensor {name!r} holds non-finite values")
        tensors[name] = array
    position = 0
    for begin, end in sorted(regions):
        if begin != position:
            raise _fail(file, "tensor data regions overlap or leave gaps")
        position = end
    if position != len(body):
        raise _fail(file, "bytes after the last tensor")
    return tensors
