"""The editor's architecture and the InstructPix2Pix pipeline built from it.

The pipeline is a real ``diffusers.StableDiffusionInstructPix2PixPipeline``: a CLIP text
encoder reads the instruction, a ``UNet2DConditionModel`` denoises with the input photo
concatenated to its noisy input (pixel space in p x p patches through
:class:`~pocketgan.diffusion_editor.pixel_space.PixelSpaceAutoencoder`: 2 x 3 p^2 channels in,
3 p^2 out), and a
``DDIMScheduler`` samples. ``save_pretrained`` writes it as any hub checkpoint is laid out
(model_index.json, one folder per component, safetensors weights), so
:class:`~pocketgan.training.diffusers_teacher.DiffusersTeacher` loads it with kind
``instruct-pix2pix`` as it would ``timbrooks/instruct-pix2pix``.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

TEXT_TOKENS = 16  # instructions are short; tokenizer model_max_length == text positions


@dataclass(frozen=True)
class EditorArchitecture:
    """Sizes of the editor's UNet and text encoder (defaults: the recipe trained here)."""

    patch_size: int = field(default=4, metadata={"help": "Pixels per UNet position, per side (a power of two)."})
    channels: tuple[int, ...] = field(
        default=(128, 128, 192, 256), metadata={"help": "UNet block widths; resolution halves between blocks."}
    )
    layers_per_block: int = field(default=1, metadata={"help": "ResNet layers per UNet block."})
    attention_blocks: int = field(
        default=1, metadata={"help": "How many of the lowest-resolution blocks carry self/cross attention."}
    )
    head_dim: int = field(default=32, metadata={"help": "Attention head width."})
    text_width: int = field(default=64, metadata={"help": "Text encoder width (= UNet cross-attention width)."})
    text_layers: int = field(default=2, metadata={"help": "Text encoder transformer layers."})
    residual: bool = field(
        default=True,
        metadata={"help": "The UNet adds the input photo to its output (see residual_unet.py); use with sample."},
    )
    prediction_type: str = field(default="sample", metadata={"help": "epsilon | v_prediction | sample."})
    train_timesteps: int = field(default=1000, metadata={"help": "DDPM training timesteps."})

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if self.patch_size < 1 or self.patch_size & (self.patch_size - 1):
            raise ValueError(f"patch_size must be a power of two, got {self.patch_size}")
        if len(self.channels) < 2 or any(c <= 0 or c % 8 for c in self.channels):
            raise ValueError(f"channels: at least two positive multiples of 8, got {self.channels}")
        if not 0 <= self.attention_blocks <= len(self.channels):
            raise ValueError(f"attention_blocks must be in [0, {len(self.channels)}], got {self.attention_blocks}")
        if self.layers_per_block < 1 or self.text_layers < 1:
            raise ValueError("layers_per_block and text_layers must be >= 1")
        if self.head_dim <= 0 or any(c % self.head_dim for c in self.channels[-self.attention_blocks :] or ()):
            raise ValueError(f"head_dim {self.head_dim} must divide the attention blocks' widths {self.channels}")
        if self.text_width <= 0 or self.text_width % 8:
            raise ValueError(f"text_width must be a positive multiple of 8, got {self.text_width}")
        if self.residual and self.prediction_type != "sample":
            raise ValueError("residual: the UNet's output is an image, so prediction_type must be sample")
        if self.prediction_type not in ("epsilon", "v_prediction", "sample"):
            raise ValueError(f"prediction_type must be epsilon, v_prediction or sample, got {self.prediction_type!r}")

    @property
    def multiple(self) -> int:
        """Image sides must be multiples of this: the patch times the UNet's downsampling."""
        return self.patch_size * 2 ** (len(self.channels) - 1)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["channels"] = list(self.channels)
        return out


def scheduler_config(arch: EditorArchitecture) -> dict[str, Any]:
    """Noise schedule shared by training (DDPM) and sampling (DDIM / DPM-Solver).

    Cosine betas suit pixel space; "trailing" spacing with a zero-SNR last step makes a
    1-step sample start from pure noise, so the steps-vs-quality curve starts where it should.
    """
    return {
        "num_train_timesteps": arch.train_timesteps,
        "beta_schedule": "squaredcos_cap_v2",
        "prediction_type": arch.prediction_type,
        "timestep_spacing": "trailing",
        "rescale_betas_zero_snr": True,
        "clip_sample": True,
        "clip_sample_range": 1.0,
    }


def build_pipeline(arch: EditorArchitecture, seed: int = 0) -> Any:
    """A freshly initialised editor pipeline (CPU, float32), seeded."""
    import torch
    from diffusers import DDIMScheduler, StableDiffusionInstructPix2PixPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from pocketgan.diffusion_editor.pixel_space import PixelSpaceAutoencoder
    from pocketgan.diffusion_editor.residual_unet import ResidualUNet2DConditionModel
    from pocketgan.diffusion_editor.tokenizer import vocab_size, write_byte_tokenizer

    torch.manual_seed(seed)
    n = len(arch.channels)
    attn = [i >= n - arch.attention_blocks for i in range(n)]
    unet_class = ResidualUNet2DConditionModel if arch.residual else UNet2DConditionModel
    unet = unet_class(
        sample_size=64 // arch.patch_size,
        in_channels=2 * 3 * arch.patch_size**2,
        out_channels=3 * arch.patch_size**2,
        layers_per_block=arch.layers_per_block,
        block_out_channels=arch.channels,
        norm_num_groups=8,
        attention_head_dim=arch.head_dim,
        cross_attention_dim=arch.text_width,
        down_block_types=tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attn),
        up_block_types=tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)),
        mid_block_type="UNetMidBlock2DCrossAttn" if arch.attention_blocks else None,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab_size(),
            hidden_size=arch.text_width,
            intermediate_size=2 * arch.text_width,
            num_hidden_layers=arch.text_layers,
            num_attention_heads=max(1, arch.text_width // 32),
            max_position_embeddings=TEXT_TOKENS,
            projection_dim=arch.text_width,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    ).eval()
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = CLIPTokenizer.from_pretrained(write_byte_tokenizer(Path(tmp)), model_max_length=TEXT_TOKENS)
    pipe = StableDiffusionInstructPix2PixPipeline(
        vae=PixelSpaceAutoencoder.for_patch(arch.patch_size),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DDIMScheduler(**scheduler_config(arch)),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def encode_instructions(pipe: Any, instructions: list[str]) -> Any:
    """(len(instructions), TEXT_TOKENS, text_width) float32 text-encoder states, as the pipeline computes them."""
    import torch

    ids = pipe.tokenizer(
        instructions,
        padding="max_length",
        max_length=pipe.tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids
    with torch.no_grad():
        return pipe.text_encoder(ids.to(pipe.text_encoder.device))[0]
