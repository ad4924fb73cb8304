"""pocketgan.bench: config validation, measurement helpers on the tiny model, the results
schema, the report (markdown + PNG), stability flagging, the GEMM micro-benchmark, and the
device harnesses' parsers on fixture logs. Everything tiny: the real numbers come from
``pocketgan bench`` (docs/benchmarks.md)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from helpers import CONCEPT_NAMES, REPO_ROOT
from pocketgan.bench import BenchConfig, measure
from pocketgan.bench.results import finalize, new_record, new_results, validate

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "bench"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --- config ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"backends": ("tensorrt",)}, "unknown"),
        ({"backends": ()}, "at least one"),
        ({"precisions": ("fp16",)}, "unknown"),
        ({"concept_modes": ("both",)}, "unknown"),
        ({"sizes": (250,)}, "multiples of 8"),
        ({"sizes": ()}, "at least one size"),
        ({"threads": 0}, "threads must be at least 1"),
        ({"rounds": 0}, "rounds must be at least 1"),
        ({"repeats": 0}, "repeats must be at least 1"),
        ({"warmup": -1}, "warmup"),
        ({"tolerance": 1.5}, "tolerance"),
        ({"max_group_seconds": 0}, "max_group_seconds"),
        ({"gemm_sizes": (8,)}, "gemm_sizes"),
        ({"backends": ("eager",), "precisions": ("int8",)}, "fp32 only"),
        ({"bundle": "/nonexistent/bundle"}, "not a bundle"),
        ({"max_foreign_load": 0}, "max_foreign_load"),
        ({"retries": -1}, "retries"),
    ],
)
def test_config_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BenchConfig(**kwargs)


def test_config_normalizes_and_serializes(tmp_path):
    c = BenchConfig(
        out=str(tmp_path), backends=["onnx", "onnx"], sizes=[256], precisions="fp32", rounds=3, min_rounds=10
    )
    assert c.backends == ("onnx",) and c.sizes == (256,) and c.precisions == ("fp32",)
    assert c.min_rounds == 3 and c.cache_dir == tmp_path / "cache"
    d = c.to_dict()
    assert json.loads(json.dumps(d))["backends"] == ["onnx"] and d["out"] == str(tmp_path)


# --- measurement helpers ------------------------------------------------------------------------------


def test_summarize_and_stability():
    s = measure.summarize([4.0, 1.0, 3.0, 2.0, 5.0])
    assert (s.median, s.min, s.max, s.rounds, s.q1, s.q3, s.iqr) == (3.0, 1.0, 5.0, 5, 2.0, 4.0, 2.0)
    assert measure.summarize([7.0]).iqr == 0.0
    with pytest.raises(ValueError):
        measure.summarize([])
    assert measure.spread([10.0, 10.5]) == pytest.approx(0.05)
    assert measure.spread([3.0]) == 0.0
    assert measure.is_stable([10.0, 10.9]) and not measure.is_stable([10.0, 11.5])
    assert measure.is_stable([10.0, 11.5], tolerance=0.2)


def test_time_calls_warms_up_and_caps_time():
    calls = []
    samples = measure.time_calls(lambda: calls.append(1), rounds=7, warmup=3)
    assert len(samples) == 7 and len(calls) == 10 and all(s >= 0 for s in samples)
    import time

    capped = measure.time_calls(lambda: time.sleep(0.01), rounds=100, max_seconds=0.03, min_rounds=2)
    assert 2 <= len(capped) < 10


def test_set_concept_and_open_timers():
    seen = []
    stats = measure.time_set_concept(seen.append, ["a", "b"], rounds=100)
    assert stats.rounds == 10 and stats.median >= 0 and set(seen) == {"a", "b"}
    closed = []

    class Thing:
        def close(self):
            closed.append(1)

    assert measure.time_open(Thing, rounds=3).rounds == 3 and len(closed) == 4  # + the warm-up open


def test_foreign_load_is_the_other_processes_share():
    before = measure.CpuSnapshot(busy_s=100.0, total_s=200.0, own_s=10.0)
    assert measure.foreign_load(before, measure.CpuSnapshot(110.0, 220.0, 20.0)) == 0.0  # only this process ran
    assert measure.foreign_load(before, measure.CpuSnapshot(110.0, 220.0, 10.0)) == 0.5  # another one kept a core busy
    assert measure.foreign_load(before, before) is None and measure.foreign_load(None, before) is None
    snap = measure.cpu_snapshot()
    assert snap is None or (snap.total_s >= snap.busy_s > 0 and snap.own_s > 0)
    load = measure.wait_until_quiet(1.0, timeout=0, probe=0.05)
    assert load is None or 0.0 <= load <= 1.0


def test_resident_memory_and_bytes(tmp_path):
    assert measure.peak_rss_bytes() > 10 * 2**20
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a").write_bytes(b"x" * 10)
    (tmp_path / "b").write_bytes(b"y" * 5)
    assert measure.file_bytes([tmp_path / "d", tmp_path / "b"]) == 15


def test_runtime_runner_and_memory_child_without_torch(exported_bundle, model_inputs):
    from pocketgan.bench.runners import open_runner

    spec = {
        "kind": "runtime",
        "bundle": str(exported_bundle),
        "backend": "onnx",
        "mode": "separate",
        "threads": 1,
        "concept": CONCEPT_NAMES[1],
    }
    runner = open_runner(spec)
    x = next(iter(model_inputs.values()))
    assert runner.run(x).shape == x.shape and runner.concepts == CONCEPT_NAMES
    swap = measure.time_set_concept(runner.set_concept, runner.concepts, rounds=50)
    assert swap.median < 1.0  # milliseconds: a hot swap, not a reload
    mem = measure.measure_memory(spec, 256, runs=1)
    assert mem["peak_rss_bytes"] >= mem["baseline_rss_bytes"] > 0 and mem["open_ms"] > 0
    assert mem["torch_imported"] is False  # what an app embedding pocketgan.runtime pays


def test_eager_runner_hot_swap_matches_the_concept_model(source_bundle, model_inputs):
    """The eager runner's in-place swap gives the same output as building that concept's model."""
    import torch

    from pocketgan.bench.runners import open_runner
    from pocketgan.bundle import load_bundle

    bundle = load_bundle(source_bundle)
    x = next(iter(model_inputs.values()))
    for mode in ("separate", "merged"):
        runner = open_runner({"kind": "eager-bundle", "bundle": str(source_bundle), "mode": mode, "threads": 1})
        for name in (CONCEPT_NAMES[2], CONCEPT_NAMES[0]):
            runner.set_concept(name)
            with torch.no_grad():
                want = bundle.model_for(name, mode)(torch.from_numpy(x)).numpy()
            np.testing.assert_allclose(runner.run(x), want, atol=1e-5)


def test_gemm_microbenchmark_returns_positive_throughput():
    from pocketgan.bench.gemm import gemm_peak

    g = gemm_peak(1, (32, 64), min_time=0.005)
    for precision in ("fp32", "int8"):
        assert g[precision]["peak_gops"] > 0
        assert {s["n"] for s in g[precision]["samples"]} == {32, 64}
        assert all(s["gops"] > 0 and s["seconds"] > 0 for s in g[precision]["samples"])
    impls = {s["impl"] for s in g["fp32"]["samples"]}
    assert {"numpy.matmul", "torch.matmul", "onnxruntime MatMul"} <= impls
    assert "onnxruntime MatMulInteger" in {s["impl"] for s in g["int8"]["samples"]}


def test_onnx_int8_calibration_subset_fits_the_memory_budget(source_bundle, tmp_path, monkeypatch):
    from pocketgan.bench import exports, peers
    from pocketgan.export.calibration import calibration_set

    assert peers.calibration_subset(list(range(22)), 10, budget=1000) == list(range(22))
    assert peers.calibration_subset(list(range(22)), 100, feeds_per_input=3, budget=1000) == [0, 7, 14]
    assert exports.onnx_calibration_folder(64, tmp_path, source_bundle) is None  # the default set fits
    per_input = peers.intermediate_bytes(peers.build_peer(8, 1), 64)
    assert per_input > 8 * 64 * 64 * 4  # at least the first convolution's output
    monkeypatch.setattr(peers, "ORT_CALIBRATION_BUDGET_BYTES", 1)
    folder = exports.onnx_calibration_folder(64, tmp_path, source_bundle)
    assert folder.name.startswith("calibration-64-1of") and len(list(folder.glob("*.png"))) == 1
    cal = calibration_set(64, folder)
    assert len(cal.inputs) == 1 and cal.inputs[0].shape == (1, 3, 64, 64)
    default = calibration_set(64).inputs[0]
    assert np.abs(cal.inputs[0] - default).max() < 0.01  # the same photo, round-tripped through 8 bits


def test_flops_count_macs_twice():
    from pocketgan.bench.flops import pix2pix_flops
    from pocketgan.models.cost import pix2pix_cost

    assert pix2pix_flops(64) == 2 * pix2pix_cost(64).macs
    assert pix2pix_flops(128, ngf=8, blocks=1) == 4 * pix2pix_flops(64, ngf=8, blocks=1)


# --- run_bench end to end (tiny) --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bench_results(tmp_path_factory, source_bundle, exported_bundle):
    """run_bench on the tiny bundle: ONNX (its export taken from the session fixture through the
    cache) and eager, a 4-channel one-block pix2pix peer, 2 rounds x 2 repeats."""
    from pocketgan.bench import run_bench
    from pocketgan.bench.exports import ExportRequest, cache_path

    out = tmp_path_factory.mktemp("bench")
    cached = cache_path(ExportRequest("onnx", "fp32", 256, bundle=source_bundle), out / "cache")
    cached.parent.mkdir(parents=True)
    shutil.copytree(exported_bundle, cached)
    config = BenchConfig(
        out=out,
        bundle=source_bundle,
        backends=("onnx", "eager"),
        precisions=("fp32",),
        sizes=(256,),
        threads=1,
        rounds=2,
        warmup=1,
        repeats=2,
        open_rounds=1,
        swap_rounds=20,
        peer_ngf=4,
        peer_blocks=1,
        gemm_sizes=(32,),
        memory=False,
        progress=False,
        command="pytest",
        quiet_timeout=0,
        retries=0,
    )
    return out, run_bench(config)


def test_run_bench_writes_schema_valid_results(bench_results):
    out, results = bench_results
    validate(results)
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(results))
    ids = {r["id"] for r in results["records"]}
    assert ids == {f"pocketgan/{b}/fp32/{m}/256" for b in ("onnx", "eager") for m in ("separate", "merged")} | {
        "pix2pix/onnx/fp32/none/256",
        "pix2pix/eager/fp32/none/256",
    }
    by_id = {r["id"]: r for r in results["records"]}
    ort = by_id["pocketgan/onnx/fp32/separate/256"]
    assert ort["status"] == "ok" and len(ort["latency_ms"]["repeat_medians"]) == 2 and ort["latency_ms"]["rounds"] == 4
    assert ort["open_ms"]["median"] > 0 and ort["set_concept_ms"]["median"] > 0 and ort["artifact_bytes"] > 0
    assert ort["ratios"]["vs_pix2pix_latency"] > 0 and ort["ratios"]["vs_eager_latency"] > 0
    assert ort["flops"] > 0 and 0 < ort["gemm_peak_share"] and ort["parity_psnr_db"] > 35
    assert len(ort["latency_ms"]["foreign_load"]) == 2
    assert by_id["pix2pix/onnx/fp32/none/256"]["set_concept_ms"] is None
    assert results["machine"]["threads"] == 1 and results["machine"]["versions"]["onnxruntime"]
    assert {c["id"].split("/")[0] for c in results["claims"]} == {
        "latency-vs-pix2pix",
        "gemm-share",
        "set-concept-vs-open",
        "stability",
    }
    assert results["stability"]["checked"] == 6


def test_run_bench_writes_the_table_and_chart(bench_results):
    out, results = bench_results
    md = (out / "results.md").read_text()
    assert "![latency per backend and precision](latency.png)" in md
    assert "| 256 | ONNX Runtime | fp32 | pocketgan | separate |" in md and "## Claims" in md
    assert (out / "latency.png").read_bytes()[:8] == PNG_MAGIC


def test_schema_rejects_malformed_results(bench_results):
    _, results = bench_results
    bad = json.loads(json.dumps(results))
    bad["records"][0]["backend"] = "tflite"
    with pytest.raises(jsonschema.ValidationError):
        validate(bad)
    bad = json.loads(json.dumps(results))
    del bad["records"][0]["latency_ms"]
    with pytest.raises(jsonschema.ValidationError):
        validate(bad)
    bad = json.loads(json.dumps(results))
    bad["machine"].pop("cpu_model")
    with pytest.raises(jsonschema.ValidationError):
        validate(bad)


# --- report and claims from fixture results ------------------------------------------------------------------


def _lat(*medians: float) -> dict:
    m = min(medians)
    return {
        "median": m,
        "iqr": m / 20,
        "q1": m * 0.97,
        "q3": m * 1.02,
        "mean": m,
        "min": m * 0.9,
        "max": m * 1.2,
        "rounds": 20 * len(medians),
        "warmup": 3,
        "repeat_medians": list(medians),
        "spread": measure.spread(medians),
        "stable": True,
    }


def _fixture_results(peer_ms: float = 300.0, unstable: bool = False) -> dict:
    machine = {
        "cpu_model": "Test CPU",
        "logical_cpus": 2,
        "threads": 2,
        "os": "Linux",
        "versions": {"pocketgan": "0.1.0"},
        "date": "2026-11-26T00:00:00+00:00",
    }
    gemm = {
        "threads": 2,
        "fp32": {
            "peak_gops": 200.0,
            "samples": [{"impl": "numpy.matmul", "n": 1024, "seconds": 0.01, "gops": 200.0}],
            "best": {"impl": "numpy.matmul", "n": 1024},
        },
        "int8": {
            "peak_gops": 800.0,
            "samples": [{"impl": "onnxruntime MatMulInteger", "n": 1024, "seconds": 0.003, "gops": 800.0}],
            "best": {"impl": "onnxruntime MatMulInteger", "n": 1024},
        },
    }
    flops = 4_400_000_000
    recs = []
    for backend, precision, sep, mer in (
        ("onnx", "fp32", 24.0, 21.0),
        ("onnx", "int8", 18.0, 13.0),
        ("eager", "fp32", 34.0, 28.0),
    ):
        for mode, ms in (("separate", sep), ("merged", mer)):
            medians = (
                ms,
                ms * (1.3 if unstable and backend == "onnx" and mode == "merged" and precision == "fp32" else 1.0),
            )
            recs.append(
                new_record(
                    "pocketgan",
                    "pocketgan-small",
                    backend,
                    precision,
                    mode,
                    256,
                    latency_ms=_lat(*medians),
                    open_ms={"median": 30.0, "iqr": 1.0, "rounds": 5},
                    set_concept_ms={"median": 0.0007, "iqr": 0.0001, "rounds": 200},
                    flops=flops,
                    artifact_bytes=2_500_000,
                    peak_rss_bytes=80 * 2**20,
                )
            )
        recs.append(
            new_record(
                "pix2pix",
                "pix2pix-resnet9",
                backend,
                precision,
                "none",
                256,
                latency_ms=_lat(peer_ms, peer_ms),
                open_ms={"median": 200.0, "iqr": 5.0, "rounds": 5},
                flops=99_000_000_000,
                artifact_bytes=45_000_000,
                peak_rss_bytes=300 * 2**20,
            )
        )
    recs.append(
        new_record(
            "pocketgan",
            "pocketgan-small",
            "executorch",
            "int8",
            "separate",
            256,
            status="failed",
            error="export failed: ParityError: 29.1 dB",
        )
    )
    results = new_results("host", machine, gemm=gemm, records=recs, repeats=2, command="pocketgan bench --size 256")
    return finalize(results)


def test_claims_and_ratios_from_fixture_results():
    results = _fixture_results()
    validate(results)
    claims = {c["id"]: c for c in results["claims"]}
    assert claims["latency-vs-pix2pix/onnx/fp32/256"]["value"] == pytest.approx(24.0 / 300.0)
    assert claims["latency-vs-pix2pix/onnx/fp32/256"]["met"] is True
    share, expected = claims["gemm-share/fp32/256"], 4.4e9 / 0.021 / 1e9 / 200.0  # best backend: onnx merged
    assert share["value"] == pytest.approx(expected) and share["met"] is True
    assert claims["gemm-share/int8/256"]["value"] == pytest.approx(4.4e9 / 0.013 / 1e9 / 800.0)
    assert (
        claims["set-concept-vs-open/onnx"]["value"] == pytest.approx(0.0007 / 30.0)
        and claims["set-concept-vs-open/onnx"]["met"]
    )
    assert claims["stability"]["met"] is True
    rec = next(r for r in results["records"] if r["id"] == "pocketgan/onnx/int8/merged/256")
    assert rec["ratios"]["vs_eager_latency"] == pytest.approx(13.0 / 28.0)  # int8 rows compare with eager fp32
    assert rec["ratios"]["vs_pix2pix_bytes"] == pytest.approx(2.5e6 / 45e6)
    slow_peer = {c["id"]: c for c in _fixture_results(peer_ms=60.0)["claims"]}
    assert slow_peer["latency-vs-pix2pix/eager/fp32/256"]["met"] is False  # 34 / 60 > 0.25


def test_stability_flags_unstable_groups_in_the_report(tmp_path):
    from pocketgan.bench.report import markdown, write_report

    results = _fixture_results(unstable=True)
    assert results["stability"]["unstable"] == ["pocketgan/onnx/fp32/merged/256"]
    claim = next(c for c in results["claims"] if c["id"] == "stability")
    assert claim["met"] is False and "pocketgan/onnx/fp32/merged/256" in claim["detail"]
    md = markdown(results)
    assert "**NO** (30%)" in md and "`pocketgan/onnx/fp32/merged/256`: medians 21.0 ms, 27.3 ms (spread 30%)" in md
    assert "failed: export failed: ParityError: 29.1 dB" in md
    assert "| fp32 | 200 GFLOP/s | numpy.matmul, n=1024 |" in md
    md_path, png_path = write_report(results, tmp_path)
    assert md_path.read_text() == md and png_path.read_bytes()[:8] == PNG_MAGIC
    assert not list(tmp_path.glob(".*partial*"))


def test_report_only_cli_rewrites_from_results_json(tmp_path):
    from pocketgan.atomic import atomic_write_json
    from pocketgan.bench.__main__ import main

    atomic_write_json(tmp_path / "results.json", _fixture_results())
    assert main(["--report-only", "--out", str(tmp_path)]) == 0
    assert "## Claims" in (tmp_path / "results.md").read_text() and (tmp_path / "latency.png").is_file()


def test_bench_command_parses_the_documented_flags():
    import argparse

    from pocketgan.cli.bench import add_bench_command

    parser = argparse.ArgumentParser()
    add_bench_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "bench",
            "--backends",
            "onnx",
            "executorch",
            "eager",
            "--precision",
            "fp32",
            "int8",
            "--size",
            "256",
            "512",
            "--rounds",
            "7",
            "--threads",
            "2",
            "--out",
            "x",
        ]
    )
    assert args.backends == ["onnx", "executorch", "eager"] and args.precision == ["fp32", "int8"]
    assert args.size == [256, 512] and args.rounds == 7 and args.threads == 2 and args.out == Path("x")
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "--backends", "tflite"])


def test_package_import_is_light():
    code = "import sys, pocketgan.bench, pocketgan.bench.measure, pocketgan.bench.report; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


# --- device harness parsers ---------------------------------------------------------------------------------


ANDROID = FIXTURES / "android"
IOS = FIXTURES / "ios"


def test_executor_runner_log_parser():
    from pocketgan.bench.device import parse_executor_runner_log

    p = parse_executor_runner_log(
        (ANDROID / "pocketgan__executorch__fp32__separate__256__pencil_sketch__r1.log").read_text()
    )
    assert len(p["samples_ms"]) == p["executions"] == 21 and p["method"] == "pencil_sketch" and p["threads"] == 4
    assert p["load_ms"] == pytest.approx(32.2) and p["max_rss_bytes"] == 48312 * 1024
    assert p["total_ms"] == pytest.approx(sum(p["samples_ms"]), rel=1e-5)
    old = "I 00:00:00.3 executorch:executor_runner.cpp:201] Model executed successfully 10 time(s) in 95.000000 ms.\n"
    assert parse_executor_runner_log(old)["mean_ms"] == pytest.approx(9.5)
    with pytest.raises(ValueError, match="Missing operator"):
        parse_executor_runner_log(
            (ANDROID / "pocketgan__executorch__int8__separate__256__pencil_sketch__r1.log").read_text()
        )


def test_ort_perf_test_parser():
    from pocketgan.bench.device import parse_ort_perf_test

    p = parse_ort_perf_test((ANDROID / "pix2pix__onnx__fp32__none__256__-__r1.log").read_text())
    assert p["session_creation_ms"] == pytest.approx(161.0) and p["runs"] == 20
    assert p["min_ms"] <= p["p50_ms"] <= p["p90_ms"] <= p["max_ms"] and p["peak_working_set_bytes"] == 259584000
    with pytest.raises(ValueError):
        parse_ort_perf_test("Session creation time cost: 0.1 s\n")


def test_android_results_from_fixture_logs(exported_bundle, tmp_path):
    from pocketgan.bench.device import LOG_NAME, android_results, main

    assert LOG_NAME.match("pocketgan__onnx__int8__merged__512__color_pencil__r2.log")["concept"] == "color_pencil"
    results = android_results(ANDROID)
    validate(results)
    assert results["source"] == "android" and results["machine"]["device"] == "Google Pixel 8"
    assert results["machine"]["threads"] == 4 and "i8mm" in results["machine"]["cpu_flags"]
    by_id = {r["id"]: r for r in results["records"]}
    et = by_id["pocketgan/executorch/fp32/separate/256"]
    assert et["latency_ms"]["rounds"] == 40 and len(et["latency_ms"]["repeat_medians"]) == 2
    assert set(et["extra"]["per_concept_median_ms"]) == {"cartoon", "pencil_sketch"}
    assert 0 < et["ratios"]["vs_pix2pix_latency"] < 0.25 and et["open_ms"]["median"] > 0
    ort = by_id["pocketgan/onnx/fp32/merged/256"]
    assert ort["latency_ms"]["iqr"] is None and ort["peak_rss_bytes"] == 71532544
    assert by_id["pix2pix/executorch/fp32/none/256"]["artifact_bytes"] == 45612836
    assert by_id["pocketgan/executorch/int8/separate/256"]["status"] == "failed"
    assert results["stability"]["unstable"] == ["pix2pix/executorch/fp32/none/256"]
    # with the pushed bundle's manifest: sizes, parity and FLOPs of the generator rows
    with_bundle = android_results(ANDROID, [exported_bundle])
    onnx = {r["id"]: r for r in with_bundle["records"]}["pocketgan/onnx/fp32/separate/256"]
    assert onnx["artifact_bytes"] > 0 and onnx["parity_psnr_db"] > 35 and onnx["flops"] > 0
    assert main(["android", str(ANDROID), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "latency.png").read_bytes()[:8] == PNG_MAGIC and "Pixel 8" in (
        tmp_path / "results.md"
    ).read_text()


def test_ios_results_and_xctest_log(tmp_path):
    from pocketgan.bench.device import ios_results, main, parse_xctest_log

    measured = parse_xctest_log((IOS / "xcodebuild.log").read_text())
    assert [(m["test"], m["metric"]) for m in measured] == [
        ("testConceptSwitchPerformance", "Clock Monotonic Time, s"),
        ("testFunctionLatencyPerformance", "Clock Monotonic Time, s"),
        ("testFunctionLatencyPerformance", "Memory Physical, kB"),
    ]
    assert len(measured[1]["values"]) == 10 and measured[1]["average"] == pytest.approx(0.002481)
    results = ios_results(IOS / "xcodebuild.log")  # finds pocketgan-bench-ios.json next to the log
    validate(results)
    by_id = {r["id"]: r for r in results["records"]}
    sep = by_id["pocketgan/coreml/fp16/separate/256"]
    assert sep["ratios"]["vs_pix2pix_latency"] < 0.25 and sep["ratios"]["set_concept_vs_open"] < 0.01
    assert len(sep["extra"]["xctest_measure"]) == 3
    assert {c["id"] for c in results["claims"]} >= {"latency-vs-pix2pix/coreml/fp16/256", "set-concept-vs-open/coreml"}
    assert ios_results(IOS / "pocketgan-bench-ios.json")["records"][0]["ratios"]["vs_pix2pix_latency"] > 0
    assert main(["ios", str(IOS / "pocketgan-bench-ios.json"), "--out", str(tmp_path)]) == 0
    assert "iOS device" in (tmp_path / "results.md").read_text()


def test_android_script_end_to_end_with_a_fake_adb(exported_bundle, tmp_path):
    """run_android_bench.sh against an adb stub that answers like a phone: it pushes the
    bundle's ONNX models, runs onnxruntime_perf_test for each, and converts the logs."""
    script = REPO_ROOT / "device_harness" / "android" / "run_android_bench.sh"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    perf_log = (ANDROID / "pocketgan__onnx__fp32__merged__256__cartoon__r1.log").read_text()
    (tmp_path / "perf.log").write_text(perf_log)
    (bin_dir / "adb").write_text(
        textwrap.dedent(f"""\
        #!/usr/bin/env bash
        echo "$*" >> {tmp_path}/adb-calls.txt
        case "$*" in
          *onnxruntime_perf_test*) cat {tmp_path}/perf.log ;;
          *ro.product.model*) echo "Pixel Stub" ;;
          *ro.product.manufacturer*) echo "Google" ;;
          *nproc*) echo 8 ;;
          *MemTotal*) echo "MemTotal:        7836504 kB" ;;
          *) ;;
        esac
        """)
    )
    (bin_dir / "adb").chmod(0o755)
    runner = tmp_path / "onnxruntime_perf_test"
    runner.write_text("stub")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHON": sys.executable}
    out = tmp_path / "logs"
    proc = subprocess.run(
        [
            "bash",
            str(script),
            "--bundle",
            str(exported_bundle),
            "--ort-perf",
            str(runner),
            "--out",
            str(out),
            "--repeats",
            "1",
            "--runs",
            "5",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = sorted(p.name for p in out.glob("*.log"))
    assert names == sorted(
        [f"pocketgan__onnx__fp32__separate__256__{CONCEPT_NAMES[0]}__r1.log"]
        + [f"pocketgan__onnx__fp32__merged__256__{c}__r1.log" for c in CONCEPT_NAMES]
    )
    results = json.loads((out / "results.json").read_text())
    validate(results)
    assert results["machine"]["device"] == "Google Pixel Stub" and results["machine"]["logical_cpus"] == 8
    assert {r["concept_mode"] for r in results["records"]} == {"separate", "merged"}
    assert all(r["artifact_bytes"] for r in results["records"])
    calls = (tmp_path / "adb-calls.txt").read_text()
    assert "push" in calls and "-x 4" in calls and "-r 5" in calls


def test_cache_keys_follow_the_exporter_code(tmp_path, monkeypatch):
    """A cached export is keyed by the code that wrote it: each backend's own exporter
    file changes that backend's key only; the shared export code changes every key."""
    import pocketgan.export
    from pocketgan.bench import peers

    keys = {b: peers.cache_key(backend=b, size=256) for b in ("onnx", "executorch", "coreml")}
    assert len(set(keys.values())) == 3
    assert keys == {b: peers.cache_key(backend=b, size=256) for b in keys}  # deterministic

    real = Path(pocketgan.export.__file__).parent
    fake = tmp_path / "export"
    shutil.copytree(real, fake, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(pocketgan.export, "__file__", str(fake / "__init__.py"))
    assert {b: peers.cache_key(backend=b, size=256) for b in keys} == keys  # same bytes, same keys
    with open(fake / "onnx_target.py", "a") as f:
        f.write("\n# changed\n")
    changed = {b: peers.cache_key(backend=b, size=256) for b in keys}
    assert changed["onnx"] != keys["onnx"]
    assert changed["executorch"] == keys["executorch"] and changed["coreml"] == keys["coreml"]
    with open(fake / "parity.py", "a") as f:
        f.write("\n# changed\n")
    shared = {b: peers.cache_key(backend=b, size=256) for b in keys}
    assert all(shared[b] != changed[b] for b in keys)
