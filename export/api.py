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
CONCEPT_MODES = ("separate", "merged", "both")


@dataclass
class ExportConfig:
    """What ``pocketgan export`` writes."""

    out: Path = field(metadata={"help": "Output bundle directory (replaced atomically if it exists)."})
    bundle: Path | None = field(default=None, metadata={"help": "Source bundle; None = the embedded default."})
    targets: tuple[str, ...] = field(default=("onnx",), metadata={"help": f"Backends to export: {TARGETS}."})
    concepts: str = field(default="separate", metadata={
        "help": "separate: shared base + hot-swappable adapters; merged: one full model per concept; both."})
    image_size: int | None = field(default=None, metadata={"help": "Square input size; None = the bundle's."})
    parity_threshold_db: float = field(default=35.0, metadata={"help": "Fail below this PSNR vs PyTorch on real photos."})
    photos: Path | None = field(default=None, metadata={"help": "Folder of parity photos; None = the shipped ones."})
    coreml_precision: str = field(default="fp16", metadata={"help": f"Core ML precision: {COREML_PRECISIONS}."})
    coreml_ios17_fallback: bool = field(default=True, metadata={"help": "Also write one iOS 17 .mlpackage per concept."})

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.targets = tuple(self.targets)
        if not self.targets:
            raise ValueError("name at least one export target")
        unknown = [t for t in self.targets if t not in TARGETS]
        if unknown:
            raise ValueError(f"unknown export target(s) {unknown}; available: {list(TARGETS)}")
        if self.concepts not in CONCEPT_MODES:
            raise ValueError(f"--concepts must be one of {list(CONCEPT_MODES)}, got {self.concepts!r}")
        if self.coreml_precision not in COREML_PRECISIONS:
            raise ValueError(f"coreml precision must be one of {list(COREML_PRECISIONS)}, got {self.coreml_precision!r}")
        if self.image_size is not None and (self.image_size <= 0 or self.image_size % 8):
            raise ValueError(f"image size must be a positive multiple of 8, got {self.image_size}")
        if self.bundle is not None and Path(self.bundle).resolve() == self.out.resolve():
            raise ValueError("the output directory must differ from the source bundle")


def run_export(config: ExportConfig, progress: Callable[[str], None] | None = None) -> dict:
    """Export ``config.bundle`` to ``config.out``; return the written manifest.

    The output is a complete bundle (base, concepts, export targets, manifest). It is
    built in a staging directory and only replaces ``config.out`` once every artifact
    has been written and has passed its parity check.
    """
    from pocketgan.export.coreml_target import write_coreml_target
    from pocketgan.export.executorch_target import write_executorch_target
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
        ),
        "executorch": functools.partial(
            write_executorch_target, bundle, concept_mode=config.concepts, photos=photos,
            threshold_db=config.parity_threshold_db, progress=progress,
        ),
        "coreml": functools.partial(
            write_coreml_target, bundle, concept_mode=config.concepts, photos=photos,
            threshold_db=config.parity_threshold_db, progress=progress,
            precision=config.coreml_precision, ios17_fallback=config.coreml_ios17_fallback,
        ),
    }
    return save_bundle(bundle, config.out, {t: (lambda staging, w=writers[t]: w(staging)) for t in config.targets})
