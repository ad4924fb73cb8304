"""Every backend x precision x concept mode of the embedded default bundle: latency here,
artifact size, parity against fp32 PyTorch on real photos.

    make bench-matrix     # runs this, then `python -m pocketgan.bench.report matrix` -> docs/export-matrix.md

Each (backend, precision) is exported once with ``--concepts both`` (that is the slow
part: int8 calibration and XNNPACK lowering of every concept); each benchmark then times
one concept's prediction through ``pocketgan.runtime`` (the same pre-compiled session an
app would hold). Sizes and parity come from the exported manifest and go into the
benchmark's ``extra_info``, so the JSON alone rebuilds the table. Core ML predicts only
on macOS: here its rows record size, and its latency benchmarks are skipped.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

from pocketgan.bench.config import BENCH_CONCEPT_MODES as MODES
from pocketgan.runtime.targets import TARGET_SPECS

ROUNDS = dict(rounds=20, warmup_rounds=3, iterations=1)
SIZE = 256
# Every target at every precision it exports (runtime/targets.py): a new target joins the matrix.
EXPORTS = [(name, precision) for name, spec in TARGET_SPECS.items() for precision in spec.precisions]
# The exports are pocketgan bench's (same cache, same keys): a re-run after a change to one
# backend's exporter re-exports that backend only.
CACHE = Path(os.environ.get("BENCH_CACHE", "out/bench-cache"))


def _export(target: str, precision: str):
    """The default bundle exported to one (target, precision), both concept modes (cached)."""
    from pocketgan.bench.exports import export_bundle

    return export_bundle(
        target, precision, SIZE, CACHE, progress=lambda m: print(f"  [{target} {precision}] {m}", file=sys.stderr)
    )


def source_bytes() -> dict:
    """The reference for the separate-mode size claim: fp32 base weights + one adapter
    file per concept (the default source bundle's safetensors)."""
    from pocketgan.bench.exports import source_bytes as bundle_source_bytes
    from pocketgan.bench.exports import source_manifest

    src = bundle_source_bytes(source_manifest(None))
    return {"base": src["base"], "adapters": list(src["concepts"].values())}


@pytest.fixture(scope="session")
def photo_input():
    from pocketgan.photos import load_rgb, sample_photo_paths
    from pocketgan.runtime.imaging import to_model_input

    return to_model_input(load_rgb(sample_photo_paths()[0]), 256)[0]


@pytest.mark.benchmark(group="export-matrix")
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("target, precision", EXPORTS, ids=[f"{t}-{p}" for t, p in EXPORTS])
def test_matrix(benchmark, threads, photo_input, target, precision, mode):
    from pocketgan.runtime import Runtime
    from pocketgan.runtime.errors import BackendUnavailableError

    export = _export(target, precision)
    out, manifest = export.path, export.manifest
    entry = manifest.targets[target]
    concepts = list(manifest.concept_names)
    benchmark.extra_info.update(
        backend=target,
        precision=precision,
        concept_mode=mode,
        threads=threads,
        concepts=len(concepts),
        bytes=export.artifact_bytes(mode),
        worst_psnr_db=export.worst_psnr_db(mode),
        parity_threshold_db=entry.parity.threshold_db if entry.parity else None,
        source=source_bytes(),
    )
    try:
        rt = Runtime(out, backend=target, threads=threads, concept_mode=mode)
    except BackendUnavailableError as e:
        benchmark.extra_info["latency"] = f"not measured: {e}"
        benchmark.pedantic(lambda: None, rounds=1, iterations=1)  # keeps the row (size, parity) in the JSON
        return
    rt.set_concept(concepts[0])
    benchmark.pedantic(rt.run_tensor, args=(photo_input,), **ROUNDS)


@pytest.mark.benchmark(group="export-matrix")
@pytest.mark.parametrize("mode", MODES)
def test_matrix_torch_eager(benchmark, threads, photo_input, mode):
    """The reference row: the PyTorch model every export is checked against."""
    from pocketgan.bundle import load_bundle

    bundle = load_bundle()
    model = bundle.model_for(bundle.concept_names[0], mode)
    benchmark.extra_info.update(backend="torch-eager", precision="fp32", concept_mode=mode, threads=threads)
    x = torch.from_numpy(photo_input)
    with torch.inference_mode():
        benchmark.pedantic(model, args=(x,), **ROUNDS)
