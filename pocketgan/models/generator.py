"""The E2GAN-style generator: a small U-shaped conv net with one transformer block.

Layout (E2GAN, Fig. 3): Downsample -> ResNet x2 -> DS -> Transformer (self-attention,
cross-attention to the concept tokens, MLP) -> US -> ResNet -> Upsample, with skip
connections, and a residual output: the last stage sees the input photo and predicts a
change to it. LoRA targets the crucial layers only: Downsample, DS, the transformer block,
US and Upsample (see ``lora_target_modules``); the ResNet blocks stay frozen.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from pocketgan.models.attention import TransformerBlock
from pocketgan.models.blocks import ConvAct, ResnetBlock, UpConvAct, UpsampleToImage


@dataclass(frozen=True)
class GeneratorConfig:
    """Hyper-parameters of :class:`Generator`."""

    ngf: int = field(default=32, metadata={"help": "Channels after the first downsample; deeper stages use 2x and 4x."})
    token_count: int = field(default=4, metadata={"help": "Concept embedding tokens per concept."})
    token_dim: int = field(default=64, metadata={"help": "Channels of one concept token."})
    heads: int = field(default=4, metadata={"help": "Attention heads in the transformer block."})
    mlp_ratio: float = field(default=2.0, metadata={"help": "Hidden width of the MLP relative to 4*ngf."})
    image_size: int = field(default=256, metadata={"help": "Default square input size; any multiple of 8 works."})

    def __post_init__(self) -> None:
        for name in ("ngf", "token_count", "token_dim", "heads", "image_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"GeneratorConfig.{name} must be positive, got {getattr(self, name)}")
        if (4 * self.ngf) % self.heads:
            raise ValueError(f"4*ngf={4 * self.ngf} must be divisible by heads={self.heads}")
        if self.image_size % 8:
            raise ValueError(f"image_size must be a multiple of 8, got {self.image_size}")
        if self.mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be positive, got {self.mlp_ratio}")

    def to_dict(self) -> dict:
        return asdict(self)


class Generator(nn.Module):
    """Image-to-image generator conditioned on concept tokens.

    Input: ``image`` (B, 3, H, W) float32 RGB in [-1, 1], H and W multiples of 8;
    ``tokens`` (B, T, D) or (T, D) float32 concept embedding.
    Output: (B, 3, H, W) float32 RGB in [-1, 1].
    """

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        c = config.ngf
        self.down1 = ConvAct(3, c, stride=2)  # H/2
        self.down2 = ConvAct(c, 2 * c, stride=2)  # H/4
        self.encoder_res = nn.Sequential(ResnetBlock(2 * c), ResnetBlock(2 * c))
        self.ds = ConvAct(2 * c, 4 * c, stride=2)  # H/8
        self.transformer = TransformerBlock(4 * c, config.token_dim, config.heads, config.mlp_ratio)
        # us and up1 end without an activation: a LeakyReLU follows the skip sum. With a
        # ReLU there (before or after the sum) L1 training pushed the whole decoder path
        # below zero within a few hundred steps and it never came back (the first default
        # base lost up1 that way, cutting the transformer and the concept tokens off the
        # output); the leaky slope keeps a gradient to recover with.
        self.us = UpConvAct(4 * c, 2 * c, act=False)  # H/4
        self.decoder_res = ResnetBlock(2 * c)
        self.up1 = UpConvAct(2 * c, c, act=False)  # H/2
        self.up2 = UpsampleToImage(c)  # H/2 -> H (sub-pixel), sees the input photo
        self.skip_act = nn.LeakyReLU(0.2)

    def forward(self, image: torch.Tensor, tokens: torch.Tensor, clamp: bool = True) -> torch.Tensor:
        """``clamp=False`` (training only) returns the edit before the final clamp to
        [-1, 1]: the clamp has zero gradient outside the range, so a pixel pushed past it
        could never be pulled back (a concept whose teacher is mostly white paper, the
        pencil sketch, then stopped learning altogether)."""
        if tokens.dim() == 2:
            tokens = tokens.unsqueeze(0)
        if tokens.shape[0] != image.shape[0]:
            tokens = tokens.expand(image.shape[0], -1, -1)
        d1 = self.down1(image)
        d2 = self.encoder_res(self.down2(d1))
        mid = self.transformer(self.ds(d2), tokens)
        u = self.decoder_res(self.skip_act(self.us(mid) + d2))
        u = self.skip_act(self.up1(u) + d1)
        # residual edit: the photo plus a learned change, clamped to the valid range
        edited = image + self.up2(u, image)
        return torch.clamp(edited, -1.0, 1.0) if clamp else edited

    def lora_target_modules(self) -> list[str]:
        """Qualified names of the layers a concept's LoRA adapts (the crucial layers)."""
        prefixes = ("down1.", "down2.", "ds.", "transformer.", "us.", "up1.", "up2.")
        return [
            name
            for name, module in self.named_modules()
            if name.startswith(prefixes) and isinstance(module, (nn.Conv2d, nn.Linear))
        ]
