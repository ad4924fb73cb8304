"""The photos the editor trains on and the ones it is judged on (never trained on).

Training: Debian mate-backgrounds' nature photos minus the held-out ones, and
scikit-image's stereo motorcycle pair. Held out of every training set (teacher and
student): the full-resolution report's held-out photos (Elephants, Garden, LadyBird, Wood)
and the photos shipped in the package (astronaut, chelsea, coffee, rocket).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pocketgan.full_resolution.photos import HELD_OUT, MATE, photo_paths
from pocketgan.photos import _fit, list_images, load_rgb, sample_photo_paths

TRAIN_SIDE = 640  # long side the training photos are shrunk to (the default bundle's scale)


def training_photo_paths(root: Path = MATE) -> list[Path]:
    """The mate-backgrounds nature photos that are not held out."""
    nature = root / "nature"
    if not nature.is_dir():
        raise FileNotFoundError(f"{nature} not found (install Debian's mate-backgrounds: apt install mate-backgrounds)")
    held = {(root / name).resolve() for name in HELD_OUT}
    return [p for p in list_images(nature) if p.resolve() not in held]


def training_photos(max_side: int = TRAIN_SIDE) -> list[np.ndarray]:
    """(H, W, 3) uint8 RGB training photos, long side at most ``max_side``."""
    import skimage.data

    photos = [load_rgb(p, max_side) for p in training_photo_paths()]
    left, right, _ = skimage.data.stereo_motorcycle()
    return photos + [_fit(left, max_side), _fit(right, max_side)]


def held_out_photo_paths() -> list[Path]:
    """Photos no teacher or student saw: the four large mate-backgrounds ones + the package's."""
    return photo_paths(HELD_OUT) + sample_photo_paths()
