"""A typed, read-only view of manifest.json (no torch here).

:meth:`Manifest.from_dict` validates a parsed manifest (JSON Schema, then what it means:
:mod:`pocketgan.runtime.manifest_checks`) and builds frozen dataclasses from it, the way
the Kotlin and Swift apps decode the same file into typed classes. Mappings are read-only
(:class:`types.MappingProxyType`), sequences are tuples. ``Manifest.raw`` keeps the
validated dict (what ``pocketgan info --json`` prints); treat it as read-only, or take a
copy with :meth:`Manifest.to_dict`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

from pocketgan.runtime.targets import RUNNABLE_MODES


def freeze(value: Any) -> Any:
    """Dicts -> read-only mappings, lists -> tuples, recursively (free-form JSON fields)."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def _ro(mapping: Mapping | None) -> Mapping:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class TensorSpec:
    """``io.input`` / ``io.output``: float32 NCHW RGB, ``shape`` (1, 3, S, S), ``range`` (-1.0, 1.0)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    layout: str = "NCHW"
    color: str = "RGB"
    range: tuple[float, float] = (-1.0, 1.0)

    @classmethod
    def from_dict(cls, d: Mapping) -> TensorSpec:
        return cls(
            d["name"],
            d["dtype"],
            tuple(d["shape"]),
            d.get("layout", "NCHW"),
            d.get("color", "RGB"),
            tuple(float(v) for v in d.get("range", (-1.0, 1.0))),
        )


@dataclass(frozen=True)
class Artifact:
    """One listed file: bundle-relative ``path``, ``sha256`` (hex) and size in ``bytes``."""

    path: str
    sha256: str
    bytes: int

    @classmethod
    def from_entry(cls, path: str, entry: Mapping) -> Artifact:
        """From ``artifacts[path]`` = ``{"sha256": ..., "bytes": ...}``."""
        return cls(path, entry["sha256"], entry["bytes"])


@dataclass(frozen=True)
class GeneratorInfo:
    family: str
    size: str
    config: Mapping[str, Any]
    parameters: int
    macs: int

    @classmethod
    def from_dict(cls, d: Mapping) -> GeneratorInfo:
        return cls(
            d.get("family", ""),
            d.get("size", ""),
            freeze(d.get("config", {})),
            d.get("parameters", 0),
            d.get("macs", 0),
        )


@dataclass(frozen=True)
class ConceptFiles:
    """A source concept's PEFT adapter + embedding paths (absent in an app bundle)."""

    adapter_weights: str
    adapter_config: str
    embedding: str


@dataclass(frozen=True)
class Golden:
    """Golden vectors: the shared input PNG and this concept's expected edit of it."""

    input: str
    output: str


@dataclass(frozen=True)
class UpsamplerInfo:
    """The manifest's ``upsampler``: the full-resolution stage every concept's weights follow."""

    kind: str
    radius: int
    hidden: int


@dataclass(frozen=True)
class ConceptEntry:
    name: str
    description: str
    teacher: str
    ranks: Mapping[str, int]
    parameters: int
    files: ConceptFiles | None = None
    golden: Golden | None = None
    training: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    #: the concept's full-resolution stage weights (None: a bundle made before it)
    upsampler: str | None = None

    @classmethod
    def from_dict(cls, d: Mapping) -> ConceptEntry:
        return cls(
            d["name"],
            d.get("description", ""),
            d.get("teacher", ""),
            _ro(d.get("ranks")),
            d.get("parameters", 0),
            ConceptFiles(**d["files"]) if "files" in d else None,
            Golden(**d["golden"]) if "golden" in d else None,
            freeze(d.get("training", {})),
            d.get("upsampler"),
        )


@dataclass(frozen=True)
class Parity:
    """Measured parity: lowest PSNR (dB) per concept mode and concept, and the gate."""

    metric: str
    threshold_db: float
    photos: tuple[str, ...]
    psnr_db: Mapping[str, Mapping[str, float]]

    @classmethod
    def from_dict(cls, d: Mapping | None) -> Parity | None:
        if d is None:
            return None
        return cls(d["metric"], float(d["threshold_db"]), tuple(d["photos"]), freeze(d["psnr_db"]))


@dataclass(frozen=True)
class Calibration:
    photos: int
    source: str
    method: str | None = None

    @classmethod
    def from_dict(cls, d: Mapping | None) -> Calibration | None:
        return None if d is None else cls(d["photos"], d["source"], d.get("method"))


@dataclass(frozen=True)
class _TargetBase:
    name: ClassVar[str]
    precision: str
    concept_mode: str
    source_base_sha256: str
    parity: Parity | None
    calibration: Calibration | None

    @property
    def runnable_modes(self) -> tuple[str, ...]:
        """The concept modes a runtime can open this export in (first = the default)."""
        return RUNNABLE_MODES[self.concept_mode]

    @staticmethod
    def _common(d: Mapping) -> dict:
        return {
            "precision": d["precision"],
            "concept_mode": d["concept_mode"],
            "source_base_sha256": d.get("source_base_sha256", ""),
            "parity": Parity.from_dict(d.get("parity")),
            "calibration": Calibration.from_dict(d.get("calibration")),
        }


