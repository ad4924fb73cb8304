"""The editor's UNet: the input photo plus a learned change.

A pixel-space editor that must first learn to copy its input photo through a UNet spends
most of a CPU's training budget on that (measured: 1,750 steps of a v-predicting UNet still
scored 15 dB against the clean photo on restore, where the degraded input itself scores
24-30 dB). This UNet adds the photo's latents to its output, so with ``prediction_type =
"sample"`` it predicts the clean image as the input plus a change, and a zero change is the
photo itself (restore starts at the input's quality, colorize at its luma).

The photo's latents are the last ``out_channels`` input channels: InstructPix2Pix pipelines
concatenate them after the noisy latents. Where they are zeros (image guidance's
unconditional branch, the image-dropped training samples) the output is the plain UNet's.
"""

from __future__ import annotations

from diffusers import UNet2DConditionModel
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

# from_pretrained finds a component's load method by looking the loadable base classes up in
# the component's own module: ModelMixin must be a name here
__all__ = ["ModelMixin", "ResidualUNet2DConditionModel"]


class ResidualUNet2DConditionModel(UNet2DConditionModel):
    """``UNet2DConditionModel`` whose output is its input photo's latents plus the UNet's output.

    ``sample``: (N, 2 C, h, w), the noisy latents then the photo's latents, C = ``out_channels``.
    Returns (N, C, h, w), like the parent class.
    """

    def forward(self, sample, timestep, encoder_hidden_states, *args, return_dict: bool = True, **kwargs):
        out = super().forward(sample, timestep, encoder_hidden_states, *args, return_dict=False, **kwargs)[0]
        out = out + sample[:, self.config.out_channels :]
        return UNet2DConditionOutput(sample=out) if return_dict else (out,)
