"""``run_export``: the typed entry point behind ``pocketgan export`` (no argparse here)."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pocketgan.bundle import load_bundle, save_bundle

TARGETS = ("onnx", "executorch", "coreml")
COREML_PRECISIONS = ("fp32", "fp16", "int8", "palettize4")
# what --precision means on each target; the first entry is the target's default
TARGET_PRECISIONS = {
    "onnx": ("fp32", "int8"),
    "executorch": ("fp32", "int8"),
    "coreml": ("fp16", "fp32", "int8", "palettize4"),
}
PRECISIONS = ("fp32", "fp16", "int8", "palettize4")
CONCEPT_MODES = ("separate", "merged", "both")
# `pocketgan export --for PLATFORM`: the targets an app on that platform loads (first = the
# recommended one), written as an app bundle. docs/export.md says why each.
PLATFORM_TARGETS = {
    "ios": ("coreml", "executorch"),  # Core ML (ANE/GPU/CPU); ExecuTorch XNNPACK as the alternative
    "android": ("executorch", "onnx"),  # ExecuTorch .pte for the stock Module; ORT Mobile as the alternative
    "web": ("onnx",),  # onnxruntime-web
}
EXECUTORCH_LAYOUTS = ("program", "ptd", "both")


@dataclass
class ExportConfig:
    """What ``pocketgan export`` writes."""

    out: Path = field(metadata={"help": "Output bundle directory (replaced atomically if it exists)."})
    bundle: Path | None = field(default=None, metadata={"help": "Source bundle; None = the embedded default."})
    targets: tuple[str, ...] | None = field(default=None, metadata={
        "help": f"Backends to export: {TARGETS}; None = the platform's, or onnx."})
    platform: str | None = field(default=None, metadata={
        "help": f"Export what an app on this platform needs {tuple(PLATFORM_TARGETS)}, as an app bundle."})
    app: bool | None = field(default=None, metadata={
        "help": "Write an app bundle (manifest + targets, no source weights); None = True with a platform."})
    concepts: str = field(default="separate", metadata={
        "help": "separate: shared base + hot-swappable adapters; merged: one full model per concept; both."})
    image_size: int | None = field(default=None, metadata={"help": "Square input size; None = the bundle's."})
    precision: str | None = field(default=None, metadata={
        "help": f"{PRECISIONS} for every target; None = each target's default (fp32; Core ML fp16)."})
    parity_threshold_db: float | None = field(default=None, metadata={
        "help": "Fail below this PSNR vs PyTorch on real photos; None = 35 dB (30 dB for int8 and palettized)."})
    photos: Path | None = field(default=None, metadata={"help": "Folder of parity photos; None = the shipped ones."})
    calibration_photos: Path | None = field(default=None, metadata={
        "help": "int8: folder of calibration photos; None = the offline training photos (never the parity photos)."})
    executorch_layout: str = field(default="program", metadata={
        "help": f"ExecuTorch separate-mode layout {EXECUTORCH_LAYOUTS}: one .pte (Android/iOS stock Module) or shared base .ptd."})
    coreml_precision: str | None = field(default=None, metadata={
        "help": f"Core ML only, overrides precision: {COREML_PRECISIONS}."})
    coreml_ios17_fallback: bool = field(default=True, metadata={"help": "Also write one iOS 17 .mlpackage per concept."})

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.platform is not None:
            if self.platform not in PLATFORM_TARGETS:
                raise ValueError(f"unknown platform {self.platform!r}; choose one of {list(PLATFORM_TARGETS)}")
            if self.targets is not None:
                raise ValueError(f"name either a platform ({self.platform}) or targets, not both")
            self.targets = PLATFORM_TARGETS[self.platform]
        self.targets = tuple(self.targets) if self.targets is not None else ("onnx",)
        if self.app is None:
            self.app = self.platform is not None
        if not self.targets:
            raise ValueError("name at least one export target")
        unknown = [t for t in self.targets if t not in TARGETS]
        if unknown:
            raise ValueError(f"unknown export target(s) {unknown}; available: {list(TARGETS)}")
        if self.concepts not in CONCEPT_MODES:
            raise ValueError(f"--concepts must be one of {list(CONCEPT_MODES)}, got {self.concepts!r}")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise ValueError(f"--precision must be one of {list(PRECISIONS)}, got {self.precision!r}")
        if self.coreml_precision is not None and self.coreml_precision not in COREML_PRECISIONS:
            raise ValueError(f"coreml precision must be one of {list(COREML_PRECISIONS)}, got {self.coreml_precision!r}")
        for target in self.targets:
            if self.precision_for(target) not in TARGET_PRECISIONS[target]:
                raise ValueError(f"precision {self.precision_for(target)} does not apply to {target} "
                                 f"(it exports {', '.join(TARGET_PRECISIONS[target])}); export {target} separately")
        if self.executorch_layout not in EXECUTORCH_LAYOUTS:
            raise ValueError(f"ExecuTorch layout must be one of {list(EXECUTORCH_LAYOUTS)}, got {self.executorch_layout!r}")
        if self.image_size is not None and (self.image_size <= 0 or self.image_size % 8):
            raise ValueError(f"image size must be a positive multiple of 8, got {self.image_size}")
        if self.bundle is not None and Path(self.bundle).resolve() == self.out.resolve():
            raise ValueError("the output directory must differ from the source bundle")

    def precision_for(self, target: str) -> str:
        """The precision ``target`` is exported at."""
        if target == "coreml" and self.coreml_precision is not None:
            return self.coreml_precision
        return self.precision or TARGET_PRECISIONS[target][0]


def run_export(config: ExportConfig, progress: Callable[[str], None] | None = None) -> dict:
    """Export ``config.bundle`` to ``config.out``; return the written manifest.

    The output is a complete bundle (base, concepts, export targets, golden vectors,
    manifest). It is built in a staging directory and only replaces ``config.out`` once
    every artifact has been written and has passed its parity check. The golden vectors
    are cut from the first parity photo (``pocketgan.export.golden``).
    """
    from pocketgan.export.coreml_target import DEFAULT_THRESHOLD_DB, write_coreml_target
    from pocketgan.export.executorch_target import write_executorch_target
    from pocketgan.export.golden import write_golden
    from pocketgan.export.onnx_target import write_onnx_target
    from pocketgan.training.photos import list_images, sample_photo_paths

    bundle = load_bundle(config.bundle)
    if config.image_size and config.image_size != bundle.config.image_size:
        bundle.config = dataclasses.replace(bundle.config, image_size=config.image_size)
    photos = list_images(config.photos) if config.photos else sample_photo_paths()
    writers = {
        "onnx": functools.partial(
            write_onnx_target, bundle, concept_mode=config.concepts, photos=photos,
            threshold_db=config.parity_threshold_db, progress=progress,
            precision=config.precision_for("onnx"), calibration_photos=config.calibration_photos,
        ),
        "executorch": functools.partial(
            write_executorch_target, bundle, concept_mode=config.concepts, photos=photos,
            threshold_db=config.parity_threshold_db, progress=progress, layout=config.executorch_layout,
            precision=config.precision_for("executorch"), calibration_photos=config.calibration_photos,
        ),
        "coreml": functools.partial(
            write_coreml_target, bundle, concept_mode=config.concepts, photos=photos,
            threshold_db=DEFAULT_THRESHOLD_DB if config.parity_threshold_db is None else config.parity_threshold_db,
            progress=progress, precision=config.precision_for("coreml"), ios17_fallback=config.coreml_ios17_fallback,
        ),
    }
    return save_bundle(bundle, config.out, {t: (lambda staging, w=writers[t]: w(staging)) for t in config.targets},
                       app=config.app, golden=lambda staging: write_golden(bundle, staging, photos[0]))
