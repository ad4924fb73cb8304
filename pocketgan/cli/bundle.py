"""Bundle commands: ``info``, ``costs``, ``export``, ``edit``, ``demo``.

``info`` and ``edit`` run on the runtime alone (no torch); ``export`` builds its flags from
:class:`pocketgan.export.api.ExportConfig` when it runs, because that module imports torch.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from pocketgan.cli.common import defer, need_toolchain, progress
from pocketgan.cli.flags import add_config_flags, config_kwargs
from pocketgan.cli.generate import export_generation, info_generation
from pocketgan.runtime.errors import PocketganError
from pocketgan.runtime.imaging import DEFAULT_MAX_PIXELS
from pocketgan.runtime.targets import TARGETS
from pocketgan.runtime.upsampling import RESOLUTIONS

if TYPE_CHECKING:
    from pocketgan.runtime.manifest_view import Manifest


def cmd_info(args: argparse.Namespace) -> int:
    from pocketgan.runtime.manifest import read_manifest, verify_bundle
    from pocketgan.runtime.session import default_bundle_path

    path = Path(args.bundle) if args.bundle else default_bundle_path()
    if args.bundle and _is_generation(path):
        return info_generation(path, verify=args.verify, as_json=args.json)
    manifest = read_manifest(path)
    if args.verify:
        verify_bundle(path, manifest)
    if args.json:
        print(json.dumps(manifest.raw, indent=2))
        return 0
    print("\n".join(describe(manifest, path, embedded=not args.bundle, verified=args.verify)))
    return 0


def describe(manifest: Manifest, path: Path, embedded: bool, verified: bool) -> list[str]:
    """The lines of ``pocketgan info``."""
    gen, shape = manifest.generator, list(manifest.input.shape)
    lines = [
        f"bundle      {path}{'  (embedded default)' if embedded else ''}",
        f"format      {manifest.raw['format']} v{manifest.format_version} (pocketgan {manifest.pocketgan_version})",
        f"generator   e2gan-{gen.size}: {gen.parameters / 1e6:.3f} M params, "
        f"{gen.macs / 1e9:.2f} GMACs at {shape[2]}x{shape[3]}",
        f"io          {manifest.input.name} {shape} float32 RGB [-1, 1] -> {manifest.output.name}",
    ]
    if manifest.is_app:
        lines.append(f"contents    app bundle: exported targets only (base sha256 {manifest.base_sha256[:12]}…)")
    else:
        kib = manifest.artifacts[manifest.base_weights].bytes / 1024
        lines.append(f"base        {manifest.base_weights} ({kib:.0f} KiB, sha256 {manifest.base_sha256[:12]}…)")
    lines.append(f"concepts    {len(manifest.concepts)}")
    for c in manifest.concepts:
        share = 100 * c.parameters / gen.parameters
        lines.append(f"  {c.name:<16} {c.parameters:>6} params ({share:.2f}% of base)  {c.description}")
    if manifest.neutral is not None:
        score = manifest.neutral.training.get("heldout_psnr_db")
        lines.append(
            f"strength    0-1.5 and blending: neutral concept (rank {max(manifest.neutral.ranks.values())}"
            + (f", gives held-out photos back at {score} dB)" if score is not None else ")")
        )
    for name, target in manifest.targets.items():
        scores = [v for mode in target.parity.psnr_db.values() for v in mode.values()] if target.parity else []
        note = getattr(target, "parity_note", None) or "no scores"  # only Core ML exports carry a note
        parity = f"worst parity {min(scores):.1f} dB" if scores else f"parity not checked ({note})"
        lines.append(f"target      {name}: {target.precision}, concepts {target.concept_mode}, {parity}")
    if not manifest.targets:
        lines.append("target      none (source bundle): run `pocketgan export` to make backend artifacts")
    total = sum(a.bytes for a in manifest.artifacts.values()) / 1024
    lines.append(
        f"artifacts   {len(manifest.artifacts)} files, {total:.0f} KiB{', all checksums verified' if verified else ''}"
    )
    return lines


def cmd_costs(args: argparse.Namespace) -> int:
    need_toolchain("costs")
    from pocketgan.models.cost import cost_table, format_cost_table

    print(format_cost_table(cost_table(args.resolution)))
    return 0


def _export_flags(s: argparse.ArgumentParser) -> None:
    from pocketgan.export.api import ExportConfig

    # help and choices (the vocabulary of pocketgan.runtime.targets) come from the fields' metadata
    renamed = {"platform": "--for", "parity_threshold_db": ("--parity-threshold", "--parity-threshold-db")}
    add_config_flags(
        s,
        ExportConfig,
        skip=("bundle",),
        flags=renamed,
        options={"out": {"default": None, "required": False}, "platform": {"dest": "platform"}},
    )


def _is_generation(path: Path) -> bool:
    """Whether ``path`` holds a generation bundle (``pocketgan.cli.generate`` handles those)."""
    from pocketgan.runtime.generation_manifest import GENERATION_KIND, manifest_kind

    return manifest_kind(path) == GENERATION_KIND


def cmd_export(args: argparse.Namespace) -> int:
    need_toolchain("export")
    if args.bundle is not None and _is_generation(args.bundle):
        return export_generation(args)
    from pocketgan._quiet import coreml_progress, start_executorch_threadpool
    from pocketgan.export import ExportConfig, run_export
    from pocketgan.runtime.manifest_view import as_manifest

    if args.out is None and args.out_dir is None:
        raise ValueError("name the output directory (--out DIR, or BUNDLE OUT)")
    if args.out is not None and args.out_dir is not None:
        raise ValueError(f"two output directories: --out {args.out} and {args.out_dir}")
    out = args.out or args.out_dir
    config = ExportConfig(**(config_kwargs(args, ExportConfig) | {"out": out, "bundle": args.bundle}))
    progress(f"exporting {'the embedded default bundle' if args.bundle is None else args.bundle} -> {out}")
    if "executorch" in config.targets:
        start_executorch_threadpool()
    with coreml_progress(progress) if "coreml" in config.targets else contextlib.nullcontext():
        manifest = as_manifest(run_export(config, progress=progress))
    for name, target in manifest.targets.items():
        psnr_db = target.parity.psnr_db if target.parity else {}
        if not psnr_db:
            progress(f"{name}: parity not checked: {getattr(target, 'parity_note', None) or ''}")
        for mode, scores in psnr_db.items():
            listed = ", ".join(f"{c} {v:.1f} dB" for c, v in scores.items())
            progress(f"{name} {mode} parity vs PyTorch (worst photo): {listed}")
    progress(f"wrote {out} ({len(manifest.artifacts)} artifacts)")
    return 0


def _writable_suffix(suffix: str) -> bool:
    """Whether Pillow writes images with this file suffix (".png", ".jpg", ...)."""
    from PIL import Image

    return Image.registered_extensions().get(suffix.lower()) in Image.SAVE


def edit_outputs(out: Path, images: list[str], concepts: list[str]) -> tuple[bool, Callable[[str, str], Path]]:
    """(whether ``out`` is a folder, where ``edit`` writes an (image, concept) edit).

    ``out`` is a folder when there are several outputs, when it is one already, or when it
    does not exist and has no suffix; otherwise an image file whose suffix names a format
    Pillow writes. Raises PocketganError for a file where a folder is needed, or a suffix
    Pillow cannot write.
    """
    many = len(images) > 1 or len(concepts) > 1
    if many and out.exists() and not out.is_dir():
        raise PocketganError(f"--out {out} is a file, but several outputs need a directory")
    if many or out.is_dir() or (not out.exists() and not out.suffix):
        return True, lambda image, concept: out / f"{Path(image).stem}-{concept}.png"
    if not _writable_suffix(out.suffix):
        raise PocketganError(
            f"--out {out}: {out.suffix!r} is not an image format pocketgan can write; name a "
            f"file ending in .png, .jpg, .webp, ... or a folder"
        )
    return False, lambda image, concept: out


def cmd_edit(args: argparse.Namespace) -> int:
    from pocketgan._quiet import native_stderr_filtered
    from pocketgan.runtime import Runtime
    from pocketgan.runtime.concept_mix import parse_blend
    from pocketgan.runtime.imaging import open_image

    if args.blend is not None and (args.concept != "all" or args.strength is not None):
        raise PocketganError("--blend names its concepts and weights: give it without --concept and --strength")
    with native_stderr_filtered():  # ExecuTorch's C++ runtime prints its CPU probing once
        runtime = Runtime(args.bundle, threads=args.threads, backend=args.backend, max_pixels=args.max_pixels)
    # (output label, how the runtime is set for it)
    if args.blend is not None:
        weights = parse_blend(args.blend)
        jobs = [("+".join(f"{n}{w:g}" for n, w in weights.items()), lambda w=weights: runtime.set_blend(w))]
    else:
        concepts = list(runtime.concepts) if args.concept == "all" else [args.concept]
        strength = 1.0 if args.strength is None else args.strength
        suffix = "" if strength == 1.0 else f"-s{strength:g}"
        jobs = [(c + suffix, lambda c=c: runtime.set_concept(c, strength=strength)) for c in concepts]
    for _, activate in jobs:
        activate()  # every name and strength checked before the first photo is read
    out = Path(args.out)
    folder, target_of = edit_outputs(out, args.images, [label for label, _ in jobs])
    if folder:
        out.mkdir(parents=True, exist_ok=True)
    for image_path in args.images:
        photo = open_image(image_path, max_pixels=args.max_pixels)  # typed errors: unreadable, too large
        for label, activate in jobs:
            activate()
            edited = runtime.edit(photo, resolution=args.resolution)
            target = target_of(image_path, label)
            edited.save(target)
            progress(f"{image_path} --{label}--> {target}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    need_toolchain("demo")
    from pocketgan.demo import run_demo

    run_demo(args.out, args.bundle, threads=args.threads, progress=progress)
    return 0


def register(sub) -> None:
    """Add ``info``, ``costs``, ``export``, ``edit`` and ``demo`` to the CLI's subparsers."""
    s = sub.add_parser("info", help="describe a bundle (default: the embedded one)")
    s.add_argument("bundle", nargs="?", help="bundle directory")
    s.add_argument("--verify", action="store_true", help="check every artifact's sha256")
    s.add_argument("--json", action="store_true", help="print the manifest")
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("costs", help="parameters and MACs of every generator size and the pix2pix peer")
    s.add_argument("--resolution", type=int, default=256, help="square input side (default 256)")
    s.set_defaults(func=cmd_costs)

    s = sub.add_parser("export", help="export a bundle to backend artifacts, parity-checked against PyTorch")
    s.add_argument("bundle", nargs="?", type=Path, help="source bundle (default: the embedded one)")
    s.add_argument("out_dir", nargs="?", type=Path, metavar="OUT", help="output directory (or --out)")
    defer(s, _export_flags)
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("edit", help="edit photos with a concept")
    s.add_argument("images", nargs="+", help="input image files")
    s.add_argument(
        "--out",
        "-o",
        required=True,
        help="where the edits go: an image file (.png, .jpg, .webp, ...: the suffix picks the format) "
        "for one image and one concept; else a folder, made if missing, of <image>-<concept>.png "
        "(a path that does not exist and has no suffix is a folder)",
    )
    s.add_argument("--concept", "-c", default="all", help="concept name, or 'all' (default)")
    s.add_argument(
        "--strength",
        type=float,
        help="concept strength, 0 (the photo back) to 1.5 (default 1: the concept as trained); "
        "outputs are named <image>-<concept>-s<strength>.png. See docs/strength-and-blending.md",
    )
    s.add_argument(
        "--blend",
        metavar="NAME=W,NAME=W",
        help="blend concepts in one pass, e.g. cartoon=0.6,stylize=0.4 (each weight 0 to 1.5, sum at most 1.5)",
    )
    s.add_argument("--bundle", type=Path, help="exported bundle (default: the embedded one)")
    s.add_argument("--threads", type=int, help="inference threads")
    s.add_argument(
        "--backend", default="onnx", choices=list(TARGETS), help="runtime backend (default onnx; coreml on macOS only)"
    )
    s.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help="refuse a photo with more pixels than this, read from its header before decoding "
        f"(default {DEFAULT_MAX_PIXELS:,}; memory grows about 9 bytes a pixel)",
    )
    s.add_argument(
        "--resolution",
        default="full",
        choices=list(RESOLUTIONS),
        help="full (default): the photo's size, with its detail (guided upsampling); upscale: the photo's "
        "size, the model's edit resized bicubically; model: the model's working size (fast previews). "
        "See docs/full-resolution.md",
    )
    s.set_defaults(func=cmd_edit)

    s = sub.add_parser("demo", help="the main job: export, edit the sample photos with every concept, latency table")
    s.add_argument("--out", type=Path, default=Path("demo_out"), help="output directory (default demo_out)")
    s.add_argument("--bundle", type=Path, help="source bundle (default: the embedded one)")
    s.add_argument("--threads", type=int, default=2, help="threads for both PyTorch and ONNX Runtime (default 2)")
    s.set_defaults(func=cmd_demo)
