"""pocketgan.export: turn a bundle into backend artifacts, each parity-checked on real photos."""

from pocketgan.export.api import CONCEPT_MODES, TARGETS, ExportConfig, run_export
from pocketgan.export.parity import ParityError, psnr

__all__ = ["CONCEPT_MODES", "TARGETS", "ExportConfig", "ParityError", "psnr", "run_export"]
