"""Generation bundles on the torch side: write one atomically (exports parity-gated), load one back.

Layout (``docs/bundle-format.md``, "Generation bundles"; every path is also in the manifest)::

    manifest.json                 kind "generation" (runtime/generation_manifest.schema.json)
    generator/config.json         the one-step generator's UNet (diffusers save_pretrained,
    generator/diffusion_pytorch_model.safetensors      safetensors): what export reads
    prompt_table.safetensors      {"table": float32 (buckets + 1, width)}
    golden/<i>.safetensors        {"noise", "prompt_states", "image"} of each golden (prompt, seed)
    onnx/generator.onnx           (noise, prompt_states) -> image
    executorch/generator.pte      the same, XNNPACK, method "forward"
    coreml/generator.mlpackage/   the same, ML program (iOS 17)

:func:`write_generation_bundle` builds everything in a staging directory next to ``out``
(:func:`pocketgan.atomic.atomic_directory`) and swaps it in only when every export passed
its parity gate: a failure leaves no bundle, or the one that was there. Nothing is pickled:
weights are safetensors, the rest JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch

from pocketgan.generation.student import OneStepGenerator
from pocketgan.generation.teacher import GenerationArchitecture

GENERATOR_DIR = "generator"
GENERATOR_CONFIG = f"{GENERATOR_DIR}/config.json"
GENERATOR_WEIGHTS = f"{GENERATOR_DIR}/diffusion_pytorch_model.safetensors"
PROMPT_TABLE = "prompt_table.safetensors"
TABLE_TENSOR = "table"
GOLDEN_DIR = "golden"
#: (prompt, seed) cases every export is gated on and the bundle keeps; "" is the unconditional one
DEFAULT_GOLDEN = (("red apple", 3), ("grinning face", 0), ("", 1))


def check_table(table: Any, arch: GenerationArchitecture) -> torch.Tensor:
    """``table`` as a contiguous float32 CPU tensor (buckets + 1, text_width) of finite values."""
    t = torch.as_tensor(table).detach().to("cpu", torch.float32).contiguous()
    want = (arch.buckets + 1, arch.text_width)
    if tuple(t.shape) != want:
        raise ValueError(f"the prompt table must be (buckets + 1, text_width) = {want}, got {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError("the prompt table holds non-finite values")
    return t


def check_golden_cases(golden: Iterable) -> list[tuple[str, int]]:
    """At least one ``(prompt, seed)``: prompts are str, seeds ints in [0, 2^63) (JSON's int64)."""
    cases = []
    for case in golden:
        prompt, seed = case
        if not isinstance(prompt, str) or isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
            raise ValueError(f"a golden case is (prompt: str, seed: int in [0, 2^63)), got {case!r}")
        cases.append((prompt, seed))
    if not cases:
        raise ValueError("a generation bundle needs at least one golden (prompt, seed) case")
    return cases


def _tensor_spec(name: str, shape: list[int], description: str, image: bool = False) -> dict:
    spec: dict = {"name": name, "dtype": "float32", "shape": shape}
    if image:
        spec |= {"layout": "NCHW", "color": "RGB", "range": [-1.0, 1.0]}
    return spec | {"description": description}


def generation_manifest(generator: OneStepGenerator, provenance: dict, targets: dict, golden: list, artifacts: dict):
    """The whole ``manifest.json`` of a generation bundle from its parts (key order is the file's)."""
    import pocketgan
    from pocketgan.export.generation import INPUT_NAMES, OUTPUT_NAME
    from pocketgan.runtime.generation_manifest import GENERATION_FORMAT_VERSION, GENERATION_KIND, NOISE_ALGORITHM
    from pocketgan.runtime.manifest import FORMAT_NAME
    from pocketgan.runtime.prompt_hashing import HASH_NAME, TOKENS, WORD_PATTERN

    arch = generator.arch
    side, width = arch.image_size, arch.text_width
    image = [1, 3, side, side]
    return {
        "format": FORMAT_NAME,
        "format_version": GENERATION_FORMAT_VERSION,
        "kind": GENERATION_KIND,
        "pocketgan_version": pocketgan.__version__,
        "architecture": arch.to_json(),
        "generator": {
            "dir": GENERATOR_DIR,
            "config": GENERATOR_CONFIG,
            "weights": GENERATOR_WEIGHTS,
            "timestep": generator.timestep,
            "alpha_bar_last": float(getattr(generator, "alpha_bar_last", generator.x_scale**2)),
            "parameters": sum(p.numel() for p in generator.parameters()),
        },
        "prompts": {
            "table": PROMPT_TABLE,
            "tensor": TABLE_TENSOR,
            "buckets": arch.buckets,
            "tokens": TOKENS,
            "width": width,
            "hash": HASH_NAME,
            "words": WORD_PATTERN,
            "lowercase": True,
            "padding_row": 0,
        },
        "noise": {"algorithm": NOISE_ALGORITHM, "dtype": "float32", "shape": image},
        "io": {
            "inputs": [
                _tensor_spec(INPUT_NAMES[0], image, "standard normal, seeded_noise(seed)"),
                _tensor_spec(INPUT_NAMES[1], [1, TOKENS, width], "the prompt table's rows of the prompt's words"),
            ],
            "output": _tensor_spec(OUTPUT_NAME, image, "the generated image", image=True),
        },
        "provenance": provenance,
        "targets": targets,
        "golden": golden,
        "artifacts": artifacts,
    }


def _save_generator(generator: OneStepGenerator, staging: Path) -> None:
    """``generator/`` by diffusers' ``save_pretrained`` (safetensors): exactly the two files the manifest names."""
    from pocketgan.training.diffusers_teacher import quiet_pipeline_io

    with quiet_pipeline_io():
        generator.unet.save_pretrained(staging / GENERATOR_DIR, safe_serialization=True)
    written = sorted(p.relative_to(staging).as_posix() for p in (staging / GENERATOR_DIR).rglob("*") if p.is_file())
    if written != sorted([GENERATOR_CONFIG, GENERATOR_WEIGHTS]):
        raise RuntimeError(f"diffusers wrote {written}, expected {GENERATOR_CONFIG} and {GENERATOR_WEIGHTS}")


def _save_golden(gate, staging: Path) -> list[dict]:
    """One float32 safetensors file per case: its noise, prompt states and PyTorch image."""
    from safetensors.numpy import save

    (staging / GOLDEN_DIR).mkdir()
    entries = []
    for i, ((prompt, seed), noise, states, image) in enumerate(
        zip(gate.cases, gate.noise, gate.states, gate.reference)
    ):
        rel = f"{GOLDEN_DIR}/{i}.safetensors"
        tensors = {"noise": noise, "prompt_states": states, "image": np.ascontiguousarray(image, dtype=np.float32)}
        (staging / rel).write_bytes(save(tensors))
        entries.append({"prompt": prompt, "seed": seed, "file": rel})
    return entries


def target_files(manifest, name: str) -> list[str]:
    """The artifacts of export ``name`` in a generation manifest (a Core ML package: every file of it)."""
    target = manifest.targets[name]
    if name == "coreml":
        prefix = target["package"] + "/"
        return sorted(p for p in manifest.artifacts if p.startswith(prefix))
    return [target["model" if name == "onnx" else "program"]]


def _copy_targets(source: Path, manifest, names: list[str], staging: Path) -> dict[str, dict]:
    """Copy exports ``names`` of the bundle ``source`` (checksums verified) into ``staging``."""
    from pocketgan.runtime.bundle_files import read_artifact

    for name in names:
        for rel in target_files(manifest, name):
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            (staging / rel).write_bytes(read_artifact(source, manifest, rel))
    return {name: json.loads(json.dumps(dict(manifest.raw["targets"][name]))) for name in names}


def _write(
    dest: Path,
    generator: OneStepGenerator,
    table: torch.Tensor,
    provenance: dict,
    golden,
    targets,
    *,
    keep: tuple[Path, Any, list[str]] | None = None,
    threshold_db: float | None = None,
    coreml_precision: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Stage, export and gate, then swap in atomically; return the manifest written.
    ``keep``: (source bundle, its manifest, export names) to copy unchanged."""
    from safetensors.torch import save as save_safetensors

    from pocketgan.atomic import atomic_directory, atomic_write_json
    from pocketgan.bundle.source import list_artifacts
    from pocketgan.export.generation import GoldenGate, check_targets, export_generation_targets
    from pocketgan.runtime.generation_manifest import validate_generation_manifest

    table = check_table(table, generator.arch)
    cases = check_golden_cases(golden)
    targets = check_targets(targets, coreml_precision)
    provenance = json.loads(json.dumps(provenance, allow_nan=False))  # JSON only (ValueError otherwise)
    if not isinstance(provenance, dict):
        raise ValueError(f"provenance must be a JSON object, got {type(provenance).__name__}")
    step = progress or (lambda message: None)
    step(f"golden cases: PyTorch on {len(cases)} (prompt, seed) pairs")
    gate = GoldenGate.build(generator, table.numpy(), cases, threshold_db)
    with atomic_directory(dest) as staging:
        _save_generator(generator, staging)
        (staging / PROMPT_TABLE).write_bytes(save_safetensors({TABLE_TENSOR: table}))
        golden_entries = _save_golden(gate, staging)
        entries = _copy_targets(keep[0], keep[1], keep[2], staging) if keep else {}
        entries |= export_generation_targets(
            generator, gate, staging, targets, coreml_precision=coreml_precision, progress=progress
        )
        entries = {name: entries[name] for name in check_targets(entries)}  # canonical order
        manifest = generation_manifest(generator, provenance, entries, golden_entries, list_artifacts(staging))
        validate_generation_manifest(json.loads(json.dumps(manifest)))
        atomic_write_json(staging / "manifest.json", manifest)
    return manifest


def write_generation_bundle(
    out: str | Path,
    generator: OneStepGenerator,
    prompt_table: torch.Tensor,
    provenance: dict,
    targets: Iterable[str] = ("onnx",),
    golden: Iterable[tuple[str, int]] = DEFAULT_GOLDEN,
    *,
    threshold_db: float | None = None,
    coreml_precision: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Write a generation bundle to ``out`` (replaced atomically); return ``out``.

    Args:
        generator: the one-step generator (its UNet and architecture are saved as they are).
        prompt_table: float32 (buckets + 1, text_width); row 0 is padding.
        provenance: free-form JSON object (teacher run, ODE steps, guidance, training losses).
        targets: exports to write, of ``onnx``, ``executorch``, ``coreml``; each is run on the
            ``golden`` cases and must match PyTorch (:class:`~pocketgan.export.parity.ParityError`
            below ``threshold_db``, default 35 dB; Core ML is structure-checked off macOS).
        golden: (prompt, seed) pairs kept in the bundle with PyTorch's images of them.
        coreml_precision: ``fp16`` (default) or ``fp32``.
    """
    _write(
        Path(out),
        generator,
        prompt_table,
        provenance,
        golden,
        targets,
        threshold_db=threshold_db,
        coreml_precision=coreml_precision,
        progress=progress,
    )
    return Path(out)


def rewrite_generation_bundle(
    source: Path, dest: Path, generator: OneStepGenerator, table: torch.Tensor, manifest, targets, **options
) -> dict:
    """The bundle ``source`` (loaded as ``generator``, ``table``, ``manifest``) written to ``dest``
    with ``targets`` exported and its other exports copied; returns the new manifest."""
    keep = [name for name in manifest.targets if name not in targets]
    raw = manifest.raw
    golden = [(g["prompt"], g["seed"]) for g in raw["golden"]]
    return _write(
        dest, generator, table, raw["provenance"], golden, targets, keep=(Path(source), manifest, keep), **options
    )


def load_generation_bundle(path: str | Path) -> tuple[OneStepGenerator, torch.Tensor, Any]:
    """``(generator, prompt table, manifest)`` of a generation bundle, every file checksum-verified;
    ``manifest`` is the :class:`~pocketgan.runtime.generation_manifest.GenerationManifest` view
    (``.raw``: the dict). The generator is in eval mode, float32 on CPU."""
    from dataclasses import fields

    from diffusers import UNet2DConditionModel

    from pocketgan.runtime.bundle_files import PrivateCopies, read_artifact
    from pocketgan.runtime.errors import ArtifactFormatError, ManifestError
    from pocketgan.runtime.generation_manifest import load_prompt_table, read_generation_manifest
    from pocketgan.training.diffusers_teacher import quiet_pipeline_io

    path = Path(path)
    manifest = read_generation_manifest(path)
    raw = manifest.raw
    known = {f.name for f in fields(GenerationArchitecture)}
    unknown = sorted(set(raw["architecture"]) - known)
    if unknown:
        raise ManifestError(
            f"manifest.json: architecture has fields this pocketgan does not know {unknown}; upgrade pocketgan",
            file="manifest.json",
            field="architecture",
        )
    arch = GenerationArchitecture(**raw["architecture"])
    gen = raw["generator"]
    verified = {rel: read_artifact(path, manifest, rel) for rel in (gen["config"], gen["weights"])}
    copies = PrivateCopies("pocketgan-generator-")  # diffusers loads from a folder: a copy of verified bytes
    try:
        for rel, data in verified.items():
            copies.write(rel, data)
        with quiet_pipeline_io():
            unet = UNet2DConditionModel.from_pretrained(copies.root / gen["dir"], use_safetensors=True)
            unet = unet.to(torch.float32).eval()
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        raise ArtifactFormatError(
            f"{gen['dir']}: diffusers cannot load the generator ({e})", file=gen["weights"]
        ) from None
    finally:
        copies.close()
    c, s, _ = arch.latent_shape
    if (unet.config.in_channels, unet.config.sample_size, unet.config.cross_attention_dim) != (c, s, arch.text_width):
        raise ArtifactFormatError(
            f"{gen['config']}: the UNet's in_channels / sample_size / cross_attention_dim differ from the "
            f"architecture's ({c}, {s}, {arch.text_width})",
            file=gen["config"],
        )
    generator = OneStepGenerator(unet, arch, gen["alpha_bar_last"]).eval()
    table = torch.from_numpy(load_prompt_table(path, manifest).copy())
    return generator, table, manifest
