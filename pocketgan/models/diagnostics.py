"""Liveness checks for a trained generator: every stage must carry signal.

A stage whose activations are all non-positive has died (with ReLU it outputs exact
zeros and everything before it stops mattering); a generator whose output ignores the
concept tokens has a dead cross-attention path. Both are silent failures of training,
so the trainers and tests check for them explicitly.
"""

from __future__ import annotations

import torch

from pocketgan.models.generator import Generator

# stage -> the module whose *input* or *output* holds the stage's activated result. ``us``
# and ``up1`` end without an activation (a LeakyReLU follows the skip sum), so their
# activated result is what the next module receives.
STAGES = {
    "down1": ("down1", "output"),
    "down2": ("down2", "output"),
    "encoder_res": ("encoder_res", "output"),
    "ds": ("ds", "output"),
    "transformer": ("transformer", "output"),
    "us": ("decoder_res", "input"),  # leaky_relu(us(mid) + d2)
    "decoder_res": ("decoder_res", "output"),
    "up1": ("up2", "input"),  # leaky_relu(up1(u) + d1)
}


def stage_activity(model: Generator, image: torch.Tensor, tokens: torch.Tensor) -> dict[str, float]:
    """Share of positive activations in every stage's activated result (0.0 = dead)."""
    shares, hooks = {}, []

    def record(name: str, tensor: torch.Tensor) -> None:
        shares[name] = float((tensor > 0).float().mean())

    for name, (module_name, where) in STAGES.items():
        module = model.get_submodule(module_name)
        if where == "output":
            hooks.append(module.register_forward_hook(lambda _m, _i, out, name=name: record(name, out)))
        else:
            hooks.append(module.register_forward_pre_hook(lambda _m, args, name=name: record(name, args[0])))
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


def check_alive(
    model: Generator, image: torch.Tensor, tokens: dict[str, torch.Tensor], min_positive: float = 0.01
) -> dict:
    """Raise ``RuntimeError`` if a stage died or the concept tokens do not change the output."""
    names = sorted(tokens)
    activity = stage_activity(model, image, tokens[names[0]])
    dead = {k: v for k, v in activity.items() if v < min_positive}
    if dead:
        raise RuntimeError(f"generator stages died in training (share of positive activations): {dead}")
    influence = min(
        (token_influence(model, image, tokens[a], tokens[b]) for a in names for b in names if a < b), default=None
    )
    if influence is not None and influence < 1e-3:
        raise RuntimeError(
            f"the concept tokens barely change the output (mean |diff| {influence:.2e}): cross-attention is dead"
        )
    return {"stage_activity": activity, "min_token_influence": influence}
