"""Held-out quality: PSNR / SSIM of a bundle's concepts against their teachers on real
photos the bundle never saw in training (the shipped sample photos by default).

    pocketgan evaluate BUNDLE [--photos DIR] [--json]
    python -m pocketgan.training.evaluate BUNDLE [--photos DIR] [--json]

Each photo is resized so its longer side is the model's input size; the teacher edits
that image and the concept edits it through the runtime's letterbox path. "identity" is
the unedited photo scored against the teacher: a concept must beat it to have learned
anything.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from pocketgan.bundle import load_bundle
from pocketgan.photos import load_rgb, sample_photo_paths
from pocketgan.runtime.imaging import from_model_output, to_model_input
from pocketgan.training.teachers import PROCEDURAL_TEACHERS


def _scores(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    return (
        float(peak_signal_noise_ratio(a, b, data_range=255)),
        float(structural_similarity(a, b, channel_axis=2, data_range=255)),
    )


class HeldOutSet:
    """Held-out photos at the model's input size, their teacher edits, and a scorer.

    ``score(edit)`` runs ``edit`` (float32 (N, 3, S, S) in [-1, 1] -> same) on the
    letterboxed photos and returns mean PSNR (dB) and SSIM against the teacher.
    """

    def __init__(self, teacher, photos: list[Path] | None = None, size: int = 256):
        self.inputs, self.placements, self.targets = [], [], []
        for p in photos or sample_photo_paths():
            im = Image.fromarray(load_rgb(p))
            im.thumbnail((size, size), Image.Resampling.LANCZOS)
            rgb = np.asarray(im)
            x, placement = to_model_input(rgb, size)
            self.inputs.append(torch.from_numpy(x))
            self.placements.append(placement)
            self.targets.append(teacher(rgb))
        self.batch = torch.cat(self.inputs)

    def score(self, edit) -> dict:
        with torch.no_grad():
            out = edit(self.batch).numpy()
        scores = [
            _scores(from_model_output(out[i : i + 1], pl), t)
            for i, (pl, t) in enumerate(zip(self.placements, self.targets))
        ]
        m = np.mean(scores, axis=0)
        return {"psnr_db": round(float(m[0]), 3), "ssim": round(float(m[1]), 4)}


def evaluate_bundle(bundle_path: Path | None, photos: list[Path] | None = None) -> dict:
    bundle = load_bundle(bundle_path)
    size = bundle.config.image_size
    photos = photos or sample_photo_paths()
    images = []
    for p in photos:
        im = Image.fromarray(load_rgb(p))
        im.thumbnail((size, size), Image.Resampling.LANCZOS)
        images.append(np.asarray(im))
    results = {}
    for concept in bundle.concepts:
        teacher_name = concept.teacher.removeprefix("procedural:opencv.")
        if teacher_name not in PROCEDURAL_TEACHERS:
            continue
        teacher = PROCEDURAL_TEACHERS[teacher_name]
        model = bundle.model_for(concept.name, "separate")
        model_scores, identity_scores = [], []
        for rgb in images:
            target = teacher(rgb)
            x, placement = to_model_input(rgb, size)
            with torch.no_grad():
                out = from_model_output(model(torch.from_numpy(x)).numpy(), placement)
            model_scores.append(_scores(out, target))
            identity_scores.append(_scores(rgb, target))
        m, i = np.mean(model_scores, axis=0), np.mean(identity_scores, axis=0)
        results[concept.name] = {
            "psnr_db": round(float(m[0]), 2),
            "ssim": round(float(m[1]), 4),
            "identity_psnr_db": round(float(i[0]), 2),
            "identity_ssim": round(float(i[1]), 4),
        }
    return {"photos": [p.name for p in photos], "concepts": results}


def format_table(result: dict) -> str:
    lines = [
        "| concept | PSNR vs teacher | SSIM vs teacher | identity PSNR | identity SSIM |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in result["concepts"].items():
        lines.append(
            f"| {name} | {r['psnr_db']:.2f} dB | {r['ssim']:.3f} | "
            f"{r['identity_psnr_db']:.2f} dB | {r['identity_ssim']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m pocketgan.training.evaluate [BUNDLE] [--photos DIR] [--json]``: ``pocketgan evaluate``."""
    from pocketgan.cli import command_main

    return command_main("evaluate", argv)


if __name__ == "__main__":
    raise SystemExit(main())
