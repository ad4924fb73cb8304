"""Diffusion teachers: InstructPix2Pix and Stable Diffusion img2img through ``diffusers``.

A :class:`DiffusersTeacher` follows the :class:`~pocketgan.training.teachers.Teacher`
protocol: ``edit(images, seeds)`` maps (H, W, 3) uint8 RGB photos to edited (H, W, 3) uint8
RGB photos, one seed per image, and the same (image, seed) always gives the same edit on the
same hardware and software.

The pipeline loads lazily on the first ``edit`` (``diffusers`` and ``transformers`` are the
``pocketgan[diffusion]`` extra), from a local directory written by ``save_pretrained`` /
``hf download --local-dir`` or from a Hugging Face hub id, which needs the network or the
local hub cache. Tests and callers with a pipeline already in memory pass ``pipeline=``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pocketgan.runtime.errors import PocketganError

KINDS = ("instruct-pix2pix", "img2img")
DTYPES = ("float16", "bfloat16", "float32")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_MAX_SEED = 2**63


class TeacherLoadError(PocketganError, OSError):
    """The diffusion pipeline could not be loaded (missing directory, not cached, offline, or
    weights only in a pickle format: ``.bin`` / ``.ckpt`` are refused, safetensors only)."""


def _slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-") or "edit"


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class DiffusersTeacher:
    """A diffusers image editor as a teacher.

    ``kind``: ``"instruct-pix2pix"`` (``prompt`` is an instruction: "make it a watercolour") or
    ``"img2img"`` (Stable Diffusion img2img; ``prompt`` describes the result). ``model``: a
    local pipeline directory or a hub id (``"timbrooks/instruct-pix2pix"``).

    Edits run at each image's own size, which must be a multiple of 8 on both sides (the
    latent grid of Stable Diffusion's VAE).
    """

    kind: str = field(metadata={"help": "instruct-pix2pix or img2img."})
    model: str = field(metadata={"help": "Local pipeline directory or Hugging Face hub id."})
    prompt: str = field(metadata={"help": "The edit: an instruction (InstructPix2Pix) or a description (img2img)."})
    name: str = field(default="", metadata={"help": "Short name (default: kind + prompt slug)."})
    description: str = field(default="", metadata={"help": "One line for humans (default: the prompt)."})
    steps: int = field(default=20, metadata={"help": "Denoising steps."})
    guidance_scale: float = field(default=7.5, metadata={"help": "Text classifier-free guidance scale."})
    image_guidance_scale: float | None = field(
        default=None, metadata={"help": "InstructPix2Pix only: image guidance scale (default 1.5)."}
    )
    strength: float | None = field(
        default=None, metadata={"help": "img2img only: how far to move from the photo, (0, 1] (default 0.6)."}
    )
    batch_size: int = field(default=4, metadata={"help": "Images per pipeline call."})
    device: str | None = field(default=None, metadata={"help": "torch device (default: cuda if available, else cpu)."})
    dtype: str | None = field(
        default=None, metadata={"help": "float16 | bfloat16 | float32 (default: float16 on CUDA, float32 elsewhere)."}
    )
    local_files_only: bool | None = field(
        default=None, metadata={"help": "Hub ids: never touch the network (default: only when HF_HUB_OFFLINE is set)."}
    )
    progress: bool = field(default=False, metadata={"help": "Show a tqdm bar per edit() call."})
    pipeline: Any = field(
        default=None,
        repr=False,
        compare=False,
        metadata={"help": "An already built diffusers pipeline, used as is (its device and dtype)."},
    )

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if not isinstance(self.model, str) or not self.model.strip():
            raise ValueError("model must be a local pipeline directory or a hub id")
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise ValueError(f"the {self.kind} teacher needs a non-empty prompt")
        if self.steps <= 0:
            raise ValueError(f"steps must be positive, got {self.steps}")
        if self.guidance_scale < 0:
            raise ValueError(f"guidance_scale must be >= 0, got {self.guidance_scale}")
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        if self.kind == "instruct-pix2pix":
            if self.strength is not None:
                raise ValueError("strength is an img2img setting; InstructPix2Pix uses image_guidance_scale")
            if self.image_guidance_scale is None:
                self.image_guidance_scale = 1.5
            if self.image_guidance_scale < 0:
                raise ValueError(f"image_guidance_scale must be >= 0, got {self.image_guidance_scale}")
        else:
            if self.image_guidance_scale is not None:
                raise ValueError("image_guidance_scale is an InstructPix2Pix setting; img2img uses strength")
            if self.strength is None:
                self.strength = 0.6
            if not 0 < self.strength <= 1:
                raise ValueError(f"strength must be in (0, 1], got {self.strength}")
            if int(self.steps * self.strength) < 1:
                raise ValueError(
                    f"steps x strength = {self.steps} x {self.strength} runs no denoising step; raise either"
                )
        if self.pipeline is not None:  # a given pipeline is used as is: record where it runs
            if self.device is None and getattr(self.pipeline, "device", None) is not None:
                self.device = str(self.pipeline.device)
            if self.dtype is None and getattr(self.pipeline, "dtype", None) is not None:
                self.dtype = str(self.pipeline.dtype).removeprefix("torch.")
        if self.device is None:
            self.device = _default_device()
        import torch

        try:
            device_type = torch.device(self.device).type
        except (RuntimeError, TypeError):
            raise ValueError(f"not a torch device: {self.device!r}") from None
        if self.dtype is None:
            self.dtype = "float16" if device_type == "cuda" else "float32"
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if not self.name:
            self.name = f"{self.kind}-{_slug(self.prompt)}"
        if not self.description:
            self.description = self.prompt
        if self.pipeline is None:
            _local_directory(self.model)  # a path that is no directory fails now, not at the first edit

    # -- Teacher interface -------------------------------------------------------------

    @property
    def source(self) -> str:
        """Provenance: ``"diffusers:<kind>:<model as given>:<prompt>"``."""
        return f"diffusers:{self.kind}:{self.model}:{self.prompt}"

    @property
    def settings(self) -> dict[str, Any]:
        """The settings that change the edits (recorded next to ``source`` in datasets).

        Device and dtype are left out: they change results by rounding only, and a dataset
        begun on GPUs may be finished on a CPU.
        """
        out: dict[str, Any] = {"steps": self.steps, "guidance_scale": self.guidance_scale}
        if self.kind == "instruct-pix2pix":
            out["image_guidance_scale"] = self.image_guidance_scale
        else:
            out["strength"] = self.strength
        return out

    def edit(self, images: list[np.ndarray], seeds: list[int]) -> list[np.ndarray]:
        """Edit ``images`` with the prompt.

        ``images``: (H, W, 3) uint8 RGB arrays, values 0..255, H and W multiples of 8 (sizes
        may differ between images). ``seeds``: one int in [0, 2**63) per image; each image gets
        its own CPU ``torch.Generator`` seeded with it, so an edit depends on its image and seed
        only (batching changes results by float rounding at most). Returns one (H, W, 3)
        uint8 RGB array per image, the size of its input.
        """
        images = [np.asarray(im) for im in images]
        seeds = [int(s) for s in seeds]
        if len(images) != len(seeds):
            raise ValueError(f"got {len(images)} images but {len(seeds)} seeds")
        for i, (im, seed) in enumerate(zip(images, seeds)):
            if im.dtype != np.uint8 or im.ndim != 3 or im.shape[2] != 3:
                raise ValueError(f"image {i}: need an H x W x 3 uint8 RGB array, got {im.dtype} {im.shape}")
            h, w = im.shape[:2]
            if h == 0 or w == 0 or h % 8 or w % 8:
                raise ValueError(
                    f"image {i}: {w}x{h} pixels; diffusion teachers need both sides to be positive multiples of 8"
                )
            if not 0 <= seed < _MAX_SEED:
                raise ValueError(f"seed {seed} out of range [0, 2**63)")
        if not images:
            return []
        pipe = self.load()
        from tqdm import tqdm

        results: list[np.ndarray] = []
        with tqdm(total=len(images), desc=self.name, unit="img", disable=not self.progress) as bar:
            for start, stop in _batches([im.shape for im in images], self.batch_size):
                results += self._run(pipe, images[start:stop], seeds[start:stop])
                bar.update(stop - start)
        return results

    # -- loading and running -----------------------------------------------------------

    def load(self) -> Any:
        """The diffusers pipeline, built on first use (or the one passed as ``pipeline=``)."""
        if self.pipeline is not None:
            return self.pipeline
        import torch

        try:
            from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionInstructPix2PixPipeline
        except ImportError as e:
            raise ImportError(
                f"diffusion teachers need diffusers and transformers: pip install 'pocketgan[diffusion]' ({e})"
            ) from e
        # pocketgan's own pipeline components (the pixel-space "VAE" of the editor trained
        # here): diffusers loads a component class only from a module already imported
        import pocketgan.diffusion_editor.pixel_space  # noqa: F401
        import pocketgan.diffusion_editor.residual_unet  # noqa: F401

        ip2p = self.kind == "instruct-pix2pix"
        cls = StableDiffusionInstructPix2PixPipeline if ip2p else StableDiffusionImg2ImgPipeline
        # use_safetensors: never unpickle a downloaded or copied .bin (it can run code on load);
        # every component's weights must be safetensors, else from_pretrained raises OSError.
        kwargs: dict[str, Any] = {
            "dtype": getattr(torch, self.dtype),
            "safety_checker": None,
            "requires_safety_checker": False,
            "use_safetensors": True,
        }
        local = _local_directory(self.model)
        if local is not None:
            try:
                with quiet_pipeline_io():
                    pipe = cls.from_pretrained(str(local), local_files_only=True, **kwargs)
            except (OSError, ValueError) as e:
                raise TeacherLoadError(
                    f"could not load a {self.kind} pipeline from {local}: {e}{_pickle_hint(e)}"
                ) from e
        else:
            offline = self.local_files_only or _hub_offline()
            if offline:
                kwargs["local_files_only"] = True
            try:
                pipe = cls.from_pretrained(self.model, **kwargs)
            except OSError as e:
                if _pickle_hint(e):
                    raise TeacherLoadError(f"could not load {self.model!r}: {e}{_pickle_hint(e)}") from e
                raise TeacherLoadError(
                    f"could not load {self.model!r} from the Hugging Face hub: it is not in the local hub cache "
                    f"and could not be downloaded{' (offline mode is on)' if offline else ''}. This machine may be "
                    f"offline. Pre-download it on a machine with network, e.g. `hf download {self.model} "
                    f"--local-dir models/{self.model.split('/')[-1]}` (or run once with network to fill the cache), "
                    f"then pass the directory: '{self.kind}:models/{self.model.split('/')[-1]}'. ({e})"
                ) from e
        pipe = pipe.to(self.device)
        self.pipeline = pipe
        return pipe

    def _run(self, pipe: Any, images: list[np.ndarray], seeds: list[int]) -> list[np.ndarray]:
        import torch

        if hasattr(pipe, "set_progress_bar_config"):
            pipe.set_progress_bar_config(disable=True)
        batch = np.stack(images).astype(np.float32) / 255.0  # (N, H, W, 3) float32 in [0, 1]
        generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
        kwargs: dict[str, Any] = {"num_inference_steps": self.steps, "guidance_scale": self.guidance_scale}
        if self.kind == "instruct-pix2pix":
            kwargs["image_guidance_scale"] = self.image_guidance_scale
        else:
            kwargs["strength"] = self.strength
        with torch.inference_mode():
            out = pipe(
                prompt=[self.prompt] * len(images), image=batch, generator=generators, output_type="np", **kwargs
            ).images  # (N, H', W', 3) float in [0, 1]
        out = np.asarray(out, dtype=np.float32)
        if out.ndim != 4 or out.shape[0] != len(images) or out.shape[-1] != 3:
            raise RuntimeError(f"the pipeline returned {out.shape}, expected ({len(images)}, H, W, 3)")
        edited = []
        for src, res in zip(images, out):
            rgb = np.round(np.clip(np.nan_to_num(res), 0.0, 1.0) * 255.0).astype(np.uint8)
            if rgb.shape != src.shape:
                h, w = src.shape[:2]
                rgb = np.asarray(Image.fromarray(rgb).resize((w, h), Image.Resampling.BICUBIC), dtype=np.uint8)
            edited.append(np.ascontiguousarray(rgb))
        return edited


@contextmanager
def quiet_pipeline_io() -> Iterator[None]:
    """Loading or saving a pipeline without diffusers' and transformers' per-component bars
    and type notes (a pipeline with pocketgan's pixel-space VAE is "unexpected" to them, and
    fine)."""
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    bars = (dlog.is_progress_bar_enabled(), tlog.is_progress_bar_enabled())
    levels = (dlog.get_verbosity(), tlog.get_verbosity())
    dlog.disable_progress_bar(), tlog.disable_progress_bar()
    dlog.set_verbosity_error(), tlog.set_verbosity_error()
    try:
        yield
    finally:
        dlog.set_verbosity(levels[0]), tlog.set_verbosity(levels[1])
        if bars[0]:
            dlog.enable_progress_bar()
        if bars[1]:
            tlog.enable_progress_bar()


def _pickle_hint(error: Exception) -> str:
    """What to do when from_pretrained(use_safetensors=True) found only pickled weights, else ""."""
    if "safetensors" not in str(error):
        return ""
    return (
        " (pocketgan loads safetensors weights only, never a pickled .bin or .ckpt: use a model that "
        "ships .safetensors, or re-save the pipeline with save_pretrained(DIR, safe_serialization=True))"
    )


def _batches(shapes: list[tuple[int, ...]], batch_size: int) -> list[tuple[int, int]]:
    """Consecutive runs of equal shapes, at most ``batch_size`` long: [(start, stop), ...]."""
    runs, start = [], 0
    for i in range(1, len(shapes) + 1):
        if i == len(shapes) or shapes[i] != shapes[start] or i - start == batch_size:
            runs.append((start, i))
            start = i
    return runs


def _hub_offline() -> bool:
    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return any(f.strip().lower() in ("1", "true", "yes", "on") for f in flags)


def _local_directory(model: str) -> Path | None:
    """``model`` as a local directory, None for a hub id; raises for a path that is no directory."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path.resolve()
    looks_like_path = model.startswith(("/", ".", "~")) or "\\" in model or model.count("/") > 1 or path.exists()
    if looks_like_path or not _HUB_ID.match(model):
        raise TeacherLoadError(f"model {model!r} is not a directory (nor a hub id like 'timbrooks/instruct-pix2pix')")
    return None
