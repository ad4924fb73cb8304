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
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    progress("\n" + table)
    progress(f"\nwrote {out}/edits/*.jpg, contact_sheet.jpg, latency.md, summary.json")
    return summary


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
