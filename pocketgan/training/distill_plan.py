"""What ``distill-data`` makes: the deterministic list of pairs (photo, crop, teacher seed)
and the crops themselves, the same on every run and every rank."""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from pocketgan.photos import list_images

if TYPE_CHECKING:
    from pocketgan.training.distill_data import DistillDataConfig


@dataclass(frozen=True)
class WorkItem:
    """One pair to make: crop ``crop`` of ``photo``, edited with teacher seed ``seed``."""

    index: int  # position in the full, deterministic work list; rank = index % world_size
    key: str  # unique, filesystem-safe: "<photo stem>-<8 hex of the photo's relative path>-<crop>"
    photo: Path
    photo_rel: str  # the photo's path relative to the photos folder (posix)
    crop: int
    seed: int  # the teacher's seed for this pair, 0 <= seed < 2**32


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def item_seed(seed: int, key: str) -> int:
    """The teacher seed of a pair: a 32-bit hash of (dataset seed, key)."""
    return int.from_bytes(_digest(f"pocketgan.distill-data.teacher:{seed}:{key}")[:4], "big")


def photo_key(photo_rel: str) -> str:
    """A filesystem-safe key of a photo: its stem and 8 hex digits of its relative path."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(photo_rel).stem).strip("_")[:60] or "photo"
    return f"{stem}-{_digest(photo_rel).hex()[:8]}"


def plan_items(config: DistillDataConfig) -> list[WorkItem]:
    """Every pair of the dataset, in a deterministic order (sorted photos, then crops)."""
    root = config.photos
    out = config.out.resolve()
    paths = [p for p in list_images(root) if not p.resolve().is_relative_to(out)]  # never distil our own outputs
    if not paths:
        raise FileNotFoundError(f"no photos in {root} (outside {out})")
    paths = paths[: config.limit] if config.limit else paths
    items = []
    for path in paths:
        rel = path.relative_to(root).as_posix()
        base = photo_key(rel)
        for crop in range(config.crops_per_photo):
            key = f"{base}-{crop:03d}"
            items.append(WorkItem(len(items), key, path, rel, crop, item_seed(config.seed, key)))
    return items


def crop_photo(photo: np.ndarray, size: int, crop: int, seed: int, key: str) -> np.ndarray:
    """(H, W, 3) uint8 photo -> (size, size, 3) uint8 crop.

    Crop 0: the centre square, resized. Crops >= 1: a random square of 35-100% of the short
    side, resized, flipped horizontally half the time; the randomness is seeded by
    (seed, key), so the same crop comes out on every run and every rank.
    """
    h, w = photo.shape[:2]
    if crop == 0:
        side = min(h, w)
        top, left, flip = (h - side) // 2, (w - side) // 2, False
    else:
        rng = np.random.default_rng(int.from_bytes(_digest(f"pocketgan.distill-data.crop:{seed}:{key}")[:8], "big"))
        side = max(int(rng.uniform(0.35, 1.0) * min(h, w)), min(size, h, w))
        top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        flip = bool(rng.random() < 0.5)
    im = Image.fromarray(np.ascontiguousarray(photo[top : top + side, left : left + side]))
    if im.size != (size, size):
        im = im.resize((size, size), Image.Resampling.BICUBIC)
    arr = np.asarray(im, dtype=np.uint8)
    return np.ascontiguousarray(arr[:, ::-1] if flip else arr)


def encode_png(rgb: np.ndarray) -> bytes:
    """(H, W, 3) uint8 RGB -> PNG file bytes."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()
