"""Training glyph feature networks on the emoji training split: views, objective, measures.

Shared by the perceptual loss's VGG stack (:mod:`pocketgan.generation.features`) and the
Fréchet embedding network (:mod:`pocketgan.generation.frechet`). A network's
``embed(x)`` (float (N, 3, H, W) in [-1, 1] -> its global-pooled (N, D) features) feeds
:class:`GlyphHeads`:

- **instance discrimination**, contrastive: two random views of every glyph of a batch
  (:func:`augment_glyphs`), each must pick its partner among the batch's other views
  (InfoNCE / NT-Xent on a small projection, as SimCLR). A softmax with one class per glyph
  (3,482 classes) learned nothing in 250 steps (top-1 0.1%): each class's weights get a few
  updates per epoch, where the contrastive loss learns from every pair of every batch;
- **hashed prompt words**, multi-label: the bucket ``fnv1a32(word) % buckets`` of every word
  of the glyph's prompt, binary cross-entropy (teaches what makes a "face", a "flag", a
  "skin tone" across glyphs).

:func:`evaluate_glyph_features` measures instance retrieval (a random view against the clean
gallery of all training glyphs, cosine nearest neighbour in the pooled features) and the
word head's R-precision, the latter on the held-out glyphs too (measuring only: no training
ever sees them).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from pocketgan.generation.emoji import EmojiSet
from pocketgan.generation.prompt_encoder import fnv1a32, words

__all__ = [
    "ClassifierTraining",
    "GlyphAugment",
    "GlyphHeads",
    "augment_glyphs",
    "evaluate_glyph_features",
    "to_unit",
    "train_glyph_features",
    "word_targets",
]


@dataclass(frozen=True)
class GlyphAugment:
    """The random views of instance discrimination: mild enough that a view still names its glyph.

    Blur and noise stay rare and weak on purpose: what the views vary, the features learn to
    ignore, and both the perceptual loss and the Fréchet embedding must see blur and noise
    (with blur_p 0.3 up to sigma 1 and noise_p 0.3 up to 0.08 the calibrated 2AFC agreement
    was 0.879 against 0.885 with these defaults, 250 steps each).
    """

    max_shift: float = field(default=2.0, metadata={"help": "Largest translation per axis, in pixels."})
    scale: tuple[float, float] = field(default=(0.9, 1.1), metadata={"help": "Zoom range (grid scale)."})
    rotate_deg: float = field(default=8.0, metadata={"help": "Largest rotation, degrees."})
    color: float = field(default=0.1, metadata={"help": "Brightness/contrast jitter (saturation: twice)."})
    blur_p: float = field(default=0.1, metadata={"help": "Probability of a Gaussian blur."})
    max_blur: float = field(default=0.6, metadata={"help": "Largest blur sigma, pixels."})
    noise_p: float = field(default=0.1, metadata={"help": "Probability of Gaussian noise."})
    max_noise: float = field(default=0.04, metadata={"help": "Largest noise std (images in [-1, 1])."})

    def __post_init__(self) -> None:
        if self.max_shift < 0 or self.rotate_deg < 0 or self.max_blur < 0 or self.max_noise < 0:
            raise ValueError("max_shift, rotate_deg, max_blur and max_noise must be >= 0")
        if not 0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f"scale must be 0 < low <= high, got {self.scale}")
        if not (0 <= self.color < 0.5 and 0 <= self.blur_p <= 1 and 0 <= self.noise_p <= 1):
            raise ValueError("color must be in [0, 0.5), blur_p and noise_p in [0, 1]")


def to_unit(images: np.ndarray) -> Tensor:
    """uint8 (N, H, W, 3) -> float32 (N, 3, H, W) in [-1, 1]."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1


def _gaussian_blur(x: Tensor, sigma: Tensor, radius: int = 2) -> Tensor:
    """Per-sample separable Gaussian blur; sigma (N,) in pixels, ~0 leaves the sample as is."""
    n, c, h, w = x.shape
    taps = torch.arange(-radius, radius + 1, dtype=x.dtype)
    kernel = torch.exp(-(taps[None] ** 2) / (2 * sigma.clamp(min=1e-2)[:, None] ** 2))
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (N*C, K)
    y = F.pad(x.reshape(1, n * c, h, w), (radius,) * 4, mode="replicate")
    y = F.conv2d(y, kernel[:, None, :, None], groups=n * c)
    y = F.conv2d(y, kernel[:, None, None, :], groups=n * c)
    return y.reshape(n, c, h, w)


