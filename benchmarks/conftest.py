"""Benchmarks run on purpose (`make bench`, `make bench-matrix`, `make bench-suite`), never in
the default test run; `python -m pocketgan.bench.report` turns their JSON into tables.

Every benchmark pins the thread count (``BENCH_THREADS``, default 2) for both PyTorch and
ONNX Runtime, warms up, and runs several rounds; pytest-benchmark records the machine.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

THREADS = int(os.environ.get("BENCH_THREADS", "2"))


@pytest.fixture(scope="session")
def threads() -> int:
    import torch

    torch.set_num_threads(THREADS)
    return THREADS


@pytest.fixture(scope="session")
def exported_bundle(tmp_path_factory) -> Path:
    """The embedded default bundle exported to ONNX and ExecuTorch, both concept modes."""
    from pocketgan.export import ExportConfig, run_export

    out = tmp_path_factory.mktemp("bench") / "bundle"
    run_export(ExportConfig(out=out, targets=("onnx", "executorch"), concepts="both"))
    return out


@pytest.fixture(scope="session")
def model_input(exported_bundle) -> np.ndarray:
    from pocketgan.photos import load_rgb, sample_photo_paths
    from pocketgan.runtime.imaging import to_model_input

    return to_model_input(load_rgb(sample_photo_paths()[0]), 256)[0]
