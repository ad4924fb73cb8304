"""Bundles on the torch side: load base + concepts, save atomically with targets."""

from pocketgan.bundle.source import (
    BASE_WEIGHTS,
    INPUT_NAME,
    OUTPUT_NAME,
    Bundle,
    load_bundle,
    rank_pattern_of,
    save_bundle,
)

__all__ = ["BASE_WEIGHTS", "INPUT_NAME", "OUTPUT_NAME", "Bundle", "load_bundle", "rank_pattern_of", "save_bundle"]
