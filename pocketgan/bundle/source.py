"""The torch side of a bundle: read base weights and concepts, write a bundle atomically.

The manifest itself (schema, validation, checksums) lives in ``pocketgan.runtime`` so
the runtime can read bundles without torch; ``docs/bundle-format.md`` is the contract.
"""

from __future__ import annotations

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
from pocketgan.runtime.errors import BundleError, UnknownConceptError
from pocketgan.runtime.manifest import (
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
    """

    size: str
    config: GeneratorConfig
    base_state: dict[str, torch.Tensor]
    concepts: list[Concept]
    rank_pattern: dict[str, int]
    path: Path | None = None
    upsampler: GuidedUpsamplerConfig | None = None

    @classmethod
    def from_parts(
        cls, size: str, generator: Generator, concepts: list[Concept], upsampler: GuidedUpsamplerConfig | None = None
    ) -> "Bundle":
        if not concepts:
            raise ValueError("a bundle needs at least one concept")
        for concept in concepts:
            check_concept_fits(concept, generator)
        return cls(
            size,
            generator.config,
            {k: v.detach().clone() for k, v in generator.state_dict().items()},
            list(concepts),
            rank_pattern_of(concepts),
            upsampler=upsampler,
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

    def model_for(self, concept: str | None, mode: str = "separate") -> ConceptModel:
        """The single-input model for one concept (``None``: base with zero LoRA)."""
        adapter = self.concept(concept) if concept else None
        return concept_model(self.base_generator(), adapter, self.rank_pattern, mode=mode)

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


def rank_pattern_of(concepts: list[Concept]) -> dict[str, int]:
    """Per-layer maximum rank over the concepts; every concept must adapt the same layers."""
    layers = set(concepts[0].ranks)
    for c in concepts[1:]:
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
    return Bundle(manifest.generator.size, config, base_state, concepts, dict(manifest.rank_pattern), path, upsampler)


UPSAMPLER_DIR = "upsampler"


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
) -> dict:
    """The whole ``manifest.json`` from its parts, the one place it is put together.

    ``concepts``: the :func:`concept_entry` dicts (without ``files`` in an app bundle);
    ``targets``: each export target's entry, as its writer returned it; ``artifacts``:
    :func:`list_artifacts` of the finished staging directory. Key order is the file's.
    """
    size = bundle.config.image_size
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "pocketgan_version": pocketgan.__version__,
        "generator": generator_entry(bundle),
        "io": {"input": _io_spec(INPUT_NAME, size), "output": _io_spec(OUTPUT_NAME, size)},
        "contents": "app" if app else "full",
        "base": {"sha256": base_sha256} if app else {"weights": BASE_WEIGHTS, "sha256": base_sha256},
        "rank_pattern": bundle.rank_pattern,
        **({"upsampler": bundle.upsampler.manifest_entry()} if bundle.upsampler is not None else {}),
        "concepts": concepts,
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
        target_entries = {name: write(staging) for name, write in (targets or {}).items()}
        if golden is not None:
            vectors = golden(staging)
            for entry in concept_entries:
                entry["golden"] = vectors[entry["name"]]
        if app:  # the targets are written (and parity-checked); the source goes
            shutil.rmtree(staging / "base")
            shutil.rmtree(staging / "concepts")
            for entry in concept_entries:
                del entry["files"]
        manifest = assemble_manifest(
            bundle,
            app=app,
            base_sha256=base_sha256,
            concepts=concept_entries,
            targets=target_entries,
            artifacts=list_artifacts(staging),
        )
        validate_manifest(json.loads(json.dumps(manifest)))
        atomic_write_json(staging / MANIFEST_NAME, manifest)
    return manifest
