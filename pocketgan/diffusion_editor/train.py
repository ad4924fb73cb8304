"""``pocketgan train-teacher``: train the diffusion editor, resumably.

InstructPix2Pix's recipe in pixel space: the UNet sees the noisy photo concatenated with
the task's input (the gray photo, or the degraded one) and the instruction's text states;
it predicts v (DDPM, cosine schedule, zero terminal SNR). 5% of samples drop the
instruction, 5% the input photo and 5% both, so both classifier-free guidances work at
sampling time. An EMA of the weights is what the saved pipeline holds.

Layout of ``--out``::

    run.json        the run's configuration (a resume must match it)
    checkpoint/     the last checkpoint (safetensors + JSON, written atomically)
    pipeline/       the EMA pipeline at the last checkpoint (save_pretrained, atomic):
                    what ``distill-data --teacher instruct-pix2pix:OUT/pipeline`` loads

The loop, checkpoints and resume checks are
:mod:`pocketgan.training.diffusion_training`'s (shared with the emoji generation teacher).
Run the same command again to resume after a crash, a kill or a ``--steps`` raise. Each
step's crops, tasks, noise and timesteps come from (seed, step, rank), so a resumed run
draws what an unbroken one would. ``accelerate launch -m pocketgan train-teacher ...`` runs it
data-parallel on GPUs (each rank draws its own batch).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from pocketgan.diffusion_editor.pipeline import EditorArchitecture
from pocketgan.training.diffusion_training import DiffusionRun, run_training


@dataclass
class TeacherTrainingConfig:
    out: Path = field(metadata={"help": "Run folder: created, or resumed when it holds a checkpoint."})
    steps: int = field(default=1500, metadata={"help": "Optimizer steps in all (a resume continues up to this)."})
    batch_size: int = field(default=8, metadata={"help": "Crops per step and rank."})
    crop: int = field(default=128, metadata={"help": "Training crop side, pixels (a multiple of the UNet's)."})
    view: int = field(
        default=256,
        metadata={
            "help": "Crops are windows of a random `view`-px square of a photo: the scale distill-data edits at."
        },
    )
    lr: float = field(default=3e-4, metadata={"help": "AdamW learning rate (after a linear warm-up)."})
    warmup: int = field(default=200, metadata={"help": "Warm-up steps."})
    ema_decay: float = field(default=0.999, metadata={"help": "EMA decay of the saved weights."})
    drop: float = field(default=0.05, metadata={"help": "Probability of each condition drop (text, image, both)."})
    checkpoint_every: int = field(default=250, metadata={"help": "Steps between checkpoints (and pipeline saves)."})
    seed: int = field(default=0, metadata={"help": "Seed of the initialisation and of every step's draws."})
    photos: Path | None = field(
        default=None,
        metadata={
            "help": "Folder of training photos (default: mate-backgrounds' non-held-out nature photos + "
            "scikit-image's motorcycle pair)."
        },
    )
    threads: int | None = field(default=None, metadata={"help": "CPU threads for torch (default: all)."})
    progress: bool = field(default=True, metadata={"help": "Show a tqdm bar."})
    arch: EditorArchitecture = field(default_factory=EditorArchitecture, metadata={"help": "The editor's sizes."})

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.photos = Path(self.photos) if self.photos is not None else None
        if isinstance(self.arch, dict):
            self.arch = EditorArchitecture(**self.arch)
        for name in ("steps", "batch_size", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.crop < 1 or self.crop % self.arch.multiple:
            raise ValueError(f"crop must be a positive multiple of {self.arch.multiple}, got {self.crop}")
        if self.view < self.crop:
            raise ValueError(f"view ({self.view}) must be >= crop ({self.crop})")
        if not self.lr > 0 or self.warmup < 0:
            raise ValueError("lr must be > 0 and warmup >= 0")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if not 0 <= self.drop <= 1 / 3:
            raise ValueError(f"drop must be in [0, 1/3], got {self.drop}")

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("out", "arch", "photos")}
        if self.photos is not None:  # absent = the built-in photos (runs begun before this field resume)
            out["photos"] = str(self.photos)
        return {**out, "arch": self.arch.to_json()}


def _draw_batch(photos: list[np.ndarray], config: TeacherTrainingConfig, rng: np.random.Generator):
    """(clean, given, task index) for one step: uint8 (B, crop, crop, 3) x 2 and int (B,)."""
    from pocketgan.diffusion_editor.tasks import TASKS, task_input
    from pocketgan.photos import random_crops

    views = random_crops(photos, config.batch_size, config.view, rng)
    clean, given, tasks = [], [], []
    for view in views:
        top, left = rng.integers(0, config.view - config.crop + 1, size=2)
        crop = np.ascontiguousarray(view[top : top + config.crop, left : left + config.crop])
        task = int(rng.integers(len(TASKS)))
        clean.append(crop)
        given.append(task_input(TASKS[task], crop, rng))
        tasks.append(task)
    return np.stack(clean), np.stack(given), np.asarray(tasks)


def _to_latents(images: np.ndarray, patch: int):
    """uint8 (B, H, W, 3) -> float32 (B, 3 p^2, H / p, W / p) in [-1, 1], as the pipeline's VAE encodes."""
    import torch

    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return torch.nn.functional.pixel_unshuffle(x, patch)


