"""LPIPS-style calibration of the perceptual distance: per-channel lin weights fitted 2AFC-style.

LPIPS learns non-negative per-channel weights from BAPPS, where people judged which of two
distortions of a reference patch looks closer to it. No such judgements exist here, so the
triplets are generated (:func:`make_2afc`) with a known answer: a reference glyph, two
distortions of it from five families (:data:`DISTORTIONS`: blur, noise, shift, colour, JPEG)
at severities in [0, 1], and "closer" = the lower severity. Half the triplets compare one
family at two severities at least 0.2 apart (an unambiguous answer); half compare two
families at severities at least 0.4 apart, where the answer rests on the hand-set severity
scales of :func:`distort` (e.g. severity 1 is a 4-pixel shift, a blur of radius 1.5 px, JPEG
quality 10): the calibration teaches the distance what this module calls comparable.

The fit (:func:`fit_lin`) is a logistic model of the log-ratio of the two distances, the
weights kept non-negative by a softplus and, since only the ranking matters, rescaled to sum
to the number of stages (what the uniform ``1/C_s`` weights sum to), which keeps the loss's
magnitude comparable to the uncalibrated one; a small L2 pull towards uniform keeps most
channels alive.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from pocketgan.training.losses import PerceptualFeatures, _unit_normalize

__all__ = ["DISTORTIONS", "calibrate", "channel_distances", "distort", "fit_lin", "make_2afc"]

DISTORTIONS = ("blur", "noise", "shift", "color", "jpeg")
_DIRECTIONS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]


def distort(image: np.ndarray, kind: str, severity: float, rng: np.random.Generator) -> np.ndarray:
    """One distortion of uint8 (H, W, 3) ``image`` at ``severity`` in [0, 1] -> uint8 (H, W, 3).

    blur: Gaussian radius 0.3-1.5 px; noise: Gaussian std 8-60 (of 255); shift: 1-4 px in
    one of 8 directions, white filling; color: hue turned 8-65 degrees either way and
    saturation scaled by 1-0.4 severity; jpeg: quality 90-10 (4:2:0 chroma).
    """
    from PIL import Image, ImageFilter

    if kind not in DISTORTIONS:
        raise ValueError(f"unknown distortion {kind!r}: one of {DISTORTIONS}")
    s = float(np.clip(severity, 0, 1))
    if kind == "noise":
        return np.clip(image + rng.normal(0, 8 + 52 * s, image.shape), 0, 255).round().astype(np.uint8)
    if kind == "shift":
        dy, dx = _DIRECTIONS[int(rng.integers(len(_DIRECTIONS)))]
        px, h, w = 1 + round(3 * s), image.shape[0], image.shape[1]
        out = np.full_like(image, 255)
        out[max(0, dy * px) : h + min(0, dy * px), max(0, dx * px) : w + min(0, dx * px)] = image[
            max(0, -dy * px) : h + min(0, -dy * px), max(0, -dx * px) : w + min(0, -dx * px)
        ]
        return out
    pil = Image.fromarray(image)
    if kind == "blur":
        return np.asarray(pil.filter(ImageFilter.GaussianBlur(0.3 + 1.2 * s)))
    if kind == "jpeg":
        buffer = io.BytesIO()
        pil.save(buffer, format="JPEG", quality=round(90 - 80 * s))
        return np.asarray(Image.open(buffer).convert("RGB"))
    hsv = np.asarray(pil.convert("HSV")).astype(np.int32)  # color: PIL's hue runs 0-255
    turn = round((6 + 40 * s) * (1 if rng.random() < 0.5 else -1))
    hsv[..., 0] = (hsv[..., 0] + turn) % 256
    hsv[..., 1] = (hsv[..., 1] * (1 - 0.4 * s)).round()
    return np.asarray(Image.fromarray(hsv.astype(np.uint8), "HSV").convert("RGB"))


def make_2afc(images: np.ndarray, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``n`` triplets from uint8 (M, H, W, 3) ``images``: ``ref``, ``d0``, ``d1`` uint8 (n, H, W, 3),
    ``d0_closer`` bool (n,) (d0 has the lower severity) and ``same_family`` bool (n,)."""
    ref = rng.integers(len(images), size=n)
    same = rng.random(n) < 0.5
    kind_near = rng.integers(len(DISTORTIONS), size=n)
    kind_far = np.where(same, kind_near, (kind_near + rng.integers(1, len(DISTORTIONS), size=n)) % len(DISTORTIONS))
    gap = np.where(same, 0.2, 0.4)
    near = rng.random(n) * (1 - gap)
    far = near + gap + rng.random(n) * (1 - gap - near)
    d0_closer = rng.random(n) < 0.5
    d0, d1 = [], []
    for i in range(n):
        a = distort(images[ref[i]], DISTORTIONS[kind_near[i]], near[i], rng)
        b = distort(images[ref[i]], DISTORTIONS[kind_far[i]], far[i], rng)
        d0.append(a if d0_closer[i] else b)
        d1.append(b if d0_closer[i] else a)
    return {"ref": images[ref], "d0": np.stack(d0), "d1": np.stack(d1), "d0_closer": d0_closer, "same_family": same}


@torch.no_grad()
def channel_distances(features: PerceptualFeatures, a: np.ndarray, b: np.ndarray, batch: int = 256) -> Tensor:
    """float32 (N, sum C_s): per stage and channel, the spatial mean of the squared difference of the
    unit-normalised features of uint8 images ``a`` and ``b`` (N, H, W, 3). The LPIPS distance with
    weights ``w`` is ``distances @ w``."""
    from pocketgan.generation.glyph_training import to_unit

    out = []
    for i in range(0, len(a), batch):
        fa, fb = features(to_unit(a[i : i + batch])), features(to_unit(b[i : i + batch]))
        out.append(
            torch.cat([(_unit_normalize(x) - _unit_normalize(y)).pow(2).mean(dim=(2, 3)) for x, y in zip(fa, fb)], 1)
        )
    return torch.cat(out)


