"""The lossless autoencoder that puts a Stable Diffusion pipeline in pixel space.

``StableDiffusionInstructPix2PixPipeline`` encodes the input photo with ``vae.encode`` and
decodes the result with ``vae.decode``. With this module as its ``vae``, the "latents" are the
photo itself, folded into patches: (N, 3, H, W) float in [-1, 1] becomes (N, 3 p^2, H / p,
W / p) by ``pixel_unshuffle`` (exactly inverted by ``pixel_shuffle``), and
``vae_scale_factor`` is p. The UNet denoises pixels, p x p of them per position (as Simple
Diffusion's "shuffled" pixel models do): a CPU can train it, and no autoencoder caps its
quality. Everything else in the pipeline (tokenizer, text encoder, guidance, schedulers,
``save_pretrained`` / ``from_pretrained``) is unchanged, so a teacher trained here loads and
runs exactly like an InstructPix2Pix checkpoint from the hub.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput


@dataclass
class PixelLatents(BaseOutput):
    """What ``encode`` returns: ``latents`` (N, 3 p^2, H / p, W / p), the image in patches."""

    latents: torch.Tensor


@dataclass
class PixelDecoderOutput(BaseOutput):
    """What ``decode`` returns: ``sample`` (N, 3, H, W), the patches unfolded."""

    sample: torch.Tensor


class PixelSpaceAutoencoder(ModelMixin, ConfigMixin):
    """Lossless ``encode`` (pixel_unshuffle) / ``decode`` (pixel_shuffle) with the config
    fields pipelines read.

    ``block_out_channels`` has log2(p) + 1 entries so that pipelines compute
    ``vae_scale_factor`` = 2 ** log2(p) = p; ``scaling_factor`` 1 keeps values in [-1, 1].
    """

    @register_to_config
    def __init__(
        self,
        patch_size: int = 4,
        in_channels: int = 3,
        latent_channels: int = 48,
        block_out_channels: tuple[int, ...] = (48, 48, 48),
        scaling_factor: float = 1.0,
        force_upcast: bool = False,
    ) -> None:
        super().__init__()
        if patch_size < 1 or patch_size & (patch_size - 1):
            raise ValueError(f"patch_size must be a power of two, got {patch_size}")
        if latent_channels != in_channels * patch_size**2:
            raise ValueError(f"latent_channels must be in_channels x patch_size^2 = {in_channels * patch_size**2}")
        if 2 ** (len(block_out_channels) - 1) != patch_size or scaling_factor != 1.0:
            raise ValueError("block_out_channels needs log2(patch_size) + 1 entries, and scaling_factor is 1")
        # one (unused) parameter: from_pretrained and .to(dtype) need a non-empty weights file
        self.anchor = torch.nn.Parameter(torch.zeros(1), requires_grad=False)

    @classmethod
    def for_patch(cls, patch_size: int) -> "PixelSpaceAutoencoder":
        channels = 3 * patch_size**2
        return cls(patch_size, 3, channels, (channels,) * (patch_size.bit_length()), 1.0)

    def encode(self, x: torch.Tensor, return_dict: bool = True) -> PixelLatents | tuple[torch.Tensor]:
        z = torch.nn.functional.pixel_unshuffle(x, self.config.patch_size)
        return PixelLatents(latents=z) if return_dict else (z,)

    def decode(
        self, z: torch.Tensor, return_dict: bool = True, **_: object
    ) -> PixelDecoderOutput | tuple[torch.Tensor]:
        x = torch.nn.functional.pixel_shuffle(z, self.config.patch_size)
        return PixelDecoderOutput(sample=x) if return_dict else (x,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x).latents).sample
