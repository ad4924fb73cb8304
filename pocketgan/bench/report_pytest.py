"""Reports from the pytest-benchmark JSON that the suites in ``benchmarks/`` write.

- :func:`slice_report`: ``benchmarks/test_slice_latency.py`` -> the vertical slice's ratio
  table (``make bench``);
- :func:`matrix_report`: ``benchmarks/test_export_matrix.py`` -> the export matrix page,
  docs/export-matrix.md (``make bench-matrix``);
- :func:`suite_results`: ``benchmarks/test_bench_suite.py`` -> a results document in
  ``pocketgan bench``'s schema (``make bench-suite``), reported by :mod:`pocketgan.bench.report`.

The two tables return their markdown and whether every claim is met. The command line is
:mod:`pocketgan.bench.report`'s: ``python -m pocketgan.bench.report slice|matrix|suite JSON [OUT]``.
Nothing here imports torch.
"""

from __future__ import annotations

import json
from pathlib import Path

from pocketgan.bench.config import BACKEND_TITLES, BENCH_CONCEPT_MODES, EAGER, INT8_BACKENDS
from pocketgan.runtime.targets import COMPRESSED_PARITY_DB, TARGETS

# The matrix suite names PyTorch eager "torch-eager" in its JSON (older runs' files included).
MATRIX_EAGER = "torch-eager"


class Claims:
    """Rows of a ``| claim | measured | limit | met |`` table; ``ok`` turns False at the first
    unmet claim (a claim not measured, ``value=None``, leaves it as it is)."""

    def __init__(self, unmet: str = "**NO**") -> None:
        self.rows: list[str] = []
        self.ok = True
        self.unmet = unmet

    def add(self, label: str, value: float | None, limit: float, fmt: str, op: str = "le") -> None:
        """``op``: ``"le"`` (at most ``limit``) or ``"ge"`` (at least); ``fmt`` formats both numbers."""
        sign = "≤" if op == "le" else "≥"
        if value is None:
            self.rows.append(f"| {label} | not measured here | {sign} {fmt.format(limit)} | n/a |")
            return
        met = value <= limit if op == "le" else value >= limit
        self.ok &= met
        self.rows.append(
            f"| {label} | {fmt.format(value)} | {sign} {fmt.format(limit)} | {'yes' if met else self.unmet} |"
        )


def _machine(data: dict) -> dict:
    """pytest-benchmark's ``machine_info.cpu`` (``brand_raw``, ``count``)."""
    return data.get("machine_info", {}).get("cpu", {})


# --- make bench: the vertical slice ------------------------------------------------------------------------


def slice_report(data: dict) -> tuple[str, bool]:
    """The slice's latencies and its three claims: ONNX Runtime at most half of PyTorch eager,
    ExecuTorch no slower than ONNX Runtime (when measured), ``set_concept`` under 1% of a
    cold open. ``data``: the JSON of ``benchmarks/test_slice_latency.py``."""
    by_name = {b["name"]: b for b in data["benchmarks"]}

    def med(name: str) -> float:  # seconds
        return by_name[name]["stats"]["median"]

    claims = Claims(unmet="NO")
    rows = claims.rows
    for mode in BENCH_CONCEPT_MODES:
        eager, ort = med(f"test_torch_eager[{mode}]"), med(f"test_onnx_runtime[{mode}]")
        rows.append(f"| {BACKEND_TITLES[EAGER]}, {mode} | {eager * 1e3:.1f} ms | | |")
        rows.append(f"| {BACKEND_TITLES['onnx']}, {mode} | {ort * 1e3:.1f} ms | | |")
        claims.add(f"ORT / eager latency ({mode})", ort / eager, 0.5, "{:.3f}")
        et_name = f"test_executorch[{mode}]"
        if et_name in by_name:
            rows.append(f"| {BACKEND_TITLES['executorch']}, {mode} | {med(et_name) * 1e3:.1f} ms | | |")
            claims.add(f"ExecuTorch / ORT latency ({mode})", med(et_name) / ort, 1.0, "{:.3f}")
    open_s, swap_s = med("test_open_bundle_cold"), med("test_set_concept")
    rows.append(f"| open bundle cold | {open_s * 1e3:.1f} ms | | |")
    rows.append(f"| set_concept | {swap_s * 1e6:.2f} µs | | |")
    claims.add("set_concept / cold open", swap_s / open_s, 0.01, "{:.6f}")
    cpu = _machine(data)
    python = data.get("machine_info", {}).get("python_version", "?")
    head = [
        f"machine: {cpu.get('brand_raw', '?')}, {cpu.get('count', '?')} cores, python {python}",
        "",
        "| measurement | value | limit | met |",
        "|---|---:|---:|---|",
    ]
    return "\n".join(head + rows), claims.ok


# --- make bench-matrix: every backend x precision x concept mode ---------------------------------------------