def _agreement(d0: Tensor, d1: Tensor, d0_closer: Tensor) -> float:
    """Share of triplets ranked as the answer says (ties count one half)."""
    right = torch.where(d0 == d1, 0.5, ((d0 < d1) == d0_closer).float())
    return round(float(right.mean()), 4)


def fit_lin(
    v0: Tensor, v1: Tensor, d0_closer: Tensor, channels: tuple[int, ...], steps: int = 400, l2: float = 0.01
) -> list[Tensor]:
    """Fit non-negative per-channel weights so ``v0 @ w < v1 @ w`` where ``d0_closer``.

    ``v0``, ``v1``: float (N, sum channels) from :func:`channel_distances`. Model:
    ``P(d0 closer) = sigmoid(k * (log d1 - log d0))`` with ``w = softplus(raw)`` rescaled to sum to
    ``len(channels)`` (the ranking ignores the scale; this fixes it), started at the uniform ``1/C_s``;
    full-batch Adam (deterministic). ``l2`` penalises ``mean((w / uniform - 1)^2)``: without it
    the fit kept ~5% of the channels (the rest < 1/10 of uniform) for no better held-out
    agreement, and a training loss resting on a handful of channels is easy for a generator
    to satisfy while the rest drifts. Returns one float32 (C_s,) per stage.
    """
    uniform = torch.cat([torch.full((c,), 1.0 / c) for c in channels])
    raw = torch.log(torch.expm1(uniform)).requires_grad_(True)  # softplus(raw) == uniform
    log_k = torch.tensor(1.0, requires_grad=True)
    target = d0_closer.float()
    optimizer = torch.optim.Adam([raw, log_k], lr=0.05)

    def weights() -> Tensor:
        w = F.softplus(raw)
        return w * len(channels) / w.sum()

    for _ in range(steps):
        w = weights()
        logit = log_k.exp() * (torch.log(v1 @ w + 1e-10) - torch.log(v0 @ w + 1e-10))
        loss = F.binary_cross_entropy_with_logits(logit, target) + l2 * (w / uniform - 1).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return [part.clone() for part in torch.split(weights().detach(), list(channels))]


def _scores(v0: Tensor, v1: Tensor, w: Tensor, triplets: dict[str, np.ndarray]) -> dict[str, float]:
    closer, same = torch.from_numpy(triplets["d0_closer"]), torch.from_numpy(triplets["same_family"])
    d0, d1 = v0 @ w, v1 @ w
    return {
        "all": _agreement(d0, d1, closer),
        "same_family": _agreement(d0[same], d1[same], closer[same]),
        "cross_family": _agreement(d0[~same], d1[~same], closer[~same]),
    }


def calibrate(features: PerceptualFeatures, images: np.ndarray, cfg, seed: int) -> tuple[list[Tensor], dict]:
    """Fit lin weights for ``features`` on triplets of training glyphs ``images`` (uint8 (M, 32, 32, 3)).

    The glyphs are split (``cfg.eval_fraction``) so the agreements are measured on triplets of
    glyphs the fit never saw. Returns (weights, report): 2AFC agreement of the calibrated
    distance, the uniform-weight one, random features (:meth:`PerceptualFeatures.random`, same
    layout) uniform and calibrated, and pixel MSE, each over all / same-family / cross-family
    triplets, plus the calibrated agreement on the fit triplets.
    """
    rng = np.random.default_rng(int(seed) + 2000)
    perm = rng.permutation(len(images))
    n_eval = max(1, round(len(images) * cfg.eval_fraction))
    n_eval_triplets = max(4, round(cfg.triplets * cfg.eval_fraction))
    fit_set = make_2afc(images[perm[n_eval:]], cfg.triplets - n_eval_triplets, rng)
    eval_set = make_2afc(images[perm[:n_eval]], n_eval_triplets, rng)
    channels = features.channels
    uniform = torch.cat([torch.full((c,), 1.0 / c) for c in channels])
    random_features = PerceptualFeatures.random(0, channels, features.convs_per_stage, features.pool)
    report: dict = {"fit_triplets": len(fit_set["d0"]), "eval_triplets": len(eval_set["d0"])}
    lin = None
    for name, net in (("trained", features), ("random", random_features)):
        fit_v = [channel_distances(net, fit_set["ref"], fit_set[k]) for k in ("d0", "d1")]
        eval_v = [channel_distances(net, eval_set["ref"], eval_set[k]) for k in ("d0", "d1")]
        weights = fit_lin(*fit_v, torch.from_numpy(fit_set["d0_closer"]), channels, cfg.calib_steps, cfg.calib_l2)
        w = torch.cat(weights)
        report[f"{name}_calibrated_weak_channels"] = round(float((w < 0.1 * uniform).float().mean()), 4)
        report[f"{name}_calibrated"] = _scores(*eval_v, w, eval_set)
        report[f"{name}_uniform"] = _scores(*eval_v, uniform, eval_set)
        report[f"{name}_calibrated_on_fit_triplets"] = _scores(*fit_v, w, fit_set)
        lin = weights if name == "trained" else lin
    pixel = [
        torch.from_numpy(((eval_set[k].astype(np.float32) - eval_set["ref"]) ** 2).mean(axis=(1, 2, 3)))
        for k in ("d0", "d1")
    ]
    report["pixel_mse"] = _scores(pixel[0][:, None], pixel[1][:, None], torch.ones(1), eval_set)
    return lin, report
