"""How sharp and how faithful a bundle's full-resolution edits are, on large held-out photos.

    python -m pocketgan.full_resolution.quality [--bundle DIR] [--out docs/full-resolution]
    python -m pocketgan.full_resolution.quality --plain       # the untrained stage, for comparison

For every concept and photo, against the resolution-aware teacher applied to the photo at its
own size (:mod:`pocketgan.training.teachers`):

- PSNR / SSIM of the full-resolution path (``edit(resolution="full")``) and of the bicubic
  upscale path (``"upscale"``);
- the same model at its working size against the teacher at that size (the "256 px" column);
- sharpness: variance of the Laplacian of the output over the teacher's;
- how scale-consistent the teacher itself is: the teacher at full size shrunk to the model's
  size, against the teacher at the model's size (an effect whose look changes with the pixel
  count cannot be matched at full size by any model trained at 256 px).

Writes ``results.json``, ``results.md`` and one crop grid per concept to ``--out``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from PIL import Image

from pocketgan.atomic import atomic_write_bytes, atomic_write_json
from pocketgan.full_resolution.photos import HELD_OUT, photo_paths
from pocketgan.runtime import open_bundle
from pocketgan.runtime.imaging import from_model_output, model_crops, to_model_input
from pocketgan.runtime.upsampling import GuidedUpsampling, guided_upsample


def laplacian_variance(rgb: np.ndarray) -> float:
    """Variance of the Laplacian of the luma: the high-frequency energy of a picture."""
    import cv2

    return float(cv2.Laplacian(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


def scores(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(PSNR dB, SSIM) of two (H, W, 3) uint8 images."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    return (
        float(peak_signal_noise_ratio(a, b, data_range=255)),
        float(structural_similarity(a, b, channel_axis=2, data_range=255)),
    )


def _shrink(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS))


def score_photo(runtime, concept: str, photo: np.ndarray, teacher, settings: GuidedUpsampling) -> dict:
    """Every measurement of one concept on one (H, W, 3) uint8 photo (see the module docstring):
    ``full`` uses ``settings``, ``plain`` the untrained stage (the plain guided filter)."""
    x, placement = to_model_input(photo, runtime.input_size)
    y = runtime.run_tensor(x, concept=concept)
    low_photo, low_edit, at_model = model_crops(x, y, placement)
    low_input = np.clip(np.rint(low_photo.transpose(1, 2, 0) * 255), 0, 255).astype(np.uint8)
    t0 = time.perf_counter()
    full = guided_upsample(photo, low_photo, low_edit, settings)
    full_seconds = time.perf_counter() - t0
    plain = guided_upsample(photo, low_photo, low_edit, GuidedUpsampling())
    upscale = from_model_output(y, placement)  # the runtime's own upscale path
    teacher_full, teacher_low = teacher(photo), teacher(low_input)
    lap_teacher = laplacian_variance(teacher_full)
    row = {"photo_size": list(photo.shape[1::-1]), "upsample_seconds": round(full_seconds, 3)}
    for key, (a, b) in {
        "model_size": (at_model, teacher_low),
        "full": (full, teacher_full),
        "plain": (plain, teacher_full),
        "upscale": (upscale, teacher_full),
        "teacher_consistency": (_shrink(teacher_full, teacher_low.shape[1::-1]), teacher_low),
    }.items():
        row[f"{key}_psnr"], row[f"{key}_ssim"] = (round(v, 4) for v in scores(a, b))
    row["lap_teacher"] = round(lap_teacher, 2)
    row["lap_photo"] = round(laplacian_variance(photo), 2)
    row["lap_ratio_full"] = round(laplacian_variance(full) / lap_teacher, 4)
    row["lap_ratio_plain"] = round(laplacian_variance(plain) / lap_teacher, 4)
    row["lap_ratio_upscale"] = round(laplacian_variance(upscale) / lap_teacher, 4)
    return row, {"photo": photo, "upscale": upscale, "full": full, "teacher": teacher_full}


def crop_grid(images: dict[str, np.ndarray], side: int = 384) -> Image.Image:
    """A row of same-place crops (``side`` px, full resolution) from each image, labelled."""
    from PIL import ImageDraw

    h, w = next(iter(images.values())).shape[:2]
    top, left = max(0, (h - side) // 2), max(0, (w - side) // 2)
    grid = Image.new("RGB", (side * len(images), side + 18), "white")
    draw = ImageDraw.Draw(grid)
    for i, (label, rgb) in enumerate(images.items()):
        grid.paste(Image.fromarray(rgb[top : top + side, left : left + side]), (i * side, 18))
        draw.text((i * side + 4, 3), label, fill="black")
    return grid


def _load(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def measure(bundle=None, photos=HELD_OUT, settings: GuidedUpsampling | None = None, grids: Path | None = None):
    """``{concept: {photo name: row}}`` for every concept of ``bundle`` (default: the embedded one)."""
    from pocketgan.training.teachers import PROCEDURAL_TEACHERS

    runtime = open_bundle(bundle)
    results: dict[str, dict[str, dict]] = {}
    loaded = {path.name: _load(path) for path in photo_paths(photos)}
    for concept in runtime.concepts:
        teacher = PROCEDURAL_TEACHERS[runtime.manifest.concept(concept).teacher.split(".")[-1]]
        results[concept] = {}
        for name, photo in loaded.items():
            row, images = score_photo(runtime, concept, photo, teacher, settings or runtime.upsampling[concept])
            results[concept][name] = row
            print(
                f"{concept:>15} {name:>18}: full {row['full_psnr']:.2f} dB, upscale {row['upscale_psnr']:.2f} dB, "
                f"model size {row['model_size_psnr']:.2f} dB, sharpness {row['lap_ratio_full']:.2f}x",
                flush=True,
            )
            if grids is not None and name == next(iter(loaded)):
                buf = _png(crop_grid(images))
                atomic_write_bytes(grids / f"crops-{concept}.png", buf)
    return results


def _png(image: Image.Image) -> bytes:
    import io

    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


METRICS = (
    "model_size_psnr", "full_psnr", "plain_psnr", "upscale_psnr", "full_ssim", "upscale_ssim",
    "lap_ratio_full", "lap_ratio_plain", "lap_ratio_upscale", "teacher_consistency_psnr",
)  # fmt: skip


def summarize(results: dict) -> dict[str, dict[str, float]]:
    """Per concept, the mean of each metric over the photos."""
    return {
        concept: {m: round(float(np.mean([row[m] for row in rows.values()])), 3) for m in METRICS}
        for concept, rows in results.items()
    }


def markdown(summary: dict[str, dict[str, float]], photos, stage: str) -> str:
    lines = [
        f"Held-out photos: {', '.join(photos)}; means over the photos. Full resolution: {stage}; plain: the "
        "untrained stage (guided filter, radius 2, eps 1e-3). PSNR in dB against the resolution-aware teacher "
        "at the photo's size (model size: the model's edit against the teacher at the model's size); "
        "sharpness: Laplacian variance over the teacher's.",
        "",
        "| concept | model size PSNR | full PSNR | plain PSNR | upscale PSNR | full - model size | full SSIM "
        "| upscale SSIM | sharpness full | plain | upscale | teacher consistency |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for concept, m in summary.items():
        lines.append(
            f"| {concept} | {m['model_size_psnr']:.2f} | **{m['full_psnr']:.2f}** | {m['plain_psnr']:.2f} "
            f"| {m['upscale_psnr']:.2f} | {m['full_psnr'] - m['model_size_psnr']:+.2f} | {m['full_ssim']:.3f} "
            f"| {m['upscale_ssim']:.3f} | **{m['lap_ratio_full']:.2f}x** | {m['lap_ratio_plain']:.2f}x "
            f"| {m['lap_ratio_upscale']:.2f}x | {m['teacher_consistency_psnr']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pocketgan.full_resolution.quality", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--bundle", type=Path, help="bundle directory (default: the embedded one)")
    parser.add_argument("--out", type=Path, default=Path("docs/full-resolution"), help="results folder")
    parser.add_argument("--plain", action="store_true", help="measure the plain guided filter, not the bundle's stages")
    parser.add_argument("--radius", type=int, default=GuidedUpsampling.radius, help="--plain: guided filter radius")
    parser.add_argument("--eps", type=float, default=GuidedUpsampling.eps, help="--plain: guided filter regulariser")
    args = parser.parse_args(argv)
    settings = GuidedUpsampling(args.radius, args.eps) if args.plain else None
    stage = (
        f"the plain guided filter (radius {args.radius}, eps {args.eps:g})"
        if args.plain
        else "each concept's learned stage"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    results = measure(args.bundle, HELD_OUT, settings, grids=args.out)
    summary = summarize(results)
    record = {"stage": stage, "settings": asdict(settings) if settings else None, "summary": summary, "photos": results}
    atomic_write_json(args.out / "results.json", record)
    atomic_write_bytes(args.out / "results.md", markdown(summary, HELD_OUT, stage).encode())
    print(markdown(summary, HELD_OUT, stage))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