def augment_glyphs(x: Tensor, cfg: GlyphAugment, generator: torch.Generator) -> Tensor:
    """A random view of each glyph: float (N, 3, H, W) in [-1, 1] -> same shape and range.

    Affine (shift, zoom, rotation; uncovered borders are white, like the glyphs' canvas),
    colour (brightness, contrast, saturation), then Gaussian blur and noise each with their
    probability. All parameters come from ``generator`` in a fixed order.
    """
    n, _, h, w = x.shape

    def u(*shape: int) -> Tensor:
        return torch.rand(shape, generator=generator)

    zoom = cfg.scale[0] + (cfg.scale[1] - cfg.scale[0]) * u(n)
    angle = (2 * u(n) - 1) * math.radians(cfg.rotate_deg)
    shift = (2 * u(n, 2) - 1) * cfg.max_shift * 2 / torch.tensor([w, h], dtype=torch.float32)
    bright, contrast, saturation = (2 * u(n) - 1) * cfg.color, 1 + (2 * u(n) - 1) * cfg.color, u(n)
    blur = torch.where(u(n) < cfg.blur_p, u(n) * cfg.max_blur, torch.zeros(n))
    noise_std = torch.where(u(n) < cfg.noise_p, u(n) * cfg.max_noise, torch.zeros(n))
    noise = torch.randn(x.shape, generator=generator)

    cos, sin = torch.cos(angle) * zoom, torch.sin(angle) * zoom
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # sample x - 1 with zero padding: the border becomes white (1) again after + 1
    x = F.grid_sample(x - 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + 1
    gray = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    x = gray + (1 + (2 * saturation[:, None, None, None] - 1) * 2 * cfg.color) * (x - gray)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contrast[:, None, None, None] + mean + bright[:, None, None, None]
    x = _gaussian_blur(x, blur)
    return (x + noise * noise_std[:, None, None, None]).clamp(-1, 1)


def word_targets(prompts: list[str], buckets: int) -> Tensor:
    """float32 (N, buckets) multi-hot: bucket ``fnv1a32(word) % buckets`` of every word of each prompt."""
    out = torch.zeros(len(prompts), buckets)
    for i, prompt in enumerate(prompts):
        for word in words(prompt):
            out[i, fnv1a32(word.encode()) % buckets] = 1
    return out


class GlyphHeads(nn.Module):
    """Heads on the pooled (N, width) features: a 2-layer projection for the contrastive loss
    (N, project) and the word logits (N, buckets)."""

    def __init__(self, width: int, buckets: int, project: int = 128) -> None:
        super().__init__()
        self.project = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, project))
        self.words = nn.Linear(width, buckets)

    def forward(self, pooled: Tensor) -> tuple[Tensor, Tensor]:
        return self.project(pooled), self.words(pooled)


@dataclass(frozen=True)
class ClassifierTraining:
    """How a glyph feature network trains (the perceptual and the Fréchet networks alike)."""

    steps: int = field(default=400, metadata={"help": "Optimizer steps."})
    batch: int = field(default=64, metadata={"help": "Glyphs per step (two views each)."})
    lr: float = field(default=2e-3, metadata={"help": "AdamW peak learning rate (warm-up, then cosine to 0)."})
    weight_decay: float = field(default=5e-4, metadata={"help": "AdamW weight decay."})
    temperature: float = field(default=0.2, metadata={"help": "Of the contrastive softmax."})
    buckets: int = field(default=512, metadata={"help": "Hashed-word buckets of the multi-label head."})
    words_weight: float = field(default=0.25, metadata={"help": "Weight of the word head's BCE (0: off)."})
    augment: GlyphAugment = field(default_factory=GlyphAugment, metadata={"help": "The random views."})

    def __post_init__(self) -> None:
        if isinstance(self.augment, dict):
            object.__setattr__(self, "augment", GlyphAugment(**self.augment))
        if self.steps < 1 or self.batch < 2 or self.buckets < 1:
            raise ValueError(f"steps >= 1, batch >= 2 and buckets >= 1 needed, got {self.steps}, {self.batch}")
        if self.lr <= 0 or self.weight_decay < 0 or self.words_weight < 0 or self.temperature <= 0:
            raise ValueError("lr > 0, weight_decay >= 0, words_weight >= 0 and temperature > 0 needed")


