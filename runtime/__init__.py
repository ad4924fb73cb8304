"""pocketgan.runtime: open a bundle, hot-swap concepts, edit images.

Depends on numpy, Pillow, jsonschema and onnxruntime only; never imports torch.

    >>> from pocketgan.runtime import open_bundle
    >>> rt = open_bundle()                 # the embedded default bundle
    >>> rt.set_concept("pencil_sketch")
    >>> edited = rt.edit(photo)            # PIL image or H x W x 3 uint8 array

A generation bundle (one-step text-to-image) opens the same way, or with
:class:`GenerationRuntime`: ``open_bundle(path).generate("red apple", seed=3)``.
"""

from pocketgan.runtime.errors import (
    AdapterMismatchError,
    ArtifactFormatError,
    ArtifactMissingError,
    BackendUnavailableError,
    BundleError,
    ChecksumError,
    ContainmentError,
    ImageTooLargeError,
    InterfaceMismatchError,
    InvalidImageError,
    ManifestError,
    MixError,
    PocketganError,
    TargetNotFoundError,
    UnknownConceptError,
    UnsupportedFormatError,
)
from pocketgan.runtime.generation import GenerationInputError, GenerationRuntime, default_generation_bundle_path
from pocketgan.runtime.generation_manifest import read_generation_manifest, verify_generation_bundle
from pocketgan.runtime.imaging import DEFAULT_MAX_PIXELS, open_image
from pocketgan.runtime.manifest import FORMAT_VERSION, Manifest, load_manifest, read_manifest, verify_bundle
from pocketgan.runtime.session import Runtime, default_bundle_path, open_bundle

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "FORMAT_VERSION",
    "AdapterMismatchError",
    "ArtifactFormatError",
    "ArtifactMissingError",
    "BackendUnavailableError",
    "BundleError",
    "ChecksumError",
    "ContainmentError",
    "GenerationInputError",
    "GenerationRuntime",
    "ImageTooLargeError",
    "InterfaceMismatchError",
    "InvalidImageError",
    "Manifest",
    "ManifestError",
    "MixError",
    "PocketganError",
    "Runtime",
    "TargetNotFoundError",
    "UnknownConceptError",
    "UnsupportedFormatError",
    "default_bundle_path",
    "default_generation_bundle_path",
    "load_manifest",
    "open_bundle",
    "open_image",
    "read_generation_manifest",
    "read_manifest",
    "verify_bundle",
    "verify_generation_bundle",
]
