"""The exporter skeleton every target follows.

A target (ONNX, ExecuTorch, Core ML; ``pocketgan/export/<name>_target.py``) is a small
class satisfying :class:`Target`. :func:`export_target` runs it the same way for all:

1. validate the concept mode and the precision against the vocabulary
   (``pocketgan.runtime.targets``), then the target's own options (:meth:`Target.check`);
2. ``build``: the target converts the bundle, writes its artifacts into a private work
   directory, runs each one on the parity photos and hands the outputs to the shared
   :class:`~pocketgan.export.parity.ParityGate`, which fails the export below the
   threshold (``parity_threshold_db(precision, requested)``);
3. only after ``build`` returned (every check passed) is ``work/<name>/`` moved into the
   bundle as ``<name>/``; on any error nothing of the target reaches the bundle;
4. the manifest entry: what ``build`` returned followed by the gate's ``parity`` fields.

``save_bundle`` (``pocketgan.bundle``) composes the entries into the manifest.
docs/adding-a-backend.md walks through adding a target.
"""

from __future__ import annotations

import importlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, ClassVar, Protocol

from pocketgan.export.parity import ParityGate, parity_inputs
from pocketgan.runtime.targets import CONCEPT_MODES, RUNNABLE_MODES, TARGET_SPECS, parity_threshold_db

if TYPE_CHECKING:
    from pocketgan.bundle import Bundle
    from pocketgan.export.api import ExportConfig


def precision_label(precision: str) -> str:
    """Prefix of error messages: nothing for fp32 (the messages predate precisions), ``"int8 "`` else."""
    return "" if precision == "fp32" else f"{precision} "


@dataclass
class ExportJob:
    """What a target exports and the gate its artifacts must pass.

    Attributes:
        bundle: the source bundle (base, concepts, rank pattern).
        concept_mode: ``separate``, ``merged`` or ``both``.
        precision: one of the target's ``TargetSpec.precisions``.
        gate: the parity gate (photos, inputs, threshold, recorded scores).
        step: progress callback (one line per step).
        source_base_sha256: sha256 of the base weights the artifacts were exported from.
    """

    bundle: Bundle
    concept_mode: str
    precision: str
    gate: ParityGate
    step: Callable[[str], None]
    source_base_sha256: str

    @property
    def names(self) -> list[str]:
        """The concepts, in bundle order."""
        return self.bundle.concept_names

    @property
    def modes(self) -> tuple[str, ...]:
        """The concept modes to build: ``("separate", "merged")`` for ``both``."""
        return RUNNABLE_MODES[self.concept_mode]

    @property
    def label(self) -> str:
        """:func:`precision_label` of the job's precision."""
        return precision_label(self.precision)

    def entry_head(self, **details) -> dict:
        """The fields every target's manifest entry starts with (``details`` after the precision)."""
        return {
            "precision": self.precision,
            **details,
            "concept_mode": self.concept_mode,
            "source_base_sha256": self.source_base_sha256,
        }


class Target(Protocol):
    """One export backend, as :func:`export_target` runs it."""

    #: the ``TARGET_SPECS`` key, the manifest's ``targets`` key and the bundle folder it writes
    name: ClassVar[str]
    #: its artifacts cannot run on every exporting machine (the gate may record "not checked")
    parity_may_be_skipped: ClassVar[bool]

    @classmethod
    def from_config(cls, config: ExportConfig) -> Target:
        """The target with its options from ``pocketgan export``'s configuration."""
        ...

    def check(self, concept_mode: str, precision: str) -> None:
        """Raise ``ValueError`` for option combinations the target cannot export, and
        :class:`~pocketgan.runtime.errors.PocketganError` if its toolchain is missing."""
        ...

    def build(self, job: ExportJob, work: Path) -> dict:
        """Write the artifacts under ``work/<name>/`` (it exists; scratch files go elsewhere in ``work``),
        pass each through ``job.gate``; return the manifest entry without ``parity``."""
        ...


def load_target(name: str) -> type[Target]:
    """The target class of ``name``: ``TARGET`` in ``pocketgan.export.<name>_target``."""
    if name not in TARGET_SPECS:
        raise ValueError(f"unknown export target {name!r}; available: {list(TARGET_SPECS)}")
    return importlib.import_module(f"pocketgan.export.{name}_target").TARGET


def export_target(
    target: Target,
    bundle: Bundle,
    staging: Path,
    *,
    concept_mode: str,
    photos: list[Path],
    threshold_db: float | None = None,
    precision: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Export ``target`` into a staging bundle (which holds the base weights); return its
    manifest entry (``manifest["targets"][target.name]``).

    Args:
        photos: real photos for the parity gate.
        threshold_db: the caller's gate; ``None``: the precision's default (35 dB float,
            30 dB int8/palettize4; ``pocketgan.runtime.targets.parity_threshold_db``).
        precision: one of ``TARGET_SPECS[target.name].precisions``; ``None``: the first.
    Raises:
        ValueError: a bad concept mode, precision or option, before any work.
        ParityError, PocketganError: from ``build``; nothing was written under ``staging``.
    """
    from pocketgan.bundle import BASE_WEIGHTS
    from pocketgan.runtime.manifest import sha256_file

    spec = TARGET_SPECS[target.name]
    precision = precision or spec.default_precision
    if concept_mode not in CONCEPT_MODES:
        raise ValueError(f"concept_mode must be one of {list(CONCEPT_MODES)}, got {concept_mode!r}")
    if precision not in spec.precisions:
        raise ValueError(f"{spec.title} precision must be one of {list(spec.precisions)}, got {precision!r}")
    target.check(concept_mode, precision)
    staging = Path(staging)
    gate = ParityGate(
        list(photos),
        parity_inputs(photos, bundle.config.image_size),
        parity_threshold_db(precision, threshold_db),
        may_skip=target.parity_may_be_skipped,
    )
    job = ExportJob(
        bundle, concept_mode, precision, gate, progress or (lambda message: None), sha256_file(staging / BASE_WEIGHTS)
    )
    with tempfile.TemporaryDirectory(prefix=f".{target.name}-work-", dir=staging) as tmp:
        work = Path(tmp)
        (work / target.name).mkdir()
        entry = target.build(job, work)
        # Every check passed: only now do the files enter the bundle (a rename, same filesystem).
        dest = staging / target.name
        if dest.exists():
            shutil.rmtree(dest)
        (work / target.name).rename(dest)
    return {**entry, **gate.manifest_fields()}


def gate_mixes(concepts: list[str]) -> list[tuple[str, dict[str, float]]]:
    """The strengths and the blend every exporter checks on a bundle with a neutral concept
    (and the golden vectors record): the first concept at strengths 0 and 0.5, and the first
    two blended 0.6 / 0.4. ``(parity key, weights)`` each."""
    first = concepts[0]
    mixes = [(f"{first}@0", {first: 0.0}), (f"{first}@0.5", {first: 0.5})]
    if len(concepts) > 1:
        second = concepts[1]
        mixes.append((f"{first}=0.6,{second}=0.4", {first: 0.6, second: 0.4}))
    return mixes
