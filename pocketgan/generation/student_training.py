"""``pocketgan train-generation-student``: distil the teacher's ODE into the one-step generator.

Diffusion2GAN's two stages, on ``distill-data --noise`` pairs:

1. regression: the generator (initialised from the teacher's UNet) maps each pair's noise and
   prompt to the teacher's DDIM output, under ``--mse`` and/or ``--perceptual`` (the
   ensembled LPIPS-style loss, :class:`~pocketgan.training.losses.EnsembledPerceptualLoss`, on
   feature networks trained here: ``--perceptual-features``; ``--no-ensemble`` for plain);
2. ``--init STAGE1_OUT --gan W``: adds the conditional GAN loss with the teacher-encoder
   discriminator (:mod:`pocketgan.generation.discriminator`), single-sample lazy R1 and
   mix-and-match. The "real" images are the teacher's outputs for the same condition.

The losses and the discriminator step are the editing trainer's
(:func:`pocketgan.training.trainer.generator_losses`, ``discriminator_step``,
:class:`~pocketgan.training.trainer.LossConfig`). The prompt table is the teacher's, frozen.
The last 5% of the pairs (by key) are held back; their PSNR to the teacher is logged at
each checkpoint.

``--out`` holds ``run.json``, ``checkpoint/`` (resumable: rerun the command) and
``generator/`` (the generator's UNet at the last checkpoint, ``save_pretrained``).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pocketgan.training.trainer import LossConfig


@dataclass
class StudentTrainingConfig:
    pairs: Path = field(metadata={"help": "distill-data --noise dataset folder."})
    teacher: Path = field(metadata={"help": "The teacher's pipeline folder (initialisation and prompt table)."})
    out: Path = field(metadata={"help": "Run folder: created, or resumed when it holds a checkpoint."})
    steps: int = field(default=1000, metadata={"help": "Generator steps in all (a resume continues up to this)."})
    batch_size: int = field(default=32, metadata={"help": "Pairs per step."})
    lr: float = field(default=5e-5, metadata={"help": "Adam learning rate of the generator (constant)."})
    init: Path | None = field(
        default=None, metadata={"help": "Start from this run's generator (stage 2 from a stage-1 --out)."}
    )
    perceptual_features: Path | None = field(
        default=None, metadata={"help": "Trained perceptual feature folder (default: seeded random features)."}
    )
    checkpoint_every: int = field(default=100, metadata={"help": "Steps between checkpoints."})
    seed: int = field(default=0, metadata={"help": "Seed of batches, augmentations and the discriminator head."})
    threads: int | None = field(default=None, metadata={"help": "CPU threads for torch (default: all)."})
    progress: bool = field(default=True, metadata={"help": "Show a tqdm bar."})
    loss: LossConfig = field(
        default_factory=lambda: LossConfig(l1=0.0, mse=1.0), metadata={"help": "Generator loss weights."}
    )

    def __post_init__(self) -> None:
        self.pairs, self.teacher, self.out = Path(self.pairs), Path(self.teacher), Path(self.out)
        self.init = Path(self.init) if self.init is not None else None
        self.perceptual_features = Path(self.perceptual_features) if self.perceptual_features else None
        if isinstance(self.loss, dict):
            self.loss = LossConfig(**self.loss)
        if min(self.steps, self.batch_size, self.checkpoint_every) < 1 or not self.lr > 0:
            raise ValueError("steps, batch_size and checkpoint_every must be >= 1 and lr > 0")
        if self.loss.mix_and_match and self.batch_size < 2:
            raise ValueError("mix_and_match needs batch_size >= 2")

    def to_json(self) -> dict[str, Any]:
        out = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items() if k != "loss"}
        loss = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self.loss).items()}
        return out | {"loss": loss}


def _perceptual(config: StudentTrainingConfig):
    if not config.loss.perceptual:
        return None
    if config.perceptual_features is not None:
        from pocketgan.generation.features import load_perceptual_loss

        return load_perceptual_loss(config.perceptual_features, ensemble=config.loss.ensemble)
    from pocketgan.training.losses import EnsembledPerceptualLoss, PerceptualFeatures

    return EnsembledPerceptualLoss(PerceptualFeatures.random(seed=0), ensemble=config.loss.ensemble)


class _Run:
    def __init__(self, config: StudentTrainingConfig) -> None:
        from pocketgan.generation.ode_pairs import load_noise_pairs
        from pocketgan.generation.student import OneStepGenerator
        from pocketgan.generation.teacher import load_teacher

        self.config = config
        teacher = load_teacher(config.teacher)
        self.generator = OneStepGenerator.from_teacher(teacher)
        if config.init is not None:
            from safetensors.torch import load_file

            self.generator.unet.load_state_dict(load_file(str(config.init / "generator" / "generator.safetensors")))
        self.generator.train()
        self.encoder = teacher.prompt_encoder.requires_grad_(False)
        data = load_noise_pairs(config.pairs)
        n = len(data["keys"])
        self.val = np.arange(n - max(1, n // 20), n)
        self.train_idx = np.arange(0, self.val[0])
        self.noise, self.target = torch.from_numpy(data["noise"]), torch.from_numpy(data["target"])
        with torch.no_grad():
            self.states = torch.cat([self.encoder.encode(data["prompts"][i : i + 256]) for i in range(0, n, 256)])
        self.optimizer = torch.optim.Adam(self.generator.parameters(), lr=config.lr, betas=(0.0, 0.99))
        self.perceptual = _perceptual(config)
        self.disc = self.d_optimizer = None
        if config.loss.gan:
            from pocketgan.generation.discriminator import UNetEncoderDiscriminator

            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(config.seed)
                self.disc = UNetEncoderDiscriminator(teacher.unet, teacher.arch)
            self.d_optimizer = torch.optim.Adam(self.disc.parameters(), lr=config.loss.d_lr, betas=(0.0, 0.99))
        self.gen = torch.Generator().manual_seed(config.seed)
        self.step, self.elapsed, self.history = 0, 0.0, []

    def train_step(self) -> dict[str, float]:
        from pocketgan.training.trainer import discriminator_step, generator_losses

        c = self.config
        rng = np.random.default_rng([c.seed, self.step])
        pick = torch.from_numpy(rng.choice(self.train_idx, size=c.batch_size))
        noise, states, target = self.noise[pick], self.states[pick], self.target[pick]
        fake = self.generator(noise, states)
        g_loss, stats = generator_losses(c.loss, fake, target, (noise, states), self.perceptual, self.disc, self.gen)
        self.optimizer.zero_grad(set_to_none=True)
        g_loss.backward()
        torch.nn.utils.clip_grad_norm_(self.generator.parameters(), 1.0)
        self.optimizer.step()
        if self.disc is not None:
            stats |= discriminator_step(
                self.disc,
                self.d_optimizer,
                _Plain(),
                c.loss,
                (noise, states),
                target,
                fake.detach(),
                self.step,
                self.gen,
            )
        self.step += 1
        return {"g": float(g_loss.detach()), **stats}

    @torch.no_grad()
    def validate(self) -> float:
        """PSNR (dB) of the generator to the teacher on the held-back pairs."""
        self.generator.eval()
        out = torch.cat([self.generator(self.noise[i : i + 64], self.states[i : i + 64]) for i in _chunks(self.val)])
        self.generator.train()
        mse = torch.mean((out - self.target[self.val]) ** 2).item() / 4.0  # [-1, 1] -> [0, 1]
        return 10 * math.log10(1.0 / max(mse, 1e-12))

    def save(self) -> None:
        from safetensors.torch import save_file

        from pocketgan.atomic import atomic_directory
        from pocketgan.training.checkpoint import flatten_optimizer, save_checkpoint

        tensors = {f"generator/{k}": v for k, v in self.generator.unet.state_dict().items()}
        opt, opt_meta = flatten_optimizer("opt", self.optimizer.state_dict())
        meta = {"step": self.step, "elapsed_s": self.elapsed, "history": self.history, "opt": opt_meta}
        meta["gen_state"] = self.gen.get_state().tolist()
        if self.disc is not None:
            tensors |= {f"disc/{k}": v for k, v in self.disc.state_dict().items()}
            d_opt, meta["d_opt"] = flatten_optimizer("d_opt", self.d_optimizer.state_dict())
            tensors |= d_opt
        save_checkpoint(self.config.out / "checkpoint", tensors | opt, meta)
        with atomic_directory(self.config.out / "generator") as staging:
            state = {k: v.detach().contiguous() for k, v in self.generator.unet.state_dict().items()}
            save_file(state, str(staging / "generator.safetensors"))
            (staging / "generator.json").write_text(
                json.dumps({"step": self.step, "history": self.history[-3:], "run": self.config.to_json()}, indent=1)
            )

    def load(self) -> None:
        from pocketgan.training.checkpoint import load_checkpoint, unflatten_optimizer

        tensors, meta = load_checkpoint(self.config.out / "checkpoint")

        def part(prefix: str) -> dict:
            return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}

        self.generator.unet.load_state_dict(part("generator/"))
        self.optimizer.load_state_dict(unflatten_optimizer("opt", tensors, meta["opt"]))
        if self.disc is not None:
            self.disc.load_state_dict(part("disc/"))
            self.d_optimizer.load_state_dict(unflatten_optimizer("d_opt", tensors, meta["d_opt"]))
        self.gen.set_state(torch.tensor(meta["gen_state"], dtype=torch.uint8))
        self.step, self.elapsed, self.history = int(meta["step"]), float(meta["elapsed_s"]), list(meta["history"])


class _Plain:
    """The two accelerator calls ``discriminator_step`` makes, for a plain single-process run."""

    @staticmethod
    def backward(loss: torch.Tensor) -> None:
        loss.backward()


def _chunks(idx: np.ndarray) -> list[int]:
    return list(range(int(idx[0]), int(idx[-1]) + 1, 64))


def train_generation_student(config: StudentTrainingConfig) -> dict[str, Any]:
    """Train (or resume) a one-step generator; returns the summary (steps, seconds, last validation PSNR)."""
    from tqdm import tqdm

    from pocketgan.training.checkpoint import has_checkpoint
    from pocketgan.training.diffusion_training import open_run_folder

    open_run_folder(config)
    run = _Run(config)
    if has_checkpoint(config.out / "checkpoint"):
        run.load()
    smooth: dict[str, float] = {}
    with tqdm(
        total=config.steps, initial=run.step, desc="train-generation-student", disable=not config.progress
    ) as bar:
        while run.step < config.steps:
            start = time.perf_counter()
            stats = run.train_step()
            run.elapsed += time.perf_counter() - start
            if not math.isfinite(stats["g"]):
                raise FloatingPointError(f"step {run.step}: loss {stats['g']}; the last checkpoint is intact")
            smooth = {k: v if k not in smooth else 0.95 * smooth[k] + 0.05 * v for k, v in stats.items()}
            bar.update(1)
            bar.set_postfix({k: f"{v:.3f}" for k, v in smooth.items()})
            if run.step % config.checkpoint_every == 0 or run.step == config.steps:
                psnr = run.validate()
                run.history.append(
                    {"step": run.step, "val_psnr_db": round(psnr, 3), **{k: round(v, 5) for k, v in smooth.items()}}
                )
                run.save()
    return {"steps": run.step, "elapsed_s": round(run.elapsed, 1), "history": run.history[-3:], "out": str(config.out)}
