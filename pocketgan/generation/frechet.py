"""Fréchet distance (FID-style) on the emoji set, with an embedding network trained here.

No Inception weights can be downloaded, so the embedding is the global-pooled penultimate
layer (192-D by default) of :class:`FDNet`, a small residual network trained on the emoji
*training* split to tell glyphs apart and name their prompts' words (contrastive instance
discrimination + hashed prompt words, :mod:`pocketgan.generation.glyph_training`). It is
deliberately a *different* network from the perceptual loss's VGG stack (residual blocks
with strided convs and BatchNorm, other widths, another seed), so the student is not
scored by the net it was trained against.

The report's distribution distance is :func:`fd_to_held_out`: the FD between generated
images and the 376 held-out glyphs, which no training saw.

**Sample-size bias.** The FD of two finite samples is biased upwards, by an amount that
shrinks roughly as 1/N (the sample covariances' noise enters the trace term): two samples
of the *same* distribution give FD > 0, the more so the smaller N. Only FDs computed at the
same N (and the same embedding) are comparable; compare a model to the held-out glyphs
with as many generated images as there are held-out ones, and quote the train-vs-held-out
FD at that N as the floor.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from pocketgan.generation.emoji import EmojiSet
from pocketgan.generation.glyph_training import (
    ClassifierTraining,
    GlyphHeads,
    evaluate_glyph_features,
    to_unit,
    train_glyph_features,
)

__all__ = ["FDConfig", "FDFeatures", "FDNet", "fd_to_held_out", "frechet_distance", "train_fd_classifier"]


def gaussian_moments(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float64 mean (D,) and unbiased covariance (D, D) of features (N, D), N >= 2."""
    feats = np.asarray(feats, dtype=np.float64)
    if feats.ndim != 2 or len(feats) < 2:
        raise ValueError(f"features must be (N >= 2, D), got {feats.shape}")
    return feats.mean(0), np.cov(feats, rowvar=False).reshape(feats.shape[1], feats.shape[1])


