"""Train the default bundle shipped in ``pocketgan/default_bundle`` with the training
pipeline's own commands (procedural teachers, offline, CPU):

    python -m pocketgan.training.default_bundle --out /tmp/default-src
    pocketgan export /tmp/default-src --targets onnx --out pocketgan/default_bundle

1. the offline training photos go into ``WORK/photos`` (never the shipped, held-out ones);
2. ``distill-data`` makes one paired dataset per teacher in ``WORK/data/<name>``;
3. ``train-base`` trains the base on the five base effects at once;
4. ``train-concept`` trains (or retrains) each shipped concept as a LoRA on the frozen base.

Every stage is resumable: rerun the same command after a kill and finished stages are
skipped, the interrupted one continues from its checkpoint. docs/default-bundle.md
records the settings and the measured results.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pocketgan.models.registry import DEFAULT_SIZE
from pocketgan.photos import random_crops
from pocketgan.training.pairs import PairSet

BASE_CONCEPTS = ("pencil_sketch", "color_pencil", "stylize", "detail_enhance", "smooth")
# cartoon is new to the base
SHIPPED_CONCEPTS = ("pencil_sketch", "color_pencil", "stylize", "cartoon", "detail_enhance")
CONCEPT_LOSSES = ("l1", "perceptual", "recipe")


@dataclass
class DefaultBundleConfig:
    """How ``python -m pocketgan.training.default_bundle`` trains the embedded bundle."""

    out: Path = field(metadata={"help": "bundle directory to write (source bundle, no export)"})
    work: Path | None = field(
        default=None, metadata={"help": "working directory for photos, datasets, stages (default OUT.work)"}
    )
    size: str = field(default=DEFAULT_SIZE, metadata={"help": "generator size"})
    pairs: int = field(default=400, metadata={"help": "training pairs per concept"})
    base_steps: int = field(default=4000, metadata={"help": "steps of the base training"})
    concept_steps: int = field(default=800, metadata={"help": "steps of each concept's training"})
    base_lr: float = field(default=2e-3, metadata={"help": "learning rate of the base training"})
    base_from: Path | None = field(
        default=None,
        metadata={
            "help": "reuse this source bundle's base instead of training one (its concepts' tokens start the "
            "retraining of the same-named concepts; every LoRA is trained afresh)"
        },
    )
    concept_loss: str = field(
        default="perceptual",
        metadata={
            "help": "concept stage loss: l1; perceptual = L1 + ensembled perceptual (default); "
            "recipe = + GAN, R1, mix-and-match"
        },
    )
    strict_liveness: bool = field(
        default=False,
        metadata={"help": "fail if a generator stage died or the concept tokens do not change the output"},
    )
    threads: int = field(default=2, metadata={"help": "torch threads"})

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.concept_loss not in CONCEPT_LOSSES:
            raise ValueError(f"concept_loss must be one of {CONCEPT_LOSSES}, got {self.concept_loss!r}")


def make_pairs(name: str, photos: list[np.ndarray], count: int, size: int, seed: int) -> PairSet:
    """In-memory pairs (the study's quick path; the bundle itself is made from distill-data)."""
    from pocketgan.training.teachers import procedural_teacher

    teacher = procedural_teacher(name)
    crops = random_crops(photos, count, size, np.random.default_rng(seed))
    return PairSet(np.stack(crops), np.stack([teacher(c) for c in crops]))


def write_training_photos(folder: Path, photos: list[np.ndarray] | None = None) -> int:
    """``photos`` (default: the offline training photos at 640 px) as PNGs in ``folder`` (idempotent)."""
    from pocketgan.atomic import atomic_write_bytes
    from pocketgan.photos import training_photos
    from pocketgan.training.distill_data import encode_png

    folder.mkdir(parents=True, exist_ok=True)
    photos = training_photos(max_side=640) if photos is None else photos
    for i, rgb in enumerate(photos):
        path = folder / f"photo-{i:03d}.png"
        if not path.exists():
            atomic_write_bytes(path, encode_png(rgb))
    return len(photos)


def _datasets(work: Path, pairs: int) -> tuple[dict[str, Path], int, int]:
    """One distill-data dataset per teacher in ``work/data``: ({name: dir}, photos, crops per photo)."""
    from pocketgan.training.distill_data import DistillDataConfig, generate_pairs

    count = write_training_photos(work / "photos")
    crops = math.ceil(pairs / count)
    print(f"{count} training photos, {crops} crops each")
    data = {}
    for name in sorted(set(BASE_CONCEPTS) | set(SHIPPED_CONCEPTS)):
        data[name] = work / "data" / name
        generate_pairs(
            DistillDataConfig(
                photos=work / "photos", out=data[name], teacher=name, size=256, crops_per_photo=crops, seed=0
            ),
            rank=0,
            world_size=1,
        )
    return data, count, crops


def _base_stage(config: DefaultBundleConfig, work: Path, data: dict[str, Path]) -> tuple[object, dict]:
    """Train (or reuse) the base in ``work/base``; return the base bundle and its liveness check."""
    from pocketgan.bundle import Bundle, load_bundle, save_bundle
    from pocketgan.models.diagnostics import check_alive
    from pocketgan.photos import load_rgb, sample_photo_paths
    from pocketgan.training.commands import run_train_base, token_only_concept
    from pocketgan.training.trainer import LossConfig, TrainConfig, to_model_range

    base_dir = work / "base"
    if config.base_from and not base_dir.exists():
        reused = load_bundle(config.base_from)
        base_only = reused.base_generator()
        concepts = [
            token_only_concept(
                base_only,
                c.name,
                c.tokens,
                c.description,
                c.teacher,
                {"base_training": True, "tokens_from": str(config.base_from)},
            )
            for c in reused.concepts
        ]
        save_bundle(Bundle.from_parts(reused.size, base_only, concepts), base_dir)
    if not base_dir.exists():
        train = TrainConfig(
            steps=config.base_steps,
            lr=config.base_lr,
            checkpoint_dir=work / "base.ckpt",
            resume=(work / "base.ckpt").exists(),
        )
        run_train_base({n: data[n] for n in BASE_CONCEPTS}, base_dir, config.size, train, LossConfig())
    base_bundle = load_bundle(base_dir)
    held_out = torch.cat([to_model_range(np.stack([_square(load_rgb(p), 256)])) for p in sample_photo_paths()])
    tokens = {c.name: c.tokens for c in base_bundle.concepts}
    try:
        liveness = check_alive(base_bundle.base_generator(), held_out, tokens)
    except RuntimeError as e:
        if config.strict_liveness:
            raise
        liveness = {"error": str(e)}
        print(f"WARNING: {e} (the bundle is still written; --strict-liveness makes this fatal)")
    print(json.dumps(liveness, indent=2))
    return base_bundle, liveness


def _concept_stage(config: DefaultBundleConfig, work: Path, data: dict[str, Path], base_bundle, loss):
    """Train each shipped concept as a LoRA on the frozen base in ``work/stage``; return the
    stage's base generator and the shipped concepts."""
    from pocketgan.bundle import load_bundle, save_bundle
    from pocketgan.training.commands import ConceptRecipe, run_train_concept
    from pocketgan.training.trainer import TrainConfig

    stage = work / "stage"
    if not stage.exists():
        save_bundle(base_bundle, stage)
    for name in SHIPPED_CONCEPTS:
        current = load_bundle(stage)
        if name in current.concept_names and not current.concept(name).training.get("base_training"):
            continue  # trained before a kill
        ckpt = work / "concepts.ckpt" / name
        train = TrainConfig(steps=config.concept_steps, lr=5e-3, seed=1, checkpoint_dir=ckpt, resume=ckpt.exists())
        run_train_concept(stage, data[name], name, stage, ConceptRecipe(rank=1), train, loss, replace_existing=True)
    shutil.rmtree(work / "concepts.ckpt", ignore_errors=True)
    final = load_bundle(stage)
    concepts = [final.concept(n) for n in SHIPPED_CONCEPTS]
    for c in concepts:
        c.training["in_base_training"] = c.name in BASE_CONCEPTS
    return final.base_generator(), concepts


def train_default_bundle(config: DefaultBundleConfig) -> dict:
    """Run every stage (each resumable), write ``config.out`` and ``<out>.training.json``
    next to it; return that training record."""
    from pocketgan.bundle import Bundle, save_bundle
    from pocketgan.training.trainer import LossConfig

    torch.set_num_threads(config.threads)
    start = time.perf_counter()
    work = config.work or config.out.with_name(config.out.name + ".work")
    data, count, crops = _datasets(work, config.pairs)
    base_bundle, liveness = _base_stage(config, work, data)
    loss = {"l1": LossConfig(), "perceptual": LossConfig(perceptual=4.0), "recipe": LossConfig.recipe()}[
        config.concept_loss
    ]
    base, concepts = _concept_stage(config, work, data, base_bundle, loss)
    save_bundle(Bundle.from_parts(config.size, base, concepts), config.out)
    base_record = (
        {"reused_from": str(config.base_from)}
        if config.base_from
        else {"steps": config.base_steps, "lr": config.base_lr, "loss": "L1", "concepts": list(BASE_CONCEPTS)}
    )
    record = {
        "base": {"liveness": liveness, **base_record},
        "concept_loss": loss.summary(),
        "concepts": {c.name: c.training for c in concepts},
        "photos": count,
        "crops_per_photo": crops,
        "total_seconds": round(time.perf_counter() - start, 1),
    }
    (config.out.parent / f"{config.out.name}.training.json").write_text(json.dumps(record, indent=2))
    print(json.dumps({k: v for k, v in record.items() if k != "concepts"}, indent=2))
    return record


def _square(rgb: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(rgb).resize((size, size), Image.Resampling.BICUBIC))


def main(argv: list[str] | None = None) -> int:
    """``python -m pocketgan.training.default_bundle``: the parser lives in :mod:`pocketgan.cli.training`."""
    from pocketgan.cli.training import default_bundle_main

    return default_bundle_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