@dataclass(frozen=True)
class OnnxTarget(_TargetBase):
    """``targets.onnx``. Separate mode: ``model`` + one ``.onnx_adapter`` per concept holding
    exactly ``concept_inputs`` (name -> shape) in ``concept_input_dtype``; merged: ``merged``."""

    name: ClassVar[str] = "onnx"
    opset: int = 0
    model: str | None = None
    concept_inputs: Mapping[str, tuple[int, ...]] = field(default_factory=lambda: MappingProxyType({}))
    concept_input_dtype: str = "float32"
    adapters: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    merged: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    #: the neutral concept's adapter (strength and blending); None: a bundle without them
    neutral: str | None = None

    @classmethod
    def from_dict(cls, d: Mapping) -> OnnxTarget:
        return cls(
            **cls._common(d),
            opset=d.get("opset", 0),
            model=d.get("model"),
            concept_inputs=MappingProxyType({k: tuple(v) for k, v in d.get("concept_inputs", {}).items()}),
            concept_input_dtype=d.get("concept_input_dtype", "float32"),
            adapters=_ro(d.get("adapters")),
            merged=_ro(d.get("merged")),
            neutral=d.get("neutral"),
        )


@dataclass(frozen=True)
class ExternalData:
    """ExecuTorch shared-weights layout: base ``data`` (.ptd), ``method``, ``programs`` per concept."""

    data: str
    method: str
    programs: Mapping[str, str]


@dataclass(frozen=True)
class ExecuTorchTarget(_TargetBase):
    name: ClassVar[str] = "executorch"
    program: str | None = None
    merged_program: str | None = None
    methods: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    external_data: ExternalData | None = None
    delegation: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    #: the separate program's mix method (strength and blending) and the concept of each
    #: weight, in order; None: no strength or blending in this export
    mix_method: str | None = None
    mix_concepts: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, d: Mapping) -> ExecuTorchTarget:
        ext = d.get("external_data")
        mix = d.get("mix") or {}
        return cls(
            **cls._common(d),
            program=d.get("program"),
            merged_program=d.get("merged_program"),
            methods=_ro(d.get("methods")),
            external_data=ExternalData(ext["data"], ext["method"], _ro(ext["programs"])) if ext else None,
            delegation=freeze(d.get("delegation", {})),
            mix_method=mix.get("method"),
            mix_concepts=tuple(mix.get("concepts", ())),
        )


@dataclass(frozen=True)
class CoreMLTarget(_TargetBase):
    """``targets.coreml``: multifunction packages (function per concept) and the iOS 17
    fallback ``ios17_packages`` (one merged package per concept)."""

    name: ClassVar[str] = "coreml"
    compute_precision: str = "float16"
    minimum_deployment_target: str = "iOS18"
    package: str | None = None
    merged_package: str | None = None
    functions: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    default_function: str = ""
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    ios17_packages: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    parity_checked: bool = False
    parity_note: str | None = None
    details: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    #: the separate package's mix function (strength and blending) and the concept of each weight
    mix_function: str | None = None
    mix_weights_input: str = "concept_weights"
    mix_concepts: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, d: Mapping) -> CoreMLTarget:
        def specs(key: str) -> tuple[TensorSpec, ...]:
            return tuple(TensorSpec(t["name"], t["dtype"], tuple(t["shape"])) for t in d.get(key, ()))

        known = {"converter", "weight_compression", "sizes", "ios17"}
        return cls(
            **cls._common(d),
            compute_precision=d.get("compute_precision", "float16"),
            minimum_deployment_target=d.get("minimum_deployment_target", "iOS18"),
            package=d.get("package"),
            merged_package=d.get("merged_package"),
            functions=_ro(d.get("functions")),
            default_function=d.get("default_function", ""),
            inputs=specs("inputs"),
            outputs=specs("outputs"),
            ios17_packages=_ro(d.get("ios17", {}).get("packages")),
            parity_checked=bool(d.get("parity_checked", False)),
            parity_note=d.get("parity_note"),
            details=freeze({k: v for k, v in d.items() if k in known}),
            mix_function=(d.get("mix") or {}).get("function"),
            mix_weights_input=(d.get("mix") or {}).get("weights_input", "concept_weights"),
            mix_concepts=tuple((d.get("mix") or {}).get("concepts", ())),
        )


Target = OnnxTarget | ExecuTorchTarget | CoreMLTarget
TARGET_TYPES: dict[str, type] = {t.name: t for t in (OnnxTarget, ExecuTorchTarget, CoreMLTarget)}


