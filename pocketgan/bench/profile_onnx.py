"""Where ONNX Runtime spends its time: per-op-type kernel time of one bundle's ONNX export.

    python -m pocketgan.bench.profile_onnx BUNDLE [--concept NAME] [--mode separate|merged] [--runs 20]

Runs the model as the runtime does (ORT_ENABLE_ALL, the bundle's adapter applied per
run), with ORT's profiler on, and prints the share and per-run milliseconds of each op
type (``QLinearConv``, ``Conv``, ``DequantizeLinear``, …). The per-op figures in
docs/quantization.md and docs/benchmarks.md come from this. Profiling adds overhead:
compare shares, not the total, with the benchmarks.
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
from pathlib import Path

import numpy as np

from pocketgan.bench.config import BENCH_CONCEPT_MODES
from pocketgan.runtime.errors import TargetNotFoundError


def profile(bundle: Path, concept: str | None, mode: str, runs: int, threads: int) -> dict[str, tuple[float, int]]:
    """op type -> (milliseconds per run, nodes per run), most time first; ``mode`` is one of
    the runtime's concept modes (separate: the base session plus the concept's adapter)."""
    import onnxruntime as ort

    from pocketgan.runtime.backends.onnx import session_options
    from pocketgan.runtime.manifest import read_manifest

    manifest = read_manifest(bundle)
    entry = manifest.onnx
    if entry is None:
        raise TargetNotFoundError(
            f"{bundle}/manifest.json: no targets.onnx (no ONNX export to profile)",
            file="manifest.json",
            field="targets.onnx",
        )
    concept = concept or manifest.concept_names[0]
    options = session_options(threads)
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "ort")
    run_options = ort.RunOptions()
    if mode == "separate":
        session = ort.InferenceSession(str(bundle / entry.model), options, providers=["CPUExecutionProvider"])
        adapter = ort.LoraAdapter()
        adapter.Load(str(bundle / entry.adapters[concept]))
        run_options.add_active_adapter(adapter)
    else:
        merged = str(bundle / entry.merged[concept])
        session = ort.InferenceSession(merged, options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(-1, 1, manifest.input.shape).astype(np.float32)
    warmup = 3
    for _ in range(warmup + runs):
        session.run(None, {manifest.input.name: x}, run_options)
    events = json.loads(Path(session.end_profiling()).read_text())
    micros, nodes = collections.Counter(), collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            micros[event["args"]["op_name"]] += event["dur"]
            nodes[event["args"]["op_name"]] += 1
    total_runs = warmup + runs
    return {op: (us / total_runs / 1000, nodes[op] // total_runs) for op, us in micros.most_common()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m pocketgan.bench.profile_onnx",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("bundle", type=Path, help="an exported bundle with an ONNX target")
    ap.add_argument("--concept", help="concept (default: the first)")
    ap.add_argument("--mode", default="separate", choices=list(BENCH_CONCEPT_MODES))
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    table = profile(args.bundle, args.concept, args.mode, args.runs, args.threads)
    total = sum(ms for ms, _ in table.values())
    print("| op type | ms per run | share | nodes |\n|---|---:|---:|---:|")
    for op, (ms, n) in table.items():
        print(f"| {op} | {ms:.2f} | {100 * ms / total:.1f}% | {n} |")
    print(f"| total (kernels, profiled) | {total:.2f} | | |")


if __name__ == "__main__":
    main()
