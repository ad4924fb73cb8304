"""``pocketgan serve-demo``: the web demo server (:mod:`pocketgan.web_demo_server`)."""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_serve_demo(args: argparse.Namespace) -> int:
    from pocketgan.runtime.generation import default_generation_bundle_path
    from pocketgan.runtime.generation_manifest import GENERATION_KIND, manifest_kind
    from pocketgan.web_demo_server import make_server

    generation = args.generation
    given_generation = args.bundle is not None and manifest_kind(args.bundle) == GENERATION_KIND
    if generation is None and not given_generation and (default_generation_bundle_path() / "manifest.json").is_file():
        generation = default_generation_bundle_path()
    server = make_server(
        args.bundle, args.host, args.port, ort=args.ort_dist, quiet=not args.verbose, generation=generation
    )
    names = server.manifest.concept_names
    print(f"pocketgan web demo: {server.url}", flush=True)
    print(f"  bundle   {server.bundle} ({len(names)} concepts: {', '.join(names)})", flush=True)
    if server.generation is not None:
        print(f"  generate {server.generation} ({server.url.rstrip('/')}/#generate)", flush=True)
    print(f"  runtime  onnxruntime-web from {server.ort}", flush=True)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"  serving on {args.host}: other machines can reach it", flush=True)
    print("Ctrl-C to stop", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def add_serve_demo_command(sub) -> None:
    """``pocketgan serve-demo``: add the subcommand to the CLI's subparsers."""
    s = sub.add_parser("serve-demo", help="serve the web demo (onnxruntime-web) with a bundle on localhost")
    s.add_argument(
        "bundle",
        nargs="?",
        type=Path,
        help="exported bundle with an ONNX export, e.g. from `pocketgan export --for web` (default: the embedded one)",
    )
    s.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, this machine only)")
    s.add_argument(
        "--ort-dist",
        type=Path,
        help="onnxruntime-web's dist/ folder (default: web_demo/node_modules/onnxruntime-web/dist, from `npm ci`)",
    )
    s.add_argument(
        "--generation",
        type=Path,
        help="generation bundle for the Generate tab (default: the embedded one, when the package ships it)",
    )
    s.add_argument("--verbose", action="store_true", help="log every request")
    s.set_defaults(func=cmd_serve_demo)


def register(sub) -> None:
    add_serve_demo_command(sub)
