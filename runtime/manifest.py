"""Reading and checking a bundle's manifest.json (no torch here).

The manifest is the contract between the exporter and every runtime (Python, web,
Android, iOS); ``docs/bundle-format.md`` describes it and ``manifest.schema.json`` is its
JSON Schema. Loading checks, in order: the file parses, ``format_version`` is one this
runtime understands, the schema holds, and the cross-references are consistent.
Artifact checksums are verified by :func:`read_artifact` when a file is used.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from pocketgan.runtime.errors import (
    ArtifactMissingError,
    ChecksumError,
    ManifestError,
    UnsupportedFormatError,
)

MANIFEST_NAME = "manifest.json"
FORMAT_NAME = "pocketgan-bundle"
FORMAT_VERSION = 1


@lru_cache(maxsize=1)
def manifest_schema() -> dict:
    return json.loads(resources.files("pocketgan.runtime").joinpath("manifest.schema.json").read_text("utf-8"))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def validate_manifest(manifest: Any) -> dict:
    """Check a parsed manifest; return it unchanged or raise a :class:`ManifestError`."""
    if not isinstance(manifest, dict):
        raise ManifestError("manifest must be a JSON object")
    if manifest.get("format") != FORMAT_NAME:
        raise ManifestError(f"not a pocketgan bundle manifest (format={manifest.get('format')!r})")
    version = manifest.get("format_version")
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise UnsupportedFormatError(
            f"bundle format_version {version} is newer than this pocketgan supports ({FORMAT_VERSION}); "
            "upgrade pocketgan to open it"
        )
    import jsonschema

    validator = jsonschema.Draft202012Validator(manifest_schema())
    errors = sorted(validator.iter_errors(manifest), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"  at /{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5]]
        raise ManifestError("manifest does not follow the bundle schema:\n" + "\n".join(lines))
    _check_references(manifest)
    return manifest


def _check_references(m: dict) -> None:
    artifacts = m["artifacts"]

    def need(path: str, what: str) -> None:
        if path not in artifacts:
            raise ManifestError(f"{what} {path!r} is not listed in artifacts (no checksum)")

    app = m.get("contents", "full") == "app"
    if app:
        if "weights" in m["base"] or any("files" in c for c in m["concepts"]):
            raise ManifestError("an app bundle (contents: app) lists no source weights, but this one does")
        if not m["targets"]:
            raise ManifestError("an app bundle (contents: app) needs at least one export target")
    else:
        if "weights" not in m["base"]:
            raise ManifestError("base.weights is missing (only an app bundle, contents: app, may omit it)")
        need(m["base"]["weights"], "base weights")
        if artifacts[m["base"]["weights"]]["sha256"] != m["base"]["sha256"]:
            raise ManifestError("base.sha256 differs from the checksum of the base weights artifact")
    names = [c["name"] for c in m["concepts"]]
    if len(set(names)) != len(names):
        raise ManifestError(f"duplicate concept names: {sorted(n for n in set(names) if names.count(n) > 1)}")
    pattern = m["rank_pattern"]
    for c in m["concepts"]:
        if not app and "files" not in c:
            raise ManifestError(f"concept {c['name']!r} lists no files (only an app bundle may omit them)")
        for key, path in c.get("files", {}).items():
            need(path, f"concept {c['name']!r} {key}")
        for key, path in c.get("golden", {}).items():
            need(path, f"concept {c['name']!r} golden {key}")
        if set(c["ranks"]) != set(pattern):
            raise ManifestError(f"concept {c['name']!r} adapts different layers than the rank pattern")
        over = {k: r for k, r in c["ranks"].items() if r > pattern[k]}
        if over:
            raise ManifestError(f"concept {c['name']!r} has ranks above the bundle's rank pattern: {over}")
    onnx = m["targets"].get("onnx")
    if onnx is not None:
        mode = onnx["concept_mode"]
        if mode in ("separate", "both"):
            for key in ("model", "adapters", "concept_inputs"):
                if key not in onnx:
                    raise ManifestError(f"targets.onnx has concept_mode {mode!r} but no {key!r}")
            need(onnx["model"], "ONNX model")
            _same_concepts(names, onnx["adapters"], "targets.onnx.adapters")
            for path in onnx["adapters"].values():
                need(path, "ONNX adapter")
        if mode in ("merged", "both"):
            if "merged" not in onnx:
                raise ManifestError(f"targets.onnx has concept_mode {mode!r} but no 'merged'")
            _same_concepts(names, onnx["merged"], "targets.onnx.merged")
            for path in onnx["merged"].values():
                need(path, "merged ONNX model")


    et = m["targets"].get("executorch")
    if et is not None:
        mode = et["concept_mode"]
        if mode in ("separate", "both") and "program" not in et and "external_data" not in et:
            raise ManifestError(f"targets.executorch has concept_mode {mode!r} but no 'program' or 'external_data'")
        if mode in ("merged", "both") and "merged_program" not in et:
            raise ManifestError(f"targets.executorch has concept_mode {mode!r} but no 'merged_program'")
        for key in ("program", "merged_program"):
            if key in et:
                need(et[key], f"ExecuTorch {key}")
        if "program" in et or "merged_program" in et:
            if "methods" not in et:
                raise ManifestError("targets.executorch has a program but no 'methods'")
            _same_concepts(names, et["methods"], "targets.executorch.methods")
        ext = et.get("external_data")
        if ext is not None:
            need(ext["data"], "ExecuTorch base data")
            _same_concepts(names, ext["programs"], "targets.executorch.external_data.programs")
            for path in ext["programs"].values():
                need(path, "ExecuTorch concept program")

    cm = m["targets"].get("coreml")
    if cm is not None:
        def need_package(path: str, what: str) -> None:
            if f"{path}/Manifest.json" not in artifacts:
                raise ManifestError(f"{what} {path!r}: its Manifest.json is not listed in artifacts (no checksum)")

        mode = cm["concept_mode"]
        for key in {"separate": ("package",), "merged": ("merged_package",), "both": ("package", "merged_package")}[mode]:
            if key not in cm:
                raise ManifestError(f"targets.coreml has concept_mode {mode!r} but no {key!r}")
        for key in ("package", "merged_package"):
            if key in cm:
                need_package(cm[key], f"Core ML {key}")
        _same_concepts(names, cm["functions"], "targets.coreml.functions")
        if cm["default_function"] not in cm["functions"].values():
            raise ManifestError(f"targets.coreml.default_function {cm['default_function']!r} is not one of its functions")
        if "ios17" in cm:
            _same_concepts(names, cm["ios17"]["packages"], "targets.coreml.ios17.packages")
            for path in cm["ios17"]["packages"].values():
                need_package(path, "Core ML iOS 17 package")


def _same_concepts(names: list[str], mapping: dict, where: str) -> None:
    if set(mapping) != set(names):
        raise ManifestError(f"{where} covers {sorted(mapping)} but the bundle's concepts are {sorted(names)}")


def load_manifest(bundle_dir: Path) -> dict:
    """Parse and validate ``bundle_dir/manifest.json``."""
    path = Path(bundle_dir) / MANIFEST_NAME
    if not Path(bundle_dir).is_dir():
        raise ArtifactMissingError(f"bundle directory not found: {bundle_dir}")
    if not path.is_file():
        raise ManifestError(f"{bundle_dir} is not a pocketgan bundle: no {MANIFEST_NAME}")
    try:
        manifest = json.loads(path.read_text("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ManifestError(f"{path} is not valid JSON: {e}") from None
    return validate_manifest(manifest)


def artifact_path(bundle_dir: Path, manifest: dict, relpath: str) -> Path:
    """Where an artifact lives; raises if it is missing or not listed."""
    if relpath not in manifest["artifacts"]:
        raise ManifestError(f"{relpath!r} is not listed in the manifest's artifacts")
    path = Path(bundle_dir) / relpath
    if not path.is_file():
        raise ArtifactMissingError(f"bundle {bundle_dir} is missing {relpath} (listed in its manifest)")
    return path


def read_artifact(bundle_dir: Path, manifest: dict, relpath: str) -> bytes:
    """Read an artifact and check its size and sha256 against the manifest."""
    path = artifact_path(bundle_dir, manifest, relpath)
    data = path.read_bytes()
    expected = manifest["artifacts"][relpath]
    if len(data) != expected["bytes"] or sha256_bytes(data) != expected["sha256"]:
        raise ChecksumError(
            f"{relpath} in {bundle_dir} does not match its manifest checksum "
            f"({len(data)} bytes, expected {expected['bytes']}): the file is corrupted or was modified"
        )
    return data


def verify_artifact(bundle_dir: Path, manifest: dict, relpath: str) -> Path:
    """Check an artifact's checksum without keeping its bytes; return its path."""
    read_artifact(bundle_dir, manifest, relpath)
    return artifact_path(bundle_dir, manifest, relpath)


def verify_bundle(bundle_dir: Path, manifest: dict | None = None) -> dict:
    """Check every artifact of a bundle; return the manifest."""
    manifest = manifest if manifest is not None else load_manifest(bundle_dir)
    for relpath in manifest["artifacts"]:
        read_artifact(bundle_dir, manifest, relpath)
    return manifest
