"""Parity gate: every exported artifact is compared with PyTorch on real photos.

One gate serves every target (:class:`ParityGate`): a target runs its artifact on the
gate's photos and hands the outputs over with the PyTorch model they must match; the gate
computes the reference (:func:`torch_outputs`), fails below the threshold
(:func:`check_parity`) and records the scores for the manifest's ``parity`` section.
The threshold comes from ``pocketgan.runtime.targets.parity_threshold_db``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
    from pocketgan.photos import load_rgb

    return [to_model_input(load_rgb(p), size)[0] for p in photos]


def torch_outputs(model, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """The PyTorch reference: ``model`` (a ``torch.nn.Module`` taking one image) on each
    (1, 3, S, S) float32 input in [-1, 1]; (1, 3, S, S) float32 outputs in [-1, 1]."""
    import torch

    with torch.no_grad():
        return [model(torch.from_numpy(x)).numpy() for x in inputs]


def check_parity(name: str, reference: list[np.ndarray], candidate: list[np.ndarray], threshold_db: float) -> float:
    """Lowest PSNR over the photos; raises :class:`ParityError` below ``threshold_db``."""
    worst = min(psnr(r, c) for r, c in zip(reference, candidate, strict=True))
    if worst < threshold_db:
        raise ParityError(
            f"{name}: exported output differs from PyTorch: {worst:.2f} dB PSNR on real photos, "
            f"below the {threshold_db:.1f} dB gate; nothing was written"
        )
    return round(float(worst), 2) if np.isfinite(worst) else 999.0


@dataclass
class ParityGate:
    """The gate of one target's export, and what it recorded.

    Attributes:
        photos: the real photos the artifacts run on (their names go to the manifest).
        inputs: those photos as model inputs, (1, 3, S, S) float32 in [-1, 1] each.
        threshold_db: the lowest acceptable PSNR against PyTorch.
        may_skip: the target's artifacts cannot run everywhere (Core ML off macOS): the
            manifest then also says ``parity_checked`` and, when false, why.
        scores: ``{group: {concept: lowest PSNR}}``, a group per artifact family
            (``separate``, ``merged``, ...), in the order they were checked.
    """

    photos: list[Path]
    inputs: list[np.ndarray]
    threshold_db: float
    may_skip: bool = False
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    not_checked: list[str] = field(default_factory=list)

    def check(self, group: str, concept: str, where: str, model, outputs: list[np.ndarray]) -> float:
        """Compare an artifact's ``outputs`` on :attr:`inputs` with ``model``'s; record the
        score under ``[group][concept]``. Raises :class:`ParityError` (naming ``where``)
        below the threshold."""
        score = check_parity(where, torch_outputs(model, self.inputs), outputs, self.threshold_db)
        self.scores.setdefault(group, {})[concept] = score
        return score

    def skip(self, reason: str) -> None:
        """Some artifacts could not run here (``reason`` goes to ``parity_note``)."""
        if not self.may_skip:
            raise ValueError("this target's parity gate cannot be skipped")
        self.not_checked.append(reason)

    def manifest_fields(self) -> dict:
        """``parity`` (and, for targets that may skip, ``parity_checked``/``parity_note``)."""
        fields: dict = {
            "parity": {
                "metric": "psnr",
                "threshold_db": self.threshold_db,
                "photos": [p.name for p in self.photos],
                "psnr_db": self.scores,
            }
        }
        if self.may_skip:
            fields["parity_checked"] = not self.not_checked
            if self.not_checked:
                fields["parity_note"] = "; ".join(dict.fromkeys(self.not_checked))
        return fields
