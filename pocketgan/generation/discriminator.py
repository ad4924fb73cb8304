"""The conditional multi-scale discriminator of one-step generation, made from the teacher's UNet encoder.

Diffusion2GAN initialises its discriminator from the teacher's UNet: the encoder (conv_in,
time embedding, down blocks, mid block) already reads images at every scale and attends to
the prompt. Here:

- the candidate image (N, 3, S, S) in [-1, 1] enters the teacher's ``conv_in`` in patches,
  the time embedding is the teacher's at t = 0 (a clean image);
- the condition is ``(noise, prompt_states)``: the noise (N, 3, S, S) through a
  zero-initialised 3x3 conv added after ``conv_in`` (at init, D ignores it, as in
  Diffusion2GAN), the prompt states (N, TOKENS, width) through the encoder's own
  cross-attention;
- a 1x1 real/fake head reads every down block's output and the mid block's: one logit map
  per scale, finest first.

It plugs into :func:`pocketgan.training.discriminator.discriminator_loss` (tuple
conditions, mix-and-match permutes noise and prompt together), ``r1_penalty`` and
``generator_adversarial_loss`` unchanged.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from pocketgan.generation.teacher import GenerationArchitecture


class UNetEncoderDiscriminator(nn.Module):
    def __init__(self, unet: nn.Module, arch: GenerationArchitecture) -> None:
        super().__init__()
        self.arch = arch
        self.conv_in = copy.deepcopy(unet.conv_in)
        self.time_proj = copy.deepcopy(unet.time_proj)
        self.time_embedding = copy.deepcopy(unet.time_embedding)
        self.down_blocks = copy.deepcopy(unet.down_blocks)
        self.mid_block = copy.deepcopy(unet.mid_block)
        channels, _, _ = arch.latent_shape
        self.cond_in = nn.Conv2d(channels, self.conv_in.out_channels, 3, padding=1)
        nn.init.zeros_(self.cond_in.weight)
        nn.init.zeros_(self.cond_in.bias)
        widths = [block.resnets[-1].out_channels for block in self.down_blocks]
        if self.mid_block is not None:
            widths.append(self.mid_block.resnets[-1].out_channels)
        self.heads = nn.ModuleList(nn.Conv2d(w, 1, 1) for w in widths)
        # R1 differentiates D's input gradient: plain-matmul attention, since torch's fused CPU
        # attention has no double backward
        from diffusers.models.attention_processor import Attention, AttnProcessor

        for module in self.modules():
            if isinstance(module, Attention):
                module.set_processor(AttnProcessor())
        self.train()

    def forward(self, condition: tuple[torch.Tensor, torch.Tensor], image: torch.Tensor) -> list[torch.Tensor]:
        noise, states = condition
        p = self.arch.patch_size
        h = self.conv_in(nn.functional.pixel_unshuffle(image, p)) + self.cond_in(
            nn.functional.pixel_unshuffle(noise, p)
        )
        t = torch.zeros(image.shape[0], dtype=torch.long, device=image.device)
        temb = self.time_embedding(self.time_proj(t).to(h.dtype))
        logits = []
        for block, head in zip(self.down_blocks, self.heads):
            if getattr(block, "has_cross_attention", False):
                h, _ = block(h, temb, encoder_hidden_states=states)
            else:
                h, _ = block(h, temb)
            logits.append(head(h))
        if self.mid_block is not None:
            h = self.mid_block(h, temb, encoder_hidden_states=states)
            logits.append(self.heads[-1](h))
        return logits
