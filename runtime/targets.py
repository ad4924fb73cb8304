"""The export vocabulary, defined once (no torch here).

Every name a target, a precision or a concept mode can take, the titles shown to users,
and the parity gates live in this one table. The exporters (``pocketgan.export``), the
runtime backends, the CLI and the benchmarks all read it; adding a backend means adding
one :class:`TargetSpec` row here (see docs/adding-a-backend.md).
"""

from __future__ import annotations

from dataclasses import dataclass

#: How concepts are stored in an export: base + hot-swapped adapters, one full model per
#: concept, or both.
CONCEPT_MODES: tuple[str, ...] = ("separate", "merged", "both")
#: The concept modes a runtime can open from an export written in a given mode.
RUNNABLE_MODES: dict[str, tuple[str, ...]] = {
    "separate": ("separate",),
    "merged": ("merged",),
    "both": ("separate", "merged"),
}
#: Every precision any target exports; each target takes a subset (TargetSpec.precisions).
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8", "palettize4")
#: `pocketgan export --for PLATFORM`: the targets an app on that platform loads (first =
#: the recommended one). docs/export.md says why each.
PLATFORM_TARGETS: dict[str, tuple[str, ...]] = {
    "ios": ("coreml", "executorch"),  # Core ML (ANE/GPU/CPU); ExecuTorch XNNPACK as the alternative
    "android": ("executorch", "onnx"),  # ExecuTorch .pte for the stock Module; ORT Mobile as the alternative
    "web": ("onnx",),  # onnxruntime-web
}
#: ExecuTorch separate-mode layouts: one .pte with a method per concept, a shared base .ptd, or both.
EXECUTORCH_LAYOUTS: tuple[str, ...] = ("program", "ptd", "both")

#: The parity gate (PSNR in dB against PyTorch on real photos) for float exports ...
FLOAT_PARITY_DB = 35.0
#: ... and for weight-quantized or palettized ones.
COMPRESSED_PARITY_DB = 30.0
COMPRESSED_PRECISIONS: frozenset[str] = frozenset({"int8", "palettize4"})


@dataclass(frozen=True)
class TargetSpec:
    """One export backend.

    Attributes:
        name: the key in ``manifest["targets"]`` and in ``--targets``.
        title: how users see it ("Core ML").
        runtime_title: the runtime library, for benchmark tables ("ONNX Runtime").
        precisions: what ``--precision`` may be for this target; the first is its default.
    """

    name: str
    title: str
    runtime_title: str
    precisions: tuple[str, ...]

    @property
    def default_precision(self) -> str:
        return self.precisions[0]


TARGET_SPECS: dict[str, TargetSpec] = {
    spec.name: spec
    for spec in (
        TargetSpec("onnx", "ONNX", "ONNX Runtime", ("fp32", "int8")),
        TargetSpec("executorch", "ExecuTorch", "ExecuTorch XNNPACK", ("fp32", "int8")),
        TargetSpec("coreml", "Core ML", "Core ML", ("fp16", "fp32", "int8", "palettize4")),
    )
}
#: Target names in their canonical order.
TARGETS: tuple[str, ...] = tuple(TARGET_SPECS)


def target_title(name: str) -> str:
    """ "Core ML" for "coreml"; unknown names come back unchanged."""
    spec = TARGET_SPECS.get(name)
    return spec.title if spec else name


def parity_threshold_db(precision: str, requested: float | None = None) -> float:
    """The PSNR gate for an export at ``precision``.

    ``requested`` (a user's ``--parity-threshold-db``) wins when given; otherwise float
    exports need 35 dB and compressed ones (int8, palettize4) 30 dB.
    """
    if requested is not None:
        return float(requested)
    return COMPRESSED_PARITY_DB if precision in COMPRESSED_PRECISIONS else FLOAT_PARITY_DB
