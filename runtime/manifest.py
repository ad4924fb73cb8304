"""Reading and checking a bundle's manifest.json (no torch here).

The manifest is the contract between the exporter and every runtime (Python, web,
Android, iOS); ``docs/bundle-format.md`` describes it and ``manifest.schema.json`` is its
JSON Schema. Loading checks, in order:

1. the file is at most 4 MiB and nests at most 64 deep (before parsing), and parses as
   JSON with 64-bit integers, finite numbers and no duplicate keys;
2. ``format_version`` is one this runtime understands;
3. the schema holds, read strictly: an integer is a JSON integer (``2.0`` and ``true`` are
   not), and a pattern's ``$`` matches only at the very end (ECMA-262, as in the apps);
4. what it means holds (:mod:`pocketgan.runtime.manifest_checks`).

:func:`read_manifest` returns the typed view (:class:`~pocketgan.runtime.manifest_view.Manifest`);
:func:`load_manifest` the validated dict. Artifacts are contained in the bundle and their
checksums verified by :func:`read_artifact` when a file is used; :func:`verify_bundle`
checks every artifact and what the exports hold.
"""

from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from pocketgan.runtime.bundle_files import (
    MAX_JSON_BYTES,
    artifact_path,
    parse_json,
    read_artifact,
    resolve_in_bundle,
    sha256_bytes,
    sha256_file,
    verify_artifact,
)
from pocketgan.runtime.errors import ArtifactMissingError, ManifestError, UnsupportedFormatError
from pocketgan.runtime.manifest_checks import check_semantics
from pocketgan.runtime.manifest_view import Manifest, as_manifest

__all__ = [
    "FORMAT_NAME",
    "BASE_FORMAT_VERSION",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "Manifest",
    "artifact_path",
    "as_manifest",
    "load_manifest",
    "manifest_schema",
    "read_artifact",
    "read_manifest",
    "sha256_bytes",
    "sha256_file",
    "validate_manifest",
    "verify_artifact",
    "verify_bundle",
]

MANIFEST_NAME = "manifest.json"
FORMAT_NAME = "pocketgan-bundle"
FORMAT_VERSION = 2
#: the version of a bundle without strength and blending (no ``neutral``): still written, still read
BASE_FORMAT_VERSION = 1


@lru_cache(maxsize=1)
def manifest_schema() -> dict:
    return json.loads(resources.files("pocketgan.runtime").joinpath("manifest.schema.json").read_text("utf-8"))


def ecma_pattern(pattern: str) -> str:
    """A JSON Schema (ECMA-262) pattern as a Python regex with the same meaning.

    In ECMA-262 (no multiline flag) ``$`` matches only at the end of the input; Python's
    ``$`` also matches before a trailing newline, so ``"name\\n"`` would pass ``^[a-z]+$``.
    Python's ``\\Z`` is ECMA's ``$``.
    """
    return re.sub(r"(?<!\\)\$", r"\\Z", pattern)


@lru_cache(maxsize=1)
def _validator_class():
    import jsonschema
    from jsonschema.exceptions import ValidationError

    base = jsonschema.Draft202012Validator

    def pattern(validator, patrn, instance, schema):
        if validator.is_type(instance, "string") and not re.search(ecma_pattern(patrn), instance):
            yield ValidationError(f"{instance!r} does not match {patrn!r}")

    def is_integer(checker, instance) -> bool:  # JSON integers only: not 2.0 (jsonschema's default), not true
        return isinstance(instance, int) and not isinstance(instance, bool)

    return jsonschema.validators.extend(
        base,
        validators={"pattern": pattern},
        type_checker=base.TYPE_CHECKER.redefine("integer", is_integer),
    )


