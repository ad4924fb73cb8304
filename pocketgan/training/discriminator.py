"""Conditional multi-scale discriminator and the GAN losses (non-saturating logistic).

Diffusion2GAN-style (Kang et al., ECCV 2024), scaled down: see ``docs/losses.md``.

- :class:`ConditionalDiscriminator`: a U-Net over the candidate image with the condition
  photo entering through a zero-initialised conv, and a real/fake logit head at every
  decoder scale.
- :func:`discriminator_loss` with optional mix-and-match (GigaGAN's matching-aware
  loss: a real image paired with another sample's condition is a fake).
- :func:`generator_adversarial_loss`.
- :func:`r1_penalty` (single sample) and :func:`lazy_r1_due` (the lazy schedule).

All randomness comes from explicit ``torch.Generator`` / seed arguments, never the global RNG.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = [
    "ConditionalDiscriminator",
    "discriminator_loss",
    "generator_adversarial_loss",
    "lazy_r1_due",
    "r1_penalty",
    "random_derangement",
]

_SLOPE = 0.2


class ConditionalDiscriminator(nn.Module):
    """Small conditional U-Net discriminator with multi-scale logit heads.

    ``forward(condition, image)``: both (N, 3, H, W) in [-1, 1], H and W multiples of
    ``2 ** scales``. With ``c = channels`` and ``C_i = c * min(2 ** i, 4)``::

        stem   conv3x3(image) + cond_in(condition)   -> LReLU   (N, c,   H,   W)
               cond_in: conv3x3 3 -> c, ZERO-initialised (weight and bias), so at init
               the output does not depend on the condition (Diffusion2GAN)
        down_i conv4x4 stride 2 + LReLU, i = 1..scales          (N, C_i, H/2^i, W/2^i)
        up     from the bottleneck (i = scales) back to i = 1: bilinear x2, concat the
               encoder skip of that level, conv3x3 + LReLU
        heads  a 1x1 conv -> 1 logit channel at each decoder level i = scales..1

    Returns ``scales`` logit maps, coarsest first: ``out[k]`` is
    (N, 1, H / 2^(scales - k), W / 2^(scales - k)). LeakyReLU slope 0.2, no normalisation
    layers (samples never interact, which the single-sample R1 relies on).

    Weights are initialised from ``torch.Generator().manual_seed(seed)`` (PyTorch's
    default conv init, drawn from that generator); the global RNG is left untouched.
    """

    def __init__(self, channels: int = 32, scales: int = 3, *, seed: int = 0) -> None:
        super().__init__()
        if channels < 1 or scales < 1:
            raise ValueError(f"channels and scales must be positive, got {channels}, {scales}")
        self.channels, self.scales = int(channels), int(scales)
        widths = [channels] + [channels * min(2**i, 4) for i in range(1, scales + 1)]
        self.widths = tuple(widths)
        with torch.random.fork_rng(devices=[]):  # module constructors draw from the global RNG
            self.stem = nn.Conv2d(3, channels, 3, padding=1)
            self.cond_in = nn.Conv2d(3, channels, 3, padding=1)
            self.down = nn.ModuleList(
                nn.Conv2d(widths[i - 1], widths[i], 4, stride=2, padding=1) for i in range(1, scales + 1)
            )
            # up[j] produces decoder level i = scales - 1 - j from level i + 1 and skip i.
            self.up = nn.ModuleList(
                nn.Conv2d(widths[i + 1] + widths[i], widths[i], 3, padding=1) for i in range(scales - 1, 0, -1)
            )
            # heads[k] reads decoder level i = scales - k (coarsest first).
            self.heads = nn.ModuleList(nn.Conv2d(widths[scales - k], 1, 1) for k in range(scales))
        generator = torch.Generator().manual_seed(int(seed))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
                bound = 1 / math.sqrt(module.weight[0].numel())
                nn.init.uniform_(module.bias, -bound, bound, generator=generator)
        nn.init.zeros_(self.cond_in.weight)
        nn.init.zeros_(self.cond_in.bias)

    def forward(self, condition: Tensor, image: Tensor) -> list[Tensor]:
        if image.ndim != 4 or image.shape[1] != 3 or condition.shape != image.shape:
            raise ValueError(
                f"condition and image must be equal (N, 3, H, W) tensors, got "
                f"{tuple(condition.shape)} and {tuple(image.shape)}"
            )
        factor = 2**self.scales
        if image.shape[-2] % factor or image.shape[-1] % factor:
            raise ValueError(f"H and W must be multiples of 2**scales = {factor}, got {tuple(image.shape[-2:])}")
        h = F.leaky_relu(self.stem(image) + self.cond_in(condition), _SLOPE)
        skips = []
        for conv in self.down:
            h = F.leaky_relu(conv(h), _SLOPE)
            skips.append(h)  # skips[i - 1] is level i
        logits = [self.heads[0](h)]
        for j, conv in enumerate(self.up):
            skip = skips[self.scales - 2 - j]
            h = F.interpolate(h, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            h = F.leaky_relu(conv(torch.cat([h, skip], dim=1)), _SLOPE)
            logits.append(self.heads[j + 1](h))
        return logits


def random_derangement(n: int, generator: torch.Generator) -> Tensor:
    """A random permutation with no fixed point (n >= 2): ``perm[i] != i`` for every i.

    A uniformly random n-cycle (``order[k] -> order[k + 1]`` for a random ``order``):
    one ``randperm`` draw from ``generator``, so the RNG consumption is fixed.
    """
    if n < 2:
        raise ValueError(f"a derangement needs n >= 2, got {n}")
    order = torch.randperm(n, generator=generator, device=generator.device).cpu()
    perm = torch.empty(n, dtype=torch.long)
    perm[order] = order.roll(-1)
    return perm


# A condition is one tensor (the photo, for editing) or a tuple of tensors (noise and prompt
# states, for generation) that share the batch dimension; these apply batch ops to either.
def _take(condition, index):
    return tuple(c[index] for c in condition) if isinstance(condition, tuple) else condition[index]


def _cat(conditions: list):
    if isinstance(conditions[0], tuple):
        return tuple(torch.cat(parts) for parts in zip(*conditions))
    return torch.cat(conditions)


def _detach(condition):
    return tuple(c.detach() for c in condition) if isinstance(condition, tuple) else condition.detach()


def _mean_over_scales(values: list[Tensor]) -> Tensor:
    return torch.stack([v.mean() for v in values]).mean()


def discriminator_loss(
    disc: nn.Module, condition: Tensor, real: Tensor, fake: Tensor, mix_and_match: bool, generator: torch.Generator
) -> tuple[Tensor, dict[str, float]]:
    """Non-saturating logistic discriminator loss, averaged over the scales' heads.

    ``loss = E[softplus(-D(c, real))] + E[softplus(D(c, fake.detach()))]``
    ``       (+ E[softplus(D(c[perm], real))] with mix_and_match)``

    Mix-and-match (GigaGAN's matching-aware term, used by Diffusion2GAN): each real image
    paired with another sample's condition, ``perm`` a :func:`random_derangement` drawn
    from ``generator``, is a fake, so D must check that the edit matches the photo. With
    a batch of 1 there is no other condition: the term is skipped (no error). The three
    groups go through ``disc`` as one concatenated batch.

    ``condition`` is a tensor like ``real`` (editing: the photo) or a tuple of tensors with
    ``real``'s batch size (generation: noise and prompt states); mix-and-match permutes all.

    Returns the loss and ``{"d_real", "d_fake", "d_mix"}``: the mean logits of each group
    (mean over scales of per-scale means; ``d_mix`` is NaN when the term is skipped).
    """
    if isinstance(condition, tuple):
        if not (real.shape == fake.shape and all(c.shape[0] == real.shape[0] for c in condition)):
            raise ValueError(f"condition tensors, real and fake need one batch size; real {tuple(real.shape)}")
    elif not (condition.shape == real.shape == fake.shape):
        raise ValueError(
            f"condition, real and fake must have one shape, got {tuple(condition.shape)}, "
            f"{tuple(real.shape)}, {tuple(fake.shape)}"
        )
    n = real.shape[0]
    mix = bool(mix_and_match) and n >= 2
    conditions, images = [condition, condition], [real, fake.detach()]
    if mix:
        perm = random_derangement(n, generator).to(real.device)
        conditions.append(_take(condition, perm))
        images.append(real)
    logits = disc(_cat(conditions), torch.cat(images))
    groups = [[t for t in scale.split(n)] for scale in logits]  # groups[scale][group]
    real_logits = [g[0] for g in groups]
    fake_logits = [g[1] for g in groups]
    loss = _mean_over_scales([F.softplus(-x) for x in real_logits]) + _mean_over_scales(
        [F.softplus(x) for x in fake_logits]
    )
    stats = {
        "d_real": float(_mean_over_scales(real_logits).detach()),
        "d_fake": float(_mean_over_scales(fake_logits).detach()),
        "d_mix": float("nan"),
    }
    if mix:
        mix_logits = [g[2] for g in groups]
        loss = loss + _mean_over_scales([F.softplus(x) for x in mix_logits])
        stats["d_mix"] = float(_mean_over_scales(mix_logits).detach())
    return loss, stats


def generator_adversarial_loss(disc: nn.Module, condition: Tensor, fake: Tensor) -> Tensor:
    """Non-saturating generator loss ``E[softplus(-D(c, fake))]``, averaged over scales.

    Gradients reach ``fake`` (and the generator); freeze ``disc``'s parameters (or zero
    their grads) around the generator step.
    """
    return _mean_over_scales([F.softplus(-x) for x in disc(condition, fake)])


def r1_penalty(disc: nn.Module, condition: Tensor, real: Tensor) -> Tensor:
    """Single-sample R1: ``||grad_x sum_scales sum D(c_0, x)||^2`` at ``x = real[0]``.

    Only the FIRST sample of the batch is used (Diffusion2GAN applies R1 to one sample to
    save compute); the gradient is taken with ``create_graph=True`` so the penalty is
    differentiable w.r.t. ``disc``'s parameters. Returns the mean (over that one sample)
    squared gradient norm, unscaled.

    Lazy schedule (StyleGAN2's lazy regularisation): the caller adds it only when
    :func:`lazy_r1_due` is true, every ``interval`` (16) steps, scaled by
    ``gamma / 2 * interval`` to keep the same average strength::

        if lazy_r1_due(step, interval):
            d_loss = d_loss + gamma / 2 * interval * r1_penalty(disc, condition, real)
    """
    x = real[:1].detach().requires_grad_(True)
    logits = disc(_detach(_take(condition, slice(0, 1))), x)
    total = torch.stack([t.sum() for t in logits]).sum()
    (grad,) = torch.autograd.grad(total, x, create_graph=True)
    return grad.pow(2).flatten(1).sum(dim=1).mean()


def lazy_r1_due(step: int, interval: int = 16) -> bool:
    """True on the steps where the lazy R1 penalty is applied: ``step % interval == 0``."""
    if interval < 1 or step < 0:
        raise ValueError(f"need interval >= 1 and step >= 0, got {interval}, {step}")
    return step % interval == 0
