"""``pocketgan bench`` (flags from :class:`pocketgan.bench.config.BenchConfig`) and the
parser of ``python -m pocketgan.bench.device``."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from pocketgan.bench.api import CHART_PNG, RESULTS_JSON, RESULTS_MD
from pocketgan.cli.common import defer
from pocketgan.cli.flags import add_config_flags, config_kwargs


def _bench_flags(s: argparse.ArgumentParser) -> None:
    from pocketgan.bench.config import BACKENDS, BENCH_CONCEPT_MODES, BENCH_PRECISIONS, BenchConfig

    add_config_flags(
        s,
        BenchConfig,
        skip=("command",),
        flags={"precisions": "--precision", "sizes": "--size", "concept_modes": "--modes"},
        options={
            "backends": {"choices": list(BACKENDS)},
            "precisions": {"choices": list(BENCH_PRECISIONS)},
            "concept_modes": {"choices": list(BENCH_CONCEPT_MODES)},
        },
    )
    s.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite results.md and latency.png from OUT/results.json (host or device results), measure nothing",
    )


def _report_only(out: Path) -> int:
    from pocketgan.bench.report import report_file

    # report_file recomputes the derived fields (documents written by the apps leave them empty)
    md, png = report_file(out / RESULTS_JSON, out)
    print(f"wrote {md}, {png}", file=sys.stderr)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from pocketgan.bench.config import BenchConfig

    if args.report_only:
        return _report_only(Path(args.out))
    from pocketgan.bench.api import run_bench
    from pocketgan.bench.report import claims_table

    argv = sys.argv[2:] if len(sys.argv) > 1 and sys.argv[1] == "bench" else sys.argv[1:]
    config = BenchConfig(**config_kwargs(args, BenchConfig), command="pocketgan bench " + shlex.join(argv))
    results = run_bench(config)
    print(claims_table(results))
    print(f"\nwrote {config.out / RESULTS_JSON}, {config.out / RESULTS_MD}, {config.out / CHART_PNG}", file=sys.stderr)
    return 0


def add_bench_command(sub) -> None:
    """Register ``pocketgan bench`` on an ``argparse`` subparsers object."""
    s = sub.add_parser(
        "bench",
        help="latency, cold open, set_concept, memory, size and GEMM share vs pix2pix and eager",
        description="Benchmark the generator against the pix2pix ResNet-9 peer and PyTorch eager on "
        "every backend x precision x concept mode x size; write results.json (schema: "
        "pocketgan/bench/schema.json), results.md and latency.png into --out.",
    )
    defer(s, _bench_flags)
    s.set_defaults(func=cmd_bench)


def register(sub) -> None:
    add_bench_command(sub)


# ------------------------------------------------------------------ python -m pocketgan.bench.device


def cmd_device(args: argparse.Namespace) -> int:
    """Turn a phone's harness output into results.json, results.md and latency.png."""
    from pocketgan.atomic import atomic_write_json
    from pocketgan.bench.device import android_results, ios_results
    from pocketgan.bench.report import write_report

    if args.platform == "android":
        results = android_results(args.logs, args.bundle, tolerance=args.tolerance)
        out = args.out or args.logs
    else:
        results = ios_results(args.result)
        out = args.out or (args.result if args.result.is_dir() else args.result.parent)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / RESULTS_JSON, results)
    md, png = write_report(results, out)
    print(f"wrote {out / RESULTS_JSON}, {md}, {png}")
    return 0


def device_parser(description: str | None = None) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m pocketgan.bench.device",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ap.add_subparsers(dest="platform", required=True)
    a = sub.add_parser("android", help="logs of device_harness/android/run_android_bench.sh")
    a.add_argument("logs", type=Path, help="the folder of logs the script left")
    a.add_argument(
        "--bundle",
        type=Path,
        action="append",
        default=[],
        help="an exported bundle that was pushed (sizes, parity, FLOPs); repeat for fp32 and int8",
    )
    a.add_argument("--out", type=Path, help="output directory (default: LOGS)")
    a.add_argument("--tolerance", type=float, default=0.10, help="stability tolerance (default 0.10)")
    i = sub.add_parser("ios", help="the iOS XCTest's JSON, exported .xcresult attachments, or an xcodebuild log")
    i.add_argument("result", type=Path, help="pocketgan-bench-ios.json, an attachments folder or xcodebuild.log")
    i.add_argument("--out", type=Path, help="output directory (default: next to RESULT)")
    ap.set_defaults(func=cmd_device)
    return ap
