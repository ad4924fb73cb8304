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

Run the same command again to resume after a crash, a kill or a ``--steps`` raise. Each
step's crops, tasks, noise and timesteps come from (seed, step, rank), so a resumed run
draws what an unbroken one would. ``accelerate launch -m pocketgan train-teacher ...`` runs it
data-parallel on GPUs (each rank draws its own batch).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from pocketgan.diffusion_editor.pipeline import EditorArchitecture

RUN_FILE = "run.json"
# run.json fields a resume may change (they do not change what a step computes)
RESUMABLE_CHANGES = ("steps", "checkpoint_every", "progress", "threads")


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


def _check_resume(config: TeacherTrainingConfig) -> None:
    path = config.out / RUN_FILE
    if not path.is_file():
        return
    old = json.loads(path.read_text(encoding="utf-8"))
    new = config.to_json()
    changed = sorted(k for k in set(old) | set(new) if k not in RESUMABLE_CHANGES and old.get(k) != new.get(k))
    if changed:
        diff = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed)
        raise ValueError(f"{config.out} is a run with other settings ({diff}); use another --out or the run's settings")


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


class _Run:
    """Model, EMA, optimizer and scheduler of one training run."""

    def __init__(self, config: TeacherTrainingConfig) -> None:
        import torch
        from accelerate import Accelerator
        from diffusers import DDPMScheduler

        from pocketgan.diffusion_editor.pipeline import build_pipeline, encode_instructions, scheduler_config
        from pocketgan.diffusion_editor.tasks import INSTRUCTIONS

        self.config = config
        self.accelerator = Accelerator()
        self.pipe = build_pipeline(config.arch, seed=config.seed)
        self.pipe.text_encoder.requires_grad_(False)
        unet = self.pipe.unet.train()
        self.ema = {k: v.detach().clone() for k, v in unet.state_dict().items()}
        # instruction states are fixed: the text encoder stays at its seeded initialisation
        self.text = encode_instructions(self.pipe, [*INSTRUCTIONS.values(), ""])
        self.noise = DDPMScheduler(**scheduler_config(config.arch))
        opt = torch.optim.AdamW(unet.parameters(), lr=config.lr, weight_decay=1e-2)
        self.unet, self.opt = self.accelerator.prepare(unet, opt)
        self.step, self.elapsed, self.losses = 0, 0.0, []

    def lr_at(self, step: int) -> float:
        return self.config.lr * min(1.0, (step + 1) / max(1, self.config.warmup))

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
        for group in self.opt.param_groups:
            group["lr"] = self.lr_at(self.step)
        pred = self.unet(
            torch.cat([zt, zc], 1).to(device), t.to(device), encoder_hidden_states=self.text[text_idx].to(device)
        ).sample
        loss = torch.nn.functional.mse_loss(pred.float(), target.to(device))
        acc.backward(loss)
        acc.clip_grad_norm_(self.unet.parameters(), 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self._update_ema()
        self.step += 1
        return float(loss.detach())

    def _update_ema(self) -> None:
        import torch

        decay = min(self.config.ema_decay, (1 + self.step) / (10 + self.step))
        with torch.no_grad():
            for k, v in self.accelerator.unwrap_model(self.unet).state_dict().items():
                if v.dtype.is_floating_point:
                    self.ema[k].mul_(decay).add_(v.detach().cpu(), alpha=1 - decay)
                else:
                    self.ema[k].copy_(v)

    # -- checkpoints ---------------------------------------------------------------------

    def save(self) -> None:
        from pocketgan.atomic import atomic_directory
        from pocketgan.training.checkpoint import flatten_optimizer, save_checkpoint

        unet = self.accelerator.unwrap_model(self.unet)
        tensors = {f"unet/{k}": v for k, v in unet.state_dict().items()}
        tensors |= {f"ema/{k}": v for k, v in self.ema.items()}
        tensors |= {f"text/{k}": v for k, v in self.pipe.text_encoder.state_dict().items()}
        opt_tensors, opt_meta = flatten_optimizer("opt", self.opt.state_dict())
        meta = {"step": self.step, "elapsed_s": self.elapsed, "losses": self.losses, "optimizer": opt_meta}
        save_checkpoint(self.config.out / "checkpoint", tensors | opt_tensors, meta)
        # the pipeline with the EMA weights: what distill-data loads
        live = {k: v.detach().clone() for k, v in unet.state_dict().items()}
        unet.load_state_dict(self.ema)
        from pocketgan.training.diffusers_teacher import quiet_pipeline_io

        try:
            # quiet: a "writing shards" bar per checkpoint would break the step bar
            with atomic_directory(self.config.out / "pipeline") as staging, quiet_pipeline_io():
                self.pipe.save_pretrained(staging, safe_serialization=True)
                (staging / "pocketgan-teacher.json").write_text(
                    json.dumps({"step": self.step, "run": self.config.to_json()}, indent=1), encoding="utf-8"
                )
        finally:
            unet.load_state_dict(live)

    def load(self) -> None:
        from pocketgan.training.checkpoint import load_checkpoint, unflatten_optimizer

        tensors, meta = load_checkpoint(self.config.out / "checkpoint")
        unet = self.accelerator.unwrap_model(self.unet)
        unet.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("unet/")})
        self.ema = {k[4:]: v.clone() for k, v in tensors.items() if k.startswith("ema/")}
        self.pipe.text_encoder.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("text/")})
        self.opt.load_state_dict(unflatten_optimizer("opt", tensors, meta["optimizer"]))
        self.step, self.elapsed, self.losses = int(meta["step"]), float(meta["elapsed_s"]), list(meta["losses"])


def train_teacher(config: TeacherTrainingConfig) -> dict[str, Any]:
    """Train (or resume) the editor; returns a summary (steps, elapsed seconds, last losses)."""
    import torch
    from tqdm import tqdm

    from pocketgan.atomic import atomic_write_json
    from pocketgan.diffusion_editor.photos import TRAIN_SIDE, training_photos
    from pocketgan.photos import list_images, load_rgb
    from pocketgan.training.checkpoint import has_checkpoint

    if config.threads:
        torch.set_num_threads(config.threads)
    _check_resume(config)
    config.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(config.out / RUN_FILE, config.to_json())
    run = _Run(config)
    if has_checkpoint(config.out / "checkpoint"):
        run.load()
    if config.photos is None:
        photos = training_photos()
    else:
        photos = [load_rgb(p, TRAIN_SIDE) for p in list_images(config.photos)]
    main = run.accelerator.is_main_process
    smooth = None
    with tqdm(
        total=config.steps, initial=run.step, desc="train-teacher", unit="step", disable=not (config.progress and main)
    ) as bar:
        while run.step < config.steps:
            start = time.perf_counter()
            loss = run.train_step(photos)
            run.elapsed += time.perf_counter() - start
            smooth = loss if smooth is None else 0.98 * smooth + 0.02 * loss
            if not math.isfinite(loss):
                raise FloatingPointError(f"step {run.step}: loss {loss}; the last checkpoint is intact")
            bar.update(1)
            bar.set_postfix(loss=f"{smooth:.4f}")
            if run.step % 50 == 0:
                run.losses.append([run.step, round(smooth, 6)])
            if main and (run.step % config.checkpoint_every == 0 or run.step == config.steps):
                run.save()
    if main and not (config.out / "pipeline").is_dir():
        run.save()  # a resume of a finished run still leaves its pipeline
    return {
        "steps": run.step,
        "elapsed_s": round(run.elapsed, 1),
        "losses": run.losses[-5:],
        "pipeline": str(config.out / "pipeline"),
    }
