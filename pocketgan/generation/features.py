"""Perceptual features trained here, for the one-step student's E-LPIPS loss (Diffusion2GAN).

No pretrained VGG can be downloaded, so the feature stack of
:class:`~pocketgan.training.losses.EnsembledPerceptualLoss` is trained on the emoji
*training* split (:func:`pocketgan.generation.emoji.load_emoji`; the held-out glyphs are
never seen), then calibrated LPIPS-style:

1. **Features.** A VGG-style stack with the exact layout of
   :class:`~pocketgan.training.losses.PerceptualFeatures` (default channels
   (32, 64, 128, 128), 2 convs per stage, max-pool) is trained to tell glyphs apart
   (contrastive instance discrimination on random views: shifts, zoom, rotation, colour
   jitter, blur, noise) and to predict the prompt's hashed words
   (:mod:`pocketgan.generation.glyph_training`). Training uses BatchNorm after
   every conv (it trains in minutes where a plain stack does not); the BatchNorms are folded
   into the convs afterwards, so the saved stack is an ordinary ``PerceptualFeatures``.
2. **Calibration.** Per-channel non-negative "lin" weights are fitted 2AFC-style, as LPIPS
   does on BAPPS, on distortions generated here
   (:mod:`pocketgan.generation.perceptual_calibration`).

Output folder (written atomically): ``features.safetensors`` (``stages.{s}.{j}.weight`` /
``.bias``), ``lin.safetensors`` (``lin{s}``: float32 (C_s,) >= 0) and ``perceptual.json``
(layout, settings, accuracies, 2AFC agreements, timings). :func:`load_perceptual_loss`
turns the folder into an ``EnsembledPerceptualLoss``.

Images: uint8 (N, 32, 32, 3) RGB on white at the edges; float (N, 3, H, W) in [-1, 1]
inside. Randomness: explicit ``torch.Generator`` / ``numpy.random.Generator`` seeded from
the config, so a seed gives the same weights on a given machine and thread count.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from pocketgan.generation.emoji import EmojiSet
from pocketgan.generation.glyph_training import (
    ClassifierTraining,
    GlyphHeads,
    evaluate_glyph_features,
    train_glyph_features,
)
from pocketgan.training.losses import _LPIPS_SCALE, _LPIPS_SHIFT, EnsembledPerceptualLoss, PerceptualFeatures

__all__ = ["PerceptualConfig", "TrainableVGG", "load_perceptual_loss", "train_perceptual_features"]


class TrainableVGG(nn.Module):
    """``PerceptualFeatures``' layout with BatchNorm after every conv, and :class:`GlyphHeads`."""

    def __init__(self, channels: tuple[int, ...], convs: int, pool: str, buckets: int) -> None:
        super().__init__()
        self.channels, self.convs, self.pool = tuple(channels), int(convs), pool
        self.register_buffer("shift", torch.tensor(_LPIPS_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_LPIPS_SCALE).view(1, 3, 1, 1), persistent=False)
        stages, c_in = [], 3
        for c_out in self.channels:
            layers = []
            for _ in range(self.convs):
                layers.append(nn.ModuleList([nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out)]))
                c_in = c_out
            stages.append(nn.ModuleList(layers))
        self.stages = nn.ModuleList(stages)
        self.heads = GlyphHeads(c_in, buckets)

    def embed(self, x: Tensor) -> Tensor:
        x = (x - self.shift) / self.scale  # the same input scaling as PerceptualFeatures
        pool = F.avg_pool2d if self.pool == "avg" else F.max_pool2d
        for s, stage in enumerate(self.stages):
            if s:
                x = pool(x, 2, ceil_mode=True)
            for conv, norm in stage:
                x = F.relu(norm(conv(x)))
        return x.mean(dim=(2, 3))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.heads(self.embed(x))

    def fold(self) -> PerceptualFeatures:
        """The eval-mode network as a ``PerceptualFeatures`` (BatchNorm folded into the convs: exact)."""
        out = PerceptualFeatures(self.channels, self.convs, self.pool)
        state = {}
        for s, stage in enumerate(self.stages):
            for j, (conv, norm) in enumerate(stage):
                gain = norm.weight / torch.sqrt(norm.running_var + norm.eps)
                state[f"stages.{s}.{j}.weight"] = conv.weight * gain[:, None, None, None]
                state[f"stages.{s}.{j}.bias"] = (conv.bias - norm.running_mean) * gain + norm.bias
        out.load_state_dict({k: v.detach().clone() for k, v in state.items()})
        return out