def _contrastive(z: Tensor, temperature: float) -> Tensor:
    """NT-Xent of (2B, D) projections where rows i and i + B are the two views of one glyph."""
    z = F.normalize(z, dim=1)
    n = len(z) // 2
    logits = (z @ z.T / temperature).fill_diagonal_(float("-inf"))  # a view is not its own partner
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return F.cross_entropy(logits, partner)


def train_glyph_features(model: nn.Module, train: EmojiSet, cfg: ClassifierTraining, seed: int, progress=False) -> dict:
    """Train ``model`` in place on the glyphs of ``train`` (``model(x) -> GlyphHeads' outputs``).

    Every step draws ``cfg.batch`` distinct glyphs (epochs of random permutations) and two
    views of each, all from a generator seeded by ``seed``. Returns ``{"seconds", "final_loss"}``.
    """
    from tqdm import tqdm

    generator = torch.Generator().manual_seed(int(seed) + 1)
    x_all, targets = to_unit(train.images), word_targets(train.prompts, cfg.buckets)
    if len(x_all) < cfg.batch:
        raise ValueError(f"{len(x_all)} training glyphs, fewer than a batch of {cfg.batch}")
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = max(1, cfg.steps // 20)

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, cfg.steps - warmup)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    order, start, losses = torch.empty(0, dtype=torch.long), time.perf_counter(), []
    model.train()
    for _ in tqdm(range(cfg.steps), desc="train glyph features", disable=not progress):
        if len(order) < cfg.batch:  # a new epoch; the leftover is dropped so a batch never repeats a glyph
            order = torch.randperm(len(x_all), generator=generator)
        idx, order = order[: cfg.batch], order[cfg.batch :]
        views = torch.cat([augment_glyphs(x_all[idx], cfg.augment, generator) for _ in range(2)])
        projection, word = model(views)
        loss = _contrastive(projection, cfg.temperature)
        if cfg.words_weight:
            # summed over buckets (a mean over 512 mostly-empty buckets would vanish), mean over views
            loss = loss + cfg.words_weight * F.binary_cross_entropy_with_logits(
                word, targets[idx].repeat(2, 1), reduction="sum"
            ) / len(word)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
    model.eval()
    return {"seconds": round(time.perf_counter() - start, 1), "final_loss": round(float(np.mean(losses[-20:])), 4)}


def _r_precision(logits: Tensor, targets: Tensor) -> float:
    """Mean over samples of the share of true buckets among the top-k predictions (k = #true)."""
    hits = []
    for row, truth in zip(logits, targets):
        k = int(truth.sum())
        if k:
            hits.append(float(truth[row.topk(k).indices].mean()))
    return float(np.mean(hits)) if hits else float("nan")


@torch.no_grad()
def _run(model: nn.Module, x: Tensor, batch: int = 256) -> tuple[Tensor, Tensor]:
    """(pooled features, word logits) of ``x``, in batches."""
    pooled = torch.cat([model.embed(x[i : i + batch]) for i in range(0, len(x), batch)])
    return pooled, model.heads.words(pooled)


@torch.no_grad()
def evaluate_glyph_features(model: nn.Module, emoji: EmojiSet, cfg: ClassifierTraining, seed: int) -> dict:
    """Measures of a trained (eval mode) ``model`` on ``emoji``: instance retrieval top-1 (one fresh
    random view of every training glyph; its cosine nearest neighbour among the clean training
    glyphs must be itself) and the word head's R-precision (train views, train clean, held-out
    clean; the held-out glyphs are only measured, never trained on)."""
    model.eval()
    generator = torch.Generator().manual_seed(int(seed) + 1000)
    train = emoji.split(held_out=False)
    x = to_unit(train.images)
    targets = word_targets(train.prompts, cfg.buckets)
    clean, clean_words = _run(model, x)
    view, view_words = _run(model, augment_glyphs(x, cfg.augment, generator))
    nearest = (F.normalize(view, dim=1) @ F.normalize(clean, dim=1).T).argmax(1)
    out = {
        "instance_retrieval_top1": round(float((nearest == torch.arange(len(x))).float().mean()), 4),
        "gallery": len(x),
        "words_rprecision_train_augmented": round(_r_precision(view_words, targets), 4),
        "words_rprecision_train_clean": round(_r_precision(clean_words, targets), 4),
    }
    held = emoji.split(held_out=True)
    if len(held):
        _, held_words = _run(model, to_unit(held.images))
        out["words_rprecision_held_out_clean"] = round(
            _r_precision(held_words, word_targets(held.prompts, cfg.buckets)), 4
        )
    return out
