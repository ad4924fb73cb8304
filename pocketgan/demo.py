"""The main job (``pocketgan demo``): export the bundle, edit photos with every concept by
hot-swapping, and write the edits, a contact sheet and a latency table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
from PIL import Image

from pocketgan.bench.measure import median_ms

if TYPE_CHECKING:
    from pocketgan.runtime.manifest_view import Manifest


def run_demo(
    out: Path,
    bundle: Path | None = None,
    *,
    threads: int = 2,
    rounds: int = 10,
    progress: Callable[[str], None] = print,
) -> dict:
    from pocketgan.export import ExportConfig, run_export
    from pocketgan.runtime import Runtime

    out = Path(out)
    exported = out / "bundle"
    progress(f"exporting {'the default bundle' if bundle is None else bundle} to {exported} (ONNX, parity-checked)")
    run_export(
        ExportConfig(out=exported, bundle=bundle, targets=("onnx",), concepts="separate"),
        progress=lambda m: progress(f"  {m}"),
    )
    runtime = Runtime(exported, threads=threads)
    manifest = runtime.manifest
    edits_dir = out / "edits"
    rows = _edit_photos(runtime, edits_dir, progress)
    _contact_sheet(rows, ["photo", *runtime.concepts]).save(out / "contact_sheet.jpg", quality=90)
    _full_resolution_sheet(runtime, rows).save(out / "full_resolution.png")
    written = "edits/*.jpg, contact_sheet.jpg, full_resolution.png"
    if manifest.neutral is not None:
        from pocketgan.training.strength_report import strength_strip

        strength_strip(runtime, rows[0][0], STRIP_STRENGTHS, cell=160).save(out / "strength_strip.jpg", quality=90)
        written += ", strength_strip.jpg"

    progress("measuring latency")
    table, latency_ms = _latency_table(runtime, exported, manifest, threads=threads, rounds=rounds)
    (out / "latency.md").write_text(table + "\n")
    summary = {
        "bundle": str(exported),
        "concepts": list(runtime.concepts),
        "edits": sorted(p.name for p in edits_dir.iterdir()),
        "parity_psnr_db": {mode: dict(scores) for mode, scores in manifest.onnx.parity.psnr_db.items()},
        "latency_ms": latency_ms,
    }
    generated = _generation_grid(out, threads=threads, rounds=rounds, progress=progress)
    if generated is not None:
        summary["generation"] = generated
        written += ", generated_grid.png"
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    progress("\n" + table)
    progress(f"\nwrote {out}/{written}, latency.md, summary.json")
    return summary


GRID_PROMPTS = ("red apple", "grinning face", "red heart", "sun with face", "dog face", "banana")
GRID_SEEDS = range(6)


def _generation_grid(out: Path, *, threads: int, rounds: int, progress: Callable[[str], None]) -> dict | None:
    """The default generation bundle's images: a prompt per row, a seed per column (one pass each)."""
    from pocketgan.runtime.generation import GenerationRuntime, default_generation_bundle_path

    if not (default_generation_bundle_path() / "manifest.json").is_file():
        return None
    progress("generating images with the default generation bundle (one pass each, ONNX)")
    runtime = GenerationRuntime(threads=threads)
    rows = [[runtime.generate_array(p, seed=s) for s in GRID_SEEDS] for p in GRID_PROMPTS]
    tile = rows[0][0].shape[0] * 4
    sheet = Image.new("RGB", (140 + len(GRID_SEEDS) * (tile + 4), len(rows) * (tile + 4)), "white")
    from PIL import ImageDraw

    draw = ImageDraw.Draw(sheet)
    for r, (prompt, row) in enumerate(zip(GRID_PROMPTS, rows)):
        draw.text((6, r * (tile + 4) + tile // 2 - 6), prompt, fill="black")
        for c, image in enumerate(row):
            big = Image.fromarray(image).resize((tile, tile), Image.Resampling.NEAREST)
            sheet.paste(big, (140 + c * (tile + 4), r * (tile + 4)))
    sheet.save(out / "generated_grid.png")
    ms = median_ms(lambda: runtime.generate_array("red apple", seed=0), rounds=rounds)
    return {"prompts": list(GRID_PROMPTS), "seeds": list(GRID_SEEDS), "generate_ms": round(ms, 2)}


def _edit_photos(runtime, edits_dir: Path, progress: Callable[[str], None]) -> list[list[np.ndarray]]:
    """Every shipped sample photo edited with every concept (hot-swapped), saved as
    ``edits_dir/<photo>-<concept>.jpg``; returns the contact sheet's rows: the photo, then
    its edits, each (H, W, 3) uint8."""
    from pocketgan.photos import load_rgb, sample_photo_paths

    edits_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for path in sample_photo_paths():
        rgb = load_rgb(path)
        row = [rgb]
        for concept in runtime.concepts:
            runtime.set_concept(concept)  # hot swap: the base session stays loaded
            edited = runtime.edit(rgb)
            Image.fromarray(edited).save(edits_dir / f"{path.stem}-{concept}.jpg", quality=92)
            row.append(edited)
        rows.append(row)
        progress(f"edited {path.stem} with {len(runtime.concepts)} concepts")
    return rows


def _latency_table(runtime, exported: Path, manifest: Manifest, *, threads: int, rounds: int) -> tuple[str, dict]:
    """PyTorch eager vs ONNX Runtime on the first concept, cold open vs ``set_concept``:
    the markdown table and its medians in milliseconds."""
    import torch

    from pocketgan.bundle import load_bundle
    from pocketgan.runtime import Runtime

    torch.set_num_threads(threads)
    x = np.zeros(manifest.input.shape, np.float32)
    concept = runtime.concepts[0]
    eager = load_bundle(exported).model_for(concept, "separate")
    with torch.no_grad():
        eager_ms = median_ms(lambda: eager(torch.from_numpy(x)), rounds=rounds)
    ort_ms = median_ms(lambda: runtime.run_tensor(x, concept=concept), rounds=rounds)
    open_ms = median_ms(lambda: Runtime(exported, threads=threads), warmup=1, rounds=3)
    names = list(runtime.concepts)
    swap_ms = median_ms(lambda: [runtime.set_concept(n) for n in names], rounds=rounds * 10) / len(names)
    base_bytes = manifest.artifacts[manifest.base_weights].bytes
    adapter_bytes = max(manifest.artifacts[p].bytes for p in manifest.onnx.adapters.values())
    stages = [c.upsampler for c in manifest.concepts if c.upsampler]
    stage_bytes = max((manifest.artifacts[p].bytes for p in stages), default=0)
    size = manifest.input_size
    table = "\n".join(
        [
            f"| measurement ({threads} threads, {size}x{size}, batch 1) | median | ratio |",
            "|---|---:|---:|",
            f"| PyTorch eager, concept {concept!r} (LoRA unmerged) | {eager_ms:.1f} ms | 1.00 |",
            f"| ONNX Runtime, same concept via adapter | {ort_ms:.1f} ms | {ort_ms / eager_ms:.2f}x eager |",
            f"| open bundle cold (ONNX Runtime) | {open_ms:.1f} ms | 1.00 |",
            f"| set_concept | {swap_ms * 1000:.1f} µs | {swap_ms / open_ms:.5f}x open |",
            f"| concept adapter file / base weights | {adapter_bytes / 1024:.1f} KiB / {base_bytes / 1024:.0f} KiB | "
            f"{adapter_bytes / base_bytes:.4f} |",
            f"| concept adapter + full-resolution stage / base weights | "
            f"{(adapter_bytes + stage_bytes) / 1024:.1f} KiB / {base_bytes / 1024:.0f} KiB | "
            f"{(adapter_bytes + stage_bytes) / base_bytes:.4f} |",
        ]
    )
    return table, {"torch_eager": eager_ms, "onnx": ort_ms, "open": open_ms, "set_concept": swap_ms}


def _contact_sheet(rows: list[list[np.ndarray]], labels: list[str], cell: int = 160) -> Image.Image:
    from PIL import ImageDraw

    pad = 18
    sheet = Image.new("RGB", (cell * len(labels), pad + cell * len(rows)), "white")
    draw = ImageDraw.Draw(sheet)
    for j, label in enumerate(labels):
        draw.text((j * cell + 4, 3), label, fill="black")
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            tile = Image.fromarray(img)
            tile.thumbnail((cell, cell))
            sheet.paste(tile, (j * cell + (cell - tile.width) // 2, pad + i * cell + (cell - tile.height) // 2))
    return sheet


#: the demo's strength strip (docs/strength-and-blending.md)
STRIP_STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0)


def _full_resolution_sheet(runtime, rows: list[list[np.ndarray]], side: int = 160) -> Image.Image:
    """For the largest sample photo: a ``side`` px crop at the photo's own resolution of every
    concept's edit, the old bicubic upscale path (top row) against the full-resolution path
    (bottom row), so the difference in detail is visible."""
    from PIL import ImageDraw

    photo = max((row[0] for row in rows), key=lambda rgb: rgb.shape[0] * rgb.shape[1])
    h, w = photo.shape[:2]
    top, left = max(0, h // 2 - side // 2), max(0, w // 2 - side // 2)
    names = list(runtime.concepts)
    pad = 18
    sheet = Image.new("RGB", (90 + side * len(names), pad + 2 * side), "white")
    draw = ImageDraw.Draw(sheet)
    for j, concept in enumerate(names):
        draw.text((90 + j * side + 4, 3), concept, fill="black")
        for i, resolution in enumerate(("upscale", "full")):
            edited = runtime.edit(photo, concept=concept, resolution=resolution)
            sheet.paste(Image.fromarray(edited[top : top + side, left : left + side]), (90 + j * side, pad + i * side))
    for i, label in enumerate(("upscale", "full")):
        draw.text((4, pad + i * side + side // 2), label, fill="black")
    return sheet