@dataclass(frozen=True)
class PerceptualConfig:
    """The perceptual network: its layout, its training and its calibration."""

    channels: tuple[int, ...] = field(default=(32, 64, 128, 128), metadata={"help": "Widths of the stages."})
    convs_per_stage: int = field(default=2, metadata={"help": "3x3 convs per stage."})
    pool: str = field(default="max", metadata={"help": "Pool between stages: 'max' (as VGG) or 'avg'."})
    training: ClassifierTraining = field(default_factory=ClassifierTraining, metadata={"help": "Training."})
    triplets: int = field(default=4000, metadata={"help": "2AFC triplets generated for the calibration."})
    eval_fraction: float = field(default=0.25, metadata={"help": "Share of glyphs whose triplets only measure."})
    calib_steps: int = field(default=400, metadata={"help": "Adam steps of the lin-weight fit."})
    calib_l2: float = field(default=0.01, metadata={"help": "Pull of the lin weights towards uniform."})

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if isinstance(self.training, dict):
            object.__setattr__(self, "training", ClassifierTraining(**self.training))
        if not self.channels or min(self.channels) < 1 or self.convs_per_stage < 1:
            raise ValueError(f"need >= 1 stage of positive width and >= 1 conv: {self.channels}")
        if self.pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {self.pool!r}")
        if self.triplets < 8 or not 0 < self.eval_fraction < 1 or self.calib_steps < 1 or self.calib_l2 < 0:
            raise ValueError("triplets >= 8, eval_fraction in (0, 1), calib_steps >= 1 and calib_l2 >= 0 needed")


def train_perceptual_features(
    out_dir: str | Path,
    steps: int = 400,
    seed: int = 0,
    *,
    config: PerceptualConfig | None = None,
    emoji: EmojiSet | None = None,
    progress: bool = True,
) -> dict:
    """Train, calibrate and save the perceptual network into ``out_dir`` (replaced atomically).

    ``emoji`` (default: :func:`load_emoji` at 32 px) is split here: only its training split
    trains the classifier and fits the lin weights. ``steps`` overrides
    ``config.training.steps``. Returns the report also saved as ``perceptual.json``.
    """
    from safetensors.torch import save  # to bytes: save_file creates 0600 files, write_bytes honours the umask

    from pocketgan.atomic import atomic_directory
    from pocketgan.generation.emoji import load_emoji
    from pocketgan.generation.perceptual_calibration import calibrate

    cfg = config or PerceptualConfig()
    training = ClassifierTraining(**{**asdict(cfg.training), "steps": int(steps)})
    emoji = emoji if emoji is not None else load_emoji(32, progress=progress)
    train = emoji.split(held_out=False)
    with torch.random.fork_rng(devices=[]):  # nn.Module's default init reads the global RNG: seed it, restore it
        torch.manual_seed(int(seed))
        model = TrainableVGG(cfg.channels, cfg.convs_per_stage, cfg.pool, training.buckets)
    untrained = evaluate_glyph_features(model.eval(), emoji, training, seed)
    timing = train_glyph_features(model, train, training, seed, progress)
    features = model.fold()
    accuracy = evaluate_glyph_features(model, emoji, training, seed)
    start = time.perf_counter()
    lin, two_afc = calibrate(features, train.images, cfg, seed)
    report = {
        "kind": "pocketgan perceptual features",
        "layout": {"channels": list(cfg.channels), "convs_per_stage": cfg.convs_per_stage, "pool": cfg.pool},
        "seed": int(seed),
        "config": json.loads(json.dumps(asdict(cfg) | {"training": asdict(training)})),
        "train_glyphs": len(train),
        "train_seconds": timing["seconds"],
        "final_loss": timing["final_loss"],
        "accuracy": accuracy,
        "accuracy_untrained": untrained,
        "calibration_seconds": round(time.perf_counter() - start, 1),
        "two_afc": two_afc,
        "threads": torch.get_num_threads(),
    }
    with atomic_directory(Path(out_dir)) as staging:
        (staging / "features.safetensors").write_bytes(
            save({k: v.contiguous() for k, v in features.state_dict().items()})
        )
        (staging / "lin.safetensors").write_bytes(save({f"lin{s}": w.contiguous() for s, w in enumerate(lin)}))
        (staging / "perceptual.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def load_perceptual_loss(directory: str | Path, ensemble: bool = True) -> EnsembledPerceptualLoss:
    """The calibrated E-LPIPS loss of a :func:`train_perceptual_features` folder (safetensors + JSON only)."""
    from safetensors.torch import load_file

    directory = Path(directory)
    meta_path = directory / "perceptual.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{directory} holds no perceptual.json: train it with train_perceptual_features")
    layout = json.loads(meta_path.read_text())["layout"]
    features = PerceptualFeatures.from_safetensors(
        directory / "features.safetensors", layout["channels"], layout["convs_per_stage"], layout["pool"]
    )
    lin = load_file(str(directory / "lin.safetensors"))
    return EnsembledPerceptualLoss(features, ensemble=ensemble, lpips_weights=lin)
