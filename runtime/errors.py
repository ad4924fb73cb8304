"""Typed errors of the pocketgan runtime. All derive from :class:`PocketganError`."""

from __future__ import annotations


class PocketganError(Exception):
    """Base class of every error pocketgan raises on purpose."""


class BundleError(PocketganError):
    """A bundle cannot be used as it is on disk."""


class ManifestError(BundleError, ValueError):
    """manifest.json is missing, not JSON, or does not follow the schema."""


class UnsupportedFormatError(BundleError):
    """The bundle was written by a newer pocketgan (higher ``format_version``)."""


class ArtifactMissingError(BundleError, FileNotFoundError):
    """A file the manifest lists is not in the bundle."""


class ChecksumError(BundleError):
    """A file's sha256 or size differs from the manifest: corrupted or tampered with."""


class TargetNotFoundError(BundleError):
    """The bundle has no export for the requested backend (run ``pocketgan export``)."""


class UnknownConceptError(PocketganError, KeyError):
    """The bundle has no concept of that name."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class InvalidImageError(PocketganError, ValueError):
    """The image is not a PIL image or an H x W x 3 uint8 array with pixels."""


class BackendUnavailableError(PocketganError, RuntimeError):
    """The backend's library is not installed or cannot run on this platform."""
