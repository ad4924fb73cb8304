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
    """Bilinear 2x upsampling, then a 3x3 convolution and ReLU (unless ``act=False``).
    (B, in_ch, H, W) -> (B, out_ch, 2H, 2W).

    Resize + conv instead of a transposed convolution: no checkerboard artifacts.
    Bilinear rather than nearest because XNNPACK has a bilinear resize and no nearest
    one: ``upsample_nearest2d`` stayed on ExecuTorch's portable kernels and split the
    program into several delegated pieces. (A sub-pixel convolution, conv then
    PixelShuffle, delegates too but ran 15% slower on ONNX Runtime: its DepthToSpace
    leaves ORT's blocked NCHWc layout.)
    """

    def __init__(self, in_ch: int, out_ch: int, act: bool = True) -> None:
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
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
    """Last stage, sub-pixel: (B, C, H/2, W/2) features -> (B, 3, H, W) change to the photo.

    The photo enters at half resolution without losing a pixel: ``PixelUnshuffle(2)``
    folds each 2x2 block into 12 channels, which are concatenated with the features; one
    3x3 convolution predicts 4x3 channels and ``PixelShuffle(2)`` unfolds them to full
    resolution. Same receptive field on the photo as a full-resolution 3x3 convolution
    would have, but every tensor stays at H/2: a full-resolution convolution with 3 output
    channels is the slowest layer on every CPU runtime (13% of ONNX Runtime's kernel time
    for 3% of the MACs), and its LoRA branch cost 12% more.
    """

    def __init__(self, in_ch: int, out_ch: int = 3) -> None:
        super().__init__()
        self.fold = nn.PixelUnshuffle(2)
        self.conv = nn.Conv2d(in_ch + 4 * 3, 4 * out_ch, 3, padding=1)
        self.unfold = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.unfold(self.conv(torch.cat([x, self.fold(image)], dim=1)))