def _matrix_rows(data: dict) -> dict[tuple[str, str, str], dict]:
    """(backend, precision, concept mode) -> the benchmark's extra_info plus ``median_ms`` and
    ``iqr_ms`` (None where the row was not timed: Core ML off macOS)."""
    rows = {}
    for b in data["benchmarks"]:
        info = b["extra_info"]
        measured = "latency" not in info
        rows[(info["backend"], info["precision"], info["concept_mode"])] = {
            **info,
            "median_ms": b["stats"]["median"] * 1e3 if measured else None,
            "iqr_ms": b["stats"]["iqr"] * 1e3 if measured else None,
        }
    return rows


def _matrix_table(rows: dict) -> list[str]:
    table = [
        "| backend | precision | concepts | latency (median) | size, all concepts | worst PSNR vs PyTorch fp32 |",
        "|---|---|---|---:|---:|---:|",
    ]
    for (backend, precision, mode), r in sorted(rows.items(), key=lambda kv: (kv[0][0] != MATRIX_EAGER, kv[0])):
        latency = f"{r['median_ms']:.1f} ms" if r["median_ms"] is not None else "macOS only"
        size = f"{r['bytes'] / 1024:,.0f} KiB" if r.get("bytes") else "-"
        psnr = r.get("worst_psnr_db")
        parity = f"{psnr:.1f} dB" if psnr is not None else ("reference" if backend == MATRIX_EAGER else "macOS only")
        table.append(f"| {backend} | {precision} | {mode} | {latency} | {size} | {parity} |")
    return table


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def _matrix_claims(rows: dict) -> Claims:
    """Issue 3's claims on the matrix (docs/export-matrix.md, docs/quantization.md)."""

    def get(backend: str, precision: str, mode: str, key: str):
        row = rows.get((backend, precision, mode))
        return None if row is None else row.get(key)

    claims = Claims()
    for mode in BENCH_CONCEPT_MODES:
        ort, et = get("onnx", "fp32", mode, "median_ms"), get("executorch", "fp32", mode, "median_ms")
        claims.add(f"ExecuTorch fp32 / ONNX Runtime fp32 latency ({mode})", _ratio(et, ort), 1.0, "{:.2f}")
    for backend in INT8_BACKENDS:
        for mode in BENCH_CONCEPT_MODES:
            fp32, int8 = get(backend, "fp32", mode, "median_ms"), get(backend, "int8", mode, "median_ms")
            claims.add(f"{backend} int8 speed-up over fp32 ({mode})", _ratio(fp32, int8), 1.5, "{:.2f}x", "ge")
            claims.add(
                f"{backend} int8 PSNR vs fp32 PyTorch ({mode})",
                get(backend, "int8", mode, "worst_psnr_db"),
                COMPRESSED_PARITY_DB,
                "{:.1f} dB",
                "ge",
            )
    for mode in BENCH_CONCEPT_MODES:
        fp32 = get("coreml", "fp32", mode, "bytes")
        for precision, limit in (("fp16", 0.55), ("int8", 0.3)):
            size = get("coreml", precision, mode, "bytes")
            claims.add(f"Core ML {precision} / fp32 size ({mode})", _ratio(size, fp32), limit, "{:.2f}")
    for backend in INT8_BACKENDS:
        fp32, int8 = get(backend, "fp32", "separate", "bytes"), get(backend, "int8", "separate", "bytes")
        claims.add(f"{backend} int8 / fp32 size (separate)", _ratio(int8, fp32), 0.3, "{:.2f}")
    for backend in TARGETS:
        row = rows.get((backend, "fp32", "separate"))
        if row and row.get("source"):
            src = row["source"]
            reference = src["base"] + sum(src["adapters"])
            claims.add(
                f"{backend} fp32 separate bundle ({row['concepts']} concepts) / (base + adapters)",
                row["bytes"] / reference,
                1.1,
                "{:.3f}",
            )
    return claims


def matrix_report(data: dict) -> tuple[str, bool]:
    """docs/export-matrix.md from the JSON of ``benchmarks/test_export_matrix.py``: one row per
    (backend, precision, concept mode) and the claims."""
    rows = _matrix_rows(data)
    claims = _matrix_claims(rows)
    cpu = _machine(data)
    threads = next((r["threads"] for r in rows.values() if "threads" in r), "?")
    text = "\n".join(
        [
            "# Export matrix: every backend x precision x concept mode",
            "",
            "Produced by `make bench-matrix` (benchmarks/test_export_matrix.py, then",
            "`python -m pocketgan.bench.report matrix`). The embedded default bundle at 256x256, batch 1,",
            f"{threads} threads, on {cpu.get('brand_raw', '?')} ({cpu.get('count', '?')} cores),",
            f"{data.get('datetime', '?')[:10]}. Latency: median of 20 runs of one concept through",
            "`pocketgan.runtime` (PyTorch eager: the model itself). Size: what an app ships for all",
            "the concepts (separate: the shared base + per-concept adapters/methods/functions;",
            "merged: every concept's own full model). PSNR: the export's own parity gate, the",
            "worst over concepts and the shipped photos, against the fp32 PyTorch model.",
            "Core ML predicts only on macOS: here it has sizes, not latency or parity. What the",
            "numbers mean and why the unmet claims are unmet: [quantization.md](quantization.md),",
            "[benchmarks.md](benchmarks.md).",
            "",
            *_matrix_table(rows),
            "",
            "## Claims",
            "",
            "| claim | measured | limit | met |",
            "|---|---:|---:|---|",
            *claims.rows,
            "",
        ]
    )
    return text, claims.ok


