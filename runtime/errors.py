"""Typed errors of the pocketgan runtime. All derive from :class:`PocketganError`."""

from __future__ import annotations


class PocketganError(Exception):
    """Base class of every error pocketgan raises on purpose."""


class BundleError(PocketganError):
    """A bundle cannot be used as it is on disk.

    Attributes:
        file: the bundle file at fault, relative to the bundle (``"manifest.json"``,
            ``"onnx/generator.onnx"``), or ``None`` when no single file is.
        field: the manifest field at fault (``"io.input.shape"``,
            ``"targets.onnx.concept_inputs"``), or ``None``.
    """

    def __init__(self, message: str = "", *, file: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.file = file
        self.field = field


class ManifestError(BundleError, ValueError):
    """manifest.json is missing, not JSON, or does not follow the schema."""


class UnsupportedFormatError(BundleError):
    """The bundle was written by a newer pocketgan (higher ``format_version``)."""


class ArtifactMissingError(BundleError, FileNotFoundError):
    """A file the manifest lists is not in the bundle."""


class ChecksumError(BundleError):
    """A file's sha256 or size differs from the manifest: corrupted or tampered with."""


class ContainmentError(BundleError):
    """A manifest path is not a plain relative path inside the bundle (absolute, ``..``,
    backslash, empty segment), or resolves outside it (a symlink leaving the bundle)."""


class ArtifactFormatError(BundleError):
    """A listed file has the right checksum but is not what the manifest says it is (an
    ONNX model that does not parse, an adapter or ``.pte`` its library cannot load)."""


class InterfaceMismatchError(BundleError):
    """A model's or program's real inputs/outputs (names, dtypes, shapes) differ from the
    manifest's ``io`` or ``concept_inputs``."""


class AdapterMismatchError(InterfaceMismatchError):
    """An ``.onnx_adapter`` does not hold exactly ``targets.onnx.concept_inputs``: a tensor
    missing or extra, another shape or dtype, or non-finite values."""


class TargetNotFoundError(BundleError):
    """The bundle has no export for the requested backend (run ``pocketgan export``)."""


class UnknownConceptError(PocketganError, KeyError):
    """The bundle has no concept of that name."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class InvalidImageError(PocketganError, ValueError):
    """The image is not a PIL image or an H x W x 3 uint8 array with pixels, or cannot be decoded."""


class ImageTooLargeError(InvalidImageError):
    """The image has more pixels than ``max_pixels`` (refused before decoding), or a decompression bomb."""


class BackendUnavailableError(PocketganError, RuntimeError):
    """The backend's library is not installed or cannot run on this platform."""


class MixError(PocketganError, ValueError):
    """A strength or blend that cannot run: a weight out of [0, 1.5], or an export without
    strength and blending (merged mode, a bundle without a neutral concept)."""
