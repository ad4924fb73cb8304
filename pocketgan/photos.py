"""Real photos available offline, and random training crops of them: the parity photos
of every export, the benchmark input, the demo's photos and the training photos.

Sources, all from packages: the photos shipped with pocketgan (held out: used for parity
and evaluation only), scikit-image's ``skimage/data`` photos, Debian's mate-backgrounds
(``/usr/share/backgrounds/mate/nature``), and any folder of JPEG/PNG files.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
MATE_NATURE = Path("/usr/share/backgrounds/mate/nature")


def sample_photo_paths() -> list[Path]:
    """The real photos shipped in the package (held out from training)."""
    root = Path(str(resources.files("pocketgan").joinpath("assets/photos")))
    return sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def list_images(folder: str | Path) -> list[Path]:
    """Every image file (by suffix, see ``IMAGE_SUFFIXES``) under ``folder``, sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"photo folder not found: {folder}")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return paths


def load_rgb(path: str | Path, max_side: int | None = None) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file, shrunk to ``max_side`` if it is larger."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        if max_side and max(im.size) > max_side:
            im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        return np.asarray(im, dtype=np.uint8).copy()


def training_photos(max_side: int = 640) -> list[np.ndarray]:
    """Offline training photos, (H, W, 3) uint8 each: mate-backgrounds (if installed) +
    scikit-image's stereo pair (needs the toolchain's scikit-image)."""
    photos = []
    if MATE_NATURE.is_dir():
        photos += [load_rgb(p, max_side) for p in list_images(MATE_NATURE)]
    import skimage.data

    # the stereo pair is not among the shipped (held-out) photos
    left, right, _ = skimage.data.stereo_motorcycle()
    photos += [_fit(left, max_side), _fit(right, max_side)]
    return photos


def _fit(rgb: np.ndarray, max_side: int) -> np.ndarray:
    im = Image.fromarray(rgb[..., :3])
    im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return np.asarray(im, dtype=np.uint8).copy()


def random_crops(photos: list[np.ndarray], count: int, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``count`` random (size, size, 3) crops with random scale and horizontal flips."""
    crops = []
    for _ in range(count):
        photo = photos[rng.integers(len(photos))]
        h, w = photo.shape[:2]
        side = int(rng.uniform(0.35, 1.0) * min(h, w))
        side = max(side, min(size, h, w))
        top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        crop = Image.fromarray(photo[top : top + side, left : left + side])
        crop = crop.resize((size, size), Image.Resampling.BICUBIC)
        arr = np.asarray(crop, dtype=np.uint8)
        crops.append(arr[:, ::-1].copy() if rng.random() < 0.5 else arr.copy())
    return crops
