"""The large photos full-resolution quality is judged on, and the ones its settings are tuned on.

All come from Debian's mate-backgrounds (``apt install mate-backgrounds``). The held-out set is
never used to tune or train the full-resolution stage. (The shipped generator and concepts were
distilled from 256 px crops of the nature photos shrunk to 640 px; ``Elephants`` is in no
training set at all.)
"""

from __future__ import annotations

from pathlib import Path

MATE = Path("/usr/share/backgrounds/mate")

# >= 1.5 Mpx each
HELD_OUT = ("abstract/Elephants.jpg", "nature/Garden.jpg", "nature/LadyBird.jpg", "nature/Wood.jpg")
TUNING = ("nature/Aqua.jpg", "nature/FreshFlower.jpg", "nature/Storm.jpg", "nature/TwoWings.jpg")


def photo_paths(names: tuple[str, ...], root: Path = MATE) -> list[Path]:
    """The photos ``names`` (relative to ``root``); ``FileNotFoundError`` naming the package when absent."""
    paths = [root / name for name in names]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"full-resolution photos not found: {', '.join(missing)} (install Debian's mate-backgrounds: "
            "apt install mate-backgrounds)"
        )
    return paths
