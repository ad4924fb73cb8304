"""``pocketgan train-upsampler``: train every concept's full-resolution stage.

For each concept, on full-resolution photos: the bundle's generator (frozen, run through the
runtime exactly as apps run it) edits the photo at its working size; the concept's
:class:`~pocketgan.models.guided_upsampler.GuidedUpsampler` lifts that edit to full size, and
its few hundred weights learn, by L1 on random full-resolution crops, to match the
resolution-aware teacher applied to the whole photo at its own size. The output is the bundle
with one ``upsampler/<concept>.safetensors`` per concept (``pocketgan export`` carries them
into every export).

    pocketgan train-upsampler [BUNDLE] --out DIR [--steps 800] [--photos DIR]
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from pocketgan.full_resolution.photos import TUNING, photo_paths


@dataclass
class UpsamplerTrainingConfig:
    """What ``train-upsampler`` trains, on what, for how long."""

    bundle: Path | None = field(default=None, metadata={"help": "Source bundle (default: the embedded one)."})
    out: Path = field(default=Path("upsampled_bundle"), metadata={"help": "Where to write the bundle."})
    photos: Path | None = field(
        default=None,
        metadata={"help": "Folder of full-resolution training photos (default: mate-backgrounds' training set)."},
    )
    steps: int = field(default=800, metadata={"help": "Optimizer steps per concept."})
    crop: int = field(default=320, metadata={"help": "Side of the full-resolution training crops, pixels."})
    lr: float = field(default=3e-3, metadata={"help": "Adam learning rate."})
    radius: int = field(default=2, metadata={"help": "Guided filter window half-width at the model's size."})
    hidden: int = field(default=16, metadata={"help": "Hidden channels of the per-pixel MLP."})
    seed: int = field(default=0, metadata={"help": "Seed of the crops and the initial weights."})
    threads: int = field(default=2, metadata={"help": "PyTorch and ONNX Runtime threads."})

    def __post_init__(self) -> None:
        for name in ("steps", "crop", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")


PROCEDURAL_PREFIX = "procedural:opencv."

# mate-backgrounds photos the stage trains on: every nature photo the quality report does not hold out
TRAINING = (
    *TUNING,
    "nature/Blinds.jpg",
    "nature/Dune.jpg",
    "nature/GreenMeadow.jpg",
    "nature/RainDrops.jpg",
    "nature/YellowFlower.jpg",
)


@dataclass
class _Example:
    """One photo prepared for one concept: (1, 3, H, W) photo and teacher edit, and the model's
    (1, 3, h, w) view of the photo and edit, all float32 0..1 tensors."""

    photo: object
    teacher: object
    low_photo: object
    low_edit: object


def _prepare(runtime, concept: str, teacher, photo: np.ndarray) -> _Example:
    import torch

    from pocketgan.runtime.imaging import model_crops, to_model_input

    x, placement = to_model_input(photo, runtime.input_size)
    low_photo, low_edit, _ = model_crops(x, runtime.run_tensor(x, concept=concept), placement)

    def tensor(rgb: np.ndarray):
        return torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1)[None].float() / 255  # a writable copy

    return _Example(
        tensor(photo), tensor(teacher(photo)), torch.from_numpy(low_photo)[None], torch.from_numpy(low_edit)[None]
    )


def train_concept_upsampler(examples: list[_Example], config: UpsamplerTrainingConfig, progress=None):
    """One concept's stage, trained on ``examples``; returns (stage, {"final_l1", "seconds"})."""
    import torch

    from pocketgan.models.guided_upsampler import GuidedUpsampler, GuidedUpsamplerConfig

    torch.manual_seed(config.seed)
    stage = GuidedUpsampler(GuidedUpsamplerConfig(config.radius, config.hidden))
    optimizer = torch.optim.Adam(stage.parameters(), lr=config.lr)
    rng = np.random.default_rng(config.seed)
    start, recent = time.perf_counter(), []
    for step in range(config.steps):
        example = examples[rng.integers(len(examples))]
        height, width = example.photo.shape[-2:]
        ch, cw = min(config.crop, height), min(config.crop, width)
        top, left = int(rng.integers(0, height - ch + 1)), int(rng.integers(0, width - cw + 1))
        out = stage(example.low_photo, example.low_edit, example.photo, top, left, ch, cw)
        loss = (out - example.teacher[:, :, top : top + ch, left : left + cw]).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        recent = (recent + [loss.item()])[-50:]
        if progress is not None:
            progress(step + 1, float(np.mean(recent)))
    return stage, {"final_l1": round(float(np.mean(recent)), 5), "seconds": round(time.perf_counter() - start, 1)}


def _load_photos(config: UpsamplerTrainingConfig) -> list[np.ndarray]:
    from PIL import Image

    from pocketgan.photos import list_images

    paths = list_images(config.photos) if config.photos else photo_paths(TRAINING)
    photos = []
    for path in paths:
        with Image.open(path) as im:
            photos.append(np.asarray(im.convert("RGB")))
    return photos


def run_train_upsampler(config: UpsamplerTrainingConfig, say: Callable[[str], None] = print) -> dict:
    """Train every concept's stage and write ``config.out`` (atomically); return the training record."""
    import torch
    from tqdm import tqdm

    from pocketgan.bundle import load_bundle, save_bundle
    from pocketgan.models.guided_upsampler import GuidedUpsamplerConfig
    from pocketgan.runtime import open_bundle
    from pocketgan.training.teachers import teacher_from_spec

    torch.set_num_threads(config.threads)
    bundle = load_bundle(config.bundle)
    runtime = open_bundle(config.bundle, threads=config.threads)
    photos = _load_photos(config)
    say(f"training the full-resolution stage of {len(bundle.concepts)} concepts on {len(photos)} photos")
    record = {"config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()}, "concepts": {}}
    for concept in bundle.concepts:
        if not concept.teacher.startswith(PROCEDURAL_PREFIX):
            raise ValueError(
                f"concept {concept.name!r} was distilled from {concept.teacher!r}: train-upsampler needs a "
                "procedural teacher it can run at full resolution (docs/full-resolution.md)"
            )
        teacher = teacher_from_spec(concept.teacher.removeprefix(PROCEDURAL_PREFIX))
        examples = [_prepare(runtime, concept.name, teacher, photo) for photo in photos]
        with tqdm(total=config.steps, desc=concept.name, unit="step") as bar:

            def progress(step: int, l1: float) -> None:
                bar.update(1)
                if step % 50 == 0:
                    bar.set_postfix(l1=f"{l1:.4f}")

            stage, stats = train_concept_upsampler(examples, config, progress)
        concept.upsampler = stage.tensors()
        concept.training["upsampler"] = stats
        record["concepts"][concept.name] = stats
    bundle.upsampler = GuidedUpsamplerConfig(config.radius, config.hidden)
    save_bundle(bundle, config.out)
    say(f"wrote {config.out}: export it with `pocketgan export {config.out} --targets onnx --out DIR`")
    return record
