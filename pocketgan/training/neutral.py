"""``pocketgan train-neutral``: the identity concept that strength 0 means.

Strength ``s`` of a concept interpolates between a *neutral* concept and the concept
(``pocketgan.runtime.concept_mix``): the LoRA delta is ``s * delta(c) + (1 - s) * delta(n)``
and the tokens ``n + s * (c - n)``. Strength 0 is then exactly the neutral concept, which
this trains to give the photo back: a LoRA at the concepts' layers plus tokens, on the
frozen base, distilled from the identity "teacher" (each training crop is its own target).
The base alone is no identity (zero LoRA and zero tokens score 5-15 dB against the photo),
so the neutral cannot be implicit.

The result is scored on the held-out shipped photos (PSNR of the neutral's output against
its input, at the model's size) and the score is kept in the bundle's manifest
(``neutral.training.heldout_psnr_db``); :func:`run_train_neutral` fails below
``min_psnr_db`` rather than ship a strength 0 that visibly changes photos.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class NeutralConfig:
    """Settings of :func:`run_train_neutral` (the flags of ``pocketgan train-neutral``)."""

    rank: int = field(
        default=2,
        metadata={
            "help": "LoRA rank of the neutral at every concept layer (rank 1 left one held-out photo at 34.3 dB)."
        },
    )
    steps: int = field(default=1500, metadata={"help": "Optimizer steps."})
    lr: float = field(default=5e-3, metadata={"help": "Adam learning rate (cosine-decayed)."})
    crops: int = field(default=256, metadata={"help": "Training crops (160 px) cut from the offline training photos."})
    seed: int = field(default=0, metadata={"help": "Seed of the crops and of training."})
    min_psnr_db: float = field(
        default=35.0, metadata={"help": "Fail when the neutral scores below this on the held-out photos."}
    )
    threads: int | None = field(default=None, metadata={"help": "torch CPU threads (default: torch's choice)."})
    progress: bool = field(default=True, metadata={"help": "Show a progress bar."})

    def __post_init__(self) -> None:
        if self.rank <= 0 or self.steps <= 0 or self.crops <= 0:
            raise ValueError("rank, steps and crops must be positive")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")


def identity_pairs(count: int, seed: int, size: int = 160):
    """``count`` random crops of the offline training photos, each its own target."""
    from pocketgan.photos import random_crops, training_photos
    from pocketgan.training.pairs import PairSet

    crops = np.stack(random_crops(training_photos(), count, size, np.random.default_rng(seed)))
    return PairSet(crops, crops.copy())


def heldout_identity_psnr(bundle, neutral, photos: list[np.ndarray] | None = None) -> float:
    """Lowest PSNR (dB) of the neutral's output against its input over held-out photos, at
    the model's size (each photo letterboxed as the runtime does)."""
    import torch

    from pocketgan.concepts.conditioned import concept_model
    from pocketgan.export.parity import psnr
    from pocketgan.photos import load_rgb, sample_photo_paths
    from pocketgan.runtime.imaging import to_model_input

    model = concept_model(bundle.base_generator(), neutral, neutral.ranks)
    if photos is None:
        photos = [load_rgb(p) for p in sample_photo_paths()]
    scores = []
    with torch.no_grad():
        for photo in photos:
            x, _ = to_model_input(photo, bundle.config.image_size)
            y = model(torch.from_numpy(x)).numpy()
            scores.append(psnr(x, y))
    return round(float(min(scores)), 2)


#: strengths at which a concept's calibration curve is kept (docs/strength-and-blending.md)
CURVE_STRENGTHS = tuple(i / 10 for i in range(11))
_FINE = np.linspace(0.0, 1.0, 21)


