"""Parameter and multiply-accumulate counts (``pocketgan costs``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class ModelCost:
    name: str
    parameters: int
    macs: int
    resolution: int


def count_macs(model: nn.Module, *inputs: torch.Tensor) -> int:
    """MACs of one forward pass, counted by torch's FLOP counter (convs, matmuls)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*inputs)
    return counter.get_total_flops() // 2


def generator_cost(size: str, resolution: int = 256) -> ModelCost:
    from pocketgan.models.registry import build_generator

    g = build_generator(size).eval()
    image = torch.zeros(1, 3, resolution, resolution)
    tokens = torch.zeros(1, g.config.token_count, g.config.token_dim)
    params = sum(p.numel() for p in g.parameters())
    return ModelCost(f"pocketgan-{size}", params, count_macs(g, image, tokens), resolution)


def pix2pix_cost(resolution: int = 256) -> ModelCost:
    from pocketgan.models.pix2pix_resnet import Pix2PixResnetGenerator

    g = Pix2PixResnetGenerator().eval()
    params = sum(p.numel() for p in g.parameters())
    return ModelCost(
        "pix2pix-resnet9 (ngf=64)", params, count_macs(g, torch.zeros(1, 3, resolution, resolution)), resolution
    )


def cost_table(resolution: int = 256) -> list[ModelCost]:
    from pocketgan.models.registry import GENERATOR_SIZES

    return [generator_cost(s, resolution) for s in GENERATOR_SIZES] + [pix2pix_cost(resolution)]


def format_cost_table(rows: list[ModelCost]) -> str:
    peer = rows[-1]
    lines = [
        f"| model | params | GMACs @ {rows[0].resolution}² | vs pix2pix (MACs) |",
        "|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r.name} | {r.parameters / 1e6:.3f} M | {r.macs / 1e9:.3f} | {r.macs / peer.macs:.3f}x |")
    return "\n".join(lines)