def _dotted(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def validate_manifest(manifest: Any) -> dict:
    """Check a parsed manifest; return it unchanged or raise a :class:`ManifestError`
    (:class:`UnsupportedFormatError` for a newer ``format_version``)."""
    if not isinstance(manifest, dict):
        raise ManifestError("manifest must be a JSON object", file=MANIFEST_NAME)
    if manifest.get("format") != FORMAT_NAME:
        raise ManifestError(
            f"not a pocketgan bundle manifest (format={manifest.get('format')!r})", file=MANIFEST_NAME, field="format"
        )
    if manifest.get("kind") == "generation":
        raise ManifestError(
            "this is a generation bundle (text to image), not an editing bundle: open it with "
            "pocketgan.runtime.open_bundle() or GenerationRuntime, or `pocketgan generate --bundle DIR`",
            file=MANIFEST_NAME,
            field="kind",
        )
    check_against_schema(manifest, manifest_schema(), FORMAT_VERSION, "bundle")
    check_semantics(manifest)
    return manifest


def check_against_schema(manifest: dict, schema: dict, newest: int, what: str) -> None:
    """The checks every bundle kind shares: ``format_version`` no newer than ``newest``
    (:class:`UnsupportedFormatError`), then ``schema`` (:class:`ManifestError` naming the
    first five violations; ``what`` names the schema in the message)."""
    version = manifest.get("format_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > newest:
        raise UnsupportedFormatError(
            f"{what} format_version {version} is newer than this pocketgan supports ({newest}); "
            "upgrade pocketgan to open it",
            file=MANIFEST_NAME,
            field="format_version",
        )
    validator = _validator_class()(schema)
    errors = sorted(validator.iter_errors(manifest), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        lines = [f"  at {_dotted(e.absolute_path)}: {e.message[:300]}" for e in errors[:5]]
        raise ManifestError(
            f"manifest does not follow the {what} schema:\n" + "\n".join(lines),
            file=MANIFEST_NAME,
            field=_dotted(errors[0].absolute_path),
        )


def _read_manifest_bytes(bundle_dir: Path) -> bytes:
    if not Path(bundle_dir).is_dir():
        raise ArtifactMissingError(f"bundle directory not found: {bundle_dir}", file=None)
    path = resolve_in_bundle(bundle_dir, MANIFEST_NAME)
    if not path.is_file():
        raise ManifestError(f"{bundle_dir} is not a pocketgan bundle: no {MANIFEST_NAME}", file=MANIFEST_NAME)
    if os.path.getsize(path) > MAX_JSON_BYTES:
        raise ManifestError(
            f"{bundle_dir}/{MANIFEST_NAME} is {os.path.getsize(path)} bytes, more than {MAX_JSON_BYTES}",
            file=MANIFEST_NAME,
        )
    with open(path, "rb") as f:
        return f.read(MAX_JSON_BYTES + 1)


def load_manifest(bundle_dir: Path) -> dict:
    """Parse and validate ``bundle_dir/manifest.json``; return the validated dict.

    Prefer :func:`read_manifest` (typed view) in new code.
    """
    data = _read_manifest_bytes(Path(bundle_dir))
    return validate_manifest(parse_json(data, file=MANIFEST_NAME))


def read_manifest(bundle_dir: Path) -> Manifest:
    """Parse and validate ``bundle_dir/manifest.json``; return its typed, read-only view."""
    return Manifest.from_dict(load_manifest(bundle_dir), validate=False)  # load_manifest validated it


def verify_bundle(bundle_dir: Path, manifest: dict | Manifest | None = None) -> dict | Manifest:
    """Check a whole bundle without running a model; return the manifest it checked (the
    ``manifest`` given, or the validated dict when none is).

    Every listed artifact is contained in the bundle and matches its checksum, and each
    export holds what its manifest entry says: ONNX models' inputs/outputs against ``io``
    and ``concept_inputs``, every ``.onnx_adapter`` against ``concept_inputs``, ExecuTorch
    programs' file identifier, Core ML packages' ``Manifest.json`` structure (see
    :mod:`pocketgan.runtime.verify`). Every failure is a :class:`BundleError` subclass.
    """
    from pocketgan.runtime.verify import verify_exports

    given = manifest
    if manifest is None:
        given = load_manifest(bundle_dir)
    view = given if isinstance(given, Manifest) else Manifest.from_dict(given)
    for relpath in view.artifacts:
        read_artifact(bundle_dir, view, relpath)
    verify_exports(Path(bundle_dir), view)
    return given
