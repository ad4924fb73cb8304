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
from pocketgan.training.pairs import PairSet  # noqa: F401  (re-exported: trainers take PairSets)
from pocketgan.training.checkpoint import (
    CheckpointError, flatten_optimizer, has_checkpoint, load_checkpoint, save_checkpoint, unflatten_optimizer,
)


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
    checkpoint_every: int = field(default=200, metadata={"help": "Steps between checkpoints (the last step always writes one)."})
    resume: bool = field(default=False, metadata={"help": "Continue from checkpoint_dir's checkpoint if there is one."})
    eval_every: int = field(default=0, metadata={"help": "Steps between calls of the evaluation hook (0: never); its time is not counted."})

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
    perceptual: float = field(default=0.0, metadata={"help": "Ensembled perceptual loss (E-LPIPS-style)."})
    ensemble: bool = field(default=True, metadata={"help": "Same random augmentation on both sides of the perceptual loss."})
    perceptual_weights: Path | None = field(default=None, metadata={"help": "safetensors of pretrained perceptual features (default: seeded random features)."})
    gan: float = field(default=0.0, metadata={"help": "Conditional GAN loss (non-saturating)."})
    r1_gamma: float = field(default=0.0, metadata={"help": "Single-sample R1 penalty weight (lazy, every r1_interval steps)."})
    r1_interval: int = field(default=16, metadata={"help": "Steps between lazy R1 penalties."})
    mix_and_match: bool = field(default=False, metadata={"help": "Real edits with another photo's condition count as fake."})
    d_lr: float = field(default=2e-4, metadata={"help": "Discriminator learning rate."})
    d_channels: int = field(default=16, metadata={"help": "Discriminator width (16 keeps it near the generator's cost)."})

    def __post_init__(self) -> None:
        if min(self.l1, self.perceptual, self.gan, self.r1_gamma) < 0:
            raise ValueError("loss weights must be non-negative")
        if self.l1 == 0 and self.perceptual == 0 and self.gan == 0:
            raise ValueError("at least one of l1, perceptual and gan must be on")
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


