"""Device harness output -> the results schema (``schema.json``), so phone runs get the
same table, chart and claims as ``pocketgan bench``.

Android (``device_harness/android/run_android_bench.sh``) leaves a folder of logs:

- ``device.txt``: ``key=value`` lines (``getprop`` model, SoC, Android version, CPU, cores);
- ``files.tsv``: ``<artifact path>\\t<bytes>`` of everything pushed;
- one log per run, named ``<model>__<backend>__<precision>__<mode>__<size>__<concept>__r<repeat>.log``
  (``concept`` ``-`` for the pix2pix peer), holding ExecuTorch's ``executor_runner``
  output (``Iteration i of N: t ms``, ``Model loaded in t ms``, ``Model executed
  successfully N time(s) in t ms``) or ``onnxruntime_perf_test``'s (``Session creation
  time cost``, ``P50 Latency``, ``Peak working set size``), followed by toybox
  ``time -v``'s ``Max RSS (KiB)``.

iOS (``device_harness/ios/PocketganBenchTests.swift``) writes the schema document itself
(``pocketgan-bench-ios.json``, also attached to the test result); ``xcodebuild``'s log
lines for its ``measure`` blocks (``measured [Time, seconds] average: ..., values: [...]``)
are parsed too.

    python -m pocketgan.bench.device android LOG_DIR [--bundle BUNDLE]... [--out DIR]
    python -m pocketgan.bench.device ios RESULT.json|xcodebuild.log|EXPORTED_ATTACHMENTS_DIR [--out DIR]

Both write ``results.json``, ``results.md`` and ``latency.png`` into ``--out``
(default: the input's folder). Nothing here imports torch.
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

from pocketgan.bench.measure import spread, summarize
from pocketgan.bench.results import finalize, finished_results, new_record, validate

LOG_NAME = re.compile(
    r"^(?P<model>pocketgan|pix2pix)__(?P<backend>executorch|onnx|coreml)__(?P<precision>fp32|fp16|int8|palettize4)__"
    r"(?P<mode>separate|merged|none)__(?P<size>\d+)__(?P<concept>.+?)__r(?P<repeat>\d+)\.log$"
)
_NUM = r"([0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?)"


# --- log parsers -----------------------------------------------------------------------------


def parse_time_v(text: str) -> int | None:
    """Peak resident memory in bytes from toybox / GNU ``time -v`` output (None if absent)."""
    m = re.search(r"Max RSS \(KiB\):\s*(\d+)", text) or re.search(
        r"Maximum resident set size \(kbytes\):\s*(\d+)", text
    )
    return int(m.group(1)) * 1024 if m else None


def parse_executor_runner_log(text: str) -> dict:
    """ExecuTorch ``executor_runner`` output: per-iteration ms (newer runners), the total,
    the method load time, the method and thread count, and ``time -v``'s peak RSS.

    Raises ``ValueError`` when the log shows no successful execution.
    """
    iterations = [float(t) for t in re.findall(r"Iteration \d+ of \d+:\s*" + _NUM + r"\s*ms", text)]
    total = re.search(r"Model executed successfully (\d+) time\(s\) in " + _NUM + r"\s*ms", text)
    if total is None and not iterations:
        error = re.search(r"^E .*?\] (.*)$", text, re.M)
        raise ValueError(
            "executor_runner log has no successful execution" + (f": {error.group(1).strip()}" if error else "")
        )
    load = re.search(r"Model loaded in " + _NUM + r"\s*ms", text)
    method = re.search(r"Using method (\S+)", text)
    threads = re.search(r"num threads = (\d+)", text)
    executions = int(total.group(1)) if total else len(iterations)
    return {
        "samples_ms": iterations,
        "executions": executions,
        "total_ms": float(total.group(2)) if total else sum(iterations),
        "mean_ms": float(total.group(2)) / executions if total else sum(iterations) / len(iterations),
        "load_ms": float(load.group(1)) if load else None,
        "method": method.group(1) if method else None,
        "threads": int(threads.group(1)) if threads else None,
        "max_rss_bytes": parse_time_v(text),
    }


def parse_ort_perf_test(text: str) -> dict:
    """``onnxruntime_perf_test`` output: session creation, first/average inference,
    percentiles (seconds in the tool's output, milliseconds here) and peak working set."""

    def find(pattern: str, scale: float = 1.0) -> float | None:
        m = re.search(pattern + r"\s*" + _NUM, text)
        return float(m.group(1)) * scale if m else None

    average = find(r"Average inference time cost:")
    if average is None:
        raise ValueError("onnxruntime_perf_test log has no 'Average inference time cost' (did the run fail?)")
    runs = re.search(r"Total inference requests:\s*(\d+)", text) or re.search(r"Runs:\s*(\d+)", text)
    peak = re.search(r"Peak working set size:\s*(\d+)", text)
    out = {
        "session_creation_ms": find(r"Session creation time cost:", 1e3),
        "first_inference_ms": find(r"First inference time cost:"),
        "average_ms": average,
        "runs": int(runs.group(1)) if runs else None,
        "peak_working_set_bytes": int(peak.group(1)) if peak else None,
        "max_rss_bytes": parse_time_v(text),
    }
    for key in ("Min", "Max", "P50", "P90", "P95", "P99"):
        out[f"{key.lower()}_ms"] = find(rf"{key} Latency:", 1e3)
    return out


_MEASURED = re.compile(
    r"Test Case '-\[(?P<cls>[\w.]+) (?P<test>\w+)\]' measured \[(?P<metric>[^\]]+)\] average: "
    + _NUM
    + r", relative standard deviation: "
    + _NUM
    + r"%, values: \[(?P<values>[^\]]*)\]"
)


def parse_xctest_log(text: str) -> list[dict]:
    """``xcodebuild test`` lines of XCTest ``measure`` blocks: one entry per (test, metric)
    with the values in the metric's unit (seconds for time metrics)."""
    out = []
    for m in _MEASURED.finditer(text):
        values = [float(v) for v in m.group("values").split(",") if v.strip()]
        out.append(
            {
                "class": m.group("cls"),
                "test": m.group("test"),
                "metric": m.group("metric"),
                "average": float(m.group(4)),
                "rsd_percent": float(m.group(5)),
                "values": values,
            }
        )
    return out


def parse_device_info(text: str) -> dict:
    info = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            info[key.strip()] = value.strip()
    return info


# --- Android ------------------------------------------------------------------------------------


def _stats_from_samples(samples: list[float]) -> dict:
    return summarize(samples).to_dict()


def _latency(by_repeat: list[dict], tolerance: float) -> tuple[dict, list[str]]:
    """``latency_ms`` from one parsed log per repeat (ExecuTorch or ORT)."""
    notes = []
    per_repeat_samples, medians = [], []
    for parsed in by_repeat:
        if parsed.get("samples_ms"):
            samples = parsed["samples_ms"][1:] if len(parsed["samples_ms"]) > 2 else parsed["samples_ms"]
            per_repeat_samples.append(samples)
            medians.append(summarize(samples).median)
        elif parsed.get("p50_ms") is not None:
            medians.append(parsed["p50_ms"])
        else:
            medians.append(parsed["mean_ms"])
    if per_repeat_samples and len(per_repeat_samples) == len(by_repeat):
        entry = _stats_from_samples([s for rep in per_repeat_samples for s in rep])
        entry["warmup"] = 1
        notes.append("ExecuTorch: the first iteration of each run is dropped as warm-up")
    elif any(p.get("p50_ms") is not None for p in by_repeat):
        ort = [p for p in by_repeat if p.get("p50_ms") is not None]
        mins = [p["min_ms"] for p in ort if p.get("min_ms") is not None]
        maxs = [p["max_ms"] for p in ort if p.get("max_ms") is not None]
        entry = {
            "median": statistics.median(medians),
            "iqr": None,
            "q1": None,
            "q3": None,
            "mean": sum(p["average_ms"] for p in ort) / len(ort),
            "min": min(mins) if mins else None,
            "max": max(maxs) if maxs else None,
            "rounds": sum(p.get("runs") or 1 for p in ort),
            "warmup": 1,
        }
        notes.append("onnxruntime_perf_test: median = P50 (median of the repeats' P50); it prints no quartiles")
    else:
        entry = {
            "median": sum(medians) / len(medians),
            "iqr": None,
            "q1": None,
            "q3": None,
            "mean": sum(medians) / len(medians),
            "min": min(medians),
            "max": max(medians),
            "rounds": sum(p.get("executions") or 1 for p in by_repeat),
            "warmup": 0,
        }
        notes.append("executor_runner printed only its total: median = mean per run")
    sp = spread(medians)
    entry.update(repeat_medians=medians, spread=sp, stable=sp <= tolerance)
    return entry, notes


def _bundle_info(bundles: list[Path]) -> dict:
    """(backend, precision, size) -> {"concepts": [...], "bytes": {mode: n}, "psnr": {mode: db}, "flops": n}"""
    from pocketgan.bench.exports import artifact_bytes
    from pocketgan.runtime.manifest import read_manifest

    out = {}
    for b in bundles:
        m = read_manifest(Path(b))
        for target, entry in m.targets.items():
            info = out.setdefault(
                (target, entry.precision, m.input_size),
                {
                    "concepts": list(m.concept_names),
                    "bytes": {},
                    "psnr": {},
                    "flops": 2 * m.generator.macs,  # counted at the export's size (LoRA branches excluded)
                    "model_name": f"pocketgan-{m.generator.size}",
                },
            )
            for mode in entry.runnable_modes:
                try:
                    info["bytes"][mode] = artifact_bytes(target, entry, m, mode)
                except KeyError:
                    pass
                scores = entry.parity.psnr_db.get(mode, {}) if entry.parity else {}
                if scores:
                    info["psnr"][mode] = min(scores.values())
    return out


def _peer_flops(size: int) -> int | None:
    try:
        from pocketgan.bench.flops import pix2pix_flops

        return pix2pix_flops(size)
    except ImportError:  # no torch on this machine: FLOPs (and GEMM shares) stay empty
        return None


def _android_logs(log_dir: Path) -> tuple[dict[tuple, dict], dict[tuple, list[str]]]:
    """The parsed run logs of a harness folder: ({(model, backend, precision, mode, size):
    {concept: {repeat: parsed}}}, {same key: [unparsable log messages]})."""
    groups: dict[tuple, dict] = {}
    errors: dict[tuple, list[str]] = {}
    for log in sorted(log_dir.glob("*.log")):
        m = LOG_NAME.match(log.name)
        if not m:
            continue
        key = (m["model"], m["backend"], m["precision"], m["mode"], int(m["size"]))
        text = log.read_text(errors="replace")
        try:
            parsed = parse_executor_runner_log(text) if m["backend"] == "executorch" else parse_ort_perf_test(text)
        except ValueError as e:
            errors.setdefault(key, []).append(f"{log.name}: {e}")
            continue
        groups.setdefault(key, {}).setdefault(m["concept"], {})[int(m["repeat"])] = parsed
    return groups, errors


def _android_record(
    key: tuple, concepts: dict, errors: list[str], bundle: dict, files: dict[str, int], tolerance: float
) -> dict:
    """One results record from the runs of one group (``concepts``: {concept: {repeat: parsed}})."""
    model, backend, precision, mode, size = key
    order = [c for c in bundle.get("concepts", []) if c in concepts] or sorted(concepts)
    name = bundle.get("model_name", "pocketgan") if model == "pocketgan" else "pix2pix-resnet9"
    rec = new_record(model, name, backend, precision, mode, size)
    rec["notes"].append("measured on the device by device_harness/android (command-line runners)")
    if not order:
        rec.update(status="failed", error="; ".join(errors or ["no log"]))
        return rec
    primary = order[0] if model == "pocketgan" else "-"
    rec["latency_ms"], notes = _latency([concepts[primary][r] for r in sorted(concepts[primary])], tolerance)
    rec["notes"] += notes
    rec["concept"] = primary if model == "pocketgan" else None
    rec["concepts"] = len(bundle.get("concepts", [])) or (len(order) if model == "pocketgan" else None)
    runs = [p for c in concepts.values() for p in c.values()]
    opens = [p.get("load_ms") if backend == "executorch" else p.get("session_creation_ms") for p in runs]
    opens = [o for o in opens if o is not None]
    if opens:
        rec["open_ms"] = _stats_from_samples(opens)
        what = (
            "executor_runner's program + method load (one method)"
            if backend == "executorch"
            else "onnxruntime_perf_test's session creation"
        )
        rec["notes"].append("cold open: " + what)
    rss = [r for r in (p.get("max_rss_bytes") or p.get("peak_working_set_bytes") for p in runs) if r]
    rec["peak_rss_bytes"] = max(rss) if rss else None
    if model == "pocketgan":
        rec["artifact_bytes"] = bundle.get("bytes", {}).get(mode)
        rec["parity_psnr_db"] = bundle.get("psnr", {}).get(mode)
        rec["flops"] = bundle.get("flops")
        rec["extra"]["per_concept_median_ms"] = {
            c: _latency([concepts[c][r] for r in sorted(concepts[c])], tolerance)[0]["median"] for c in order
        }
        rec["notes"].append(
            "set_concept: not measurable with command-line runners (one method per process); "
            "the iOS harness and the runtime measure it"
        )
    else:
        ext = "pte" if backend == "executorch" else "onnx"
        rec["artifact_bytes"] = next(
            (n for p, n in files.items() if Path(p).name == f"pix2pix-{backend}-{precision}-{size}.{ext}"), None
        )
        rec["flops"] = _peer_flops(size)
    rec["notes"] += errors
    return rec


_ARM_FLAGS = ("asimd", "asimddp", "i8mm", "sve", "sme", "bf16")


def _android_machine(info: dict, threads: int | None) -> dict:
    """The results' machine entry from ``device.txt``'s fields."""
    return {
        "cpu_model": info.get("soc") or info.get("hardware") or info.get("cpu") or "unknown",
        "cpu_flags": [f for f in info.get("cpu_features", "").split() if f in _ARM_FLAGS],
        "logical_cpus": int(info["cores"]) if info.get("cores", "").isdigit() else None,
        "usable_cpus": None,
        "threads": int(info["threads"]) if info.get("threads", "").isdigit() else threads,
        "memory_bytes": int(info["mem_kib"]) * 1024 if info.get("mem_kib", "").isdigit() else None,
        "os": f"Android {info.get('android', '?')} (API {info.get('sdk', '?')})",
        "device": " ".join(v for v in (info.get("manufacturer"), info.get("model")) if v) or None,
        "python": None,
        "versions": {k: info.get(k) for k in ("executorch", "onnxruntime", "pocketgan") if info.get(k)},
        "date": info.get("date", ""),
        "load_average": None,
    }


def android_results(log_dir: Path, bundles: list[Path] = (), *, tolerance: float = 0.10) -> dict:
    """A results document from the Android harness's log folder (see the module docstring)."""
    log_dir = Path(log_dir)
    info = parse_device_info((log_dir / "device.txt").read_text()) if (log_dir / "device.txt").is_file() else {}
    files = {}
    if (log_dir / "files.tsv").is_file():
        for line in (log_dir / "files.tsv").read_text().splitlines():
            path, _, size = line.rpartition("\t")
            if path and size.strip().isdigit():
                files[path] = int(size)
    meta = _bundle_info(list(bundles))
    groups, errors = _android_logs(log_dir)
    records = [
        _android_record(
            key, groups.get(key, {}), errors.get(key, []), meta.get((key[1], key[2], key[4]), {}), files, tolerance
        )
        for key in sorted(set(groups) | set(errors))
    ]
    threads = next(
        (p["threads"] for key in sorted(groups) for c in groups[key].values() for p in c.values() if p.get("threads")),
        None,
    )
    repeats = max((len(r) for c in groups.values() for r in c.values()), default=1)
    config = {"harness": "device_harness/android", **{k: info[k] for k in ("runs", "threads", "repeats") if k in info}}
    return finished_results(
        "android",
        _android_machine(info, threads),
        command=info.get("command"),
        config=config,
        records=records,
        tolerance=tolerance,
        repeats=repeats,
    )


# --- iOS -------------------------------------------------------------------------------------------


IOS_JSON = "pocketgan-bench-ios.json"


def ios_results(path: Path, *, tolerance: float | None = None) -> dict:
    """A results document from the iOS XCTest: its JSON (or a folder of exported
    ``.xcresult`` attachments holding it), optionally with an ``xcodebuild`` log whose
    ``measure`` lines are attached to the matching records."""
    path = Path(path)
    doc, log_text = None, None
    if path.is_dir():
        found = sorted(path.rglob(IOS_JSON)) or sorted(p for p in path.rglob("*.json") if _is_results(p))
        if not found:
            raise FileNotFoundError(
                f"no {IOS_JSON} in {path} (export the .xcresult attachments first, see docs/device-benchmarks.md)"
            )
        doc = json.loads(found[0].read_text())
        logs = sorted(path.rglob("*.log"))
        log_text = logs[0].read_text(errors="replace") if logs else None
    elif path.suffix == ".json":
        doc = json.loads(path.read_text())
    else:
        log_text = path.read_text(errors="replace")
        sibling = path.parent / IOS_JSON
        if sibling.is_file():
            doc = json.loads(sibling.read_text())
    if doc is None:
        raise ValueError(f"{path}: no {IOS_JSON} next to the log; the XCTest writes it (see docs/device-benchmarks.md)")
    if tolerance is not None:
        doc["stability"]["tolerance"] = tolerance
    if log_text:
        measured = parse_xctest_log(log_text)
        by_test = {}
        for entry in measured:
            by_test.setdefault(entry["test"], []).append(entry)
        for rec in doc["records"]:
            tests = rec.get("extra", {}).get("xctest_tests", [])
            hits = [e for t in tests for e in by_test.get(t, [])]
            if hits:
                rec["extra"]["xctest_measure"] = hits
    for rec in doc["records"]:
        if rec["model"] == "pix2pix" and rec["flops"] is None:
            rec["flops"] = _peer_flops(rec["size"])
    finalize(doc)
    validate(doc)
    return doc


def _is_results(p: Path) -> bool:
    try:
        return json.loads(p.read_text()).get("schema") == "pocketgan-bench"
    except (ValueError, OSError, AttributeError):
        return False


def main(argv: list[str] | None = None) -> int:
    """``python -m pocketgan.bench.device android|ios ...`` (the parser: :mod:`pocketgan.cli.bench`)."""
    from pocketgan.cli import run
    from pocketgan.cli.bench import device_parser

    return run(device_parser(__doc__).parse_args(argv), prog="python -m pocketgan.bench.device")


if __name__ == "__main__":
    raise SystemExit(main())