def strength_curve(bundle, concept: str, inputs) -> list[float]:
    """The weights at which ``concept`` is 0, 10, ..., 100% of the way from the photo to its
    full edit (``CURVE_STRENGTHS``), measured on ``inputs`` ((1, 3, S, S) float32 each).

    The way is the RMS distance of the edit to its two ends: ``progress(w) = 1 - d(E(w), E(1)) /
    d(E(0), E(1))``, averaged over the inputs, made monotone, inverted by linear interpolation.
    A raw weight of 0.5 is only 10-30% of the way for the default bundle's concepts (the edit
    changes little until about 0.6, then fast); with the curve, strength 0.5 is half of it.
    """
    import torch

    with torch.no_grad():
        x = torch.from_numpy(np.concatenate(inputs))
        edits = [bundle.model_for_mix({concept: float(w)})(x).numpy().astype(np.float64) for w in _FINE]
    start, end = edits[0], edits[-1]

    def rms(a, b):
        return np.sqrt(np.mean((a - b) ** 2, axis=(1, 2, 3)))

    span = rms(start, end)
    progress = np.array([float(np.mean(1 - rms(e, end) / np.maximum(span, 1e-12))) for e in edits])
    progress = np.maximum.accumulate(np.clip(progress, 0.0, 1.0))
    progress[0], progress[-1] = 0.0, 1.0
    weights = np.interp(CURVE_STRENGTHS, progress + np.arange(len(progress)) * 1e-9, _FINE)
    return [round(float(w), 4) for w in weights]


def strength_curves(bundle, concepts: list[str] | None = None, seed: int = 1) -> dict[str, list[float]]:
    """:func:`strength_curve` of each concept (default: all) on 8 crops of the training photos."""
    from pocketgan.runtime.imaging import to_model_input

    pairs = identity_pairs(8, seed, size=bundle.config.image_size)
    inputs = [to_model_input(crop, bundle.config.image_size)[0] for crop in pairs.inputs]
    return {name: strength_curve(bundle, name, inputs) for name in (concepts or bundle.concept_names)}


def run_train_neutral(
    bundle: Path | None, out: Path, config: NeutralConfig, checkpoint_dir: Path | None = None
) -> dict:
    """Train the neutral concept over ``bundle``'s frozen base and write ``out`` (the same
    bundle with it; the rank pattern grows to ``2 x concept rank + neutral rank``).

    Resumable: with ``checkpoint_dir`` a killed run continues from its last checkpoint.
    Returns the neutral's training record.
    """
    import torch

    from pocketgan.bundle import Bundle, load_bundle, save_bundle
    from pocketgan.training.rank_search import uniform_ranks
    from pocketgan.training.trainer import LossConfig, TrainConfig, train_concept

    if config.threads:
        torch.set_num_threads(config.threads)
    source = load_bundle(bundle)
    base = source.base_generator()
    train = TrainConfig(
        steps=config.steps,
        lr=config.lr,
        seed=config.seed,
        progress=config.progress,
        checkpoint_dir=checkpoint_dir,
        resume=checkpoint_dir is not None,
    )
    neutral = train_concept(
        base,
        "neutral",
        identity_pairs(config.crops, config.seed),
        uniform_ranks(source.concepts[0].ranks, config.rank),
        train,
        init_tokens=torch.stack([c.tokens for c in source.concepts]).mean(0),
        description="the photo back (strength 0)",
        teacher="identity",
        loss=LossConfig(l1=1.0),
    )
    score = heldout_identity_psnr(source, neutral)
    neutral.training |= {"heldout_psnr_db": score, "crops": config.crops}
    if score < config.min_psnr_db:
        raise ValueError(
            f"the neutral concept gives held-out photos back at {score:.2f} dB, below {config.min_psnr_db:g} dB: "
            "train longer (--steps) or at a higher --rank; nothing was written"
        )
    result = Bundle.from_parts(source.size, base, source.concepts, upsampler=source.upsampler, neutral=neutral)
    result.strength_curves = strength_curves(result)
    save_bundle(result, out)
    return neutral.training


__all__ = [
    "CURVE_STRENGTHS",
    "NeutralConfig",
    "heldout_identity_psnr",
    "identity_pairs",
    "run_train_neutral",
    "strength_curve",
    "strength_curves",
]
