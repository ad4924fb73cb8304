"""The emoji text-to-image teacher: a diffusers ``UNet2DConditionModel`` in pixel space.

Images are (N, 3, S, S) float in [-1, 1]; the UNet sees them folded into p x p patches
(``pixel_unshuffle``, as :mod:`pocketgan.diffusion_editor.pixel_space` does for the editor):
(N, 3 p^2, S / p, S / p). It predicts v under a cosine schedule with zero terminal SNR
(:func:`pocketgan.diffusion_editor.pipeline.scheduler_config`, shared with the editor), so
the last timestep is pure noise and a 1-step DDIM sample starts where it should.
``DDPMScheduler`` trains it, ``DDIMScheduler`` samples its ODE (eta 0: deterministic).

The pipeline folder (``save_teacher`` / ``load_teacher``) holds ``unet/``,
``prompt_encoder/`` (:class:`~pocketgan.generation.prompt_encoder.HashedPromptEncoder`) and
``scheduler/`` (DDIM), each written by diffusers' ``save_pretrained`` (safetensors).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

# Classifier-free guidance of the emoji teacher: at 1.5 its samples are cleanest (3 adds
# speckle, 5 breaks them up; looked at side by side), so its ODE pairs use 1.5.
DEFAULT_GUIDANCE = 1.5


@dataclass(frozen=True)
class GenerationArchitecture:
    """Sizes of the teacher (and of the one-step student initialised from it)."""

    image_size: int = field(default=32, metadata={"help": "Generated image side, pixels."})
    patch_size: int = field(default=2, metadata={"help": "Pixels per UNet position, per side (a power of two)."})
    channels: tuple[int, ...] = field(
        default=(64, 96, 128), metadata={"help": "UNet block widths; resolution halves between blocks."}
    )
    layers_per_block: int = field(default=1, metadata={"help": "ResNet layers per UNet block."})
    attention_blocks: int = field(default=2, metadata={"help": "How many low-resolution blocks cross-attend."})
    heads: int = field(default=4, metadata={"help": "Attention heads."})
    text_width: int = field(default=64, metadata={"help": "Prompt-state width (= cross-attention width)."})
    buckets: int = field(default=4096, metadata={"help": "Hashed word buckets of the prompt table."})
    prediction_type: str = field(default="v_prediction", metadata={"help": "epsilon | v_prediction | sample."})
    train_timesteps: int = field(default=1000, metadata={"help": "DDPM training timesteps."})

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if self.patch_size < 1 or self.patch_size & (self.patch_size - 1):
            raise ValueError(f"patch_size must be a power of two, got {self.patch_size}")
        if self.image_size % (self.patch_size * 2 ** (len(self.channels) - 1)):
            raise ValueError(f"image_size {self.image_size} must be a multiple of patch x 2^(blocks - 1)")
        if len(self.channels) < 2 or any(c <= 0 or c % 8 for c in self.channels):
            raise ValueError(f"channels: at least two positive multiples of 8, got {self.channels}")
        if not 0 <= self.attention_blocks <= len(self.channels):
            raise ValueError(f"attention_blocks must be in [0, {len(self.channels)}], got {self.attention_blocks}")
        if self.heads < 1 or any(c % self.heads for c in self.channels):
            raise ValueError(f"heads ({self.heads}) must divide every block width {self.channels}")
        if self.prediction_type not in ("epsilon", "v_prediction", "sample"):
            raise ValueError(f"prediction_type must be epsilon, v_prediction or sample, got {self.prediction_type!r}")
        if self.layers_per_block < 1 or self.text_width < 8 or self.buckets < 1:
            raise ValueError("layers_per_block >= 1, text_width >= 8 and buckets >= 1")

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        p = self.patch_size
        return (3 * p * p, self.image_size // p, self.image_size // p)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["channels"] = list(self.channels)
        return out


def build_unet(arch: GenerationArchitecture, seed: int = 0) -> Any:
    from diffusers import UNet2DConditionModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        n = len(arch.channels)
        attn = [i >= n - arch.attention_blocks for i in range(n)]
        c, s, _ = arch.latent_shape
        return UNet2DConditionModel(
            sample_size=s,
            in_channels=c,
            out_channels=c,
            layers_per_block=arch.layers_per_block,
            block_out_channels=arch.channels,
            norm_num_groups=8,
            attention_head_dim=arch.heads,  # diffusers' name: it is the number of heads
            cross_attention_dim=arch.text_width,
            down_block_types=tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attn),
            up_block_types=tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)),
            mid_block_type="UNetMidBlock2DCrossAttn" if arch.attention_blocks else None,
        )


def build_prompt_encoder(arch: GenerationArchitecture, seed: int = 0) -> Any:
    from pocketgan.generation.prompt_encoder import HashedPromptEncoder

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        return HashedPromptEncoder(buckets=arch.buckets, width=arch.text_width)


def scheduler_config(arch: GenerationArchitecture) -> dict[str, Any]:
    from pocketgan.diffusion_editor.pipeline import scheduler_config as shared

    return shared(arch)  # reads train_timesteps and prediction_type


@dataclass
class Teacher:
    """A loaded teacher: UNet, prompt encoder and DDIM scheduler, float32 on CPU, eval mode."""

    unet: Any
    prompt_encoder: Any
    scheduler: Any
    arch: GenerationArchitecture
    guidance: float = DEFAULT_GUIDANCE

    def to_latents(self, images: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.pixel_unshuffle(images, self.arch.patch_size)

    def to_images(self, latents: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.pixel_shuffle(latents, self.arch.patch_size)

    @torch.no_grad()
    def sample(
        self, prompts: list[str], noise: torch.Tensor, steps: int, guidance: float | None = None
    ) -> torch.Tensor:
        """DDIM (eta 0) from ``noise`` (N, 3, S, S) float32 -> images (N, 3, S, S) in [-1, 1].

        ``guidance`` (default: the teacher's): classifier-free guidance scale; 1 runs the
        conditional branch alone.
        """
        from diffusers import DDIMScheduler

        if noise.shape[1:] != (3, self.arch.image_size, self.arch.image_size) or len(prompts) != len(noise):
            raise ValueError(f"noise must be (len(prompts), 3, S, S), got {tuple(noise.shape)} for {len(prompts)}")
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        scale = self.guidance if guidance is None else float(guidance)
        scheduler = DDIMScheduler.from_config(self.scheduler.config)
        scheduler.set_timesteps(steps)
        cond = self.prompt_encoder.encode(list(prompts))
        states = torch.cat([cond, self.prompt_encoder.encode([""] * len(prompts))]) if scale != 1 else cond
        x = self.to_latents(noise.float()) * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            inp = torch.cat([x, x]) if scale != 1 else x
            out = self.unet(inp, t, encoder_hidden_states=states).sample
            if scale != 1:
                c, u = out.chunk(2)
                out = u + scale * (c - u)
            x = scheduler.step(out, t, x, eta=0.0).prev_sample
        return self.to_images(x).clamp(-1, 1)


def save_teacher(folder: Path, unet: Any, prompt_encoder: Any, arch: GenerationArchitecture) -> None:
    """Write the pipeline folder (call inside an atomic staging directory)."""
    import json

    from diffusers import DDIMScheduler

    folder = Path(folder)
    unet.save_pretrained(folder / "unet", safe_serialization=True)
    prompt_encoder.save_pretrained(folder / "prompt_encoder", safe_serialization=True)
    DDIMScheduler(**scheduler_config(arch)).save_pretrained(folder / "scheduler")
    (folder / "architecture.json").write_text(json.dumps(arch.to_json(), indent=1), encoding="utf-8")


def load_teacher(folder: Path, guidance: float = DEFAULT_GUIDANCE) -> Teacher:
    """Load a pipeline folder written by :func:`save_teacher` (safetensors only)."""
    import json

    from diffusers import DDIMScheduler, UNet2DConditionModel

    from pocketgan.generation.prompt_encoder import HashedPromptEncoder
    from pocketgan.training.diffusers_teacher import quiet_pipeline_io

    folder = Path(folder)
    if not (folder / "architecture.json").is_file():
        raise FileNotFoundError(f"{folder} is not a generation teacher (no architecture.json)")
    arch = GenerationArchitecture(**json.loads((folder / "architecture.json").read_text(encoding="utf-8")))
    with quiet_pipeline_io():
        unet = UNet2DConditionModel.from_pretrained(folder / "unet", use_safetensors=True).eval()
        encoder = HashedPromptEncoder.from_pretrained(folder / "prompt_encoder", use_safetensors=True).eval()
        scheduler = DDIMScheduler.from_pretrained(folder / "scheduler")
    return Teacher(unet, encoder, scheduler, arch, guidance)
