"""The reports of benchmarks/' pytest-benchmark suites (pocketgan.bench.report_pytest) turn
their JSON into tables, claim checks and results documents; the ONNX Runtime profiler; the
benchmark vocabulary against the export vocabulary and the results schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pocketgan.bench import report_pytest
from pocketgan.bench.report import main as report_main


def _bench(name: str, median_s: float, **info) -> dict:
    return {"name": name, "stats": {"median": median_s, "iqr": median_s / 50}, "extra_info": info}


def _matrix(tmp_path, et_separate_s: float) -> Path:
    """A matrix suite's JSON: every claim met unless ExecuTorch fp32 separate is slower than ORT's 20 ms."""
    KiB = 1024
    src = {"base": 1000 * KiB, "adapters": [10 * KiB] * 5}
    rows = [
        _bench("eager", 0.030, backend="torch-eager", precision="fp32", concept_mode=m, threads=2)
        for m in ("separate", "merged")
    ]
    for mode in ("separate", "merged"):
        et_fp32_s = et_separate_s if mode == "separate" else 0.019
        for backend, fp32_s, int8_s in (("onnx", 0.020, 0.010), ("executorch", et_fp32_s, 0.010)):
            for precision, t, size in (("fp32", fp32_s, 1040 * KiB), ("int8", int8_s, 280 * KiB)):
                rows.append(
                    _bench(
                        f"{backend}-{precision}-{mode}",
                        t,
                        backend=backend,
                        precision=precision,
                        concept_mode=mode,
                        threads=2,
                        concepts=5,
                        bytes=size,
                        worst_psnr_db=34.0,
                        source=src,
                    )
                )
        coreml_sizes = (("fp32", 1000 * KiB), ("fp16", 500 * KiB), ("int8", 250 * KiB), ("palettize4", 150 * KiB))
        for precision, size in coreml_sizes:
            rows.append(
                _bench(
                    f"coreml-{precision}-{mode}",
                    0.0,
                    backend="coreml",
                    precision=precision,
                    concept_mode=mode,
                    threads=2,
                    concepts=5,
                    bytes=size,
                    worst_psnr_db=None,
                    source=src,
                    latency="not measured: macOS only",
                )
            )
    path = tmp_path / "matrix.json"
    path.write_text(
        json.dumps(
            {
                "benchmarks": rows,
                "machine_info": {"cpu": {"brand_raw": "cpu", "count": 2}},
                "datetime": "2026-11-26T00:00:00",
            }
        )
    )
    return path


def test_matrix_report_all_claims_met(tmp_path, capsys):
    path = _matrix(tmp_path, et_separate_s=0.019)
    text, ok = report_pytest.matrix_report(json.loads(path.read_text()))
    assert ok, text
    assert "| onnx | int8 | separate | 10.0 ms | 280 KiB | 34.0 dB |" in text
    assert "| coreml | fp16 | merged | macOS only | 500 KiB | macOS only |" in text
    assert "**NO**" not in text
    assert "| onnx fp32 separate bundle (5 concepts) / (base + adapters) | 0.990 | ≤ 1.100 | yes |" in text
    # make bench-matrix: prints the page and writes it; exit status 0 with every claim met
    assert report_main(["matrix", str(path), str(tmp_path / "export-matrix.md")]) == 0
    assert (tmp_path / "export-matrix.md").read_text() == text
    assert capsys.readouterr().out == text + "\n"


def test_matrix_report_flags_an_unmet_claim(tmp_path):
    path = _matrix(tmp_path, et_separate_s=0.025)
    text, ok = report_pytest.matrix_report(json.loads(path.read_text()))
    assert not ok and report_main(["matrix", str(path)]) == 1
    assert "| ExecuTorch fp32 / ONNX Runtime fp32 latency (separate) | 1.25 | ≤ 1.00 | **NO** |" in text


def test_slice_report(tmp_path):
    rows = [_bench(f"test_torch_eager[{m}]", 0.040) for m in ("separate", "merged")]
    rows += [_bench(f"test_onnx_runtime[{m}]", 0.018) for m in ("separate", "merged")]
    rows += [_bench("test_open_bundle_cold", 0.030), _bench("test_set_concept", 1e-6)]
    text, ok = report_pytest.slice_report({"benchmarks": rows})
    assert ok and "| ORT / eager latency (separate) | 0.450 | ≤ 0.500 | yes |" in text
    assert "| PyTorch eager, merged | 40.0 ms | | |" in text and "ExecuTorch" not in text
    rows[2]["stats"]["median"] = 0.030
    text, ok = report_pytest.slice_report({"benchmarks": rows})
    assert not ok and "| ORT / eager latency (separate) | 0.750 | ≤ 0.500 | NO |" in text
    path = tmp_path / "slice.json"
    path.write_text(json.dumps({"benchmarks": rows}))
    assert report_main(["slice", str(path)]) == 1  # make bench: the table on stdout, unmet claim


def test_profile_onnx_splits_the_time_by_op_type(exported_bundle):
    from pocketgan.bench.profile_onnx import profile

    table = profile(exported_bundle, None, "separate", runs=2, threads=1)
    assert "Conv" in table or "FusedConv" in table
    assert all(ms >= 0 and nodes >= 1 for ms, nodes in table.values())
    merged = profile(exported_bundle, "beta-2", "merged", runs=2, threads=1)
    assert sum(n for _, n in merged.values()) < sum(n for _, n in table.values())  # no LoRA branches


def _suite_json(with_samples: bool = True) -> dict:
    """test_bench_suite.py's JSON for one generator group and its peer (ONNX fp32 256²), two
    repeats of 4 samples each, plus cold open, set_concept, memory and the GEMM peak."""
    benches = []
    for model, mode, ms in (("pocketgan", "separate", 20.0), ("pix2pix", "none", 400.0)):
        info = dict(
            group=f"{model}/onnx/fp32/{mode}/256",
            model=model,
            model_name=f"{model}-x",
            backend="onnx",
            precision="fp32",
            concept_mode=mode,
            size=256,
            threads=2,
            concept=None,
            concepts=None,
            artifact_bytes=1000,
            parity_psnr_db=40.0,
            flops=4_000_000_000,
        )
        for repeat, scale in ((1, 1.0), (2, 1.05)):
            stats = {"data": [ms * scale / 1e3 * f for f in (0.9, 1.0, 1.0, 1.1)]} if with_samples else {}
            benches.append(
                {"stats": stats, "extra_info": {**info, "measurement": "latency", "repeat": repeat, "warmup": 3}}
            )
        timing = {
            "median": 0.03,
            "iqr": 0.001,
            "q1": 0.0295,
            "q3": 0.0305,
            "mean": 0.03,
            "min": 0.029,
            "max": 0.031,
            "rounds": 5,
        }
        benches.append({"stats": timing, "extra_info": {**info, "measurement": "open"}})
        if model == "pocketgan":
            swap = {k: v / 1e5 for k, v in timing.items() if k != "rounds"}
            benches.append({"stats": {**swap, "rounds": 2000}, "extra_info": {**info, "measurement": "set_concept"}})
        benches.append(
            {
                "stats": {},
                "extra_info": {
                    **info,
                    "measurement": "memory",
                    "peak_rss_bytes": 200 * 2**20,
                    "baseline_rss_bytes": 100 * 2**20,
                    "open_ms": 40.0,
                },
            }
        )
    gemm = {
        "threads": 2,
        "fp32": {
            "peak_gops": 400.0,
            "best": {"impl": "numpy.matmul", "n": 1024},
            "samples": [{"impl": "numpy.matmul", "n": 1024, "seconds": 0.005, "gops": 400.0}],
        },
    }
    benches.append({"stats": {}, "extra_info": {"measurement": "gemm", "gemm": gemm}})
    return {"benchmarks": benches, "datetime": "2026-11-26T00:00:00"}


def test_suite_results_follow_the_bench_schema(tmp_path, capsys):
    results = report_pytest.suite_results(_suite_json())
    by_id = {r["id"]: r for r in results["records"]}
    gen = by_id["pocketgan/onnx/fp32/separate/256"]
    assert gen["latency_ms"]["repeat_medians"] == pytest.approx([20.0, 21.0]) and gen["latency_ms"]["rounds"] == 8
    assert gen["latency_ms"]["stable"] and gen["latency_ms"]["warmup"] == 3
    assert gen["open_ms"]["median"] == pytest.approx(30.0) and gen["set_concept_ms"]["median"] == pytest.approx(3e-4)
    assert gen["ratios"]["vs_pix2pix_latency"] == pytest.approx(0.05)
    assert gen["peak_rss_bytes"] == 200 * 2**20 and gen["open_fresh_process_ms"] == 40.0
    assert by_id["pix2pix/onnx/fp32/none/256"]["set_concept_ms"] is None
    assert results["stability"]["repeats"] == 2 and results["gemm"]["fp32"]["peak_gops"] == 400.0
    claims = {c["id"]: c for c in results["claims"]}
    assert claims["latency-vs-pix2pix/onnx/fp32/256"]["met"] is True
    assert claims["gemm-share/fp32/256"]["value"] == pytest.approx(4.0 / 0.0205 / 400.0)  # pooled median 20.5 ms
    with pytest.raises(ValueError, match="--benchmark-save-data"):
        report_pytest.suite_results(_suite_json(with_samples=False))
    # make bench-suite: results.json, results.md and the chart, the claims on stdout
    path = tmp_path / "bench-suite.json"
    path.write_text(json.dumps(_suite_json()))
    assert report_main(["suite", str(path)]) == 0
    out = tmp_path / "bench-suite"
    assert json.loads((out / "results.json").read_text())["records"]
    assert (out / "latency.png").is_file() and "## Claims" in (out / "results.md").read_text()
    assert "| ONNX Runtime fp32 256²: pocketgan / pix2pix latency" in capsys.readouterr().out


def test_report_of_a_results_document_recomputes_the_derived_fields(tmp_path, capsys):
    """python -m pocketgan.bench.report RESULTS.json: a document written without ratios or
    claims (as the apps write it) gets them, then its table and chart."""
    results = report_pytest.suite_results(_suite_json())
    for rec in results["records"]:
        rec["ratios"] = {}
    results["claims"] = []
    path = tmp_path / "phone.json"
    path.write_text(json.dumps(results))
    assert report_main([str(path), "--out", str(tmp_path / "report")]) == 0
    md = (tmp_path / "report" / "results.md").read_text()
    assert "| ONNX Runtime fp32 256²: pocketgan / pix2pix latency (worst concept mode: separate) | 0.050 |" in md
    assert (tmp_path / "report" / "latency.png").is_file() and "wrote" in capsys.readouterr().out


def test_bench_vocabulary_comes_from_the_export_targets():
    """BACKENDS, titles and orders derive from runtime/targets.py; the results schema names
    every backend, precision and concept mode a results document can hold."""
    from pocketgan.bench import config
    from pocketgan.bench.results import load_schema
    from pocketgan.runtime.targets import PRECISIONS, RUNNABLE_MODES, TARGET_SPECS, TARGETS

    assert config.BACKENDS == (*[t for t in TARGETS if t != "coreml"], "eager")
    assert all(config.BACKEND_TITLES[t] == TARGET_SPECS[t].runtime_title for t in TARGETS)
    assert set(config.BENCH_PRECISIONS) <= set(PRECISIONS) and config.BENCH_CONCEPT_MODES == RUNNABLE_MODES["both"]
    assert all(set(config.BENCH_PRECISIONS) <= set(TARGET_SPECS[t].precisions) for t in config.INT8_BACKENDS)
    record = load_schema()["$defs"]["record"]["properties"]
    assert set(record["backend"]["enum"]) == set(config.BACKEND_ORDER)
    assert set(record["precision"]["enum"]) == set(PRECISIONS)
    assert set(record["concept_mode"]["enum"]) == set(config.RECORD_MODES)
    assert set(record["model"]["enum"]) == {config.GENERATOR, config.PEER}
