"""Parity gate: every exported artifact is compared with PyTorch on real photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pocketgan.runtime.errors import PocketganError
from pocketgan.runtime.imaging import to_model_input


class ParityError(PocketganError):
    """An exported artifact's output differs from PyTorch by more than the threshold."""


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between two images in [-1, 1] (peak = full range)."""
    mse = float(np.mean(((a.astype(np.float64) - b.astype(np.float64)) / 2.0) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def parity_inputs(photos: list[Path], size: int) -> list[np.ndarray]:
    """The photos letterboxed exactly as the runtime does: (1, 3, S, S) float32 each."""
    from pocketgan.training.photos import load_rgb

    return [to_model_input(load_rgb(p), size)[0] for p in photos]


def check_parity(name: str, reference: list[np.ndarray], candidate: list[np.ndarray], threshold_db: float) -> float:
    """Lowest PSNR over the photos; raises :class:`ParityError` below ``threshold_db``."""
    worst = min(psnr(r, c) for r, c in zip(reference, candidate, strict=True))
    if worst < threshold_db:
        raise ParityError(
            f"{name}: exported output differs from PyTorch: {worst:.2f} dB PSNR on real photos, "
            f"below the {threshold_db:.1f} dB gate; nothing was written"
        )
    return round(float(worst), 2) if np.isfinite(worst) else 999.0
