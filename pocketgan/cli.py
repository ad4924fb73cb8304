"""The ``pocketgan`` command line. Each subcommand parses arguments and calls a typed
function (``run_export``, ``run_demo``, ``Runtime``); no logic lives here."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from pocketgan.bench.api import add_bench_command
from pocketgan.runtime.errors import PocketganError
from pocketgan.training.commands import add_training_commands
from pocketgan.training.distill_data import add_distill_data_parser
from pocketgan.training.study import add_study_command
from pocketgan.web_demo_server import add_serve_demo_command

# Choices of `pocketgan export`, spelled out here because pocketgan.export imports torch and
# the runtime commands must not; tests/test_cli.py checks they match pocketgan.export.api.
PRECISIONS = ("fp32", "fp16", "int8", "palettize4")
COREML_PRECISIONS = ("fp32", "fp16", "int8", "palettize4")
EXECUTORCH_LAYOUTS = ("program", "ptd", "both")
PLATFORMS = ("ios", "android", "web")


def _progress(message: str, _start=[time.perf_counter()]) -> None:
    print(f"[{time.perf_counter() - _start[0]:6.1f}s] {message}", file=sys.stderr, flush=True)


def _quiet_toolchain_logs() -> None:
    # torch.onnx logs one warning per missing optional operator library; not actionable.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)


def _need_toolchain(command: str) -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise PocketganError(f"`pocketgan {command}` needs the toolchain: pip install 'pocketgan[toolchain]'") from None
    _quiet_toolchain_logs()


def cmd_info(args: argparse.Namespace) -> int:
    from pocketgan.runtime.manifest import load_manifest, verify_bundle
    from pocketgan.runtime.session import default_bundle_path

    path = Path(args.bundle) if args.bundle else default_bundle_path()
    manifest = load_manifest(path)
    if args.verify:
        verify_bundle(path, manifest)
    if args.json:
        print(json.dumps(manifest, indent=2))
        return 0
    gen = manifest["generator"]
    shape = manifest["io"]["input"]["shape"]
    app = manifest.get("contents", "full") == "app"
    print(f"bundle      {path}{'  (embedded default)' if not args.bundle else ''}")
    print(f"format      {manifest['format']} v{manifest['format_version']} (pocketgan {manifest['pocketgan_version']})")
    print(f"generator   e2gan-{gen['size']}: {gen['parameters'] / 1e6:.3f} M params, "
          f"{gen['macs'] / 1e9:.2f} GMACs at {shape[2]}x{shape[3]}")
    print(f"io          {manifest['io']['input']['name']} {shape} float32 RGB [-1, 1] -> {manifest['io']['output']['name']}")
    if app:
        print(f"contents    app bundle: exported targets only (base sha256 {manifest['base']['sha256'][:12]}…)")
    else:
        base_bytes = manifest["artifacts"][manifest["base"]["weights"]]["bytes"]
        print(f"base        {manifest['base']['weights']} ({base_bytes / 1024:.0f} KiB, sha256 {manifest['base']['sha256'][:12]}…)")
    print(f"concepts    {len(manifest['concepts'])}")
    for c in manifest["concepts"]:
        print(f"  {c['name']:<16} {c['parameters']:>6} params ({100 * c['parameters'] / gen['parameters']:.2f}% of base)  {c['description']}")
    for name, target in manifest["targets"].items():
        scores = [v for mode in target["parity"]["psnr_db"].values() for v in mode.values()]
        parity = f"worst parity {min(scores):.1f} dB" if scores else f"parity not checked ({target.get('parity_note', 'no scores')})"
        print(f"target      {name}: {target['precision']}, concepts {target['concept_mode']}, {parity}")
    if not manifest["targets"]:
        print("target      none (source bundle): run `pocketgan export` to make backend artifacts")
    print(f"artifacts   {len(manifest['artifacts'])} files, "
          f"{sum(a['bytes'] for a in manifest['artifacts'].values()) / 1024:.0f} KiB"
          f"{', all checksums verified' if args.verify else ''}")
    return 0


def cmd_costs(args: argparse.Namespace) -> int:
    _need_toolchain("costs")
    from pocketgan.models.cost import cost_table, format_cost_table

    print(format_cost_table(cost_table(args.resolution)))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    _need_toolchain("export")
    from pocketgan.export import ExportConfig, run_export

    if args.out is None and args.out_dir is None:
        raise ValueError("name the output directory (--out DIR, or BUNDLE OUT)")
    if args.out is not None and args.out_dir is not None:
        raise ValueError(f"two output directories: --out {args.out} and {args.out_dir}")
    args.out = args.out or args.out_dir
    config = ExportConfig(
        out=args.out, bundle=args.bundle, targets=args.targets, platform=args.platform, app=args.app or None,
        concepts=args.concepts,
        image_size=args.image_size, parity_threshold_db=args.parity_threshold, photos=args.photos,
        precision=args.precision, coreml_precision=args.coreml_precision, calibration_photos=args.calibration_photos,
        executorch_layout=args.executorch_layout,
    )
    _progress(f"exporting {'the embedded default bundle' if args.bundle is None else args.bundle} -> {args.out}")
    manifest = run_export(config, progress=_progress)
    for name, target in manifest["targets"].items():
        if not target["parity"]["psnr_db"]:
            _progress(f"{name}: parity not checked: {target.get('parity_note', '')}")
        for mode, scores in target["parity"]["psnr_db"].items():
            listed = ", ".join(f"{c} {v:.1f} dB" for c, v in scores.items())
            _progress(f"{name} {mode} parity vs PyTorch (worst photo): {listed}")
    _progress(f"wrote {args.out} ({len(manifest['artifacts'])} artifacts)")
    return 0


def cmd_edit(args: argparse.Namespace) -> int:
    from PIL import Image

    from pocketgan.runtime import Runtime

    runtime = Runtime(args.bundle, threads=args.threads, backend=args.backend)
    concepts = list(runtime.concepts) if args.concept == "all" else [args.concept]
    out = Path(args.out)
    many = len(args.images) > 1 or len(concepts) > 1
    if many:
        if out.exists() and not out.is_dir():
            raise PocketganError(f"--out {out} is a file, but several outputs need a directory")
        out.mkdir(parents=True, exist_ok=True)
    elif out.is_dir():
        many = True
    for image_path in args.images:
        try:
            photo = Image.open(image_path)
            photo.load()
        except (OSError, ValueError) as e:
            raise PocketganError(f"cannot read image {image_path}: {e}") from None
        for concept in concepts:
            runtime.set_concept(concept)
            edited = runtime.edit(photo)
            target = out / f"{Path(image_path).stem}-{concept}.png" if many else out
            edited.save(target)
            _progress(f"{image_path} --{concept}--> {target}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    _need_toolchain("demo")
    from pocketgan.demo import run_demo

    run_demo(args.out, args.bundle, threads=args.threads, progress=_progress)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pocketgan", description="Distil, export and run tiny image-editing GANs with hot-swappable concepts.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
    s.add_argument("--out", type=Path, help="output bundle directory (replaced atomically)")
    s.add_argument("--for", dest="platform", choices=list(PLATFORMS),
                   help="export what an app on this platform needs, as an app bundle: ios = Core ML + "
                        "ExecuTorch, android = ExecuTorch + ONNX, web = ONNX")
    s.add_argument("--targets", nargs="+", choices=["onnx", "executorch", "coreml"],
                   help="backends (default: onnx, or the --for platform's)")
    s.add_argument("--app", action="store_true",
                   help="write an app bundle: manifest + exported targets, without the source weights (implied by --for)")
    s.add_argument("--precision", choices=list(PRECISIONS),
                   help="fp32 | int8 for every target; fp16 | palettize4 Core ML only "
                        "(default: fp32, Core ML fp16)")
    s.add_argument("--coreml-precision", choices=list(COREML_PRECISIONS),
                   help="Core ML precision, overriding --precision for Core ML alone")
    s.add_argument("--calibration-photos", type=Path,
                   help="int8: folder of calibration photos (default: the offline training photos, never the parity photos)")
    s.add_argument("--executorch-layout", default="program", choices=list(EXECUTORCH_LAYOUTS),
                   help="program: one .pte, a method per concept (default; Android/iOS stock Module); "
                        "ptd: shared base .ptd + a small .pte per concept; both")
    s.add_argument("--concepts", default="separate", choices=["separate", "merged", "both"],
                   help="separate: base + hot-swappable adapters (default); merged: a full model per concept; both")
    s.add_argument("--image-size", type=int, help="square input size (default: the bundle's, 256)")
    s.add_argument("--parity-threshold", type=float, help="minimum PSNR vs PyTorch, dB (default 35; 30 for int8 and palettize4)")
    s.add_argument("--photos", type=Path, help="folder of parity photos (default: the shipped ones)")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("edit", help="edit photos with a concept")
    s.add_argument("images", nargs="+", help="input image files")
    s.add_argument("--out", "-o", required=True, help="output file (one image, one concept) or directory")
    s.add_argument("--concept", "-c", default="all", help="concept name, or 'all' (default)")
    s.add_argument("--bundle", type=Path, help="exported bundle (default: the embedded one)")
    s.add_argument("--threads", type=int, help="inference threads")
    s.add_argument("--backend", default="onnx", choices=["onnx", "executorch", "coreml"], help="runtime backend (default onnx; coreml on macOS only)")
    s.set_defaults(func=cmd_edit)

    s = sub.add_parser("demo", help="the main job: export, edit the sample photos with every concept, latency table")
    s.add_argument("--out", type=Path, default=Path("demo_out"), help="output directory (default demo_out)")
    s.add_argument("--bundle", type=Path, help="source bundle (default: the embedded one)")
    s.add_argument("--threads", type=int, default=2, help="threads for both PyTorch and ONNX Runtime (default 2)")
    s.set_defaults(func=cmd_demo)

    add_distill_data_parser(sub)
    add_training_commands(sub)
    add_study_command(sub)
    add_serve_demo_command(sub)
    add_bench_command(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (PocketganError, ValueError, OSError) as e:
        print(f"pocketgan {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pocketgan {args.command}: interrupted; nothing half-written was left in place", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