def _psd_sqrt(cov: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((cov + cov.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_from_moments(mu_a: np.ndarray, cov_a: np.ndarray, mu_b: np.ndarray, cov_b: np.ndarray) -> float:
    """``|mu_a - mu_b|^2 + Tr(cov_a + cov_b - 2 (cov_a cov_b)^(1/2))`` (the Fréchet distance of two Gaussians).

    ``Tr (cov_a cov_b)^(1/2)`` is computed as the trace of the square root of the symmetric PSD
    ``S cov_b S`` with ``S = cov_a^(1/2)`` (similar matrices: same eigenvalues), by symmetric
    eigendecompositions with negative round-off eigenvalues clipped to 0. It equals the trace of
    ``scipy.linalg.sqrtm(cov_a @ cov_b)`` where that is defined, but never yields the spurious
    imaginary parts sqrtm produces on near-singular products (FID code discards them by hand).
    """
    mu_a, mu_b = np.asarray(mu_a, np.float64), np.asarray(mu_b, np.float64)
    cov_a, cov_b = np.asarray(cov_a, np.float64), np.asarray(cov_b, np.float64)
    if mu_a.shape != mu_b.shape or cov_a.shape != cov_b.shape or cov_a.shape != (len(mu_a), len(mu_a)):
        raise ValueError(f"moments disagree: {mu_a.shape}, {cov_a.shape}, {mu_b.shape}, {cov_b.shape}")
    root = _psd_sqrt(cov_a)
    middle = root @ cov_b @ root
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    fd = float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_sqrt)
    return max(fd, 0.0)  # round-off can leave -1e-12 for identical sets


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to features (N_a, D) and (N_b, D) (FID's formula).

    Symmetric, 0 for identical sets. Biased upwards by finite samples (~1/N): compare FDs
    only at equal N_a, N_b and embedding (module docstring).
    """
    feats_a, feats_b = np.asarray(feats_a), np.asarray(feats_b)
    if feats_a.ndim != 2 or feats_b.ndim != 2 or feats_a.shape[1] != feats_b.shape[1]:
        raise ValueError(f"need (N, D) features of one D, got {feats_a.shape} and {feats_b.shape}")
    return frechet_from_moments(*gaussian_moments(feats_a), *gaussian_moments(feats_b))


class _Block(nn.Module):
    """conv-BN-ReLU-conv-BN plus a (strided 1x1 conv) shortcut, then ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.norm1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(c_out)
        self.skip = (
            nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
            if stride != 1 or c_in != c_out
            else nn.Identity()
        )

    def forward(self, x: Tensor) -> Tensor:
        y = self.norm2(self.conv2(F.relu(self.norm1(self.conv1(x)))))
        return F.relu(y + self.skip(x))


class FDNet(nn.Module):
    """Residual glyph network: 3x3 stem (``widths[0]``), one strided residual block per later
    width, global average pool (the embedding, ``widths[-1]``-D), then :class:`GlyphHeads`."""

    def __init__(self, widths: tuple[int, ...], buckets: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU())
        self.blocks = nn.Sequential(*[_Block(a, b, 2) for a, b in zip(widths[:-1], widths[1:])])
        self.heads = GlyphHeads(widths[-1], buckets)

    def embed(self, x: Tensor) -> Tensor:
        """float (N, 3, H, W) in [-1, 1] -> float (N, widths[-1]) non-negative (post-ReLU) pooled features."""
        return self.blocks(self.stem(x)).mean(dim=(2, 3))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.heads(self.embed(x))


@dataclass(frozen=True)
class FDConfig:
    """The Fréchet embedding network and its training."""

    widths: tuple[int, ...] = field(default=(48, 64, 128, 192), metadata={"help": "Stem, then one block each."})
    training: ClassifierTraining = field(default_factory=ClassifierTraining, metadata={"help": "Training."})

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        if isinstance(self.training, dict):
            object.__setattr__(self, "training", ClassifierTraining(**self.training))
        if len(self.widths) < 2 or min(self.widths) < 1:
            raise ValueError(f"widths needs a stem and >= 1 block, all positive, got {self.widths}")


class FDFeatures:
    """A trained :class:`FDNet` as an embedding: ``embed(uint8 (N, 32, 32, 3)) -> float64 (N, D)``."""

    def __init__(self, net: FDNet, meta: dict) -> None:
        self.net, self.meta = net.eval(), meta
        self.dim = int(meta["widths"][-1])

    @classmethod
    def load(cls, directory: str | Path) -> FDFeatures:
        """From a :func:`train_fd_classifier` folder (``fd.safetensors`` + ``fd.json``; no pickle)."""
        from safetensors.torch import load_file

        directory = Path(directory)
        if not (directory / "fd.json").is_file():
            raise FileNotFoundError(f"{directory} holds no fd.json: train it with train_fd_classifier")
        meta = json.loads((directory / "fd.json").read_text())
        net = FDNet(tuple(meta["widths"]), int(meta["buckets"]))
        net.load_state_dict(load_file(str(directory / "fd.safetensors")))
        return cls(net, meta)

    @torch.no_grad()
    def embed(self, images: np.ndarray, batch: int = 256) -> np.ndarray:
        """uint8 (N, H, W, 3) RGB -> float64 (N, D) embeddings (eval mode, deterministic)."""
        x = to_unit(images)
        if len(x) == 0:
            return np.zeros((0, self.dim))
        return torch.cat([self.net.embed(x[i : i + batch]) for i in range(0, len(x), batch)]).double().numpy()


def fd_to_held_out(images: np.ndarray, fd_features: FDFeatures, emoji: EmojiSet) -> float:
    """FD between generated uint8 (N, 32, 32, 3) ``images`` and ``emoji``'s held-out glyphs.

    Biased by N (module docstring): pass as many images as there are held-out glyphs (376 at
    32 px) and compare only with FDs at that N.
    """
    held = emoji.split(held_out=True)
    if len(held) < 2:
        raise ValueError("the emoji set has < 2 held-out glyphs")
    return frechet_distance(fd_features.embed(images), fd_features.embed(held.images))


def train_fd_classifier(
    out_dir: str | Path,
    steps: int = 400,
    seed: int = 1,
    *,
    config: FDConfig | None = None,
    emoji: EmojiSet | None = None,
    progress: bool = True,
) -> dict:
    """Train the Fréchet embedding network on ``emoji``'s training split; save it into ``out_dir``
    (``fd.safetensors``, ``fd.json``; replaced atomically). Returns the report saved in ``fd.json``."""
    from safetensors.torch import save  # to bytes: save_file creates 0600 files, write_bytes honours the umask

    from pocketgan.atomic import atomic_directory
    from pocketgan.generation.emoji import load_emoji

    cfg = config or FDConfig()
    training = ClassifierTraining(**{**asdict(cfg.training), "steps": int(steps)})
    emoji = emoji if emoji is not None else load_emoji(32, progress=progress)
    train = emoji.split(held_out=False)
    with torch.random.fork_rng(devices=[]):  # nn.Module's default init reads the global RNG: seed it, restore it
        torch.manual_seed(int(seed))
        net = FDNet(cfg.widths, training.buckets)
    untrained = evaluate_glyph_features(net.eval(), emoji, training, seed)
    timing = train_glyph_features(net, train, training, seed, progress)
    report = {
        "kind": "pocketgan frechet embedding",
        "widths": list(cfg.widths),
        "buckets": training.buckets,
        "seed": int(seed),
        "training": json.loads(json.dumps(asdict(training))),
        "train_seconds": timing["seconds"],
        "final_loss": timing["final_loss"],
        "train_glyphs": len(train),
        "accuracy": evaluate_glyph_features(net, emoji, training, seed),
        "accuracy_untrained": untrained,
        "threads": torch.get_num_threads(),
    }
    with atomic_directory(Path(out_dir)) as staging:
        (staging / "fd.safetensors").write_bytes(save({k: v.contiguous() for k, v in net.state_dict().items()}))
        (staging / "fd.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def fd_sanity(fd_features: FDFeatures, emoji: EmojiSet, seed: int = 0) -> dict:
    """The sanity numbers of an embedding, all at N = #held-out glyphs unless named otherwise.

    ``train_halves``: two disjoint random subsets of the training split; ``train_vs_held_out``:
    a random training subset vs the held-out glyphs (both small, similar: the floor);
    ``train_halves_full``: the two full halves (larger N, smaller bias); ``blur_{r}`` /
    ``noise_{std}``: distorted held-out glyphs vs the clean ones (must grow with the distortion;
    paired samples, so 0 without distortion) and ``..._vs_train`` vs the training subset of
    ``train_vs_held_out`` (a distortion shows where it rises above that floor).
    """
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(int(seed))
    train, held = emoji.split(held_out=False), emoji.split(held_out=True)
    n, start = len(held), time.perf_counter()
    train_emb, held_emb = fd_features.embed(train.images), fd_features.embed(held.images)
    perm = rng.permutation(len(train))
    half = len(train) // 2
    out = {
        "n": n,
        "train_halves": frechet_distance(train_emb[perm[:n]], train_emb[perm[half : half + n]]),
        "train_vs_held_out": frechet_distance(train_emb[perm[:n]], held_emb),
        "train_halves_full": frechet_distance(train_emb[perm[:half]], train_emb[perm[half : 2 * half]]),
        "train_halves_full_n": half,
    }
    distorted = {
        f"blur_{radius}": np.stack(
            [np.asarray(Image.fromarray(im).filter(ImageFilter.GaussianBlur(radius))) for im in held.images]
        )
        for radius in (0.5, 1.0, 2.0)
    }
    for std in (8, 16, 32):
        distorted[f"noise_{std}"] = np.clip(held.images + rng.normal(0, std, held.images.shape), 0, 255).round()
    for name, images in distorted.items():
        emb = fd_features.embed(images.astype(np.uint8))
        out[name] = frechet_distance(emb, held_emb)
        out[f"{name}_vs_train"] = frechet_distance(emb, train_emb[perm[:n]])  # compare with train_vs_held_out
    out = {k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in out.items()}  # 4 significant digits
    out["seconds"] = round(time.perf_counter() - start, 1)
    return out


def main(argv: list[str] | None = None) -> dict:
    """``python -m pocketgan.generation.frechet --out out/generation/features``: train the perceptual
    net (``OUT/perceptual``) and the Fréchet net (``OUT/fd``), then write ``OUT/fd/sanity.json``."""
    import argparse

    from pocketgan.atomic import atomic_write_json
    from pocketgan.generation.emoji import load_emoji
    from pocketgan.generation.features import train_perceptual_features

    parser = argparse.ArgumentParser(prog="python -m pocketgan.generation.frechet", description=main.__doc__)
    parser.add_argument("--out", type=Path, default=Path("out/generation/features"), help="Folder of both nets.")
    parser.add_argument("--perceptual-steps", type=int, default=400, help="Steps of the perceptual net (0: skip).")
    parser.add_argument("--fd-steps", type=int, default=400, help="Steps of the Fréchet net (0: reuse OUT/fd).")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads.")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    emoji, out = load_emoji(32), {}
    if args.perceptual_steps:
        out["perceptual"] = train_perceptual_features(args.out / "perceptual", args.perceptual_steps, 0, emoji=emoji)
    if args.fd_steps:
        out["fd"] = train_fd_classifier(args.out / "fd", args.fd_steps, 1, emoji=emoji)
    out["sanity"] = fd_sanity(FDFeatures.load(args.out / "fd"), emoji)
    atomic_write_json(args.out / "fd" / "sanity.json", out["sanity"])
    print(
        json.dumps(
            {
                k: {n: v[n] for n in ("accuracy", "two_afc", "train_seconds") if n in v}
                for k, v in out.items()
                if k != "sanity"
            },
            indent=1,
        )
    )
    print(json.dumps(out["sanity"], indent=1))
    return out


if __name__ == "__main__":
    main()