class _Run(DiffusionRun):
    """The editor's UNet (the text encoder stays at its seeded initialisation)."""

    def __init__(self, config: TeacherTrainingConfig) -> None:
        from diffusers import DDPMScheduler

        from pocketgan.diffusion_editor.pipeline import build_pipeline, encode_instructions, scheduler_config
        from pocketgan.diffusion_editor.tasks import INSTRUCTIONS

        self.config = config
        self.pipe = build_pipeline(config.arch, seed=config.seed)
        self.pipe.text_encoder.requires_grad_(False)
        # instruction states are fixed: the text encoder stays at its seeded initialisation
        self.text = encode_instructions(self.pipe, [*INSTRUCTIONS.values(), ""])
        self.noise = DDPMScheduler(**scheduler_config(config.arch))
        self.setup(self.pipe.unet)

    def train_step(self, photos: list[np.ndarray]) -> float:
        import torch

        c, acc = self.config, self.accelerator
        rank = acc.process_index
        rng = np.random.default_rng([c.seed, self.step, rank])
        clean, given, tasks = _draw_batch(photos, c, rng)
        gen = torch.Generator().manual_seed(int(rng.integers(2**63)))
        z0, zc = _to_latents(clean, c.arch.patch_size), _to_latents(given, c.arch.patch_size)
        noise = torch.randn(z0.shape, generator=gen)
        t = torch.randint(0, self.noise.config.num_train_timesteps, (len(z0),), generator=gen)
        zt = self.noise.add_noise(z0, noise, t)
        target = {"epsilon": noise, "sample": z0}.get(c.arch.prediction_type)
        if target is None:
            target = self.noise.get_velocity(z0, noise, t)
        r = torch.rand(len(z0), generator=gen)
        text_idx = torch.as_tensor(tasks)
        no_text = (r < c.drop) | ((r >= 2 * c.drop) & (r < 3 * c.drop))
        no_image = r >= c.drop
        no_image &= r < 3 * c.drop
        text_idx[no_text] = len(self.text) - 1  # the empty instruction
        zc = zc * (~no_image).float()[:, None, None, None]  # a dropped image is zeros, as the pipeline's
        device = acc.device
        pred = self.model(
            torch.cat([zt, zc], 1).to(device), t.to(device), encoder_hidden_states=self.text[text_idx].to(device)
        ).sample
        return self.optimize(torch.nn.functional.mse_loss(pred.float(), target.to(device)))

    def extra_tensors(self) -> dict:
        return {f"text/{k}": v for k, v in self.pipe.text_encoder.state_dict().items()}

    def load_extra(self, tensors: dict) -> None:
        self.pipe.text_encoder.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("text/")})

    def save_pipeline(self, staging: Path) -> None:
        self.pipe.save_pretrained(staging, safe_serialization=True)


def train_teacher(config: TeacherTrainingConfig) -> dict[str, Any]:
    """Train (or resume) the editor; returns a summary (steps, elapsed seconds, last losses)."""
    from pocketgan.diffusion_editor.photos import TRAIN_SIDE, training_photos
    from pocketgan.photos import list_images, load_rgb

    if config.photos is None:
        photos = training_photos()
    else:
        photos = [load_rgb(p, TRAIN_SIDE) for p in list_images(config.photos)]
    return run_training(_Run, config, photos, desc="train-teacher")
