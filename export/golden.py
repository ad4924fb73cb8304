"""Golden vectors: for every concept, a small input photo and the expected edit.

The web, Android and iOS tests run their own pre-processing, model and post-processing
on ``golden/input.png`` and compare the result with ``golden/<concept>.png`` (PSNR, at
the target's parity threshold). The input is a real photo cut to ``S x H`` (``S`` the
model's input side, ``S/3 < H < S``): letterboxing it needs no resampling, only
reflected borders, so every platform builds the exact same model input, and the
expected output is cropped back without resampling too. The expected output is the fp32
PyTorch model's, through :mod:`pocketgan.runtime.imaging`. PNG (lossless, 8-bit RGB):
a few tens of KiB per concept at ``S = 256``. Format: ``docs/bundle-format.md``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pocketgan.bundle import Bundle
from pocketgan.runtime.imaging import from_model_output, to_model_input

GOLDEN_DIR = "golden"
GOLDEN_INPUT = f"{GOLDEN_DIR}/input.png"
#: :func:`write_golden`'s key for the golden vectors of strengths and a blend (not a concept name)
MIX_GOLDEN_KEY = "_mixes"


def golden_height(size: int) -> int:
    """The strip's height: 3/8 of the side, so each reflected border (5/16) is thinner than it."""
    return max(1, size * 3 // 8)


def golden_photo(photo: Path, size: int) -> np.ndarray:
    """A ``golden_height(size) x size`` RGB strip from the middle of ``photo``."""
    with Image.open(photo) as im:
        im = im.convert("RGB")
        height = golden_height(size)
        scale = size / im.width
        if round(im.height * scale) < height:  # a very wide photo: fit its height instead
            scale = height / im.height
        im = im.resize(
            (max(size, round(im.width * scale)), max(height, round(im.height * scale))), Image.Resampling.LANCZOS
        )
        left, top = (im.width - size) // 2, (im.height - height) // 2
        return np.asarray(im.crop((left, top, left + size, top + height)), dtype=np.uint8).copy()


def _save_png(rgb: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, format="PNG", optimize=True)


def write_golden(bundle: Bundle, staging: Path, photo: Path) -> dict[str, dict[str, str]]:
    """Write ``golden/`` into a staging bundle; return ``{concept: {"input", "output"}}``, and for
    a bundle with a neutral concept also ``MIX_GOLDEN_KEY``: ``[{"weights", "input", "output"}]``
    for the strengths and the blend of :func:`~pocketgan.export.target.gate_mixes`."""
    size = bundle.config.image_size
    rgb = golden_photo(photo, size)
    x, placement = to_model_input(rgb, size)
    assert (placement.inner_height, placement.inner_width) == rgb.shape[:2], "the golden input must not be resampled"
    _save_png(rgb, staging / GOLDEN_INPUT)
    entries = {}
    for name in bundle.concept_names:
        with torch.no_grad():
            y = bundle.model_for(name, "separate")(torch.from_numpy(x)).numpy()
        rel = f"{GOLDEN_DIR}/{name}.png"
        _save_png(from_model_output(y, placement), staging / rel)
        entries[name] = {"input": GOLDEN_INPUT, "output": rel}
    if bundle.neutral is not None:
        from pocketgan.export.target import gate_mixes

        mixes = []
        for i, (_, weights) in enumerate(gate_mixes(bundle.concept_names)):
            with torch.no_grad():
                y = bundle.model_for_mix(weights)(torch.from_numpy(x)).numpy()
            rel = f"{GOLDEN_DIR}/mix-{i}.png"
            _save_png(from_model_output(y, placement), staging / rel)
            mixes.append({"weights": weights, "input": GOLDEN_INPUT, "output": rel})
        entries[MIX_GOLDEN_KEY] = mixes
    return entries
