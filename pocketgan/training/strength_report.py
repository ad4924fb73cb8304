"""Does strength behave? ``python -m pocketgan.training.strength_report`` measures it.

For every concept of an exported bundle with a neutral concept, on the held-out shipped
photos at full resolution (the runtime's ``edit``):

- **strength 0**: PSNR of the edit against the photo (the neutral's promise, >= 35 dB);
- **intermediate strengths** ``s`` in 0.25 / 0.5 / 0.75: with ``E(s)`` the edit at ``s``,
  - *progress*: ``1 - d(E(s), E(1)) / d(E(0), E(1))`` (``d`` the RMS distance): how far along
    from the photo to the full edit ``E(s)`` is; an intermediate edit moves with ``s``;
  - *detour*: ``(d(E(0), E(s)) + d(E(s), E(1))) / d(E(0), E(1)) - 1``: 0 when ``E(s)`` lies on the
    straight line between the ends, large when it leaves it (artefacts that neither end has);
  - *PSNR vs the cross-fade* ``(1 - s) E(0) + s E(1)``.
- the same for a two-concept blend path (one concept's weight going 1 -> 0 while the other's
  goes 0 -> 1).

Writes ``OUT/results.json``, ``OUT/results.md`` and ``OUT/strip-<photo>.jpg`` (every concept at
0, 0.25, 0.5, 0.75, 1 and 1.5). docs/strength-and-blending.md quotes the numbers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
STRIP = (*STRENGTHS, 1.5)


def rms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def psnr255(a: np.ndarray, b: np.ndarray) -> float:
    e = rms(a, b)
    return 99.0 if e == 0 else float(20 * np.log10(255.0 / e))


def path_metrics(edits: dict[float, np.ndarray]) -> dict:
    """Progress, detour and PSNR vs the cross-fade of each intermediate point of a path
    ``{s: edit}`` whose ends are ``edits[0.0]`` and ``edits[1.0]``."""
    start, end = edits[0.0], edits[1.0]
    span = rms(start, end)
    out = {}
    for s, e in edits.items():
        if s in (0.0, 1.0):
            continue
        fade = np.clip((1 - s) * start.astype(np.float64) + s * end.astype(np.float64), 0, 255)
        out[f"{s:g}"] = {
            "progress": round(1 - rms(e, end) / span, 3) if span else None,
            "detour": round((rms(start, e) + rms(e, end)) / span - 1, 3) if span else None,
            "psnr_vs_crossfade_db": round(psnr255(e, fade), 2),
        }
    return out


def measure(bundle: Path | None, photos: list[Path], blend: tuple[str, str], threads: int = 2) -> dict:
    from pocketgan.photos import load_rgb
    from pocketgan.runtime import Runtime

    rt = Runtime(bundle, threads=threads)
    if rt.manifest.neutral is None:
        raise SystemExit(f"{rt.path} has no neutral concept: no strength to measure")
    label = "embedded default" if bundle is None else Path(bundle).name
    results: dict = {"bundle": label, "photos": [p.name for p in photos], "concepts": {}, "blend": {}}
    rows = {}
    for concept in rt.concepts:
        per_photo = []
        for path in photos:
            photo = load_rgb(path)
            edits = {s: rt.edit(photo, concept=concept, strength=s) for s in STRENGTHS}
            per_photo.append({"identity_psnr_db": round(psnr255(edits[0.0], photo), 2), "path": path_metrics(edits)})
        rows[concept] = per_photo
        results["concepts"][concept] = {
            "identity_psnr_db_min": min(p["identity_psnr_db"] for p in per_photo),
            "path_mean": _mean_paths([p["path"] for p in per_photo]),
        }
    a, b = blend
    per_photo = []
    for path in photos:
        photo = load_rgb(path)
        edits = {s: rt.edit(photo, blend={a: 1 - s, b: s}) for s in STRENGTHS}
        per_photo.append(path_metrics(edits))
    results["blend"] = {"from": a, "to": b, "path_mean": _mean_paths(per_photo)}
    return results


def _mean_paths(paths: list[dict]) -> dict:
    keys = paths[0].keys()
    return {
        k: {m: round(float(np.mean([p[k][m] for p in paths])), 3) for m in paths[0][k] if paths[0][k][m] is not None}
        for k in keys
    }


def strength_strip(runtime, rgb: np.ndarray, strengths=STRIP, cell: int = 192) -> Image.Image:
    """``rgb`` edited by every concept of ``runtime`` at each of ``strengths``: a row per concept."""
    from PIL import ImageDraw

    names = list(runtime.concepts)
    pad, label_w = 18, 110
    sheet = Image.new("RGB", (label_w + cell * len(strengths), pad + cell * len(names)), "white")
    draw = ImageDraw.Draw(sheet)
    for j, s in enumerate(strengths):
        draw.text((label_w + j * cell + 4, 3), f"strength {s:g}", fill="black")
    for i, concept in enumerate(names):
        draw.text((4, pad + i * cell + cell // 2), concept, fill="black")
        for j, s in enumerate(strengths):
            tile = Image.fromarray(runtime.edit(rgb, concept=concept, strength=s))
            tile.thumbnail((cell, cell))
            left, top = label_w + j * cell + (cell - tile.width) // 2, pad + i * cell + (cell - tile.height) // 2
            sheet.paste(tile, (left, top))
    return sheet


def write_markdown(results: dict, path: Path) -> None:
    lines = [
        "# Strength and blending: measured (written by `python -m pocketgan.training.strength_report`)",
        "",
        f"Bundle: {results['bundle']}; held-out photos {', '.join(results['photos'])}, full resolution.",
        "",
        "| concept | strength 0 vs photo (min dB) | progress at 0.25 / 0.5 / 0.75 "
        "| detour at 0.25 / 0.5 / 0.75 | PSNR vs cross-fade at 0.5 (dB) |",
        "|---|---|---|---|---|",
    ]
    for name, r in results["concepts"].items():
        p = r["path_mean"]
        lines.append(
            f"| {name} | {r['identity_psnr_db_min']:.2f} | "
            + " / ".join(f"{p[k]['progress']:.2f}" for k in ("0.25", "0.5", "0.75"))
            + " | "
            + " / ".join(f"{p[k]['detour']:.3f}" for k in ("0.25", "0.5", "0.75"))
            + f" | {p['0.5']['psnr_vs_crossfade_db']:.2f} |"
        )
    b = results["blend"]
    p = b["path_mean"]
    lines += [
        "",
        f"Blend path {b['from']} -> {b['to']} (weights 1 - s / s): progress "
        + " / ".join(f"{p[k]['progress']:.2f}" for k in ("0.25", "0.5", "0.75"))
        + ", detour "
        + " / ".join(f"{p[k]['detour']:.3f}" for k in ("0.25", "0.5", "0.75"))
        + f", PSNR vs cross-fade at 0.5 {p['0.5']['psnr_vs_crossfade_db']:.2f} dB.",
        "",
    ]
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pocketgan.training.strength_report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--bundle", type=Path, help="exported bundle with a neutral concept (default: the embedded one)"
    )
    parser.add_argument("--out", type=Path, default=Path("docs/strength-and-blending"), help="output folder")
    parser.add_argument(
        "--blend", default="cartoon,stylize", help="the two concepts of the blend path (default cartoon,stylize)"
    )
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    from pocketgan.photos import sample_photo_paths

    photos = sample_photo_paths()
    args.out.mkdir(parents=True, exist_ok=True)
    results = measure(args.bundle, photos, tuple(args.blend.split(",")), args.threads)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    write_markdown(results, args.out / "results.md")
    from pocketgan.photos import load_rgb
    from pocketgan.runtime import Runtime

    runtime = Runtime(args.bundle, threads=args.threads)
    for photo in photos[:2]:
        strength_strip(runtime, load_rgb(photo)).save(args.out / f"strip-{photo.stem}.jpg", quality=90)
    print((args.out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