def fit(student: Student, pairs: list[PairSet], train: TrainConfig, loss: LossConfig, desc: str,
        evaluate: EvalHook | None = None) -> dict:
    """Train ``student``'s trainable parameters on ``pairs`` (pairs[k] goes with token set k).

    Returns a record: steps, seconds (training wall time, summed over resumes, evaluation
    excluded), final L1, trainable parameter count, the loss history's tail and the
    evaluation history.
    """
    from accelerate import Accelerator

    if len(pairs) != student.tokens.shape[0]:
        raise ValueError(f"{len(pairs)} pair sets for {student.tokens.shape[0]} token sets")
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    torch.manual_seed(train.seed)
    rng = np.random.default_rng([train.seed, accelerator.process_index])
    gen = torch.Generator().manual_seed(train.seed * 1000 + accelerator.process_index)
    trainable = [p for p in student.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=train.lr, betas=(0.5, 0.99))

    perceptual = disc = d_optimizer = None
    if loss.perceptual:
        from pocketgan.training.losses import EnsembledPerceptualLoss, PerceptualFeatures

        features = (PerceptualFeatures.from_safetensors(loss.perceptual_weights) if loss.perceptual_weights
                    else PerceptualFeatures.random(seed=0))
        perceptual = EnsembledPerceptualLoss(features, ensemble=loss.ensemble).to(accelerator.device)
    if loss.gan:
        from pocketgan.training.discriminator import ConditionalDiscriminator

        disc = ConditionalDiscriminator(channels=loss.d_channels, seed=train.seed + 1)
        d_optimizer = torch.optim.Adam(disc.parameters(), lr=loss.d_lr, betas=(0.0, 0.99))
        disc, d_optimizer = accelerator.prepare(disc, d_optimizer)
    student, optimizer = accelerator.prepare(student, optimizer)

    run = {"desc": desc, "train": _plain({k: v for k, v in asdict(train).items()
                                           if k not in ("progress", "resume", "checkpoint_dir", "eval_every")}),
           "loss": _plain(asdict(loss)), "token_sets": len(pairs), "pairs": [len(p) for p in pairs]}
    step, elapsed, losses, evals = 0, 0.0, [], []
    if train.resume and has_checkpoint(train.checkpoint_dir):
        tensors, meta = load_checkpoint(train.checkpoint_dir)
        if meta["run"] != run:
            raise CheckpointError(f"checkpoint in {train.checkpoint_dir} is from a different run:\n"
                                  f"  saved:   {meta['run']}\n  current: {run}")
        _restore(accelerator, student, optimizer, disc, d_optimizer, tensors, meta)
        rng.bit_generator.state = meta["numpy_rng"]
        gen.set_state(tensors["rng/torch"])
        step, elapsed, losses, evals = meta["step"], meta["seconds"], meta["losses"], meta["evals"]
        if accelerator.is_main_process:
            print(f"{desc}: resumed at step {step}/{train.steps} from {train.checkpoint_dir}")

    def checkpoint() -> None:
        if train.checkpoint_dir is None or not accelerator.is_main_process:
            return
        unwrapped = accelerator.unwrap_model(student)
        tensors = {f"student/{k}": v for k, v in unwrapped.state_dict().items()}
        opt_tensors, opt_meta = flatten_optimizer("opt", optimizer.state_dict())
        tensors |= opt_tensors | {"rng/torch": gen.get_state()}
        meta = {"run": run, "step": step, "seconds": elapsed, "losses": losses, "evals": evals,
                "numpy_rng": rng.bit_generator.state, "opt": opt_meta}
        if disc is not None:
            tensors |= {f"disc/{k}": v for k, v in accelerator.unwrap_model(disc).state_dict().items()}
            d_tensors, meta["d_opt"] = flatten_optimizer("d_opt", d_optimizer.state_dict())
            tensors |= d_tensors
        save_checkpoint(train.checkpoint_dir, tensors, meta)

    def run_eval() -> None:
        if evaluate is None:
            return
        unwrapped = accelerator.unwrap_model(student)
        was_training = unwrapped.training
        unwrapped.eval()
        with torch.no_grad():
            result = evaluate(unwrapped.generator, unwrapped.tokens.detach())
        unwrapped.train(was_training)
        evals.append({"step": step, "seconds": round(elapsed, 2), **result})

    student.train()
    if evaluate is not None and not evals:
        run_eval()
    bar = tqdm(total=train.steps, initial=step, desc=desc, disable=not train.progress or not accelerator.is_local_main_process)
    device = accelerator.device
    while step < train.steps:
        started = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = train.lr * _lr_factor(step, train.steps)
        which = rng.integers(0, len(pairs), train.batch_size)
        xs, ys = zip(*(_crop(pairs[k], train.crop, rng) for k in which))
        x, y = to_model_range(np.stack(xs)).to(device), to_model_range(np.stack(ys)).to(device)
        fake = student(x, torch.from_numpy(which).to(device))
        g_loss = loss.l1 * nn.functional.l1_loss(fake, y) if loss.l1 else fake.new_zeros(())
        l1_value = nn.functional.l1_loss(fake.detach(), y).item()
        stats = {}
        if perceptual is not None:
            p = perceptual(fake, y, generator=gen)
            g_loss = g_loss + loss.perceptual * p
            stats["perc"] = p.item()
        if disc is not None:
            from pocketgan.training.discriminator import generator_adversarial_loss

            disc.requires_grad_(False)
            adv = generator_adversarial_loss(disc, x, fake)
            g_loss = g_loss + loss.gan * adv
            stats["adv"] = adv.item()
            disc.requires_grad_(True)
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(g_loss)
        if train.max_grad_norm:
            accelerator.clip_grad_norm_(trainable, train.max_grad_norm)
        optimizer.step()
        if disc is not None:
            stats |= _discriminator_step(disc, d_optimizer, accelerator, loss, x, y, fake.detach(), step, gen)
        step += 1
        elapsed += time.perf_counter() - started
        losses.append(round(l1_value, 6))
        bar.update(1)
        bar.set_postfix(l1=f"{np.mean(losses[-50:]):.4f}", **{k: f"{v:.3f}" for k, v in stats.items()})
        if train.eval_every and step % train.eval_every == 0:
            run_eval()
        if step % train.checkpoint_every == 0 or step == train.steps:
            checkpoint()
    bar.close()
    if evaluate is not None and (not evals or evals[-1]["step"] != step):
        run_eval()
    accelerator.wait_for_everyone()
    return {"steps": train.steps, "batch_size": train.batch_size, "crop": train.crop, "lr": train.lr,
            "seconds": round(elapsed, 1), "final_l1": round(float(np.mean(losses[-50:])), 5),
            "loss": loss.summary(), "trainable_parameters": sum(p.numel() for p in trainable),
            "evals": evals}


def _discriminator_step(disc, d_optimizer, accelerator, loss: LossConfig, x, y, fake, step: int, gen) -> dict:
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
        return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

    accelerator.unwrap_model(student).load_state_dict(part("student/"))
    optimizer.load_state_dict(unflatten_optimizer("opt", tensors, meta["opt"]))
    if disc is not None:
        accelerator.unwrap_model(disc).load_state_dict(part("disc/"))
        d_optimizer.load_state_dict(unflatten_optimizer("d_opt", tensors, meta["d_opt"]))


def _random_tokens(config: GeneratorConfig, count: int) -> torch.Tensor:
    return torch.randn(count, config.token_count, config.token_dim) * 0.5


def train_base(
    config: GeneratorConfig, pairs: dict[str, PairSet], train: TrainConfig, loss: LossConfig | None = None,
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
    return Concept(name, lora_state_dict(student.generator), student.tokens[0].detach().clone(), description, teacher, record)


def train_full_finetune(
    base: Generator, name: str, pairs: PairSet, train: TrainConfig, init_tokens: torch.Tensor | None = None,
    loss: LossConfig | None = None, evaluate: EvalHook | None = None,
) -> tuple[Generator, torch.Tensor, dict]:
    """Fine-tune every weight of a copy of ``base`` (and the tokens) on one concept."""
    torch.manual_seed(train.seed)
    model = copy.deepcopy(base).requires_grad_(True)
    student = Student(model, _concept_tokens(base, init_tokens))
    record = fit(student, [pairs], train, loss or LossConfig(), f"full fine-tune {name}", evaluate)
    record["pairs"] = len(pairs)
    return student.generator.eval(), student.tokens[0].detach().clone(), record
