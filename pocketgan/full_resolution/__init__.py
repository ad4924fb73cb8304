"""Full-resolution edits: held-out photos at their own size, and how well a bundle's edits match
its resolution-aware teachers there (``python -m pocketgan.full_resolution.quality``).

The upsampling itself is part of the runtime (:mod:`pocketgan.runtime.upsampling`), so apps get
it without torch; docs/full-resolution.md describes the design and the measurements.
"""
