"""Perceptual losses: E-LPIPS-style ensembled LPIPS distance on a small VGG-style stack.

Three pieces (see ``docs/losses.md``):

- :class:`DifferentiableAugment`: random, differentiable transformations applied with
  the *same* parameters to several batches (E-LPIPS, Kettunen et al. 2019).
- :class:`PerceptualFeatures`: a frozen 5-stage VGG-style conv stack. Weights come from
  a safetensors file (e.g. LPIPS/VGG weights converted by the user) or, since real
  LPIPS weights are not available offline, from a deterministic random initialisation.
- :class:`EnsembledPerceptualLoss`: the LPIPS distance (unit-normalised features,
  per-channel non-negative "lin" weights, spatial mean, sum over stages), optionally on
  one random augmentation of the pair per call (the E-LPIPS ensemble is then the
  expectation over training steps).

Images are float (N, 3, H, W) in [-1, 1]. All randomness comes from an explicit
``torch.Generator``; nothing here reads or advances the global RNG, so training can
resume bit-exactly from a checkpoint of the generator states.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["DEFAULT_CHANNELS", "DifferentiableAugment", "EnsembledPerceptualLoss", "PerceptualFeatures"]

DEFAULT_CHANNELS = (32, 64, 96, 128, 160)

# LPIPS's ScalingLayer: maps [-1, 1] inputs to ImageNet-normalised ones (lpips/pretrained_networks).
_LPIPS_SHIFT = (-0.030, -0.088, -0.188)
_LPIPS_SCALE = (0.458, 0.448, 0.450)


def _uniform(shape: tuple[int, ...], low: float, high: float, generator: torch.Generator) -> Tensor:
    return torch.rand(shape, generator=generator, device=generator.device) * (high - low) + low


def _reflect(index: Tensor, size: int) -> Tensor:
    """Reflect integer indices into [0, size) (like ``F.pad(mode="reflect")``; |overshoot| < size)."""
    index = index.abs()
    return torch.where(index > size - 1, 2 * (size - 1) - index, index)


class DifferentiableAugment:
    """E-LPIPS-style random transformation applied identically to several batches.

    ``aug(x, y, generator=g)`` returns ``(x', y')`` where sample ``i`` of every tensor gets
    the same randomly drawn transformation ``T_i`` (its own per sample):

    1. per-channel colour affine ``s * x + b`` with ``s ~ U(color_scale)`` and
       ``b ~ U(-color_shift, color_shift)`` (drawn per sample and channel);
    2. horizontal flip with probability 1/2;
    3. rotation by a random multiple of 90 degrees (with the flip this covers the 8
       symmetries of the square, transposes included; non-square images only get 0/180);
    4. integer translation by up to ``max_shift`` of the side in each axis, with
       reflection padding (the shape is kept);
    5. with probability ``downscale_p`` (one draw per call, since a batch must keep one
       shape) a 2x downscale by ``F.avg_pool2d``: the outputs are then (H/2, W/2).

    Every step is an indexing / flip / affine / pooling op, so gradients flow to the
    inputs. Each call draws all its parameters in a fixed order from ``generator`` (never
    the global RNG), whatever the options, so a given generator state gives the same
    transformation on any run and advances the same way.
    """

    def __init__(
        self,
        *,
        flip: bool = True,
        rotate: bool = True,
        max_shift: float = 1 / 8,
        color_scale: tuple[float, float] = (0.8, 1.2),
        color_shift: float = 0.1,
        downscale_p: float = 0.25,
    ) -> None:
        if not 0 <= max_shift < 1:
            raise ValueError(f"max_shift is a fraction of the side in [0, 1), got {max_shift}")
        if not 0 < color_scale[0] <= color_scale[1]:
            raise ValueError(f"color_scale must be 0 < low <= high, got {color_scale}")
        if color_shift < 0 or not 0 <= downscale_p <= 1:
            raise ValueError(f"color_shift must be >= 0 and downscale_p in [0, 1], got {color_shift}, {downscale_p}")
        self.flip, self.rotate, self.max_shift = flip, rotate, max_shift
        self.color_scale, self.color_shift, self.downscale_p = tuple(color_scale), color_shift, downscale_p

    def __repr__(self) -> str:
        return (
            f"DifferentiableAugment(flip={self.flip}, rotate={self.rotate}, max_shift={self.max_shift}, "
            f"color_scale={self.color_scale}, color_shift={self.color_shift}, downscale_p={self.downscale_p})"
        )

    def __call__(self, *images: Tensor, generator: torch.Generator) -> tuple[Tensor, ...]:
        if not images:
            raise ValueError("DifferentiableAugment needs at least one image batch")
        if not isinstance(generator, torch.Generator):
            raise TypeError("DifferentiableAugment needs an explicit torch.Generator (generator=...)")
        shape = images[0].shape
        if len(shape) != 4:
            raise ValueError(f"images must be (N, C, H, W), got {tuple(shape)}")
        for x in images[1:]:
            if x.shape != shape:
                raise ValueError(f"all images must have one shape, got {tuple(shape)} and {tuple(x.shape)}")
        n, c, h, w = shape
        # Fixed draw order and count (independent of the options), so the generator's
        # state after a call does not depend on which transforms are enabled.
        flips = torch.rand(n, generator=generator, device=generator.device) < 0.5
        turns = torch.randint(0, 4, (n,), generator=generator, device=generator.device)
        max_dy, max_dx = int(self.max_shift * h), int(self.max_shift * w)
        dy = torch.randint(-max_dy, max_dy + 1, (n,), generator=generator, device=generator.device)
        dx = torch.randint(-max_dx, max_dx + 1, (n,), generator=generator, device=generator.device)
        scale = _uniform((n, c), *self.color_scale, generator)
        shift = _uniform((n, c), -self.color_shift, self.color_shift, generator)
        down = bool(torch.rand((), generator=generator, device=generator.device) < self.downscale_p)

        device = images[0].device
        flips = flips.to(device) if self.flip else torch.zeros(n, dtype=torch.bool, device=device)
        turns = turns.to(device) if self.rotate else torch.zeros(n, dtype=torch.long, device=device)
        if h != w:
            turns = (turns % 2) * 2  # 90-degree turns would change the shape: 0/180 only
        rows = _reflect(torch.arange(h, device=device)[None, :] + dy.to(device)[:, None], h)  # (N, H)
        cols = _reflect(torch.arange(w, device=device)[None, :] + dx.to(device)[:, None], w)  # (N, W)
        batch = torch.arange(n, device=device)
        down = down and h % 2 == 0 and w % 2 == 0
        return tuple(self._apply(x, flips, turns, rows, cols, batch, scale.to(x), shift.to(x), down) for x in images)

    @staticmethod
    def _apply(
        x: Tensor,
        flips: Tensor,
        turns: Tensor,
        rows: Tensor,
        cols: Tensor,
        batch: Tensor,
        scale: Tensor,
        shift: Tensor,
        down: bool,
    ) -> Tensor:
        x = x * scale[:, :, None, None] + shift[:, :, None, None]
        x = torch.where(flips[:, None, None, None], x.flip(-1), x)
        if bool((turns != 0).any()):
            variants = torch.stack(
                [x.rot90(k, (-2, -1)) if k % 2 == 0 or x.shape[-1] == x.shape[-2] else x for k in range(4)]
            )
            x = variants[turns, batch]
        # Advanced indexing with the channel slice in the middle puts channels last.
        x = x[batch[:, None, None], :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
        if down:
            x = F.avg_pool2d(x, 2)
        return x.contiguous()


class PerceptualFeatures(nn.Module):
    """Frozen VGG-style feature stack: ``len(channels)`` stages of 3x3 conv + ReLU.

    Input (N, 3, H, W) in [-1, 1], first mapped by LPIPS's fixed scaling layer
    ``(x - shift) / scale``. Stage ``s`` applies ``convs_per_stage[s]`` 3x3 convolutions
    (padding 1) each followed by ReLU, preceded for ``s > 0`` by a 2x pool (``pool``:
    ``"avg"``, the default, or ``"max"`` as in real VGG). :meth:`forward` returns the
    list of the stages' outputs: ``(N, channels[s], ceil(H / 2^s), ceil(W / 2^s))``.

    State-dict keys (also the safetensors keys of :meth:`from_safetensors`):
    ``stages.{s}.{j}.weight`` (``(C_out, C_in, 3, 3)``) and ``stages.{s}.{j}.bias``
    (``(C_out,)``) for stage ``s`` and conv ``j`` within it. The scaling constants are
    not part of the state dict.

    Parameters never require grad and the module stays in eval mode (``train()`` is a
    no-op): gradients flow through it to the input only.
    """

    def __init__(
        self, channels: Sequence[int] = DEFAULT_CHANNELS, convs_per_stage: int | Sequence[int] = 2, pool: str = "avg"
    ) -> None:
        super().__init__()
        channels = tuple(int(c) for c in channels)
        convs = (int(convs_per_stage),) * len(channels) if isinstance(convs_per_stage, int) else tuple(convs_per_stage)
        if not channels or len(convs) != len(channels) or min(channels) < 1 or min(convs) < 1:
            raise ValueError(f"need >= 1 stage, one positive conv count per stage: {channels}, {convs}")
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
        self.channels, self.convs_per_stage, self.pool = channels, convs, pool
        stages, c_in = [], 3
        with torch.random.fork_rng(devices=[]):  # the default init must not advance the global RNG
            for c_out, count in zip(channels, convs):
                stage = []
                for _ in range(count):
                    stage.append(nn.Conv2d(c_in, c_out, 3, padding=1))
                    c_in = c_out
                stages.append(nn.ModuleList(stage))
        self.stages = nn.ModuleList(stages)
        self.register_buffer("shift", torch.tensor(_LPIPS_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_LPIPS_SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> PerceptualFeatures:  # noqa: ARG002 - always frozen
        return super().train(False)

    @classmethod
    def random(
        cls,
        seed: int = 0,
        channels: Sequence[int] = DEFAULT_CHANNELS,
        convs_per_stage: int | Sequence[int] = 2,
        pool: str = "avg",
    ) -> PerceptualFeatures:
        """Deterministic random features: kaiming-normal (ReLU gain) weights, zero biases,
        drawn from ``torch.Generator().manual_seed(seed)`` (same weights on every machine)."""
        model = cls(channels, convs_per_stage, pool)
        generator = torch.Generator().manual_seed(int(seed))
        for stage in model.stages:
            for conv in stage:
                nn.init.kaiming_normal_(conv.weight, nonlinearity="relu", generator=generator)
                nn.init.zeros_(conv.bias)
        return model

    @classmethod
    def from_safetensors(
        cls,
        path: str | Path,
        channels: Sequence[int] = DEFAULT_CHANNELS,
        convs_per_stage: int | Sequence[int] = 2,
        pool: str = "avg",
    ) -> PerceptualFeatures:
        """Load weights from a safetensors file with exactly this layout's keys.

        E.g. VGG16 as used by LPIPS: ``channels=(64, 128, 256, 512, 512)``,
        ``convs_per_stage=(2, 2, 3, 3, 3)``, ``pool="max"`` (see ``docs/losses.md`` for
        the key conversion). Raises ``ValueError`` naming missing, unexpected and
        wrongly shaped keys.
        """
        from safetensors.torch import load_file

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no perceptual feature weights at {path}")
        model = cls(channels, convs_per_stage, pool)
        tensors = load_file(str(path))
        expected = model.state_dict()
        missing = sorted(set(expected) - set(tensors))
        unexpected = sorted(set(tensors) - set(expected))
        mismatched = sorted(
            f"{k}: file {tuple(tensors[k].shape)} != expected {tuple(v.shape)}"
            for k, v in expected.items()
            if k in tensors and tensors[k].shape != v.shape
        )
        if missing or unexpected or mismatched:
            problems = []
            if missing:
                problems.append(f"missing keys {missing}")
            if unexpected:
                problems.append(f"unexpected keys {unexpected}")
            if mismatched:
                problems.append(f"shape mismatches {mismatched}")
            raise ValueError(
                f"{path} does not match PerceptualFeatures(channels={model.channels}, "
                f"convs_per_stage={model.convs_per_stage}): "
                + "; ".join(problems)
                + ". Expected keys are 'stages.{s}.{j}.weight' / 'stages.{s}.{j}.bias'."
            )
        model.load_state_dict({k: v.float() for k, v in tensors.items()})
        return model

    def forward(self, x: Tensor) -> list[Tensor]:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"PerceptualFeatures takes (N, 3, H, W) images, got {tuple(x.shape)}")
        x = (x - self.shift) / self.scale
        pool = F.avg_pool2d if self.pool == "avg" else F.max_pool2d
        features = []
        for s, stage in enumerate(self.stages):
            if s:
                x = pool(x, 2, ceil_mode=True)
            for conv in stage:
                x = F.relu(conv(x))
            features.append(x)
        return features


_LPIPS_KEY = re.compile(r"^lin(\d+)(?:\.model\.1\.weight)?$")


def _lin_weights(weights: dict[str, Tensor], channels: tuple[int, ...]) -> list[Tensor]:
    """``{"lin{s}": (C_s,) or (1, C_s, 1, 1)}`` (LPIPS's own ``lin{s}.model.1.weight``
    names accepted too) -> one non-negative (C_s,) vector per stage."""
    found: dict[int, Tensor] = {}
    for key, value in weights.items():
        match = _LPIPS_KEY.match(key)
        if match is None:
            raise ValueError(f"unexpected LPIPS weight key {key!r}: expected 'lin0'..'lin{len(channels) - 1}'")
        found[int(match.group(1))] = torch.as_tensor(value).detach().float().reshape(-1)
    if sorted(found) != list(range(len(channels))):
        raise ValueError(f"LPIPS weights for stages {sorted(found)}, expected exactly 0..{len(channels) - 1}")
    out = []
    for s, c in enumerate(channels):
        if found[s].numel() != c:
            raise ValueError(f"lin{s} has {found[s].numel()} weights, the features' stage {s} has {c} channels")
        if bool((found[s] < 0).any()):
            raise ValueError(f"lin{s} has negative weights: LPIPS's linear layers are non-negative")
        out.append(found[s])
    return out


def _unit_normalize(x: Tensor, eps: float = 1e-10) -> Tensor:
    # rsqrt(sum + eps) rather than x / norm: finite gradients where all channels are 0 (ReLU).
    return x * torch.rsqrt(x.pow(2).sum(dim=1, keepdim=True) + eps)


class EnsembledPerceptualLoss(nn.Module):
    """LPIPS-style distance, optionally on a random augmentation shared by both images (E-LPIPS).

    ``forward(pred, target, generator)`` -> scalar, the batch mean of

        sum_s  mean_{h,w}  sum_c  w_{s,c} * (phi_s(pred)_{c,h,w} - phi_s(target)_{c,h,w})^2

    where ``phi_s`` are the stages of ``features`` unit-normalised over channels and
    ``w_s`` LPIPS's non-negative "lin" weights (``lpips_weights``: ``{"lin{s}": (C_s,)}``
    or LPIPS's own ``lin{s}.model.1.weight`` of shape (1, C_s, 1, 1)), uniform ``1/C_s``
    (a channel mean) when not given.

    With ``ensemble=True`` (E-LPIPS, Kettunen et al. 2019) both images first go through the
    *same* random :class:`DifferentiableAugment` transformation drawn from ``generator``
    (required), a fresh one each call: over training the loss is the ensemble average.

    Real LPIPS needs ImageNet-pretrained VGG/AlexNet features and the BAPPS-trained lin
    weights, which are not available offline. Without them (``features=None``) the loss
    uses :meth:`PerceptualFeatures.random` (seed 0) with uniform weights: random
    conv features still measure multi-scale structural differences, a usable but weaker
    perceptual signal. Supply real weights with :meth:`PerceptualFeatures.from_safetensors`
    and ``lpips_weights`` (see ``docs/losses.md``).

    ``target`` is a constant: it is detached and its features computed without a graph;
    gradients flow to ``pred`` only, never to the frozen features.
    """

    def __init__(
        self,
        features: PerceptualFeatures | None = None,
        ensemble: bool = True,
        augment: DifferentiableAugment | None = None,
        lpips_weights: dict[str, Tensor] | None = None,
    ) -> None:
        super().__init__()
        self.features = features if features is not None else PerceptualFeatures.random(seed=0)
        if not isinstance(self.features, PerceptualFeatures):
            raise TypeError(f"features must be a PerceptualFeatures, got {type(self.features).__name__}")
        self.ensemble = bool(ensemble)
        self.augment = augment if augment is not None else DifferentiableAugment()
        channels = self.features.channels
        weights = (
            _lin_weights(lpips_weights, channels)
            if lpips_weights is not None
            else [torch.full((c,), 1.0 / c) for c in channels]
        )
        for s, w in enumerate(weights):
            self.register_buffer(f"lin{s}", w.view(1, -1, 1, 1))

    def lin_weights(self) -> list[Tensor]:
        """The per-stage (1, C_s, 1, 1) non-negative channel weights."""
        return [getattr(self, f"lin{s}") for s in range(len(self.features.channels))]

    def forward(self, pred: Tensor, target: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if pred.shape != target.shape or pred.ndim != 4 or pred.shape[1] != 3:
            raise ValueError(
                f"pred and target must be equal (N, 3, H, W) tensors, got {tuple(pred.shape)} and {tuple(target.shape)}"
            )
        target = target.detach()
        if self.ensemble:
            if generator is None:
                raise ValueError(
                    "EnsembledPerceptualLoss(ensemble=True) needs a torch.Generator: "
                    "pass generator=... (or build the loss with ensemble=False)"
                )
            pred, target = self.augment(pred, target, generator=generator)
        with torch.no_grad():
            target_features = self.features(target)
        total = pred.new_zeros(())
        for a, b, w in zip(self.features(pred), target_features, self.lin_weights()):
            diff = (_unit_normalize(a) - _unit_normalize(b)).pow(2)
            total = total + (diff * w.to(diff)).sum(dim=1).mean()
        return total
