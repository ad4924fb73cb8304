"""``pocketgan train-generation-teacher``: train the emoji text-to-image teacher, resumably.

Each step draws ``batch_size`` training glyphs (never the held-out prompts), noises them
with ``DDPMScheduler`` at uniform timesteps and regresses v; 10% of prompts are dropped to
the empty prompt so classifier-free guidance works at sampling time. The prompt table
trains jointly with the UNet. The loop, EMA, checkpoints and resume rules are
:mod:`pocketgan.training.diffusion_training`'s, shared with the editor's ``train-teacher``.

Layout of ``--out``::

    run.json        the run's configuration (a resume must match it)
    checkpoint/     the last checkpoint (safetensors + JSON, written atomically)
    pipeline/       the EMA teacher at the last checkpoint (unet/, prompt_encoder/,
                    scheduler/, architecture.json): what ``distill-data --noise`` loads

Run the same command again to resume after a crash, a kill or a ``--steps`` raise.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from pocketgan.generation.teacher import GenerationArchitecture
from pocketgan.training.diffusion_training import DiffusionRun, run_training


@dataclass
class GenerationTeacherConfig:
    out: Path = field(metadata={"help": "Run folder: created, or resumed when it holds a checkpoint."})
    steps: int = field(default=20000, metadata={"help": "Optimizer steps in all (a resume continues up to this)."})
    batch_size: int = field(default=64, metadata={"help": "Glyphs per step and rank."})
    lr: float = field(default=4e-4, metadata={"help": "AdamW learning rate (after a linear warm-up)."})
    warmup: int = field(default=200, metadata={"help": "Warm-up steps."})
    ema_decay: float = field(default=0.999, metadata={"help": "EMA decay of the saved weights."})
    drop: float = field(default=0.1, metadata={"help": "Probability of training a sample with the empty prompt."})
    checkpoint_every: int = field(default=250, metadata={"help": "Steps between checkpoints (and pipeline saves)."})
    seed: int = field(default=0, metadata={"help": "Seed of the initialisation and of every step's draws."})
    data: Path | None = field(
        default=None, metadata={"help": "Emoji cache folder (default ~/.cache/pocketgan/emoji; rendered if missing)."}
    )
    limit: int = field(default=0, metadata={"help": "Train on the first N training glyphs only (0: all; for tests)."})
    threads: int | None = field(default=None, metadata={"help": "CPU threads for torch (default: all)."})
    progress: bool = field(default=True, metadata={"help": "Show a tqdm bar."})
    arch: GenerationArchitecture = field(
        default_factory=GenerationArchitecture, metadata={"help": "The teacher's sizes."}
    )

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.data = Path(self.data) if self.data is not None else None
        if isinstance(self.arch, dict):
            self.arch = GenerationArchitecture(**self.arch)
        for name in ("steps", "batch_size", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0 or self.warmup < 0 or self.limit < 0:
            raise ValueError("lr must be > 0, warmup and limit >= 0")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if not 0 <= self.drop < 1:
            raise ValueError(f"drop must be in [0, 1), got {self.drop}")

    def to_json(self) -> dict[str, Any]:
        skip = ("out", "arch", "data")
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip} | {
            "arch": self.arch.to_json()
        }


def training_glyphs(config: GenerationTeacherConfig):
    """The training split (held-out prompts removed), cut to ``limit`` glyphs if set."""
    from pocketgan.generation.emoji import load_emoji

    train = load_emoji(config.arch.image_size, config.data, progress=config.progress).split(held_out=False)
    if config.limit:
        idx = np.arange(min(config.limit, len(train)))
        train = type(train)(
            train.images[idx], train.prompts[: len(idx)], train.sequences[: len(idx)], train.held_out[idx]
        )
    return train


class _Run(DiffusionRun):
    """UNet + prompt table, trained together."""

    def __init__(self, config: GenerationTeacherConfig) -> None:
        from diffusers import DDPMScheduler

        from pocketgan.generation.teacher import build_prompt_encoder, build_unet, scheduler_config

        self.config = config
        self.encoder = build_prompt_encoder(config.arch, config.seed).train()
        self.noise = DDPMScheduler(**scheduler_config(config.arch))
        self.setup(build_unet(config.arch, config.seed))

    def trainable(self, model: Any) -> list:
        return [*model.parameters(), *self.encoder.parameters()]

    def train_step(self, glyphs: Any) -> float:
        import torch

        c, acc = self.config, self.accelerator
        rng = np.random.default_rng([c.seed, self.step, acc.process_index])
        pick = rng.integers(len(glyphs), size=c.batch_size)
        prompts = ["" if rng.random() < c.drop else glyphs.prompts[i] for i in pick]
        gen = torch.Generator().manual_seed(int(rng.integers(2**63)))
        images = torch.from_numpy(glyphs.images[pick]).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        z0 = torch.nn.functional.pixel_unshuffle(images, c.arch.patch_size)
        noise = torch.randn(z0.shape, generator=gen)
        t = torch.randint(0, self.noise.config.num_train_timesteps, (len(z0),), generator=gen)
        zt = self.noise.add_noise(z0, noise, t)
        target = {"epsilon": noise, "sample": z0}.get(c.arch.prediction_type)
        if target is None:
            target = self.noise.get_velocity(z0, noise, t)
        device = acc.device
        states = self.encoder(self.encoder.ids(prompts).to(device))
        pred = self.model(zt.to(device), t.to(device), encoder_hidden_states=states).sample
        return self.optimize(torch.nn.functional.mse_loss(pred.float(), target.to(device)))

    def setup(self, model: Any) -> None:
        super().setup(model)
        self.encoder_ema = {k: v.detach().clone() for k, v in self.encoder.state_dict().items()}

    def _update_ema(self) -> None:
        import torch

        super()._update_ema()
        decay = min(self.config.ema_decay, (1 + self.step) / (10 + self.step))
        with torch.no_grad():
            for k, v in self.encoder.state_dict().items():
                self.encoder_ema[k].mul_(decay).add_(v.detach().cpu(), alpha=1 - decay)

    def extra_tensors(self) -> dict:
        return {f"text/{k}": v for k, v in self.encoder.state_dict().items()} | {
            f"text_ema/{k}": v for k, v in self.encoder_ema.items()
        }

    def load_extra(self, tensors: dict) -> None:
        self.encoder.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("text/")})
        self.encoder_ema = {k[9:]: v.clone() for k, v in tensors.items() if k.startswith("text_ema/")}

    def save_pipeline(self, staging: Path) -> None:
        from pocketgan.generation.teacher import build_prompt_encoder, save_teacher

        encoder = build_prompt_encoder(self.config.arch, self.config.seed)
        encoder.load_state_dict(self.encoder_ema)
        save_teacher(staging, self.unwrapped, encoder, self.config.arch)


def train_generation_teacher(config: GenerationTeacherConfig) -> dict[str, Any]:
    """Train (or resume) the emoji teacher; returns a summary (steps, elapsed seconds, last losses)."""
    return run_training(_Run, config, training_glyphs(config), desc="train-generation-teacher")
