"""The one-step generator: the teacher's UNet, run once at the last timestep, trained as a GAN.

Diffusion2GAN initialises the one-step generator from the teacher's UNet: at the last
timestep (pure noise under zero terminal SNR) the UNet's v-prediction already is a
(blurry) one-step sample, x0 = sqrt(a) z - sqrt(1 - a) v with a = alpha_bar(T) = 0, i.e.
x0 = -v. Training then moves this map onto the teacher's ODE output (regression) and
onto the image distribution (GAN).

``OneStepGenerator.forward(noise, prompt_states)``:
    noise          float32 (N, 3, S, S), standard normal (runtime: ``seeded_noise``)
    prompt_states  float32 (N, TOKENS, width), the prompt table's rows
    -> image       float32 (N, 3, S, S) in [-1, 1]
No classifier-free guidance branch: the student learns the guided teacher's output.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pocketgan.generation.teacher import GenerationArchitecture


class OneStepGenerator(nn.Module):
    def __init__(self, unet: nn.Module, arch: GenerationArchitecture, alpha_bar_last: float = 0.0) -> None:
        super().__init__()
        self.unet = unet
        self.arch = arch
        self.timestep = arch.train_timesteps - 1
        a = float(alpha_bar_last)
        self.x_scale, self.out_scale = math.sqrt(a), math.sqrt(1.0 - a)
        self.prediction_type = arch.prediction_type

    @classmethod
    def from_teacher(cls, teacher) -> "OneStepGenerator":
        """A copy of the teacher's UNet (the teacher stays untouched)."""
        import copy

        from diffusers import DDPMScheduler

        from pocketgan.generation.teacher import scheduler_config

        alphas = DDPMScheduler(**scheduler_config(teacher.arch)).alphas_cumprod
        return cls(copy.deepcopy(teacher.unet).float(), teacher.arch, float(alphas[-1]))

    def forward(self, noise: torch.Tensor, prompt_states: torch.Tensor) -> torch.Tensor:
        p = self.arch.patch_size
        z = nn.functional.pixel_unshuffle(noise, p)
        t = torch.full((noise.shape[0],), self.timestep, dtype=torch.long, device=noise.device)
        out = self.unet(z, t, encoder_hidden_states=prompt_states, return_dict=False)[0]
        if self.prediction_type == "v_prediction":
            x0 = self.x_scale * z - self.out_scale * out
        elif self.prediction_type == "epsilon":
            x0 = (z - self.out_scale * out) / max(self.x_scale, 1e-4)
        else:
            x0 = out
        return nn.functional.pixel_shuffle(x0, p).clamp(-1.0, 1.0)
