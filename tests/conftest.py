"""Session fixtures: a tiny random source bundle and its ONNX exports, built once.

Everything here is real (PEFT, safetensors, torch.onnx, ONNX Runtime) on the ``tiny``
generator, so the whole default run stays fast on a 2-core CPU.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pytest
import torch

from helpers import CONCEPT_NAMES, make_concepts

torch.set_num_threads(1)
logging.getLogger("torch.onnx").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", category=UserWarning, module=r"(torch|onnx|onnxscript|peft)")

IMAGE_SIZE = 256  # the default GeneratorConfig.image_size


@pytest.fixture(scope="session")
def tiny_generator():
    from pocketgan.models import build_generator

    torch.manual_seed(0)
    return build_generator("tiny").eval()


@pytest.fixture(scope="session")
def tiny_concepts(tiny_generator):
    return make_concepts(tiny_generator)


@pytest.fixture(scope="session")
def tiny_bundle(tiny_generator, tiny_concepts):
    from pocketgan.bundle import Bundle

    return Bundle.from_parts("tiny", tiny_generator, tiny_concepts)


@pytest.fixture(scope="session")
def source_bundle(tmp_path_factory, tiny_bundle) -> Path:
    """A source bundle on disk (base + concepts, no export targets)."""
    from pocketgan.bundle import save_bundle

    path = tmp_path_factory.mktemp("source") / "tiny-src"
    save_bundle(tiny_bundle, path)
    return path


@pytest.fixture(scope="session")
def exported_bundle(tmp_path_factory, source_bundle) -> Path:
    """The tiny bundle exported to ONNX with both concept modes (adapters + merged)."""
    from pocketgan.export import ExportConfig, run_export

    out = tmp_path_factory.mktemp("export-both") / "tiny-onnx"
    run_export(ExportConfig(out=out, bundle=source_bundle, targets=("onnx",), concepts="both"))
    return out


@pytest.fixture(scope="session")
def separate_export(tmp_path_factory, source_bundle) -> Path:
    """The tiny bundle exported to ONNX with hot-swappable adapters only."""
    from pocketgan.export import ExportConfig, run_export

    out = tmp_path_factory.mktemp("export-separate") / "tiny-onnx-separate"
    run_export(ExportConfig(out=out, bundle=source_bundle, targets=("onnx",), concepts="separate"))
    return out


@pytest.fixture(scope="session")
def concept_names() -> tuple[str, ...]:
    return CONCEPT_NAMES


@pytest.fixture(scope="session")
def photo_paths() -> list[Path]:
    from pocketgan.photos import sample_photo_paths

    paths = sample_photo_paths()
    assert len(paths) >= 3, "the package ships real photos for parity checks"
    return paths


@pytest.fixture(scope="session")
def model_inputs(photo_paths):
    """The shipped photos as (1, 3, 256, 256) float32 model inputs, letterboxed like the runtime."""
    from pocketgan.photos import load_rgb
    from pocketgan.runtime.imaging import to_model_input

    return {p.name: to_model_input(load_rgb(p), IMAGE_SIZE)[0] for p in photo_paths}


@pytest.fixture(scope="session")
def tiny_mix_bundle(tiny_generator, tiny_concepts):
    """The tiny bundle with a (random) neutral concept: strength and blending."""
    from helpers import random_lora
    from pocketgan.bundle import Bundle
    from pocketgan.concepts import Concept

    cfg = tiny_generator.config
    g = torch.Generator().manual_seed(7)
    neutral = Concept(
        "neutral",
        random_lora(tiny_generator, dict.fromkeys(tiny_concepts[0].ranks, 1), seed=77),
        torch.randn(cfg.token_count, cfg.token_dim, generator=g),
    )
    return Bundle.from_parts("tiny", tiny_generator, tiny_concepts, neutral=neutral)


@pytest.fixture(scope="session")
def mix_export(tmp_path_factory, tiny_mix_bundle) -> Path:
    """The tiny mix bundle exported to ONNX (both concept modes) and ExecuTorch (separate: a
    method per concept + the mix method), with golden vectors of strengths and a blend."""
    pytest.importorskip("executorch")
    from pocketgan.bundle import save_bundle
    from pocketgan.export import ExportConfig, run_export

    root = tmp_path_factory.mktemp("mix")
    save_bundle(tiny_mix_bundle, root / "src")
    run_export(ExportConfig(out=root / "onnx", bundle=root / "src", targets=("onnx",), concepts="both"))
    run_export(ExportConfig(out=root / "et", bundle=root / "src", targets=("onnx", "executorch")))
    return root
