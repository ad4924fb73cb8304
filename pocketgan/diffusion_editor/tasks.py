"""The editor's edits, learned self-supervised from real photos.

Each task turns a clean photo into what the editor is given; the clean photo is what it
should give back:

- ``colorize``: the photo's luma, as a gray RGB image. Many colourings are plausible; the
  teacher samples one per seed.
- ``restore``: the photo blurred (Gaussian, sigma 0.4-1.6 px), with Gaussian noise
  (sigma 2-12 of 255) and JPEG-compressed (quality 25-70).

Degradations are seeded, so a (photo, seed) pair gives the same input on every run; the
datasets, the tests and the report use these functions and nothing else.
"""

from __future__ import annotations

import hashlib

import cv2
import numpy as np

INSTRUCTIONS = {"colorize": "colorize the photo", "restore": "restore the photo"}
TASKS = tuple(INSTRUCTIONS)
# distill-data's --input-transform names, per task: the transform applied to each crop
INPUT_TRANSFORMS = {"colorize": "grayscale", "restore": "degrade"}
TRANSFORMS = ("grayscale", "degrade")


def grayscale(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W, 3) uint8 gray RGB (BT.601 luma in all three channels)."""
    gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    return np.repeat(gray[:, :, None], 3, axis=2)


def degrade(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> the same photo blurred, noisy and JPEG-compressed, uint8 RGB."""
    sigma = float(rng.uniform(0.4, 1.6))
    out = cv2.GaussianBlur(np.ascontiguousarray(rgb), (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
    noise = rng.normal(0.0, float(rng.uniform(2.0, 12.0)), out.shape)
    out = np.clip(out.astype(np.float64) + noise, 0, 255).astype(np.uint8)
    quality = int(rng.integers(25, 71))
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(out, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - OpenCV always encodes a uint8 image
        raise RuntimeError("JPEG encoding failed")
    return np.ascontiguousarray(cv2.cvtColor(cv2.imdecode(jpeg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))


def transform_seed(key: str, seed: int) -> int:
    """The degradation seed of a dataset pair: a 64-bit hash of (dataset seed, key)."""
    digest = hashlib.sha256(f"pocketgan.diffusion-editor.degrade:{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def apply_transform(name: str, rgb: np.ndarray, seed: int) -> np.ndarray:
    """Apply input transform ``name`` (``grayscale`` or ``degrade``) to a (H, W, 3) uint8 RGB image."""
    if name == "grayscale":
        return grayscale(rgb)
    if name == "degrade":
        return degrade(rgb, np.random.default_rng(seed))
    raise ValueError(f"unknown input transform {name!r}; choose from {TRANSFORMS}")


def task_input(task: str, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """What the editor is given for ``task`` on the clean photo ``rgb``."""
    if task == "colorize":
        return grayscale(rgb)
    if task == "restore":
        return degrade(rgb, rng)
    raise ValueError(f"unknown task {task!r}; choose from {TASKS}")
