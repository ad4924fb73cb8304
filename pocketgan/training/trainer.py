"""Base and concept training (L1 reconstruction against the teacher's edits).

The slice's trainer: enough to ship a working default bundle. The full E2GAN /
Diffusion2GAN recipe (perceptual + GAN losses, rank search, data selection) builds on
these two functions.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from pocketgan.concepts.concept import Concept
from pocketgan.concepts.lora import inject_lora, lora_state_dict
from pocketgan.models.generator import Generator, GeneratorConfig


@dataclass
class TrainConfig:
    steps: int = field(default=1000, metadata={"help": "Optimizer steps."})
    batch_size: int = field(default=8, metadata={"help": "Pairs per step."})
    lr: float = field(default=2e-3, metadata={"help": "Adam learning rate (cosine-decayed to 5%)."})
    crop: int = field(default=128, metadata={"help": "Random crop side of training pairs, pixels."})
    seed: int = field(default=0, metadata={"help": "Seed of crops, batches and init."})
    progress: bool = field(default=True, metadata={"help": "Show a tqdm bar."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Clip the gradient norm to this (0: no clipping)."})

    def __post_init__(self) -> None:
        if self.steps <= 0 or self.batch_size <= 0 or self.crop <= 0 or self.crop % 8:
            raise ValueError("steps and batch_size must be positive; crop a positive multiple of 8")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")


@dataclass
class PairSet:
    """Aligned photos and teacher edits: two (N, S, S, 3) uint8 arrays."""

    inputs: np.ndarray
    targets: np.ndarray

    def __post_init__(self) -> None:
        if self.inputs.shape != self.targets.shape or self.inputs.ndim != 4 or self.inputs.dtype != np.uint8:
            raise ValueError(f"pairs must be two equal (N, S, S, 3) uint8 arrays, got {self.inputs.shape} / {self.targets.shape}")


def to_model_range(batch: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32 in [-1, 1]."""
    return torch.from_numpy(batch).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def _sample(pairs: PairSet, count: int, crop: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    n, s = pairs.inputs.shape[:2]
    idx = rng.integers(0, n, count)
    tops, lefts = rng.integers(0, s - crop + 1, count), rng.integers(0, s - crop + 1, count)
    flips = rng.random(count) < 0.5
    xs, ys = [], []
    for i, t, l, f in zip(idx, tops, lefts, flips):
        x, y = pairs.inputs[i, t : t + crop, l : l + crop], pairs.targets[i, t : t + crop, l : l + crop]
        xs.append(x[:, ::-1] if f else x)
        ys.append(y[:, ::-1] if f else y)
    return to_model_range(np.stack(xs)), to_model_range(np.stack(ys))


def _schedule(optimizer: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * min(s, steps) / steps)))


def train_base(
    config: GeneratorConfig, pairs: dict[str, PairSet], train: TrainConfig
) -> tuple[Generator, dict[str, torch.Tensor], dict]:
    """Train a generator on several concepts at once, one learned token set per concept.

    Returns the generator, the tokens per concept ((T, D) each) and a training record.
    """
    torch.manual_seed(train.seed)
    rng = np.random.default_rng(train.seed)
    names = sorted(pairs)
    model = Generator(config).train()
    tokens = nn.Parameter(torch.randn(len(names), config.token_count, config.token_dim) * 0.5)
    optimizer = torch.optim.Adam([*model.parameters(), tokens], lr=train.lr, betas=(0.5, 0.99))
    scheduler = _schedule(optimizer, train.steps)
    start, losses = time.perf_counter(), []
    bar = tqdm(range(train.steps), desc="base", disable=not train.progress)
    for _ in bar:
        which = rng.integers(0, len(names), train.batch_size)
        xs, ys = zip(*(_sample(pairs[names[k]], 1, train.crop, rng) for k in which))
        x, y = torch.cat(xs), torch.cat(ys)
        loss = nn.functional.l1_loss(model(x, tokens[torch.from_numpy(which)], clamp=False), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if train.max_grad_norm:
            nn.utils.clip_grad_norm_([*model.parameters(), tokens], train.max_grad_norm)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        bar.set_postfix(l1=f"{np.mean(losses[-50:]):.4f}")
    record = {"steps": train.steps, "batch_size": train.batch_size, "crop": train.crop, "lr": train.lr,
              "concepts": names, "seconds": round(time.perf_counter() - start, 1),
              "final_l1": round(float(np.mean(losses[-50:])), 5), "loss": "l1"}
    return model.eval(), {n: tokens[i].detach().clone() for i, n in enumerate(names)}, record


def train_concept(
    base: Generator,
    name: str,
    pairs: PairSet,
    ranks: dict[str, int],
    train: TrainConfig,
    init_tokens: torch.Tensor | None = None,
    description: str = "",
    teacher: str = "",
) -> Concept:
    """Freeze ``base``; train LoRA at ``ranks`` on the crucial layers + the concept tokens."""
    torch.manual_seed(train.seed)
    rng = np.random.default_rng(train.seed)
    model = copy.deepcopy(base)
    for p in model.parameters():
        p.requires_grad_(False)
    inject_lora(model, ranks)
    model.train()
    cfg = base.config
    start_tokens = init_tokens if init_tokens is not None else torch.randn(cfg.token_count, cfg.token_dim) * 0.5
    tokens = nn.Parameter(start_tokens.detach().clone())
    trainable = [p for n, p in model.named_parameters() if "lora_" in n]
    for p in trainable:
        p.requires_grad_(True)
    optimizer = torch.optim.Adam([*trainable, tokens], lr=train.lr, betas=(0.5, 0.99))
    scheduler = _schedule(optimizer, train.steps)
    start, losses = time.perf_counter(), []
    bar = tqdm(range(train.steps), desc=f"concept {name}", disable=not train.progress)
    for _ in bar:
        x, y = _sample(pairs, train.batch_size, train.crop, rng)
        loss = nn.functional.l1_loss(model(x, tokens, clamp=False), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if train.max_grad_norm:
            nn.utils.clip_grad_norm_([*trainable, tokens], train.max_grad_norm)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        bar.set_postfix(l1=f"{np.mean(losses[-50:]):.4f}")
    record = {"steps": train.steps, "batch_size": train.batch_size, "crop": train.crop, "lr": train.lr,
              "pairs": int(len(pairs.inputs)), "seconds": round(time.perf_counter() - start, 1),
              "final_l1": round(float(np.mean(losses[-50:])), 5), "loss": "l1",
              "trainable_parameters": sum(p.numel() for p in trainable) + tokens.numel(),
              "base_parameters": sum(p.numel() for p in base.parameters())}
    return Concept(name, lora_state_dict(model), tokens.detach().clone(), description, teacher, record)
