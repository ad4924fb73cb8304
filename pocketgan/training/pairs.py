"""Paired training data in memory (numpy only, so the CLI can import it without torch)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pocketgan.runtime.errors import PocketganError


class DatasetPathError(PocketganError, ValueError):
    """A dataset index names a file outside the dataset folder (``..``, an absolute path, or a
    symlink that leaves it), or a path that is not a string."""


def resolve_inside(root: Path, rel: object, where: str) -> Path:
    """``root / rel`` with every symlink resolved, refused unless it stays inside ``root``.

    ``rel``: a relative path read from an index file (JSON: anything). ``where`` names the file
    and field it came from, for the error. Raises :class:`DatasetPathError`; does not check that
    the file exists.
    """
    if not isinstance(rel, str) or not rel:
        raise DatasetPathError(f"{where}: {rel!r} is not a relative path")
    base = Path(root).resolve()
    path = (base / rel).resolve()
    if path == base or not path.is_relative_to(base):
        raise DatasetPathError(f"{where}: {rel!r} resolves to {path}, outside the dataset folder {base}")
    return path


@dataclass
class PairSet:
    """Aligned photos and teacher edits: two (N, S, S, 3) uint8 arrays."""

    inputs: np.ndarray
    targets: np.ndarray

    def __post_init__(self) -> None:
        if self.inputs.shape != self.targets.shape or self.inputs.ndim != 4 or self.inputs.dtype != np.uint8:
            raise ValueError(
                f"pairs must be two equal (N, S, S, 3) uint8 arrays, got {self.inputs.shape} / {self.targets.shape}"
            )

    def __len__(self) -> int:
        return len(self.inputs)

    def subset(self, indices) -> "PairSet":
        indices = np.asarray(indices)
        return PairSet(self.inputs[indices], self.targets[indices])
