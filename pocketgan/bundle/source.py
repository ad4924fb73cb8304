"""The torch side of a bundle: read base weights and concepts, write a bundle atomically.

The manifest itself (schema, validation, checksums) lives in ``pocketgan.runtime`` so
the runtime can read bundles without torch; ``docs/bundle-format.md`` is the contract.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

import pocketgan
from pocketgan.atomic import atomic_directory, atomic_write_json
from pocketgan.concepts.concept import ADAPTER_CONFIG, ADAPTER_WEIGHTS, EMBEDDING, Concept
from pocketgan.concepts.conditioned import ConceptModel, concept_model
from pocketgan.models.cost import count_macs
from pocketgan.models.generator import Generator, GeneratorConfig
from pocketgan.models.guided_upsampler import GuidedUpsampler, GuidedUpsamplerConfig
from pocketgan.models.registry import GENERATOR_SIZES
from pocketgan.runtime.errors import BundleError, MixError, UnknownConceptError
from pocketgan.runtime.manifest import (
    BASE_FORMAT_VERSION,
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST_NAME,
    read_artifact,
    read_manifest,
    sha256_bytes,
    sha256_file,
    validate_manifest,
)
from pocketgan.runtime.upsampling import load_upsamplers

BASE_WEIGHTS = "base/generator.safetensors"
INPUT_NAME, OUTPUT_NAME = "image", "edited"


@dataclass
class Bundle:
    """Base generator + concepts, in memory.

    Attributes:
        size: registry name of the generator size (``tiny``/``small``/``base``) or "custom".
        config: the generator's hyper-parameters.
        base_state: the base generator's state dict (no LoRA).
        concepts: the concepts, in display order.
        rank_pattern: per-layer rank every concept is padded to (max over concepts).
        path: where it was loaded from, if anywhere.
        upsampler: the full-resolution stage's settings, when the concepts carry one
            (docs/full-resolution.md); None: bundles made before it.
        neutral: the identity concept that strength 0 and the rest of a blend weigh in
            (``pocketgan.runtime.concept_mix``); None: a bundle without strength and blending.
            With one, the separate graph gets a second LoRA of ``mix_ranks`` (concept rank +
            neutral rank per layer), so a concept at any strength or a two-concept blend is one
            exact set of tensors while every concept's adapter keeps ``rank_pattern``.
    """

    size: str
    config: GeneratorConfig
    base_state: dict[str, torch.Tensor]
    concepts: list[Concept]
    rank_pattern: dict[str, int]
    path: Path | None = None
    upsampler: GuidedUpsamplerConfig | None = None
    neutral: Concept | None = None
    #: per concept, the weights of strengths 0, 0.1, ..., 1 (``pocketgan.training.neutral.strength_curve``)
    strength_curves: dict[str, list[float]] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_parts(
        cls,
        size: str,
        generator: Generator,
        concepts: list[Concept],
        upsampler: GuidedUpsamplerConfig | None = None,
        neutral: Concept | None = None,
    ) -> "Bundle":
        if not concepts:
            raise ValueError("a bundle needs at least one concept")
        for concept in concepts + ([neutral] if neutral is not None else []):
            check_concept_fits(concept, generator)
        return cls(
            size,
            generator.config,
            {k: v.detach().clone() for k, v in generator.state_dict().items()},
            list(concepts),
            rank_pattern_of(concepts, neutral),
            upsampler=upsampler,
            neutral=neutral,
        )

    def with_concepts(self, concepts: list[Concept]) -> "Bundle":
        """The same base and neutral with other concepts (the rank pattern follows them)."""
        if not concepts:
            raise ValueError("a bundle needs at least one concept")
        names = {c.name for c in concepts}
        return dataclasses.replace(
            self,
            concepts=list(concepts),
            rank_pattern=rank_pattern_of(concepts, self.neutral),
            strength_curves={k: v for k, v in self.strength_curves.items() if k in names},
        )

    @property
    def concept_names(self) -> list[str]:
        return [c.name for c in self.concepts]

    def concept(self, name: str) -> Concept:
        for c in self.concepts:
            if c.name == name:
                return c
        raise UnknownConceptError(f"unknown concept {name!r}; this bundle has {self.concept_names}")

    def base_generator(self) -> Generator:
        g = Generator(self.config)
        g.load_state_dict(self.base_state)
        return g.eval()

    @property
    def mix_ranks(self) -> dict[str, int] | None:
        """Per layer, the rank of the separate graph's second LoRA (strength and blending):
        concept rank + neutral rank, so that with the first one (``rank_pattern``) two concepts
        and the neutral fit exactly. None without a neutral."""
        if self.neutral is None:
            return None
        return {layer: r + self.neutral.ranks[layer] for layer, r in self.rank_pattern.items()}

    def model_for(self, concept: str | None, mode: str = "separate", *, mix_slot: bool = False) -> ConceptModel:
        """The single-input model for one concept (``None``: base with zero LoRA); ``mix_slot``:
        with the zero second LoRA of strength and blending (the separate ONNX graph's form)."""
        adapter = self.concept(concept) if concept else None
        mix_ranks = self.mix_ranks if mix_slot else None
        return concept_model(self.base_generator(), adapter, self.rank_pattern, mode=mode, mix_ranks=mix_ranks)

    @property
    def mix_total_ranks(self) -> dict[str, int]:
        """Per layer, the rank a mix's tensors have (both LoRA slots together)."""
        if self.mix_ranks is None:
            raise MixError("this bundle has no neutral concept, so it has no strength or blending")
        return {layer: r + self.mix_ranks[layer] for layer, r in self.rank_pattern.items()}

    def mixed_concept(self, weights: dict[str, float]) -> Concept:
        """The concept that a mix ``{name: weight}`` runs as (``pocketgan.runtime.concept_mix``),
        at both LoRA slots' rank (``mix_total_ranks``). Raises ``MixError`` when the bundle has no
        neutral concept."""
        from pocketgan.runtime.concept_mix import TOKENS, concept_mix, mix_tensors

        mix = concept_mix(weights, self.concept_names)

        def tensors(c: Concept) -> dict[str, np.ndarray]:
            return {k: v.numpy() for k, v in c.lora.items()} | {TOKENS: c.tokens[None].numpy()}

        mixed, _ = mix_tensors(
            {n: tensors(self.concept(n)) for n in mix.as_dict()}, tensors(self.neutral), mix, self.mix_total_ranks
        )
        tokens = torch.from_numpy(mixed.pop(TOKENS)[0])
        return Concept("mix", {k: torch.from_numpy(v) for k, v in mixed.items()}, tokens, mix.label())

    def model_for_mix(self, weights: dict[str, float]) -> ConceptModel:
        """The single-input model of a strength or blend: the mixed tensors as one LoRA of both
        slots' rank (what the exported graph computes with its two slots)."""
        return concept_model(self.base_generator(), self.mixed_concept(weights), self.mix_total_ranks)

    def example_inputs(self, batch: int = 1) -> tuple[torch.Tensor]:
        s = self.config.image_size
        return (torch.zeros(batch, 3, s, s),)


def check_concept_fits(concept: Concept, generator: Generator) -> None:
    """Raise ``ValueError`` unless the concept's tokens and LoRA shapes fit ``generator``."""
    cfg = generator.config
    if tuple(concept.tokens.shape) != (cfg.token_count, cfg.token_dim):
        raise ValueError(
            f"concept {concept.name!r}: tokens {tuple(concept.tokens.shape)} do not fit the generator "
            f"({cfg.token_count}, {cfg.token_dim})"
        )
    modules = dict(generator.named_modules())
    for layer in concept.ranks:
        module = modules.get(layer)
        if not isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            raise ValueError(f"concept {concept.name!r}: {layer!r} is not a Conv2d/Linear layer of the generator")
        a, b = concept.lora[f"{layer}.lora_A.weight"], concept.lora[f"{layer}.lora_B.weight"]
        if isinstance(module, torch.nn.Conv2d):
            want_a = (a.shape[0], module.in_channels, *module.kernel_size)
            want_b = (module.out_channels, a.shape[0], 1, 1)
        else:
            want_a, want_b = (a.shape[0], module.in_features), (module.out_features, a.shape[0])
        if tuple(a.shape) != want_a or tuple(b.shape) != want_b:
            raise ValueError(
                f"concept {concept.name!r}: LoRA {layer} has A {tuple(a.shape)}, B {tuple(b.shape)}; "
                f"the generator needs A {want_a}, B {want_b}"
            )


def rank_pattern_of(concepts: list[Concept], neutral: Concept | None = None) -> dict[str, int]:
    """Per-layer maximum rank over the concepts; every concept (and the neutral) must adapt
    the same layers."""
    layers = set(concepts[0].ranks)
    for c in concepts[1:] + ([neutral] if neutral is not None else []):
        if set(c.ranks) != layers:
            raise ValueError(f"concept {c.name!r} adapts different layers than {concepts[0].name!r}")
    return {layer: max(c.ranks[layer] for c in concepts) for layer in sorted(layers)}


def _io_spec(name: str, size: int) -> dict:
    return {
        "name": name,
        "dtype": "float32",
        "shape": [1, 3, size, size],
        "layout": "NCHW",
        "color": "RGB",
        "range": [-1.0, 1.0],
    }


def load_bundle(path: str | Path | None = None) -> Bundle:
    """Load a bundle's base and concepts (checksums verified). ``None``: the default."""
    if path is None:
        from pocketgan.runtime.session import default_bundle_path

        path = default_bundle_path()
    path = Path(path)
    manifest = read_manifest(path)
    if manifest.is_app:
        raise BundleError(
            f"{path} is an app bundle (exported targets only, no source weights): "
            "the runtime opens it; to export or train, use the full bundle it was exported from"
        )
    config = GeneratorConfig(**manifest.generator.config)
    base_state = load_safetensors(read_artifact(path, manifest, manifest.base_weights))
    upsampler = None
    if manifest.upsampler is not None:
        upsampler = GuidedUpsamplerConfig(manifest.upsampler.radius, manifest.upsampler.hidden)
        stages = load_upsamplers(path, manifest)  # verified bytes, shapes checked, typed errors
    concepts = []
    # ``training`` is free-form JSON a Concept keeps as a plain dict: take it from the validated dict
    for entry, raw in zip(manifest.concepts, manifest.to_dict()["concepts"]):
        files = entry.files
        weights = load_safetensors(read_artifact(path, manifest, files.adapter_weights))
        read_artifact(path, manifest, files.adapter_config)
        tokens = load_safetensors(read_artifact(path, manifest, files.embedding))["tokens"]
        lora = {k.removeprefix("base_model.model."): v for k, v in weights.items()}
        concept = Concept(entry.name, lora, tokens, entry.description, entry.teacher, raw.get("training", {}))
        if upsampler is not None:
            concept.upsampler = upsampler_tensors(stages[entry.name])
        concepts.append(concept)
    neutral = None
    if manifest.neutral is not None:
        files = manifest.neutral.files
        weights = load_safetensors(read_artifact(path, manifest, files.adapter_weights))
        read_artifact(path, manifest, files.adapter_config)
        tokens = load_safetensors(read_artifact(path, manifest, files.embedding))["tokens"]
        lora = {k.removeprefix("base_model.model."): v for k, v in weights.items()}
        raw = manifest.to_dict()["neutral"]
        neutral = Concept(
            NEUTRAL, lora, tokens, manifest.neutral.description, manifest.neutral.teacher, raw.get("training", {})
        )
        curves = raw.get("strength_curves", {})
    else:
        curves = {}
    return Bundle(
        manifest.generator.size,
        config,
        base_state,
        concepts,
        dict(manifest.rank_pattern),
        path,
        upsampler,
        neutral,
        curves,
    )


UPSAMPLER_DIR = "upsampler"
#: the neutral concept's name and directory in a source bundle
NEUTRAL = "neutral"


def upsampler_tensors(stage) -> dict[str, torch.Tensor]:
    """A runtime :class:`~pocketgan.runtime.upsampling.GuidedUpsampling` as the tensors it was read from."""
    out = {"log_eps": torch.tensor([float(np.log(stage.eps))], dtype=torch.float32)}
    for i, (weight, bias) in enumerate(stage.mlp):
        out[f"mlp.{i}.weight"], out[f"mlp.{i}.bias"] = torch.from_numpy(weight.copy()), torch.from_numpy(bias.copy())
    return out


def _write_upsamplers(bundle: Bundle, staging: Path) -> None:
    """``upsampler/<concept>.safetensors`` for every concept; one trained before the stage existed
    gets the untrained stage (the MLP's last layer is zero: the plain guided filter)."""
    (staging / UPSAMPLER_DIR).mkdir()
    for c in bundle.concepts:
        tensors = c.upsampler if c.upsampler is not None else GuidedUpsampler(bundle.upsampler).tensors()
        data = save_safetensors({k: v.float().contiguous() for k, v in tensors.items()}, metadata={"concept": c.name})
        (staging / UPSAMPLER_DIR / f"{c.name}.safetensors").write_bytes(data)


TargetWriter = Callable[[Path], dict]
"""Writes a target's files under a staging bundle directory; returns its manifest entry
(``pocketgan.export.target.export_target`` for the exporters)."""


GoldenWriter = Callable[[Path], dict[str, dict[str, str]]]
"""Writes golden vectors under a staging bundle directory; returns ``{concept: {"input", "output"}}``."""


def concept_entry(concept: Concept, rel: str, *, upsampler: bool = False) -> dict:
    """``concepts[i]`` of the manifest for a concept saved under ``rel`` (``files`` last);
    ``upsampler``: the bundle has a full-resolution stage (one file per concept)."""
    return {
        "name": concept.name,
        "description": concept.description,
        "teacher": concept.teacher,
        "ranks": concept.ranks,
        "parameters": concept.num_parameters(),
        "training": concept.training,
        **({"upsampler": f"{UPSAMPLER_DIR}/{concept.name}.safetensors"} if upsampler else {}),
        "files": {
            "adapter_weights": f"{rel}/{ADAPTER_WEIGHTS}",
            "adapter_config": f"{rel}/{ADAPTER_CONFIG}",
            "embedding": f"{rel}/{EMBEDDING}",
        },
    }


def generator_entry(bundle: Bundle) -> dict:
    """``generator`` of the manifest: family, size name, config, parameters and MACs."""
    generator = bundle.base_generator()
    size = bundle.config.image_size
    tokens = torch.zeros(1, bundle.config.token_count, bundle.config.token_dim)
    return {
        "family": "e2gan",
        "size": bundle.size if GENERATOR_SIZES.get(bundle.size) == bundle.config else "custom",
        "config": bundle.config.to_dict(),
        "parameters": sum(p.numel() for p in generator.parameters()),
        "macs": count_macs(generator, torch.zeros(1, 3, size, size), tokens),
    }


def list_artifacts(root: Path) -> dict[str, dict]:
    """``artifacts`` of the manifest: every file under ``root`` -> ``{"sha256", "bytes"}``, sorted."""
    return {
        p.relative_to(root).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def assemble_manifest(
    bundle: Bundle,
    *,
    app: bool,
    base_sha256: str,
    concepts: list[dict],
    targets: dict[str, dict],
    artifacts: dict[str, dict],
    neutral: dict | None = None,
) -> dict:
    """The whole ``manifest.json`` from its parts, the one place it is put together.

    ``concepts``: the :func:`concept_entry` dicts (without ``files`` in an app bundle);
    ``targets``: each export target's entry, as its writer returned it; ``artifacts``:
    :func:`list_artifacts` of the finished staging directory. Key order is the file's.
    """
    size = bundle.config.image_size
    return {
        "format": FORMAT_NAME,
        # a bundle that older readers can open stays version 1; strength and blending is 2
        "format_version": FORMAT_VERSION if neutral is not None else BASE_FORMAT_VERSION,
        "pocketgan_version": pocketgan.__version__,
        "generator": generator_entry(bundle),
        "io": {"input": _io_spec(INPUT_NAME, size), "output": _io_spec(OUTPUT_NAME, size)},
        "contents": "app" if app else "full",
        "base": {"sha256": base_sha256} if app else {"weights": BASE_WEIGHTS, "sha256": base_sha256},
        "rank_pattern": bundle.rank_pattern,
        **({"upsampler": bundle.upsampler.manifest_entry()} if bundle.upsampler is not None else {}),
        "concepts": concepts,
        **({"neutral": neutral} if neutral is not None else {}),
        "targets": targets,
        "artifacts": artifacts,
    }


def save_bundle(
    bundle: Bundle,
    dest: str | Path,
    targets: dict[str, TargetWriter] | None = None,
    *,
    app: bool = False,
    golden: GoldenWriter | None = None,
) -> dict:
    """Write ``bundle`` (and optional export targets) to ``dest`` atomically; return the manifest.

    Everything is built in a staging directory next to ``dest``; only a complete bundle
    (every target written and its parity check passed) replaces what was at ``dest``.
    ``app=True`` writes an app bundle: the manifest and the exported targets only, without
    the source weights (base safetensors, PEFT adapters) that only export and training read.
    ``golden`` writes each concept's golden vectors (``pocketgan.export.golden``); they are
    listed as ``concepts[].golden`` and kept in app bundles.
    """
    if app and not targets:
        raise ValueError("an app bundle needs at least one export target")
    dest = Path(dest)
    with atomic_directory(dest) as staging:
        (staging / "base").mkdir()
        base_weights = save_safetensors(
            {k: v.contiguous() for k, v in bundle.base_state.items()}, metadata={"size": bundle.size}
        )
        (staging / BASE_WEIGHTS).write_bytes(base_weights)
        base_sha256 = sha256_bytes(base_weights)  # the base model hash, kept in app bundles too
        concept_entries = []
        for c in bundle.concepts:
            c.save(staging / f"concepts/{c.name}")
            concept_entries.append(concept_entry(c, f"concepts/{c.name}", upsampler=bundle.upsampler is not None))
        if bundle.upsampler is not None:
            _write_upsamplers(bundle, staging)
        neutral_entry = None
        if bundle.neutral is not None:
            bundle.neutral.save(staging / NEUTRAL)
            neutral_entry = concept_entry(bundle.neutral, NEUTRAL)
            neutral_entry["mix_ranks"] = bundle.mix_ranks
            curves = {c: bundle.strength_curves[c] for c in bundle.concept_names if c in bundle.strength_curves}
            if curves:
                neutral_entry["strength_curves"] = curves
        target_entries = {name: write(staging) for name, write in (targets or {}).items()}
        if golden is not None:
            vectors = golden(staging)
            for entry in concept_entries:
                entry["golden"] = vectors[entry["name"]]
            if neutral_entry is not None and "_mixes" in vectors:
                neutral_entry["golden_mixes"] = vectors["_mixes"]
        if app:  # the targets are written (and parity-checked); the source goes
            shutil.rmtree(staging / "base")
            shutil.rmtree(staging / "concepts")
            for entry in concept_entries:
                del entry["files"]
            if neutral_entry is not None:
                shutil.rmtree(staging / NEUTRAL)
                del neutral_entry["files"]
        manifest = assemble_manifest(
            bundle,
            app=app,
            base_sha256=base_sha256,
            concepts=concept_entries,
            targets=target_entries,
            artifacts=list_artifacts(staging),
            neutral=neutral_entry,
        )
        validate_manifest(json.loads(json.dumps(manifest)))
        atomic_write_json(staging / MANIFEST_NAME, manifest)
    return manifest
