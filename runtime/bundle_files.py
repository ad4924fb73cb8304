"""Reading a bundle's files safely (no torch here).

Every file the runtime reads goes through this module:

- :func:`check_relpath`: a manifest path is a plain relative path (letters, digits, ``_``,
  ``.``, ``-`` in ``/``-separated segments; no ``.`` or ``..`` segment, no absolute path,
  backslash, NUL or empty segment);
- :func:`resolve_in_bundle`: the path, with every symlink resolved, stays inside the bundle
  (:class:`ContainmentError` otherwise);
- :func:`read_artifact`: the file's size and sha256 match the manifest, read once; callers
  hand *these bytes* to the library that loads them, so nothing can change in between;
- :class:`PrivateCopies`: for a library that only loads from a path (ONNX Runtime's
  ``LoraAdapter``, an ExecuTorch ``.ptd``, Core ML packages), the verified bytes are
  written to a private temporary directory (mode 0700) and loaded from there;
- :func:`parse_json`: JSON with a size, nesting depth and number range bound checked
  before and while parsing (no ``RecursionError``, no 5,000-digit integers, no NaN).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pocketgan.runtime.errors import (
    ArtifactMissingError,
    BundleError,
    ChecksumError,
    ContainmentError,
    ManifestError,
)

#: JSON files larger than this are refused before parsing (the default manifest is ~50 KiB).
MAX_JSON_BYTES = 4 << 20
#: Deepest nesting of arrays and objects accepted (the schema needs about 8).
MAX_JSON_DEPTH = 64
#: Integers must fit in a signed 64-bit integer (what the Kotlin and Swift readers use).
INT64_MAX = (1 << 63) - 1

_SEGMENT = r"[A-Za-z0-9_.\-]+"
_PATH = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT})*")
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def path_problem(relpath: object) -> str | None:
    """Why ``relpath`` is not a plain relative bundle path, or ``None`` when it is one."""
    if not isinstance(relpath, str):
        return f"is a {type(relpath).__name__}, not a string"
    if not relpath:
        return "is empty"
    if "\x00" in relpath:
        return "contains a NUL character"
    if "\\" in relpath:
        return "contains a backslash (bundle paths are '/'-separated)"
    if relpath.startswith("/") or re.match(r"[A-Za-z]:", relpath):
        return "is absolute"
    segments = relpath.split("/")
    if "" in segments:
        return "has an empty segment ('//' or a leading/trailing '/')"
    if "." in segments or ".." in segments:
        return "has a '.' or '..' segment"
    if not _PATH.fullmatch(relpath):
        return "has characters other than letters, digits, '_', '.', '-' and '/'"
    return None


def check_relpath(relpath: object, *, field: str | None = None) -> str:
    """``relpath`` unchanged when it is a plain relative bundle path; else :class:`ContainmentError`."""
    problem = path_problem(relpath)
    if problem is not None:
        where = f"{field} " if field else ""
        raise ContainmentError(f"bundle path {where}{relpath!r} {problem}", file=str(relpath), field=field)
    return relpath


def resolve_in_bundle(bundle_dir: Path | str, relpath: str, *, field: str | None = None) -> Path:
    """The real path of ``relpath`` inside ``bundle_dir``, every symlink resolved.

    Raises :class:`ContainmentError` when the path is not a plain relative path or when it
    resolves outside the bundle (a symlink leaving it). It need not exist.
    """
    check_relpath(relpath, field=field)
    root = os.path.realpath(bundle_dir)
    target = os.path.realpath(os.path.join(root, relpath))
    if target == root or os.path.commonpath([root, target]) != root:
        raise ContainmentError(
            f"{relpath} in bundle {bundle_dir} resolves to {target}, outside the bundle (a symlink leaving it?)",
            file=relpath,
            field=field,
        )
    return Path(target)


def artifact_record(manifest: Any, relpath: str) -> tuple[str, int]:
    """(sha256, bytes) the manifest lists for ``relpath``: a typed Manifest or a manifest dict."""
    artifacts = manifest.artifacts if hasattr(manifest, "artifacts") else manifest.get("artifacts", {})
    record = artifacts.get(relpath) if isinstance(artifacts, Mapping) else None
    if record is None:
        raise ManifestError(f"{relpath!r} is not listed in the manifest's artifacts", file=relpath, field="artifacts")
    if isinstance(record, Mapping):
        return record["sha256"], record["bytes"]
    return record.sha256, record.bytes


def artifact_path(bundle_dir: Path, manifest: Any, relpath: str) -> Path:
    """Where a listed artifact lives (contained in the bundle); raises if missing or not listed."""
    artifact_record(manifest, relpath)
    path = resolve_in_bundle(bundle_dir, relpath, field="artifacts")
    if not path.is_file():
        raise ArtifactMissingError(f"bundle {bundle_dir} is missing {relpath} (listed in its manifest)", file=relpath)
    return path


def _open_regular(path: Path, relpath: str, bundle_dir: Path) -> int:
    """A read-only descriptor of the regular file ``path`` (never a FIFO, device or symlink)."""
    try:
        fd = os.open(path, _READ_FLAGS)
    except FileNotFoundError:
        raise ArtifactMissingError(
            f"bundle {bundle_dir} is missing {relpath} (listed in its manifest)", file=relpath
        ) from None
    except OSError as e:  # ELOOP: the last component became a symlink after it was resolved
        raise ContainmentError(f"{relpath} in bundle {bundle_dir} cannot be opened safely: {e}", file=relpath) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ArtifactMissingError(f"{relpath} in bundle {bundle_dir} is not a regular file", file=relpath)
    return fd


def read_artifact(bundle_dir: Path, manifest: Any, relpath: str) -> bytes:
    """Read a listed artifact once and check its size and sha256 against the manifest.

    The size is checked before reading, so memory is bounded by what the manifest lists.
    Raises :class:`ManifestError` (not listed), :class:`ContainmentError` (outside the
    bundle), :class:`ArtifactMissingError` or :class:`ChecksumError`.
    """
    sha256, size = artifact_record(manifest, relpath)
    path = resolve_in_bundle(bundle_dir, relpath, field="artifacts")
    fd = _open_regular(path, relpath, bundle_dir)
    with os.fdopen(fd, "rb") as f:
        actual = os.fstat(f.fileno()).st_size
        data = f.read(size + 1) if actual == size else b""
    if actual != size or len(data) != size or sha256_bytes(data) != sha256:
        raise ChecksumError(
            f"{relpath} in {bundle_dir} does not match its manifest checksum "
            f"({actual} bytes, expected {size}): the file is corrupted or was modified",
            file=relpath,
        )
    return data


def verify_artifact(bundle_dir: Path, manifest: Any, relpath: str) -> Path:
    """Check an artifact's checksum; return its contained path.

    Check-then-use: a library that opens the returned path reads the file a second time.
    The runtime loads :func:`read_artifact`'s bytes (or a :class:`PrivateCopies` copy) instead.
    """
    read_artifact(bundle_dir, manifest, relpath)
    return resolve_in_bundle(bundle_dir, relpath, field="artifacts")


class PrivateCopies:
    """Verified bytes written to a private temporary directory, for libraries that load
    only from a path. The directory (mode 0700, from :func:`tempfile.mkdtemp`) is removed by
    :meth:`close` or when this object is collected."""

    def __init__(self, prefix: str = "pocketgan-") -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix=prefix, ignore_cleanup_errors=True)
        self.root = Path(self._tmp.name)

    def write(self, relpath: str, data: bytes) -> Path:
        """Write ``data`` at ``relpath`` (a checked bundle path) below the private root."""
        path = self.root / check_relpath(relpath)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return path

    def close(self) -> None:
        self._tmp.cleanup()


# --- bounded JSON ---------------------------------------------------------------------------


def _unescaped(data: bytes) -> bytes:
    """JSON text with every escape (``\\\\``, ``\\"``, ...) blanked, same length: a quote
    left in it opens or closes a string."""
    return data.replace(b"\\\\", b"__").replace(b'\\"', b"__")


def json_depth(data: bytes) -> int:
    """Deepest nesting of ``[``/``{`` outside strings in JSON text, without parsing it.

    Linear in ``len(data)`` whatever the input. Escapes are removed first: ``bytes.replace``
    pairs a run of backslashes left to right as JSON does (``\\\\`` is one escaped
    backslash, an odd one left over escapes the next byte), then ``\\"`` is no quote.
    Brackets count only outside strings. UTF-8 continuation bytes are all >= 0x80, so
    scanning bytes is exact.
    """
    a = np.frombuffer(_unescaped(data), np.uint8)
    marks = a[(a == 0x22) | (a == 0x5B) | (a == 0x5D) | (a == 0x7B) | (a == 0x7D)]
    quote = marks == 0x22
    outside = ((np.cumsum(quote) - quote) & 1) == 0
    opens = outside & ((marks == 0x5B) | (marks == 0x7B))
    closes = outside & ((marks == 0x5D) | (marks == 0x7D))
    return int(np.cumsum(opens.astype(np.int64) - closes).max(initial=0))


class _Refused(ValueError):
    """A JSON value this reader refuses (raised from the parser's hooks)."""


def _int(text: str) -> int:
    if len(text.lstrip("-")) > 19:
        raise _Refused(f"integer with {len(text.lstrip('-'))} digits is out of range (64-bit integers only)")
    value = int(text)
    if not -INT64_MAX - 1 <= value <= INT64_MAX:
        raise _Refused(f"integer {value} is out of range (64-bit integers only)")
    return value


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"number {text[:40]} is out of range (overflows to infinity)")
    return value


def _constant(text: str) -> float:
    raise _Refused(f"{text} is not JSON (NaN and Infinity are not numbers in JSON)")


def _object(pairs: list[tuple[str, Any]]) -> dict:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise _Refused(f"key {dup!r} appears twice in one object (readers would disagree on its value)")
    return out


def parse_json(data: bytes, *, file: str, error: type[BundleError] = ManifestError) -> Any:
    """Parse JSON ``data`` (the bytes of bundle file ``file``) within this module's bounds.

    Refuses, as ``error`` naming ``file``: more than :data:`MAX_JSON_BYTES`, nesting deeper
    than :data:`MAX_JSON_DEPTH` (checked before parsing), invalid UTF-8 or JSON, integers
    outside 64 bits, numbers that overflow, NaN/Infinity, and duplicate keys.
    """
    if len(data) > MAX_JSON_BYTES:
        raise error(f"{file} is {len(data)} bytes, more than the {MAX_JSON_BYTES} a bundle's JSON may have", file=file)
    depth = json_depth(data)
    if depth > MAX_JSON_DEPTH:
        raise error(f"{file} nests arrays/objects {depth} deep, more than {MAX_JSON_DEPTH}", file=file)
    try:
        text = data.decode("utf-8")
        return json.loads(text, object_pairs_hook=_object, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except _Refused as e:
        raise error(f"{file}: {e}", file=file) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise error(f"{file} is not valid JSON: {e}", file=file) from None
    except RecursionError:  # unreachable after the depth check; kept so no RecursionError escapes
        raise error(f"{file} nests too deep", file=file) from None
