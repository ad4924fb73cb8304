"""``pocketgan generate``: a text prompt to an image with a generation bundle (runtime only, no torch
for ``--backend onnx``); and what ``pocketgan export`` / ``info`` do with a generation bundle."""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

from pocketgan.cli.common import progress
from pocketgan.runtime.errors import PocketganError
from pocketgan.runtime.targets import PLATFORM_TARGETS, TARGETS

#: most seeds one ``--seeds`` grid may hold
MAX_GRID_SEEDS = 256


def parse_seeds(text: str) -> list[int]:
    """``"0-7"`` -> 0..7, ``"1,5,9"`` -> [1, 5, 9], ``"0-3,10"`` -> [0, 1, 2, 3, 10]; each seed in
    [0, 2^64), at most :data:`MAX_GRID_SEEDS` of them. Raises ``ValueError`` with the reason."""
    seeds: list[int] = []
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        try:
            lo, hi = int(first), int(last) if dash else int(first)
        except ValueError:
            raise ValueError(f"--seeds {text!r}: write seeds as 0-7 or 1,5,9 (non-negative integers)") from None
        if not 0 <= lo <= hi < 2**64:
            raise ValueError(f"--seeds {text!r}: {part.strip()!r} is not a rising range of seeds in [0, 2^64)")
        if len(seeds) + hi - lo + 1 > MAX_GRID_SEEDS:
            raise ValueError(f"--seeds {text!r}: more than {MAX_GRID_SEEDS} seeds in one grid")
        seeds.extend(range(lo, hi + 1))
    return seeds


