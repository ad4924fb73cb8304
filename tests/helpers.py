"""Shared helpers of the test suite (importable from every test module: pytest puts
``tests/`` on ``sys.path`` because it has no ``__init__.py``)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent

# The tiny bundle's concepts: name -> rank rule over the generator's LoRA targets.
# Different ranks per concept exercise padding to the bundle's rank pattern.
CONCEPT_SPECS = {
    "alpha": lambda i, layer: 1,
    "beta-2": lambda i, layer: 2 if i % 2 else 1,
    "gamma_3": lambda i, layer: 3 if layer.startswith("transformer.self_attn") else 1,
}
CONCEPT_NAMES = tuple(CONCEPT_SPECS)


def concept_ranks(name: str, targets: list[str]) -> dict[str, int]:
    rule = CONCEPT_SPECS.get(name, CONCEPT_SPECS["alpha"])
    return {layer: rule(i, layer) for i, layer in enumerate(targets)}


def random_lora(generator, ranks: dict[str, int], seed: int, b_std: float = 0.05) -> dict:
    """Random LoRA weights in pocketgan's layout (A random, B small and nonzero)."""
    import torch

    modules = dict(generator.named_modules())
    g = torch.Generator().manual_seed(seed)
    out = {}
    for layer, r in ranks.items():
        w = modules[layer].weight
        fan_in = int(np.prod(w.shape[1:]))
        if w.dim() == 4:
            a = torch.randn(r, *w.shape[1:], generator=g) / fan_in**0.5
            b = torch.randn(w.shape[0], r, 1, 1, generator=g) * b_std
        else:
            a = torch.randn(r, w.shape[1], generator=g) / fan_in**0.5
            b = torch.randn(w.shape[0], r, generator=g) * b_std
        out[f"{layer}.lora_A.weight"] = a
        out[f"{layer}.lora_B.weight"] = b
    return out


def make_concepts(generator, names=CONCEPT_NAMES, seed: int = 100) -> list:
    import torch

    from pocketgan.concepts import Concept

    targets = generator.lora_target_modules()
    cfg = generator.config
    concepts = []
    for i, name in enumerate(names):
        g = torch.Generator().manual_seed(seed + i)
        tokens = torch.randn(cfg.token_count, cfg.token_dim, generator=g)
        concepts.append(
            Concept(
                name,
                random_lora(generator, concept_ranks(name, targets), seed=seed + 10 + i),
                tokens,
                description=f"test concept {name}",
                teacher="random",
                training={"seed": seed + i},
            )
        )
    return concepts


def tree_digest(path: Path) -> dict[str, str]:
    """relative path -> sha256 of every file below ``path`` (hidden files included)."""
    path = Path(path)
    return {
        p.relative_to(path).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def staging_leftovers(parent: Path) -> list[str]:
    marks = (".staging-", ".ready-", ".trash-", ".old-")  # pocketgan.atomic's temporary trees
    return sorted(p.name for p in Path(parent).iterdir() if any(m in p.name for m in marks))


def copy_bundle(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


def read_manifest(bundle: Path) -> dict:
    return json.loads((Path(bundle) / "manifest.json").read_text())


def write_manifest(bundle: Path, manifest: dict) -> None:
    (Path(bundle) / "manifest.json").write_text(json.dumps(manifest, indent=2))


def flip_byte(path: Path, offset: int | None = None) -> None:
    data = bytearray(Path(path).read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0xFF
    Path(path).write_bytes(bytes(data))


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 2.0) -> float:
    """PSNR in dB; ``peak`` 2.0 for [-1, 1] tensors, 255 for uint8 images."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(peak**2 / mse)


def default_bundle_path() -> Path:
    # the runtime's own lookup, so the tests follow the package wherever it is installed
    from pocketgan.runtime.session import default_bundle_path as lookup

    return lookup()


def has_default_bundle() -> bool:
    return default_bundle_path().joinpath("manifest.json").exists()


def backend_manifest(bundle_dir: Path, bundle, target_name: str, entry: dict) -> dict:
    """The parts of a manifest a backend reads (io, concepts, one target, artifacts), for
    target writers tested without save_bundle."""
    from pocketgan.runtime.manifest import sha256_file

    s = bundle.config.image_size
    io = {
        "name": "image",
        "dtype": "float32",
        "shape": [1, 3, s, s],
        "layout": "NCHW",
        "color": "RGB",
        "range": [-1.0, 1.0],
    }
    return {
        "io": {"input": io, "output": dict(io, name="edited")},
        "concepts": [{"name": n} for n in bundle.concept_names],
        "targets": {target_name: entry},
        "artifacts": {
            p.relative_to(bundle_dir).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
            for p in sorted(bundle_dir.rglob("*"))
            if p.is_file()
        },
    }
