"""``pocketgan serve-demo [BUNDLE]``: serve the web demo, a bundle and onnxruntime-web.

Standard library only (``http.server``), no torch. Three trees, each on its own URL prefix,
and a fourth when a generation bundle is served:

- ``/``: the demo page and its modules (``web_demo/``; installed as ``pocketgan.web_demo``),
  only the page's own file types (no ``node_modules``, no tests, no dot-files);
- ``/bundle/``: ``manifest.json`` and the files it lists in ``artifacts`` (nothing else of
  the bundle directory), after checking every checksum once at start;
- ``/ort/``: onnxruntime-web's ``dist/`` (``npm ci`` in ``web_demo/``, or ``--ort-dist``);
- ``/generation/``: a generation bundle's ``manifest.json`` and its artifacts, for the page's
  Generate tab (``make_server(generation=DIR)``, or ``pocketgan serve-demo GENERATION_BUNDLE``:
  a generation bundle given as the bundle is served here, next to the embedded editing bundle).

Every response carries ``Cross-Origin-Opener-Policy: same-origin`` and
``Cross-Origin-Embedder-Policy: require-corp``: the page is cross-origin isolated, so
onnxruntime-web can run its WebAssembly kernels on several threads.
"""

from __future__ import annotations

import posixpath
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from pocketgan.runtime.errors import BundleError, PocketganError

if TYPE_CHECKING:
    from pocketgan.runtime.generation_manifest import GenerationManifest
    from pocketgan.runtime.manifest_view import Manifest

MIME_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".md": "text/markdown; charset=utf-8",
    ".wasm": "application/wasm",
    ".onnx": "application/octet-stream",
    ".onnx_adapter": "application/octet-stream",
    ".safetensors": "application/octet-stream",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
}
# what the page itself is made of; anything else under web_demo/ is not served
STATIC_SUFFIXES = (".html", ".js", ".css", ".svg", ".ico", ".png")
STATIC_EXCLUDED = ("node_modules", "test", "__pycache__")
ORT_PACKAGE = "onnxruntime-web"


def static_root() -> Path:
    """Where the demo page lives: the installed ``pocketgan.web_demo`` package, else the
    ``web_demo/`` folder of a source checkout."""
    try:
        from importlib import resources

        root = Path(str(resources.files("pocketgan.web_demo")))
        if (root / "index.html").is_file():
            return root
    except ModuleNotFoundError:
        pass
    root = Path(__file__).resolve().parent.parent / "web_demo"
    if not (root / "index.html").is_file():
        raise PocketganError("the web demo's files are not installed (no web_demo/index.html)")
    return root


def ort_dist(static: Path, override: Path | None = None) -> Path:
    """onnxruntime-web's ``dist/`` folder (``--ort-dist``, or ``web_demo/node_modules``)."""
    dist = Path(override) if override else static / "node_modules" / ORT_PACKAGE / "dist"
    if not (dist / "ort.wasm.min.mjs").is_file():
        where = f"--ort-dist {override}" if override else str(dist)
        raise PocketganError(
            f"onnxruntime-web is not installed ({where} has no ort.wasm.min.mjs): run `npm ci` in {static} "
            "(node 18+), or pass --ort-dist DIR with the dist/ folder of the onnxruntime-web npm package"
        )
    return dist


def load_web_bundle(bundle: Path, verify: bool = True) -> Manifest:
    """The bundle's manifest, checked: an ONNX export with concept adapters, every checksum."""
    from pocketgan.runtime.manifest import read_manifest, verify_bundle

    manifest = read_manifest(bundle)
    if manifest.onnx is None or manifest.onnx.model is None:
        raise BundleError(
            f"{bundle} has no separate-mode ONNX export (base graph + adapters), which the web demo runs: "
            f"pocketgan export {bundle} --for web --out web_bundle"
        )
    if verify:
        verify_bundle(bundle, manifest)
    return manifest


def load_web_generation_bundle(bundle: Path, verify: bool = True) -> GenerationManifest:
    """A generation bundle's manifest, checked: an ONNX export, every checksum, the model's io."""
    from pocketgan.runtime.generation_manifest import read_generation_manifest, verify_generation_bundle

    manifest = read_generation_manifest(bundle)
    if "onnx" not in manifest.targets:
        raise BundleError(
            f"generation bundle {bundle} has no ONNX export, which the web demo runs: "
            f"pocketgan export {bundle} --targets onnx"
        )
    if verify:
        verify_generation_bundle(bundle)
    return manifest


class DemoServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address,
        bundle: Path,
        manifest: Manifest,
        static: Path,
        ort: Path,
        quiet: bool = True,
        generation: Path | None = None,
        generation_manifest: GenerationManifest | None = None,
    ):
        self.bundle = Path(bundle).resolve()
        self.manifest = manifest
        self.static = static.resolve()
        self.ort = ort.resolve()
        self.quiet = quiet
        #: the generation bundle served at /generation/ (None: the Generate tab says none is served)
        self.generation = Path(generation).resolve() if generation is not None else None
        self.generation_manifest = generation_manifest
        super().__init__(address, DemoHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else host)
        return f"http://{shown}:{port}/"


def _inside(root: Path, rel: str) -> Path | None:
    """``root/rel`` if it is a file inside ``root`` (no ``..``, no dot-files), else None."""
    parts = [p for p in rel.split("/") if p]
    if not parts or any(p.startswith(".") for p in parts):
        return None
    path = root.joinpath(*parts).resolve()
    if root not in path.parents or not path.is_file():
        return None
    return path


class DemoHandler(BaseHTTPRequestHandler):
    server: DemoServer
    server_version = "pocketgan-demo"

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        if not self.server.quiet:
            super().log_message(format, *args)

    def _resolve(self, path: str) -> Path | None:
        """The file a URL path names, or None; ValueError for a path no file can have (NUL)."""
        path = unquote(path)
        if "\0" in path:
            raise ValueError(f"NUL byte in {path!r}")
        path = posixpath.normpath(path)
        if path in ("/", "/."):
            return self.server.static / "index.html"
        if path.startswith("/bundle/"):
            rel = path[len("/bundle/") :]
            if rel != "manifest.json" and rel not in self.server.manifest.artifacts:
                return None
            return _inside(self.server.bundle, rel)
        if path.startswith("/generation/"):
            if self.server.generation is None:
                return None
            rel = path[len("/generation/") :]
            if rel != "manifest.json" and rel not in self.server.generation_manifest.artifacts:
                return None
            return _inside(self.server.generation, rel)
        if path.startswith("/ort/"):
            rel = path[len("/ort/") :]
            return _inside(self.server.ort, rel) if "/" not in rel else None
        rel = path.lstrip("/")
        if rel.split("/")[0] in STATIC_EXCLUDED or not rel.endswith(STATIC_SUFFIXES):
            return None
        return _inside(self.server.static, rel)

    def _send(self, head_only: bool) -> None:
        try:
            path = self._resolve(urlsplit(self.path).path)
            data = path.read_bytes() if path is not None else None
        except ValueError:  # a NUL byte, or "http://[/x" (urlsplit: not a URL)
            self.send_error(HTTPStatus.BAD_REQUEST, "malformed path")
            return
        except OSError:  # a name the file system refuses (too long, unreadable), or removed since the check
            data = None
        if data is None:
            self.send_error(HTTPStatus.NOT_FOUND, "not part of the demo, the bundle or onnxruntime-web")
            return
        suffix = ".onnx_adapter" if path.name.endswith(".onnx_adapter") else path.suffix.lower()
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", MIME_TYPES.get(suffix, "application/octet-stream"))
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if not head_only:
            self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self._send(head_only=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._send(head_only=True)


def make_server(
    bundle: Path | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    ort: Path | None = None,
    verify: bool = True,
    quiet: bool = True,
    generation: Path | None = None,
) -> DemoServer:
    """A server for the demo (not yet serving: call ``serve_forever``). ``port=0`` picks a free port.
    ``bundle=None`` serves the embedded default bundle. ``generation``: a generation bundle for
    the Generate tab; a generation bundle passed as ``bundle`` is taken as that, with the embedded
    editing bundle (so ``pocketgan serve-demo GENERATION_BUNDLE`` serves both tabs)."""
    if generation is None and bundle is not None:
        from pocketgan.runtime.generation_manifest import GENERATION_KIND, manifest_kind

        if manifest_kind(Path(bundle)) == GENERATION_KIND:
            generation, bundle = bundle, None
    generation_manifest = load_web_generation_bundle(Path(generation), verify=verify) if generation else None
    if bundle is None:
        from pocketgan.runtime.session import default_bundle_path

        bundle = default_bundle_path()
    manifest = load_web_bundle(Path(bundle), verify=verify)
    static = static_root()
    return DemoServer(
        (host, port),
        Path(bundle),
        manifest,
        static,
        ort_dist(static, ort),
        quiet=quiet,
        generation=generation,
        generation_manifest=generation_manifest,
    )


def serve_in_thread(server: DemoServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name="pocketgan-demo", daemon=True)
    thread.start()
    return thread


def main(argv: list[str] | None = None) -> int:
    """``python -m pocketgan.web_demo_server [options]``: ``pocketgan serve-demo [options]``."""
    from pocketgan.cli import command_main

    return command_main("serve-demo", argv)


if __name__ == "__main__":
    sys.exit(main())