@dataclass(frozen=True, eq=False)
class Manifest:
    """A bundle's manifest.json, validated. Build it with :meth:`from_dict` or
    :func:`pocketgan.runtime.manifest.read_manifest`."""

    format_version: int
    pocketgan_version: str
    generator: GeneratorInfo | None
    input: TensorSpec
    output: TensorSpec
    contents: str
    base_weights: str | None
    base_sha256: str
    rank_pattern: Mapping[str, int]
    concepts: tuple[ConceptEntry, ...]
    targets: Mapping[str, Target]
    artifacts: Mapping[str, Artifact]
    raw: dict = field(repr=False)
    #: the full-resolution stage's settings (None: a bundle made before it)
    upsampler: UpsamplerInfo | None = None
    #: the neutral concept of strength and blending (None: a bundle without them)
    neutral: ConceptEntry | None = None
    #: golden vectors of strengths and a blend: ``(weights, Golden)`` each
    golden_mixes: tuple[tuple[Mapping[str, float], Golden], ...] = ()
    #: per layer, the rank of the separate graph's second LoRA (strength and blending); {} without a neutral
    mix_ranks: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    #: per concept, the mix weights of strengths 0, 0.1, ..., 1 (``concept_mix.strength_weight``)
    strength_curves: Mapping[str, tuple[float, ...]] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def from_dict(cls, data: Any, *, validate: bool = True) -> Manifest:
        """Validate ``data`` (a parsed manifest.json) and build the view.

        ``validate=False`` builds from a dict the caller made itself and trusts (an
        exporter's own entry, a test's partial manifest); sections it lacks get empty
        defaults. A manifest read from a bundle is always validated.
        """
        if validate:
            from pocketgan.runtime.manifest import validate_manifest

            data = validate_manifest(data)
        raw = copy.deepcopy(dict(data))
        io = raw.get("io", {})
        gen = raw.get("generator")
        base = raw.get("base", {})
        return cls(
            format_version=raw.get("format_version", 1),
            pocketgan_version=raw.get("pocketgan_version", ""),
            generator=GeneratorInfo.from_dict(gen) if gen else None,
            input=TensorSpec.from_dict(io["input"]),
            output=TensorSpec.from_dict(io["output"]),
            contents=raw.get("contents", "full"),
            base_weights=base.get("weights"),
            base_sha256=base.get("sha256", ""),
            rank_pattern=_ro(raw.get("rank_pattern")),
            concepts=tuple(ConceptEntry.from_dict(c) for c in raw.get("concepts", ())),
            targets=MappingProxyType(
                {k: TARGET_TYPES[k].from_dict(v) for k, v in raw.get("targets", {}).items() if k in TARGET_TYPES}
            ),
            artifacts=MappingProxyType({p: Artifact.from_entry(p, a) for p, a in raw.get("artifacts", {}).items()}),
            raw=raw,
            upsampler=UpsamplerInfo(**raw["upsampler"]) if "upsampler" in raw else None,
            neutral=ConceptEntry.from_dict(raw["neutral"]) if "neutral" in raw else None,
            mix_ranks=_ro(raw.get("neutral", {}).get("mix_ranks")),
            strength_curves=MappingProxyType(
                {k: tuple(v) for k, v in raw.get("neutral", {}).get("strength_curves", {}).items()}
            ),
            golden_mixes=tuple(
                (_ro(g["weights"]), Golden(g["input"], g["output"]))
                for g in raw.get("neutral", {}).get("golden_mixes", ())
            ),
        )

    def to_dict(self) -> dict:
        """A deep copy of the validated manifest dict (safe to modify)."""
        return copy.deepcopy(self.raw)

    @property
    def concept_names(self) -> tuple[str, ...]:
        """Concept names in manifest (display) order."""
        return tuple(c.name for c in self.concepts)

    @property
    def input_size(self) -> int:
        """The model's square side S (``io.input.shape`` is (1, 3, S, S))."""
        return self.input.shape[2]

    @property
    def is_app(self) -> bool:
        """An app bundle: exported targets only, no source weights."""
        return self.contents == "app"

    def concept(self, name: str) -> ConceptEntry:
        """The concept called ``name``; KeyError when there is none."""
        for c in self.concepts:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def onnx(self) -> OnnxTarget | None:
        return self.targets.get("onnx")

    @property
    def executorch(self) -> ExecuTorchTarget | None:
        return self.targets.get("executorch")

    @property
    def coreml(self) -> CoreMLTarget | None:
        return self.targets.get("coreml")


def as_manifest(manifest: Manifest | Mapping) -> Manifest:
    """``manifest`` itself, or a view of a manifest dict the caller trusts (not re-validated:
    use :meth:`Manifest.from_dict` for anything read from disk)."""
    return manifest if isinstance(manifest, Manifest) else Manifest.from_dict(manifest, validate=False)
