"""Convolutional building blocks of the generator."""

from __future__ import annotations

import torch
from torch import nn


class ConvAct(nn.Module):
    """3x3 convolution (optionally strided) followed by ReLU.

    ReLU rather than a smoother activation because every backend fuses Conv+ReLU.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


class UpConvAct(nn.Module):
    """Nearest-neighbour 2x upsampling, then a 3x3 convolution and ReLU.

    Nearest + conv instead of a transposed convolution: no checkerboard artifacts and
    every backend (Core ML, XNNPACK, ORT, WebAssembly) supports it natively.
    """

    def __init__(self, in_ch: int, out_ch: int, act: bool = True) -> None:
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.conv = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.act = nn.ReLU() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(self.up(x)))


class ResnetBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection. (B, C, H, W) -> same."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.act = nn.ReLU()
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.conv2(self.act(self.conv1(x))))


class UpsampleToImage(nn.Module):
    """Last stage: upsample features 2x, concatenate the input image, 3x3 conv to RGB.

    Seeing the full-resolution photo lets the generator keep detail the strided encoder
    dropped; the caller adds the result to the photo (a residual edit).
    """

    def __init__(self, in_ch: int, out_ch: int = 3) -> None:
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.conv = nn.Conv2d(in_ch + 3, out_ch, 3, padding=1)

    def forward(self, x: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([self.up(x), image], dim=1))
