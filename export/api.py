"""``run_export``: the typed entry point behind ``pocketgan export`` (no argparse here).

Importing this module does not import torch (the bundle and the exporters are imported
by :func:`run_export`), so a command line can build its flags from :class:`ExportConfig`'s
field metadata (``help``, and ``choices`` where the value is one of a vocabulary from
``pocketgan.runtime.targets``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pocketgan.runtime.targets import (
    CONCEPT_MODES,
    EXECUTORCH_LAYOUTS,
    PLATFORM_TARGETS,
    PRECISIONS,
    TARGET_SPECS,
    TARGETS,
)

# --coreml-precision: what Core ML exports (its first precision, fp16, is its default)
_COREML_PRECISIONS = TARGET_SPECS["coreml"].precisions


@dataclass
class ExportConfig:
    """What ``pocketgan export`` writes.

    Field metadata: ``help`` (one line) and, for fields that take a name from the
    vocabulary, ``choices`` (a tuple from ``pocketgan.runtime.targets``).
    """

    out: Path = field(metadata={"help": "Output bundle directory (replaced atomically if it exists)."})
    bundle: Path | None = field(default=None, metadata={"help": "Source bundle; None = the embedded default."})
    targets: tuple[str, ...] | None = field(
        default=None,
        metadata={"help": f"Backends to export: {TARGETS}; None = the platform's, or onnx.", "choices": TARGETS},
    )
    platform: str | None = field(
        default=None,
        metadata={
            "help": f"Export what an app on this platform needs {tuple(PLATFORM_TARGETS)}, as an app bundle.",
            "choices": tuple(PLATFORM_TARGETS),
        },
    )
    app: bool | None = field(
        default=None,
        metadata={"help": "Write an app bundle (manifest + targets, no source weights); None = True with a platform."},
    )
    concepts: str = field(
        default="separate",
        metadata={
            "help": "separate: shared base + hot-swappable adapters; merged: one full model per concept; both.",
            "choices": CONCEPT_MODES,
        },
    )
    image_size: int | None = field(default=None, metadata={"help": "Square input size; None = the bundle's."})
    precision: str | None = field(
        default=None,
        metadata={
            "help": f"{PRECISIONS} for every target; None = each target's default (fp32; Core ML fp16).",
            "choices": PRECISIONS,
        },
    )
    parity_threshold_db: float | None = field(
        default=None,
        metadata={
            "help": "Fail below this PSNR vs PyTorch on real photos, for every target and precision; "
            "None = 35 dB (30 dB for int8 and palettize4)."
        },
    )
    photos: Path | None = field(default=None, metadata={"help": "Folder of parity photos; None = the shipped ones."})
    calibration_photos: Path | None = field(
        default=None,
        metadata={
            "help": "int8: folder of calibration photos; None = the offline training photos (never the parity photos)."
        },
    )
    executorch_layout: str = field(
        default="program",
        metadata={
            "help": f"ExecuTorch separate-mode layout {EXECUTORCH_LAYOUTS}: one .pte (Android/iOS stock Module) "
            "or shared base .ptd.",
            "choices": EXECUTORCH_LAYOUTS,
        },
    )
    coreml_precision: str | None = field(
        default=None,
        metadata={"help": f"Core ML only, overrides precision: {_COREML_PRECISIONS}.", "choices": _COREML_PRECISIONS},
    )
    coreml_ios17_fallback: bool = field(
        default=True, metadata={"help": "Also write one iOS 17 .mlpackage per concept."}
    )

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
        self._check_choices()
        for target in self.targets:
            precisions = TARGET_SPECS[target].precisions
            if self.precision_for(target) not in precisions:
                raise ValueError(
                    f"precision {self.precision_for(target)} does not apply to {target} "
                    f"(it exports {', '.join(precisions)}); export {target} separately"
                )
        if self.image_size is not None and (self.image_size <= 0 or self.image_size % 8):
            raise ValueError(f"image size must be a positive multiple of 8, got {self.image_size}")
        if self.bundle is not None and Path(self.bundle).resolve() == self.out.resolve():
            raise ValueError("the output directory must differ from the source bundle")

    def _check_choices(self) -> None:
        """Every field with ``choices`` metadata holds one of them (or None)."""
        names = {
            "concepts": "--concepts",
            "precision": "--precision",
            "coreml_precision": "coreml precision",
            "executorch_layout": "ExecuTorch layout",
        }
        for name, what in names.items():
            value, choices = getattr(self, name), _FIELDS[name].metadata["choices"]
            if value is not None and value not in choices:
                raise ValueError(f"{what} must be one of {list(choices)}, got {value!r}")

    def precision_for(self, target: str) -> str:
        """The precision ``target`` is exported at."""
        if target == "coreml" and self.coreml_precision is not None:
            return self.coreml_precision
        return self.precision or TARGET_SPECS[target].default_precision


_FIELDS = {f.name: f for f in dataclasses.fields(ExportConfig)}


def run_export(config: ExportConfig, progress: Callable[[str], None] | None = None) -> dict:
    """Export ``config.bundle`` to ``config.out``; return the written manifest.

    The output is a complete bundle (base, concepts, export targets, golden vectors,
    manifest). It is built in a staging directory and only replaces ``config.out`` once
    every artifact has been written and has passed its parity check. Each target is run
    by :func:`pocketgan.export.target.export_target`; the golden vectors are cut from the
    first parity photo (``pocketgan.export.golden``).
    """
    from pocketgan._quiet import library_warnings_filtered, quiet_library_logs

    quiet_library_logs()  # before peft / executorch / coremltools import torchao, which logs then
    from pocketgan.bundle import load_bundle, save_bundle
    from pocketgan.export.golden import write_golden
    from pocketgan.export.target import export_target, load_target
    from pocketgan.photos import list_images, sample_photo_paths

    bundle = load_bundle(config.bundle)
    if config.image_size and config.image_size != bundle.config.image_size:
        bundle.config = dataclasses.replace(bundle.config, image_size=config.image_size)
    photos = list_images(config.photos) if config.photos else sample_photo_paths()

    def writer(name: str) -> Callable[[Path], dict]:
        target = load_target(name).from_config(config)
        return lambda staging: export_target(
            target,
            bundle,
            staging,
            concept_mode=config.concepts,
            photos=photos,
            threshold_db=config.parity_threshold_db,
            precision=config.precision_for(name),
            progress=progress,
        )

    with library_warnings_filtered():  # the libraries' own deprecations, raised lazily on their import
        return save_bundle(
            bundle,
            config.out,
            {name: writer(name) for name in config.targets},
            app=config.app,
            golden=lambda staging: write_golden(bundle, staging, photos[0]),
        )