def image_grid(images: list, columns: int | None = None):
    """Equal-sized PIL images in rows of ``columns`` (default: a square-ish grid), 2 px white gaps."""
    from PIL import Image

    columns = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    w, h = images[0].size
    gap = 2
    grid = Image.new("RGB", (columns * w + (columns - 1) * gap, rows * h + (rows - 1) * gap), "white")
    for i, image in enumerate(images):
        grid.paste(image, ((i % columns) * (w + gap), (i // columns) * (h + gap)))
    return grid


def cmd_generate(args: argparse.Namespace) -> int:
    from pocketgan._quiet import native_stderr_filtered
    from pocketgan.cli.bundle import _writable_suffix
    from pocketgan.runtime.generation import GenerationRuntime, check_seed

    if args.seed is not None and args.seeds is not None:
        raise PocketganError("give either --seed or --seeds, not both")
    seeds = parse_seeds(args.seeds) if args.seeds is not None else [check_seed(0 if args.seed is None else args.seed)]
    if args.columns is not None and args.columns < 1:
        raise PocketganError(f"--columns must be at least 1, got {args.columns}")
    out = Path(args.out)
    if not _writable_suffix(out.suffix):
        raise PocketganError(f"-o {out}: name an image file ending in .png, .jpg, .webp, ...")
    with native_stderr_filtered():  # ExecuTorch's C++ runtime prints its CPU probing once
        runtime = GenerationRuntime(args.bundle, backend=args.backend, threads=args.threads)
    images = [runtime.generate(args.prompt, seed=seed, size=args.size) for seed in seeds]
    image = images[0] if len(images) == 1 else image_grid(images, args.columns)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out)
    shown = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {args.seeds} ({len(seeds)} images)"
    progress(f"{args.prompt!r} {shown} ({runtime.backend}) -> {out} ({image.size[0]}x{image.size[1]})")
    return 0


def export_generation(args: argparse.Namespace) -> int:
    """``pocketgan export GENERATION_BUNDLE --targets ...``: add exports to a generation bundle
    (in place, or at ``--out``). The editing export's options that mean nothing here are refused."""
    from pocketgan.cli.flags import config_kwargs
    from pocketgan.export.api import ExportConfig
    from pocketgan.export.generation import run_generation_export

    defaults = {f.name: f.default for f in dataclasses.fields(ExportConfig)}
    given = config_kwargs(args, ExportConfig)
    ignored = ("concepts", "image_size", "photos", "calibration_photos", "executorch_layout", "app")
    refused = [name for name in ignored if given.get(name, defaults[name]) != defaults[name]]
    if refused:
        flags = ", ".join("--" + n.replace("_", "-") for n in refused)
        raise ValueError(f"{flags} do(es) not apply to a generation bundle (its exports are one model each)")
    platform, precision = given.get("platform"), given.get("precision")
    if platform is not None and given.get("targets"):
        raise ValueError(f"name either a platform ({platform}) or targets, not both")
    targets = PLATFORM_TARGETS[platform] if platform else tuple(given.get("targets") or ("onnx",))
    if precision not in (None, "fp32", "fp16") or (precision == "fp16" and set(targets) - {"coreml"}):
        raise ValueError(f"--precision {precision}: a generator exports fp32 (Core ML also fp16)")
    if given.get("out") is not None and args.out_dir is not None:
        raise ValueError(f"two output directories: --out {given['out']} and {args.out_dir}")
    out = given.get("out") or args.out_dir
    progress(f"exporting generation bundle {args.bundle} -> {out or 'in place'}: {', '.join(targets)}")
    manifest = run_generation_export(
        args.bundle,
        targets,
        out=out,
        threshold_db=given.get("parity_threshold_db"),
        coreml_precision=given.get("coreml_precision") or precision,
        progress=progress,
    )
    for name, entry in manifest["targets"].items():
        score = entry["parity_psnr_db"]
        parity = f"parity {score:.1f} dB (worst golden case)" if score is not None else entry.get("parity_note", "")
        progress(f"{name}: {entry['precision']}, {parity}")
    progress(f"wrote {out or args.bundle} ({len(manifest['artifacts'])} artifacts)")
    return 0


def info_generation(path: Path, verify: bool, as_json: bool) -> int:
    """``pocketgan info GENERATION_BUNDLE [--verify] [--json]``."""
    import json

    from pocketgan.runtime.generation_manifest import read_generation_manifest, verify_generation_bundle

    if as_json:
        manifest = verify_generation_bundle(path) if verify else read_generation_manifest(path)
        print(json.dumps(manifest.raw, indent=2))
    else:
        print("\n".join(describe_generation(path, verify)))
    return 0


def describe_generation(path: Path, verify: bool) -> list[str]:
    """The lines of ``pocketgan info`` for a generation bundle."""
    from pocketgan.runtime.generation_manifest import read_generation_manifest, verify_generation_bundle

    m = verify_generation_bundle(path) if verify else read_generation_manifest(path)
    raw = m.raw
    arch, gen = raw["architecture"], raw["generator"]
    lines = [
        f"bundle      {path}  (generation)",
        f"format      {raw['format']} v{m.format_version}, kind generation (pocketgan {raw['pocketgan_version']})",
        f"generator   one-step UNet {arch['channels']}: {gen['parameters'] / 1e6:.3f} M params, "
        f"{m.image_size}x{m.image_size} px, timestep {gen['timestep']}",
        f"prompts     {m.tokens} words hashed ({raw['prompts']['hash']}) into {m.buckets} rows of width {m.width}",
        f"io          {', '.join(f'{t.name} {list(t.shape)}' for t in m.inputs)} -> {m.output.name} "
        f"{list(m.output.shape)} [-1, 1]",
        f"golden      {len(m.golden)}: " + ", ".join(f"{g.prompt!r} seed {g.seed}" for g in m.golden),
    ]
    for name, t in m.targets.items():
        score = t["parity_psnr_db"]
        parity = f"worst parity {score:.1f} dB" if score is not None else f"parity not checked ({t.get('parity_note')})"
        lines.append(f"target      {name}: {t['precision']}, {parity}")
    if not m.targets:
        lines.append("target      none: run `pocketgan export BUNDLE --targets onnx` to add one")
    total = sum(a.bytes for a in m.artifacts.values()) / 1024
    lines.append(f"artifacts   {len(m.artifacts)} files, {total:.0f} KiB{', all checksums verified' if verify else ''}")
    return lines


def register(sub) -> None:
    """Add ``generate`` to the CLI's subparsers."""
    s = sub.add_parser(
        "generate",
        help="generate an image from a text prompt with a one-step generation bundle",
        description="Generate an image from a text prompt in one model run (docs/bundle-format.md, "
        '"Generation bundles"). The same prompt and seed give the same image on every backend and platform. '
        "An empty prompt is the unconditional generation.",
    )
    s.add_argument("prompt", help='the text prompt, e.g. "red apple" (lower-cased words; others are ignored)')
    s.add_argument("--out", "-o", required=True, help="the image file to write (.png, .jpg, .webp, ...)")
    s.add_argument("--seed", type=int, help="the noise seed, 0 to 2^64 - 1 (default 0)")
    s.add_argument("--seeds", metavar="0-7|1,5,9", help="several seeds: one image of a grid of them instead")
    s.add_argument("--columns", type=int, help="--seeds: images per grid row (default: a square-ish grid)")
    s.add_argument("--size", type=int, help="upscale each image to SIZE x SIZE with Lanczos (display only)")
    s.add_argument(
        "--bundle", type=Path, help="generation bundle directory (default: pocketgan/default_generation_bundle)"
    )
    s.add_argument(
        "--backend", default="onnx", choices=list(TARGETS), help="runtime backend (default onnx; coreml on macOS only)"
    )
    s.add_argument("--threads", type=int, help="inference threads")
    s.set_defaults(func=cmd_generate)
