"""The main job (``pocketgan demo``): export the bundle, edit photos with every concept by
hot-swapping, and write the edits, a contact sheet and a latency table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from pocketgan.latency import time_call


def run_demo(out: Path, bundle: Path | None = None, *, threads: int = 2, rounds: int = 10,
             progress: Callable[[str], None] = print) -> dict:
    import torch

    from pocketgan.bundle import load_bundle
    from pocketgan.export import ExportConfig, run_export
    from pocketgan.runtime import Runtime
    from pocketgan.training.photos import load_rgb, sample_photo_paths

    out = Path(out)
    exported = out / "bundle"
    progress(f"exporting {'the default bundle' if bundle is None else bundle} to {exported} (ONNX, parity-checked)")
    manifest = run_export(ExportConfig(out=exported, bundle=bundle, targets=("onnx",), concepts="separate"),
                          progress=lambda m: progress(f"  {m}"))
    runtime = Runtime(exported, threads=threads)
    photos = {p.stem: load_rgb(p) for p in sample_photo_paths()}
    edits_dir = out / "edits"
    edits_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, rgb in photos.items():
        row = [rgb]
        for concept in runtime.concepts:
            runtime.set_concept(concept)  # hot swap: the base session stays loaded
            edited = runtime.edit(rgb)
            Image.fromarray(edited).save(edits_dir / f"{name}-{concept}.jpg", quality=92)
            row.append(edited)
        rows.append(row)
        progress(f"edited {name} with {len(runtime.concepts)} concepts")
    _contact_sheet(rows, ["photo", *runtime.concepts]).save(out / "contact_sheet.jpg", quality=90)

    progress("measuring latency")
    torch.set_num_threads(threads)
    x = runtime_input = np.zeros(manifest["io"]["input"]["shape"], np.float32)
    concept = runtime.concepts[0]
    eager = load_bundle(exported).model_for(concept, "separate")
    with torch.no_grad():
        t_eager = time_call(lambda: eager(torch.from_numpy(x)), rounds=rounds)
    t_ort = time_call(lambda: runtime.run_tensor(runtime_input, concept=concept), rounds=rounds)
    t_open = time_call(lambda: Runtime(exported, threads=threads), warmup=1, rounds=3)
    names = list(runtime.concepts)
    t_swap = time_call(lambda: [runtime.set_concept(n) for n in names], rounds=rounds * 10)
    swap_ms = t_swap.median_ms / len(names)
    base_bytes = manifest["artifacts"][manifest["base"]["weights"]]["bytes"]
    adapter_bytes = max(manifest["artifacts"][p]["bytes"] for p in manifest["targets"]["onnx"]["adapters"].values())
    size = manifest["io"]["input"]["shape"][-1]
    table = "\n".join([
        f"| measurement ({threads} threads, {size}x{size}, batch 1) | median | ratio |",
        "|---|---:|---:|",
        f"| PyTorch eager, concept {concept!r} (LoRA unmerged) | {t_eager.median_ms:.1f} ms | 1.00 |",
        f"| ONNX Runtime, same concept via adapter | {t_ort.median_ms:.1f} ms | {t_ort.median_ms / t_eager.median_ms:.2f}x eager |",
        f"| open bundle cold (ONNX Runtime) | {t_open.median_ms:.1f} ms | 1.00 |",
        f"| set_concept | {swap_ms * 1000:.1f} µs | {swap_ms / t_open.median_ms:.5f}x open |",
        f"| concept adapter file / base weights | {adapter_bytes / 1024:.1f} KiB / {base_bytes / 1024:.0f} KiB | {adapter_bytes / base_bytes:.4f} |",
    ])
    (out / "latency.md").write_text(table + "\n")
    summary = {
        "bundle": str(exported),
        "concepts": names,
        "edits": sorted(p.name for p in edits_dir.iterdir()),
        "parity_psnr_db": manifest["targets"]["onnx"]["parity"]["psnr_db"],
        "latency_ms": {"torch_eager": t_eager.median_ms, "onnx": t_ort.median_ms, "open": t_open.median_ms,
                       "set_concept": swap_ms},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    progress("\n" + table)
    progress(f"\nwrote {out}/edits/*.jpg, contact_sheet.jpg, latency.md, summary.json")
    return summary


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
