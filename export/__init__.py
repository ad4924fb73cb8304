"""pocketgan.export: turn a bundle into backend artifacts, each parity-checked on real photos.

Importing it does not import torch; :func:`run_export` does. The vocabulary (targets,
precisions, concept modes) lives in ``pocketgan.runtime.targets``.
"""

from pocketgan.export.api import ExportConfig, run_export
from pocketgan.export.parity import ParityError, psnr

__all__ = ["ExportConfig", "ParityError", "psnr", "run_export"]
