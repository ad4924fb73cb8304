"""Base and concept training: E2GAN's recipe with Diffusion2GAN's losses.

* ``train_base``: one generator on several concepts at once, a learned token set each.
* ``train_concept``: freeze the base; train LoRA on the crucial layers + the tokens.
* ``train_full_finetune``: every base weight trainable (the study's baseline (b)).

Every run goes through :func:`fit`: L1 + ensembled perceptual + conditional GAN (each
switchable in :class:`LossConfig`), atomic checkpoints every ``checkpoint_every`` steps,
and ``resume`` that continues bit-exactly (model, optimizers, every RNG and the loss
history are in the checkpoint). accelerate places the work on the GPU(s) when there are
any; on one CPU it runs plainly.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from pocketgan.concepts.concept import Concept
from pocketgan.concepts.lora import inject_lora, lora_state_dict
from pocketgan.models.generator import Generator, GeneratorConfig
from pocketgan.training.checkpoint import (
    CheckpointError,
    flatten_optimizer,
    has_checkpoint,
    load_checkpoint,
    save_checkpoint,
    unflatten_optimizer,
)
from pocketgan.training.pairs import PairSet  # noqa: F401  (re-exported: trainers take PairSets)


@dataclass
class TrainConfig:
    steps: int = field(default=1000, metadata={"help": "Optimizer steps."})
    batch_size: int = field(default=8, metadata={"help": "Pairs per step."})
    lr: float = field(default=2e-3, metadata={"help": "Adam learning rate (cosine-decayed to 5%)."})
    crop: int = field(default=128, metadata={"help": "Random crop side of training pairs, pixels."})
    seed: int = field(default=0, metadata={"help": "Seed of crops, batches, augmentations and init."})
    progress: bool = field(default=True, metadata={"help": "Show a tqdm bar."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Clip the gradient norm to this (0: no clipping)."})
    checkpoint_dir: Path | None = field(default=None, metadata={"help": "Write atomic checkpoints here (None: none)."})
    checkpoint_every: int = field(
        default=200, metadata={"help": "Steps between checkpoints (the last step always writes one)."}
    )
    resume: bool = field(default=False, metadata={"help": "Continue from checkpoint_dir's checkpoint if there is one."})
    eval_every: int = field(
        default=0, metadata={"help": "Steps between calls of the evaluation hook (0: never); its time is not counted."}
    )

    def __post_init__(self) -> None:
        if self.steps <= 0 or self.batch_size <= 0 or self.crop <= 0 or self.crop % 8:
            raise ValueError("steps and batch_size must be positive; crop a positive multiple of 8")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.checkpoint_every <= 0 or self.eval_every < 0:
            raise ValueError("checkpoint_every must be positive and eval_every non-negative")
        if self.resume and self.checkpoint_dir is None:
            raise ValueError("resume needs a checkpoint_dir")
        if self.checkpoint_dir is not None:
            self.checkpoint_dir = Path(self.checkpoint_dir)


@dataclass
class LossConfig:
    """Weights of the generator's losses; 0 (or False) switches a part off."""

    l1: float = field(default=1.0, metadata={"help": "L1 against the teacher's edit."})
    mse: float = field(default=0.0, metadata={"help": "Mean squared error against the teacher's output."})
    perceptual: float = field(default=0.0, metadata={"help": "Ensembled perceptual loss (E-LPIPS-style)."})
    ensemble: bool = field(
        default=True, metadata={"help": "Same random augmentation on both sides of the perceptual loss."}
    )
    perceptual_weights: Path | None = field(
        default=None,
        metadata={"help": "safetensors of pretrained perceptual features (default: seeded random features)."},
    )
    gan: float = field(default=0.0, metadata={"help": "Conditional GAN loss (non-saturating)."})
    r1_gamma: float = field(
        default=0.0, metadata={"help": "Single-sample R1 penalty weight (lazy, every r1_interval steps)."}
    )
    r1_interval: int = field(default=16, metadata={"help": "Steps between lazy R1 penalties."})
    mix_and_match: bool = field(
        default=False, metadata={"help": "Real edits with another photo's condition count as fake."}
    )
    d_lr: float = field(default=2e-4, metadata={"help": "Discriminator learning rate."})
    d_channels: int = field(
        default=16, metadata={"help": "Discriminator width (16 keeps it near the generator's cost)."}
    )

    def __post_init__(self) -> None:
        if min(self.l1, self.mse, self.perceptual, self.gan, self.r1_gamma) < 0:
            raise ValueError("loss weights must be non-negative")
        if self.l1 == 0 and self.mse == 0 and self.perceptual == 0 and self.gan == 0:
            raise ValueError("at least one of l1, mse, perceptual and gan must be on")
        if (self.r1_gamma or self.mix_and_match) and not self.gan:
            raise ValueError("r1_gamma and mix_and_match need the GAN loss (gan > 0)")
        if self.r1_interval <= 0 or self.d_lr <= 0 or self.d_channels <= 0:
            raise ValueError("r1_interval, d_lr and d_channels must be positive")

    @classmethod
    def recipe(cls) -> "LossConfig":
        """Every part on: the full E2GAN + Diffusion2GAN loss."""
        return cls(l1=1.0, perceptual=4.0, gan=0.05, r1_gamma=1.0, mix_and_match=True)

    def summary(self) -> str:
        parts = [f"L1x{self.l1:g}"] if self.l1 else []
        if self.mse:
            parts.append(f"MSEx{self.mse:g}")
        if self.perceptual:
            parts.append(f"{'ensembled ' if self.ensemble else ''}perceptual x{self.perceptual:g}")
        if self.gan:
            parts.append(f"GAN x{self.gan:g}")
        if self.r1_gamma:
            parts.append(f"R1 {self.r1_gamma:g}/{self.r1_interval}")
        if self.mix_and_match:
            parts.append("mix-and-match")
        return " + ".join(parts)


