"""Liveness checks for a trained generator: every stage must carry signal.

A stage whose activations are all non-positive has died (with ReLU it outputs exact
zeros and everything before it stops mattering); a generator whose output ignores the
concept tokens has a dead cross-attention path. Both are silent failures of training,
so the trainers and tests check for them explicitly.
"""

from __future__ import annotations

import torch

from pocketgan.models.generator import Generator

STAGES = ("down1", "down2", "encoder_res", "ds", "transformer", "us", "decoder_res", "up1")


def stage_activity(model: Generator, image: torch.Tensor, tokens: torch.Tensor) -> dict[str, float]:
    """Share of positive activations at the output of every stage (0.0 = dead)."""
    shares, hooks = {}, []
    for name in STAGES:
        module = model.get_submodule(name)
        hooks.append(module.register_forward_hook(
            lambda _m, _i, out, name=name: shares.__setitem__(name, float((out > 0).float().mean()))))
    try:
        with torch.no_grad():
            model(image, tokens)
    finally:
        for h in hooks:
            h.remove()
    return shares


def token_influence(model: Generator, image: torch.Tensor, tokens_a: torch.Tensor, tokens_b: torch.Tensor) -> float:
    """Mean absolute output difference (in [-1, 1] units) between two token sets."""
    with torch.no_grad():
        return float((model(image, tokens_a) - model(image, tokens_b)).abs().mean())


def check_alive(model: Generator, image: torch.Tensor, tokens: dict[str, torch.Tensor], min_positive: float = 0.01) -> dict:
    """Raise ``RuntimeError`` if a stage died or the concept tokens do not change the output."""
    names = sorted(tokens)
    activity = stage_activity(model, image, tokens[names[0]])
    dead = {k: v for k, v in activity.items() if v < min_positive}
    if dead:
        raise RuntimeError(f"generator stages died in training (share of positive activations): {dead}")
    influence = min((token_influence(model, image, tokens[a], tokens[b]) for a in names for b in names if a < b), default=None)
    if influence is not None and influence < 1e-3:
        raise RuntimeError(f"the concept tokens barely change the output (mean |diff| {influence:.2e}): cross-attention is dead")
    return {"stage_activity": activity, "min_token_influence": influence}
