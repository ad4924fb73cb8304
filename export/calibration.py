"""Calibration photos for int8 exports.

Static int8 quantization (ONNX Runtime QDQ, ExecuTorch PT2E) needs the range of every
activation, observed by running the float model on representative inputs. The inputs
here are real photos, prepared exactly as the runtime prepares a photo (letterboxed to
the model's square size, ``x = pixel / 127.5 - 1``).

Held-out rule: the photos shipped with pocketgan (``sample_photo_paths()``) are the
parity photos every export is checked on, so by default calibration does **not** use
them. The default calibration set is ``pocketgan.photos.training_photos()``
(Debian's mate-backgrounds nature photos when installed + scikit-image's stereo
motorcycle pair), each letterboxed whole, plus seeded random crops of them (random scale
and flips) for more variety. Only when neither source is available does it fall back to
the shipped photos, and then the ``source`` string says so (``parity photos reused``).
A folder of the user's own photos can be passed instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_CROPS = 8
DEFAULT_SEED = 0


@dataclass
class CalibrationSet:
    """Model inputs for calibration and what they came from (for the manifest)."""

    inputs: list[np.ndarray]  # each (1, 3, S, S) float32 in [-1, 1]
    source: str

    def manifest_entry(self) -> dict:
        return {"photos": len(self.inputs), "source": self.source}


def _letterbox(photos: list[np.ndarray], size: int) -> list[np.ndarray]:
    from pocketgan.runtime.imaging import to_model_input

    return [to_model_input(p, size)[0] for p in photos]


def calibration_set(
    size: int,
    folder: str | Path | None = None,
    *,
    crops: int = DEFAULT_CROPS,
    seed: int = DEFAULT_SEED,
    limit: int | None = None,
) -> CalibrationSet:
    """The calibration inputs at ``size`` x ``size``.

    Args:
        folder: a folder of photos to calibrate on (every image in it, letterboxed);
            ``None``: the offline training photos (see the module docstring).
        crops: extra seeded random crops of the default photos (ignored with ``folder``).
        limit: keep at most this many whole photos (the crops come on top), for quick runs.
    """
    from pocketgan.photos import list_images, load_rgb, random_crops, sample_photo_paths

    if folder is not None:
        paths = list_images(folder)[:limit]
        return CalibrationSet(
            _letterbox([load_rgb(p, max_side=4 * size) for p in paths], size),
            f"folder {Path(folder).name} ({len(paths)} photos, letterboxed)",
        )
    try:
        from pocketgan.photos import MATE_NATURE, training_photos

        photos = training_photos(max_side=max(2 * size, 256))
    except (ImportError, FileNotFoundError):
        photos = []
    if photos:
        mate = len(photos) - 2 if MATE_NATURE.is_dir() else 0
        photos = photos[:limit] if limit else photos
        rng = np.random.default_rng(seed)
        extra = random_crops(photos, crops, size, rng) if crops else []
        parts = [f"mate-backgrounds nature ({mate})"] if mate else []
        parts.append("skimage stereo_motorcycle (2)")
        source = (
            f"training_photos: {' + '.join(parts)}, {len(photos)} letterboxed"
            + (f" + {len(extra)} random crops (seed {seed})" if extra else "")
            + "; held out from the parity photos"
        )
        return CalibrationSet(_letterbox(photos, size) + _letterbox(extra, size), source)
    paths = sample_photo_paths()[:limit]
    return CalibrationSet(
        _letterbox([load_rgb(p) for p in paths], size),
        f"shipped sample photos ({len(paths)}); parity photos reused (no training photos found)",
    )