def to_model_range(batch: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32 in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def _crop(pairs: PairSet, crop: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    n, s = pairs.inputs.shape[:2]
    if crop > s:
        raise ValueError(f"crop {crop} is larger than the pairs' side {s}")
    i, top, left = rng.integers(0, n), rng.integers(0, s - crop + 1), rng.integers(0, s - crop + 1)
    x, y = pairs.inputs[i, top : top + crop, left : left + crop], pairs.targets[i, top : top + crop, left : left + crop]
    return (x[:, ::-1], y[:, ::-1]) if rng.random() < 0.5 else (x, y)


class Student(nn.Module):
    """The generator plus its concept tokens, so both train (and sync) as one module.

    ``forward(x, which)``: x float32 (N, 3, H, W) in [-1, 1], which int64 (N,) token-set
    index per sample -> unclamped edit (N, 3, H, W) (the clamp has no gradient outside
    [-1, 1], so training takes the L1 before it).
    """

    def __init__(self, generator: Generator, tokens: torch.Tensor):
        super().__init__()
        self.generator = generator
        self.tokens = nn.Parameter(tokens.detach().clone())  # (K, T, D)

    def forward(self, x: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
        return self.generator(x, self.tokens[which], clamp=False)


EvalHook = Callable[[Generator, torch.Tensor], dict]


def _lr_factor(step: int, steps: int) -> float:
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps))


def _plain(obj):
    """JSON-able copy of a config (Paths to strings)."""
    return json.loads(json.dumps(obj, default=str))


def fit(
    student: Student,
    pairs: list[PairSet],
    train: TrainConfig,
    loss: LossConfig,
    desc: str,
    evaluate: EvalHook | None = None,
) -> dict:
    """Train ``student``'s trainable parameters on ``pairs`` (pairs[k] goes with token set k).

    Returns a record: steps, seconds (training wall time, summed over resumes, evaluation
    excluded), final L1, trainable parameter count, the loss history's tail and the
    evaluation history.
    """
    if len(pairs) != student.tokens.shape[0]:
        raise ValueError(f"{len(pairs)} pair sets for {student.tokens.shape[0]} token sets")
    run = _Fit(student, pairs, train, loss, desc, evaluate)
    run.resume()
    return run.loop()


def _perceptual_loss(loss: LossConfig, device) -> nn.Module | None:
    """The ensembled perceptual loss on ``device`` (``None`` when ``loss.perceptual`` is 0)."""
    if not loss.perceptual:
        return None
    from pocketgan.training.losses import EnsembledPerceptualLoss, PerceptualFeatures

    features = (
        PerceptualFeatures.from_safetensors(loss.perceptual_weights)
        if loss.perceptual_weights
        else PerceptualFeatures.random(seed=0)
    )
    return EnsembledPerceptualLoss(features, ensemble=loss.ensemble).to(device)


class _Fit:
    """One :func:`fit` run: models, optimizers, RNGs and the history a checkpoint holds.

    The order of construction (seeds, optimizer, losses, discriminator, ``prepare``) and of
    every random draw in :meth:`train_step` is what makes a resumed run bit-exact.
    """

    def __init__(
        self,
        student: Student,
        pairs: list[PairSet],
        train: TrainConfig,
        loss: LossConfig,
        desc: str,
        evaluate: EvalHook | None,
    ) -> None:
        from accelerate import Accelerator

        self.pairs, self.train, self.loss, self.desc, self.evaluate = pairs, train, loss, desc, evaluate
        self.accelerator = accelerator = Accelerator(cpu=not torch.cuda.is_available())
        torch.manual_seed(train.seed)
        self.rng = np.random.default_rng([train.seed, accelerator.process_index])
        self.gen = torch.Generator().manual_seed(train.seed * 1000 + accelerator.process_index)
        self.trainable = [p for p in student.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(self.trainable, lr=train.lr, betas=(0.5, 0.99))
        self.perceptual = _perceptual_loss(loss, accelerator.device)
        self.disc = self.d_optimizer = None
        if loss.gan:
            from pocketgan.training.discriminator import ConditionalDiscriminator

            disc = ConditionalDiscriminator(channels=loss.d_channels, seed=train.seed + 1)
            d_optimizer = torch.optim.Adam(disc.parameters(), lr=loss.d_lr, betas=(0.0, 0.99))
            self.disc, self.d_optimizer = accelerator.prepare(disc, d_optimizer)
        self.student, self.optimizer = accelerator.prepare(student, optimizer)
        unsaved = ("progress", "resume", "checkpoint_dir", "eval_every")
        self.run = {
            "desc": desc,
            "train": _plain({k: v for k, v in asdict(train).items() if k not in unsaved}),
            "loss": _plain(asdict(loss)),
            "token_sets": len(pairs),
            "pairs": [len(p) for p in pairs],
        }
        self.step, self.elapsed, self.losses, self.evals = 0, 0.0, [], []

    def resume(self) -> None:
        """Continue from ``checkpoint_dir``'s checkpoint when ``resume`` is set and there is one."""
        train = self.train
        if not (train.resume and has_checkpoint(train.checkpoint_dir)):
            return
        tensors, meta = load_checkpoint(train.checkpoint_dir)
        if meta["run"] != self.run:
            raise CheckpointError(
                f"checkpoint in {train.checkpoint_dir} is from a different run:\n"
                f"  saved:   {meta['run']}\n  current: {self.run}"
            )
        _restore(self.accelerator, self.student, self.optimizer, self.disc, self.d_optimizer, tensors, meta)
        self.rng.bit_generator.state = meta["numpy_rng"]
        self.gen.set_state(tensors["rng/torch"])
        self.step, self.elapsed, self.losses, self.evals = meta["step"], meta["seconds"], meta["losses"], meta["evals"]
        if self.accelerator.is_main_process:
            print(f"{self.desc}: resumed at step {self.step}/{train.steps} from {train.checkpoint_dir}")

    def checkpoint(self) -> None:
        """Write the atomic checkpoint (main process, when there is a ``checkpoint_dir``)."""
        accelerator = self.accelerator
        if self.train.checkpoint_dir is None or not accelerator.is_main_process:
            return
        unwrapped = accelerator.unwrap_model(self.student)
        tensors = {f"student/{k}": v for k, v in unwrapped.state_dict().items()}
        opt_tensors, opt_meta = flatten_optimizer("opt", self.optimizer.state_dict())
        tensors |= opt_tensors | {"rng/torch": self.gen.get_state()}
        meta = {
            "run": self.run,
            "step": self.step,
            "seconds": self.elapsed,
            "losses": self.losses,
            "evals": self.evals,
            "numpy_rng": self.rng.bit_generator.state,
            "opt": opt_meta,
        }
        if self.disc is not None:
            tensors |= {f"disc/{k}": v for k, v in accelerator.unwrap_model(self.disc).state_dict().items()}
            d_tensors, meta["d_opt"] = flatten_optimizer("d_opt", self.d_optimizer.state_dict())
            tensors |= d_tensors
        save_checkpoint(self.train.checkpoint_dir, tensors, meta)

    def run_eval(self) -> None:
        """Call the evaluation hook on the generator in eval mode; append its result to ``evals``."""
        if self.evaluate is None:
            return
        unwrapped = self.accelerator.unwrap_model(self.student)
        was_training = unwrapped.training
        unwrapped.eval()
        with torch.no_grad():
            result = self.evaluate(unwrapped.generator, unwrapped.tokens.detach())
        unwrapped.train(was_training)
        self.evals.append({"step": self.step, "seconds": round(self.elapsed, 2), **result})

    def train_step(self) -> tuple[float, dict]:
        """One generator (and discriminator) update: (the batch's L1, the other losses by name)."""
        train, loss, device = self.train, self.loss, self.accelerator.device
        for group in self.optimizer.param_groups:
            group["lr"] = train.lr * _lr_factor(self.step, train.steps)
        which = self.rng.integers(0, len(self.pairs), train.batch_size)
        xs, ys = zip(*(_crop(self.pairs[k], train.crop, self.rng) for k in which))
        x, y = to_model_range(np.stack(xs)).to(device), to_model_range(np.stack(ys)).to(device)
        fake = self.student(x, torch.from_numpy(which).to(device))
        g_loss, stats = generator_losses(loss, fake, y, x, self.perceptual, self.disc, self.gen)
        l1_value = nn.functional.l1_loss(fake.detach(), y).item()
        self.optimizer.zero_grad(set_to_none=True)
        self.accelerator.backward(g_loss)
        if train.max_grad_norm:
            self.accelerator.clip_grad_norm_(self.trainable, train.max_grad_norm)
        self.optimizer.step()
        if self.disc is not None:
            stats |= discriminator_step(
                self.disc, self.d_optimizer, self.accelerator, loss, x, y, fake.detach(), self.step, self.gen
            )
        return l1_value, stats

    def loop(self) -> dict:
        """Train up to ``train.steps`` (evaluating and checkpointing on schedule); :func:`fit`'s record."""
        train = self.train
        self.student.train()
        if self.evaluate is not None and not self.evals:
            self.run_eval()
        disable = not train.progress or not self.accelerator.is_local_main_process
        bar = tqdm(total=train.steps, initial=self.step, desc=self.desc, disable=disable)
        while self.step < train.steps:
            started = time.perf_counter()
            l1_value, stats = self.train_step()
            self.step += 1
            self.elapsed += time.perf_counter() - started
            self.losses.append(round(l1_value, 6))
            bar.update(1)
            bar.set_postfix(l1=f"{np.mean(self.losses[-50:]):.4f}", **{k: f"{v:.3f}" for k, v in stats.items()})
            if train.eval_every and self.step % train.eval_every == 0:
                self.run_eval()
            if self.step % train.checkpoint_every == 0 or self.step == train.steps:
                self.checkpoint()
        bar.close()
        if self.evaluate is not None and (not self.evals or self.evals[-1]["step"] != self.step):
            self.run_eval()
        self.accelerator.wait_for_everyone()
        return {
            "steps": train.steps,
            "batch_size": train.batch_size,
            "crop": train.crop,
            "lr": train.lr,
            "seconds": round(self.elapsed, 1),
            "final_l1": round(float(np.mean(self.losses[-50:])), 5),
            "loss": self.loss.summary(),
            "trainable_parameters": sum(p.numel() for p in self.trainable),
            "evals": self.evals,
        }


def generator_losses(loss: LossConfig, fake, target, condition, perceptual, disc, gen) -> tuple[torch.Tensor, dict]:
    """The generator's weighted loss against ``target`` and the parts by name (floats).

    Shared by the editing trainer (condition: the photo) and the one-step generation
    trainer (condition: noise and prompt states, :mod:`pocketgan.generation.student_training`).
    """
    g_loss = loss.l1 * nn.functional.l1_loss(fake, target) if loss.l1 else fake.new_zeros(())
    stats = {}
    if loss.mse:
        mse = nn.functional.mse_loss(fake, target)
        g_loss = g_loss + loss.mse * mse
        stats["mse"] = mse.item()
    if perceptual is not None:
        p = perceptual(fake, target, generator=gen)
        g_loss = g_loss + loss.perceptual * p
        stats["perc"] = p.item()
    if disc is not None:
        from pocketgan.training.discriminator import generator_adversarial_loss

        disc.requires_grad_(False)
        adv = generator_adversarial_loss(disc, condition, fake)
        g_loss = g_loss + loss.gan * adv
        stats["adv"] = adv.item()
        disc.requires_grad_(True)
    return g_loss, stats


def discriminator_step(disc, d_optimizer, accelerator, loss: LossConfig, x, y, fake, step: int, gen) -> dict:
    from pocketgan.training.discriminator import discriminator_loss, lazy_r1_due, r1_penalty

    d_loss, d_stats = discriminator_loss(disc, x, y, fake, mix_and_match=loss.mix_and_match, generator=gen)
    stats = {"d": d_loss.item()}
    if loss.r1_gamma and lazy_r1_due(step, loss.r1_interval):
        r1 = r1_penalty(disc, x, y)
        d_loss = d_loss + loss.r1_gamma / 2 * loss.r1_interval * r1
        stats["r1"] = r1.item()
    d_optimizer.zero_grad(set_to_none=True)
    accelerator.backward(d_loss)
    d_optimizer.step()
    return stats


def _restore(accelerator, student, optimizer, disc, d_optimizer, tensors: dict, meta: dict) -> None:
    def part(prefix: str) -> dict:
        return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}

    accelerator.unwrap_model(student).load_state_dict(part("student/"))
    optimizer.load_state_dict(unflatten_optimizer("opt", tensors, meta["opt"]))
    if disc is not None:
        accelerator.unwrap_model(disc).load_state_dict(part("disc/"))
        d_optimizer.load_state_dict(unflatten_optimizer("d_opt", tensors, meta["d_opt"]))


def _random_tokens(config: GeneratorConfig, count: int) -> torch.Tensor:
    return torch.randn(count, config.token_count, config.token_dim) * 0.5


def train_base(
    config: GeneratorConfig,
    pairs: dict[str, PairSet],
    train: TrainConfig,
    loss: LossConfig | None = None,
    evaluate: EvalHook | None = None,
) -> tuple[Generator, dict[str, torch.Tensor], dict]:
    """Train a generator from scratch on several concepts at once, one token set each.

    Returns the generator (eval mode), the tokens per concept ((T, D) each) and a record.
    With a single concept this is the study's "from scratch" baseline.
    """
    torch.manual_seed(train.seed)
    names = sorted(pairs)
    student = Student(Generator(config), _random_tokens(config, len(names)))
    record = fit(student, [pairs[n] for n in names], train, loss or LossConfig(), "base", evaluate)
    record["concepts"] = names
    generator = student.generator.eval()
    return generator, {n: student.tokens[i].detach().clone() for i, n in enumerate(names)}, record


def _concept_tokens(base: Generator, init_tokens: torch.Tensor | None) -> torch.Tensor:
    cfg = base.config
    start = init_tokens if init_tokens is not None else _random_tokens(cfg, 1)[0]
    return start.detach().clone()[None]


def train_concept(
    base: Generator,
    name: str,
    pairs: PairSet,
    ranks: dict[str, int],
    train: TrainConfig,
    init_tokens: torch.Tensor | None = None,
    description: str = "",
    teacher: str = "",
    loss: LossConfig | None = None,
    evaluate: EvalHook | None = None,
) -> Concept:
    """Freeze ``base``; train LoRA at ``ranks`` on the crucial layers + the concept tokens.

    ``base`` itself is not modified (a copy is trained).
    """
    torch.manual_seed(train.seed)
    model = copy.deepcopy(base)
    model.requires_grad_(False)
    inject_lora(model, ranks)
    for n, p in model.named_parameters():
        p.requires_grad_("lora_" in n)
    student = Student(model, _concept_tokens(base, init_tokens))
    record = fit(student, [pairs], train, loss or LossConfig(), f"concept {name}", evaluate)
    record |= {"pairs": len(pairs), "base_parameters": sum(p.numel() for p in base.parameters()), "ranks": dict(ranks)}
    return Concept(
        name, lora_state_dict(student.generator), student.tokens[0].detach().clone(), description, teacher, record
    )


def train_full_finetune(
    base: Generator,
    name: str,
    pairs: PairSet,
    train: TrainConfig,
    init_tokens: torch.Tensor | None = None,
    loss: LossConfig | None = None,
    evaluate: EvalHook | None = None,
) -> tuple[Generator, torch.Tensor, dict]:
    """Fine-tune every weight of a copy of ``base`` (and the tokens) on one concept."""
    torch.manual_seed(train.seed)
    model = copy.deepcopy(base).requires_grad_(True)
    student = Student(model, _concept_tokens(base, init_tokens))
    record = fit(student, [pairs], train, loss or LossConfig(), f"full fine-tune {name}", evaluate)
    record["pairs"] = len(pairs)
    return student.generator.eval(), student.tokens[0].detach().clone(), record
