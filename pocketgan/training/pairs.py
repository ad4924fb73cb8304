"""Paired training data in memory (numpy only, so the CLI can import it without torch)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class PairSet:
    """Aligned photos and teacher edits: two (N, S, S, 3) uint8 arrays."""

    inputs: np.ndarray
    targets: np.ndarray

    def __post_init__(self) -> None:
        if self.inputs.shape != self.targets.shape or self.inputs.ndim != 4 or self.inputs.dtype != np.uint8:
            raise ValueError(f"pairs must be two equal (N, S, S, 3) uint8 arrays, got {self.inputs.shape} / {self.targets.shape}")

    def __len__(self) -> int:
        return len(self.inputs)

    def subset(self, indices) -> "PairSet":
        indices = np.asarray(indices)
        return PairSet(self.inputs[indices], self.targets[indices])
