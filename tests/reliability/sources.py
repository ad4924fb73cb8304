"""The bundles the reliability sections start from, and the small photos they edit."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from pocketgan.runtime import PocketganError, default_bundle_path, open_bundle, verify_bundle

EXPORT_TIMEOUT_S = 900


def executorch_export(work_dir: Path, image_size: int | None = None) -> Path:
    """An ONNX + ExecuTorch export of the default bundle (at ``image_size``, default the
    bundle's), cached in ``work_dir/../et-export[-SIZE]``
    (the sections' work directories are siblings, so one export serves them all).

    The cache is reused while it holds the default bundle's current source files (base,
    concepts, full-resolution stages) and still opens on ExecuTorch and verifies with the
    current runtime; otherwise it is exported again (about 40 s and 2 cores).
    """
    name = "et-export" if image_size is None else f"et-export-{image_size}"
    out = Path(work_dir).resolve().parent / name
    if out.is_dir():
        try:
            verify_bundle(out)
            if _source_files(out) != _source_files(default_bundle_path()):
                raise PocketganError("the default bundle's base, concepts or stages changed since")
            open_bundle(out, backend="executorch", threads=1)
            return out
        except PocketganError as e:
            print(f"re-exporting {out}: the cached export no longer opens ({e})", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    log = out.parent / f"{name}.log"
    cmd = [sys.executable, "-m", "pocketgan", "export", "--targets", "onnx", "executorch", "--out", str(out)]
    if image_size is not None:
        cmd += ["--image-size", str(image_size)]
    print(f"exporting the default bundle for ExecuTorch: {' '.join(cmd[1:])}", flush=True)
    with open(log, "wb") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=EXPORT_TIMEOUT_S).returncode
    if rc != 0:
        raise RuntimeError(f"pocketgan export failed with exit code {rc}; see {log}")
    return out


def _source_files(bundle: Path) -> dict[str, str]:
    """sha256 of the files an export is made from (everything but the targets and goldens)."""
    artifacts = json.loads((Path(bundle) / "manifest.json").read_text())["artifacts"]
    return {rel: a["sha256"] for rel, a in artifacts.items() if rel.split("/")[0] in ("base", "concepts", "upsampler")}


def copy_sources(work_dir: Path) -> dict[str, Path]:
    """Private copies of the ONNX (embedded default) and ExecuTorch bundles, by backend name.

    Fuzz cases hardlink these copies' files, so a write through a link can never reach
    the repository's bundle; :func:`check_sources_intact` proves none happened.
    """
    sources = {"onnx": default_bundle_path(), "executorch": executorch_export(work_dir)}
    copies = {}
    for name, path in sources.items():
        dst = Path(work_dir) / "sources" / name
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(path, dst, symlinks=True)
        copies[name] = dst
    return copies


def check_sources_intact(copies: dict[str, Path]) -> None:
    """Raise if a fuzz case wrote through a hardlink into a source bundle."""
    for path in copies.values():
        verify_bundle(path)


def photos() -> list[np.ndarray]:
    """Small deterministic (H, W, 3) uint8 photos of odd sizes and aspect ratios.

    Smooth gradients with some noise, so every concept changes them visibly; small so the
    letterboxing costs little beside the (fixed 256 x 256) model run.
    """
    rng = np.random.default_rng(17)
    out = []
    for h, w in ((24, 32), (17, 23), (64, 48), (33, 33)):
        y, x = np.mgrid[0:h, 0:w]
        base = np.stack([x * 255 / max(w - 1, 1), y * 255 / max(h - 1, 1), (x + y) * 127 / max(h + w - 2, 1)], -1)
        out.append(np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8))
    return out