# --- make bench-suite: pocketgan bench's groups timed by pytest-benchmark ------------------------------------


def _ms_stats(stats: dict) -> dict:
    """pytest-benchmark stats (seconds) -> a results ``Stats`` entry (milliseconds)."""
    out = {key: stats[key] * 1e3 for key in ("median", "iqr", "q1", "q3", "mean", "min", "max")}
    return {**out, "rounds": stats["rounds"]}


def _suite_groups(data: dict) -> tuple[dict[str, dict], dict | None]:
    """The suite's benchmarks by measurement group, and the GEMM peak (``None``: not measured)."""
    groups: dict[str, dict] = {}
    gemm = None
    for b in data["benchmarks"]:
        info = b.get("extra_info", {})
        kind = info.get("measurement")
        if kind == "gemm":
            gemm = info["gemm"]
            continue
        if "group" not in info:
            continue
        g = groups.setdefault(info["group"], {"info": info, "latency": {}, "open": None, "swap": None, "memory": None})
        stats = b["stats"]
        if kind == "latency":
            if "data" not in stats:
                raise ValueError("run pytest with --benchmark-save-data: the stability check needs every sample")
            g["latency"][info["repeat"]] = [t * 1e3 for t in stats["data"]]
        elif kind == "open":
            g["open"] = stats
        elif kind == "set_concept":
            g["swap"] = stats
        elif kind == "memory":
            g["memory"] = info
    return groups, gemm


def _suite_record(g: dict, tolerance: float) -> dict:
    from pocketgan.bench.results import latency_entry, new_record

    i = g["info"]
    rec = new_record(
        i["model"],
        i["model_name"],
        i["backend"],
        i["precision"],
        i["concept_mode"],
        i["size"],
        concept=i.get("concept"),
        concepts=i.get("concepts"),
        artifact_bytes=i.get("artifact_bytes"),
        parity_psnr_db=i.get("parity_psnr_db"),
        flops=i.get("flops"),
    )
    if g["latency"]:
        samples = [g["latency"][r] for r in sorted(g["latency"])]
        rec["latency_ms"] = latency_entry(samples, i.get("warmup", 0), tolerance)
    for key, src in (("open_ms", g["open"]), ("set_concept_ms", g["swap"])):
        if src:
            rec[key] = _ms_stats(src)
    if g["memory"]:
        mem = g["memory"]
        rec.update(
            peak_rss_bytes=mem["peak_rss_bytes"],
            baseline_rss_bytes=mem["baseline_rss_bytes"],
            open_fresh_process_ms=mem["open_ms"],
        )
    return rec


def suite_results(data: dict, tolerance: float = 0.10) -> dict:
    """The results document (``schema.json``, derived fields filled and validated) of the JSON
    of ``benchmarks/test_bench_suite.py`` run with ``--benchmark-save-data``; raises
    ``ValueError`` when the per-sample data is missing."""
    from pocketgan.bench.results import finished_results, machine_info

    groups, gemm = _suite_groups(data)
    records = [_suite_record(g, tolerance) for g in groups.values()]
    threads = next((g["info"].get("threads") for g in groups.values()), None)
    machine = machine_info(threads)
    machine["date"] = data.get("datetime", machine["date"])
    repeats = max((len(g["latency"]) for g in groups.values()), default=1)
    return finished_results(
        "host",
        machine,
        command="pytest benchmarks/test_bench_suite.py",
        gemm=gemm,
        records=records,
        tolerance=tolerance,
        repeats=repeats,
    )


def run(kind: str, path: Path, out: Path | None = None) -> int:
    """``python -m pocketgan.bench.report KIND JSON [OUT]``: print the table (slice, matrix:
    also written to ``OUT`` when given; suite: results.json, results.md and latency.png written
    into ``OUT``, default the JSON's path without its suffix). 0 when every claim is met, else 1."""
    from pocketgan.atomic import atomic_write_bytes, atomic_write_json

    data = json.loads(Path(path).read_text())
    if kind == "suite":
        from pocketgan.bench.report import claims_table, write_report

        results = suite_results(data)
        out = Path(out) if out is not None else Path(path).with_suffix("")
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "results.json", results)
        write_report(results, out)
        print(claims_table(results))
        return 0 if all(c["met"] is not False for c in results["claims"]) else 1
    text, ok = (slice_report if kind == "slice" else matrix_report)(data)
    print(text)
    if out is not None:
        atomic_write_bytes(Path(out), text.encode("utf-8"))
    return 0 if ok else 1
