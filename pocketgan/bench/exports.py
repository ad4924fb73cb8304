"""The generator's exports, cached: one ``pocketgan.export.run_export`` per
(target, precision, size), both concept modes, reused while nothing that changes it did.

The cache entry is ``<cache>/pocketgan-<target>-<precision>-<size>-<key>/``, where
``key`` hashes the source bundle's manifest (base and concept checksums), the settings
and the toolchain versions. ``run_export`` builds the bundle in a staging directory and
swaps it in atomically after its parity gate passed, so an entry with a
``manifest.json`` is complete; an interrupted int8 export (minutes) leaves nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from pocketgan.bench.peers import cache_key

if TYPE_CHECKING:
    from pocketgan.runtime.manifest_view import Manifest, Target


@dataclass(frozen=True)
class BundleExport:
    target: str
    precision: str
    size: int
    path: Path
    manifest: Manifest

    def artifact_bytes(self, mode: str) -> int:
        """What an app ships for all the bundle's concepts in ``mode``."""
        return artifact_bytes(self.target, self.manifest.targets[self.target], self.manifest, mode)

    def worst_psnr_db(self, mode: str) -> float | None:
        parity = self.manifest.targets[self.target].parity
        scores = parity.psnr_db.get(mode, {}) if parity else {}
        return min(scores.values()) if scores else None


def _dir_bytes(manifest: Manifest, prefix: str) -> int:
    return sum(a.bytes for p, a in manifest.artifacts.items() if p == prefix or p.startswith(prefix + "/"))


def artifact_bytes(target: str, entry: Target, manifest: Manifest, mode: str) -> int:
    """Bytes an app ships for every concept of a bundle's ``target`` export in ``mode``:
    separate: the shared base + per-concept adapters/methods/functions; merged: every
    concept's own full model. KeyError when the export lacks ``mode``."""
    if target == "onnx":
        paths = [entry.model, *entry.adapters.values()] if mode == "separate" else list(entry.merged.values())
    elif target == "executorch":
        paths = [entry.program if mode == "separate" else entry.merged_program]
    elif target == "coreml":
        paths = [entry.package if mode == "separate" else entry.merged_package]
    else:  # a new target: say here which of its manifest entries an app ships
        raise KeyError(f"artifact_bytes: no artifact list for target {target!r} (pocketgan/bench/exports.py)")
    if None in paths or not paths:
        raise KeyError(f"artifact_bytes: the {target} export has no {mode} artifacts")
    return sum(_dir_bytes(manifest, p) for p in paths)


def source_bytes(manifest: Manifest) -> dict:
    """fp32 base weights + each concept's tensors (its adapter weights and embedding
    safetensors; the JSON adapter config is left out): what an app would ship to run the
    bundle in PyTorch, and the reference of the separate-mode size claim."""
    concepts = {
        c.name: sum(
            manifest.artifacts[f].bytes
            for f in (c.files.adapter_weights, c.files.embedding)
            if f.endswith(".safetensors")
        )
        for c in manifest.concepts
        if c.files is not None
    }
    return {"base": manifest.artifacts[manifest.base_weights].bytes, "concepts": concepts}


def source_manifest(bundle: Path | None) -> Manifest:
    from pocketgan.runtime.manifest import read_manifest
    from pocketgan.runtime.session import default_bundle_path

    return read_manifest(Path(bundle) if bundle is not None else default_bundle_path())


def onnx_calibration_folder(size: int, cache: Path, bundle: Path | None = None) -> Path | None:
    """``None`` when the ONNX int8 export's default calibration fits the calibrator's memory
    budget (``peers.ORT_CALIBRATION_BUDGET_BYTES``); otherwise a folder holding an evenly
    spaced subset of the same calibration inputs (as PNGs, already letterboxed to
    ``size``²) small enough to fit, for ``ExportConfig.calibration_photos``.

    The separate mode calibrates every photo with every concept, so each photo costs
    (concepts x the intermediate tensors of one forward pass).
    """
    import numpy as np
    from PIL import Image

    from pocketgan.atomic import atomic_directory
    from pocketgan.bench.peers import calibration_subset, intermediate_bytes
    from pocketgan.bundle import load_bundle
    from pocketgan.export.calibration import calibration_set

    b = load_bundle(bundle)
    per_input = intermediate_bytes(b.model_for(b.concept_names[0], "separate"), size)
    inputs = calibration_set(size).inputs
    subset = calibration_subset(inputs, per_input, feeds_per_input=len(b.concept_names))
    if len(subset) == len(inputs):
        return None
    folder = Path(cache) / f"calibration-{size}-{len(subset)}of{len(inputs)}"
    if not folder.is_dir():
        with atomic_directory(folder) as staging:
            for i, x in enumerate(subset):
                rgb = np.clip((x[0].transpose(1, 2, 0) + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
                Image.fromarray(rgb).save(staging / f"calibration-{i:02d}.png")
    return folder


@dataclass(frozen=True)
class ExportRequest:
    """One cached export: the generator of ``bundle`` (None: the embedded default) exported to
    ``target`` at ``precision``, ``size``², both concept modes, behind ``parity_threshold_db``
    (None: the exporter's own gate)."""

    target: str
    precision: str
    size: int
    bundle: Path | None = None
    parity_threshold_db: float | None = None


def cache_path(request: ExportRequest, cache: Path, calibration: str | None = None) -> Path:
    """Where :func:`export_bundle` keeps this export: the key hashes the source bundle's
    checksums, the settings (``calibration``: the name of the calibration folder used, if not
    the default set) and the toolchain versions."""
    src = source_manifest(request.bundle)
    identity = {
        "base": src.base_sha256,
        "rank_pattern": dict(src.rank_pattern),
        "concepts": {p: a.sha256 for p, a in src.artifacts.items() if p.startswith("concepts/")},
    }
    key = cache_key(
        model="pocketgan",
        source=identity,
        backend=request.target,
        precision=request.precision,
        size=request.size,
        concepts="both",
        parity_threshold_db=request.parity_threshold_db,
        calibration=calibration,
        coreml_ios17_fallback=False,
    )
    return Path(cache) / f"pocketgan-{request.target}-{request.precision}-{request.size}-{key}"


def export_bundle(
    target: str,
    precision: str,
    size: int,
    cache: Path,
    *,
    bundle: Path | None = None,
    parity_threshold_db: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> BundleExport:
    """The (cached) export of ``bundle`` to ``target`` at ``precision``, ``size``², both concept modes."""
    from pocketgan.runtime.manifest import read_manifest

    calibration = onnx_calibration_folder(size, cache, bundle) if (target, precision) == ("onnx", "int8") else None
    request = ExportRequest(target, precision, size, bundle, parity_threshold_db)
    path = cache_path(request, cache, calibration.name if calibration else None)
    if not (path / "manifest.json").is_file():
        from pocketgan.export import ExportConfig, run_export

        step = progress or (lambda m: None)
        step(f"export pocketgan {target} {precision} {size}² (both concept modes; cached in {path.name})")
        if calibration is not None:
            step(
                f"  calibrating on {calibration.name}: the default set would not fit ONNX Runtime's calibrator "
                "in memory"
            )
        # no per-concept iOS 17 packages: no benchmark counts them
        config = ExportConfig(
            out=path,
            bundle=bundle,
            targets=(target,),
            concepts="both",
            precision=precision,
            image_size=size,
            parity_threshold_db=parity_threshold_db,
            calibration_photos=calibration,
            coreml_ios17_fallback=False,
        )
        run_export(config, progress=lambda m: step(f"  {target} {precision} {size}²: {m}"))
    return BundleExport(target, precision, size, path, read_manifest(path))
