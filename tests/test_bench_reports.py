"""The benchmark report scripts turn pytest-benchmark JSON into tables and claim checks."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _bench(name: str, median_s: float, **info) -> dict:
    return {"name": name, "stats": {"median": median_s, "iqr": median_s / 50}, "extra_info": info}


def _matrix(tmp_path, et_separate_s: float) -> Path:
    KiB = 1024
    src = {"base": 1000 * KiB, "adapters": [10 * KiB] * 5}
    rows = [_bench("eager", 0.030, backend="torch-eager", precision="fp32", concept_mode=m, threads=2)
            for m in ("separate", "merged")]
    for mode in ("separate", "merged"):
        for backend, fp32_s, int8_s in (("onnx", 0.020, 0.010), ("executorch", et_separate_s if mode == "separate" else 0.019, 0.010)):
            for precision, t, size in (("fp32", fp32_s, 1040 * KiB), ("int8", int8_s, 280 * KiB)):
                rows.append(_bench(f"{backend}-{precision}-{mode}", t, backend=backend, precision=precision,
                                   concept_mode=mode, threads=2, concepts=5, bytes=size, worst_psnr_db=34.0,
                                   source=src))
        for precision, size in (("fp32", 1000 * KiB), ("fp16", 500 * KiB), ("int8", 250 * KiB), ("palettize4", 150 * KiB)):
            rows.append(_bench(f"coreml-{precision}-{mode}", 0.0, backend="coreml", precision=precision,
                               concept_mode=mode, threads=2, concepts=5, bytes=size, worst_psnr_db=None,
                               source=src, latency="not measured: macOS only"))
    path = tmp_path / "matrix.json"
    path.write_text(json.dumps({"benchmarks": rows, "machine_info": {"cpu": {"brand_raw": "cpu", "count": 2}},
                                "datetime": "2026-11-26T00:00:00"}))
    return path


def test_matrix_report_all_claims_met(tmp_path):
    text, ok = _load("matrix_report").report(str(_matrix(tmp_path, et_separate_s=0.019)))
    assert ok, text
    assert "| onnx | int8 | separate | 10.0 ms | 280 KiB | 34.0 dB |" in text
    assert "| coreml | fp16 | merged | macOS only | 500 KiB | macOS only |" in text
    assert "**NO**" not in text


def test_matrix_report_flags_an_unmet_claim(tmp_path):
    text, ok = _load("matrix_report").report(str(_matrix(tmp_path, et_separate_s=0.025)))
    assert not ok
    assert "| ExecuTorch fp32 / ONNX Runtime fp32 latency (separate) | 1.25 | ≤ 1.00 | **NO** |" in text


def test_slice_report(tmp_path):
    rows = [_bench(f"test_torch_eager[{m}]", 0.040) for m in ("separate", "merged")]
    rows += [_bench(f"test_onnx_runtime[{m}]", 0.018) for m in ("separate", "merged")]
    rows += [_bench("test_open_bundle_cold", 0.030), _bench("test_set_concept", 1e-6)]
    path = tmp_path / "slice.json"
    path.write_text(json.dumps({"benchmarks": rows}))
    text, ok = _load("report").report(str(path))
    assert ok and "| ORT / eager latency (separate) | 0.450 | ≤ 0.500 | yes |" in text
    rows[2]["stats"]["median"] = 0.030
    path.write_text(json.dumps({"benchmarks": rows}))
    assert not _load("report").report(str(path))[1]


def test_profile_onnx_splits_the_time_by_op_type(exported_bundle):
    table = _load("profile_onnx").profile(exported_bundle, None, "separate", runs=2, threads=1)
    assert "Conv" in table or "FusedConv" in table
    assert all(ms >= 0 and nodes >= 1 for ms, nodes in table.values())
    merged = _load("profile_onnx").profile(exported_bundle, "beta-2", "merged", runs=2, threads=1)
    assert sum(n for _, n in merged.values()) < sum(n for _, n in table.values())  # no LoRA branches
