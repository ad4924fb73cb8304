"""The export matrix table and issue 3's claims, from test_export_matrix.py's JSON.

    python benchmarks/matrix_report.py out/bench-matrix.json [docs/export-matrix.md]

Prints (and optionally writes) a markdown page; exits 1 if a claim is not met.
"""

from __future__ import annotations

import json
import sys


def _rows(data: dict) -> dict[tuple[str, str, str], dict]:
    rows = {}
    for b in data["benchmarks"]:
        info = b["extra_info"]
        measured = "latency" not in info
        rows[(info["backend"], info["precision"], info["concept_mode"])] = {
            **info, "median_ms": b["stats"]["median"] * 1e3 if measured else None,
            "iqr_ms": b["stats"]["iqr"] * 1e3 if measured else None,
        }
    return rows


def report(path: str) -> tuple[str, bool]:
    data = json.loads(open(path).read())
    rows = _rows(data)
    ok = True
    claims: list[str] = []

    def claim(label: str, value: float | None, limit: float, fmt: str, better: str = "le") -> None:
        nonlocal ok
        if value is None:
            claims.append(f"| {label} | not measured here | {'≤' if better == 'le' else '≥'} {fmt.format(limit)} | n/a |")
            return
        met = value <= limit if better == "le" else value >= limit
        ok &= met
        claims.append(f"| {label} | {fmt.format(value)} | {'≤' if better == 'le' else '≥'} {fmt.format(limit)} | "
                      f"{'yes' if met else '**NO**'} |")

    def get(backend, precision, mode, key):
        row = rows.get((backend, precision, mode))
        return None if row is None else row.get(key)

    table = ["| backend | precision | concepts | latency (median) | size, all concepts | worst PSNR vs PyTorch fp32 |",
             "|---|---|---|---:|---:|---:|"]
    for (backend, precision, mode), r in sorted(rows.items(), key=lambda kv: (kv[0][0] != "torch-eager", kv[0])):
        latency = f"{r['median_ms']:.1f} ms" if r["median_ms"] is not None else "macOS only"
        size = f"{r['bytes'] / 1024:,.0f} KiB" if r.get("bytes") else "-"
        psnr = r.get("worst_psnr_db")
        parity = f"{psnr:.1f} dB" if psnr is not None else ("reference" if backend == "torch-eager" else "macOS only")
        table.append(f"| {backend} | {precision} | {mode} | {latency} | {size} | {parity} |")

    for mode in ("separate", "merged"):
        ort, et = get("onnx", "fp32", mode, "median_ms"), get("executorch", "fp32", mode, "median_ms")
        claim(f"ExecuTorch fp32 / ONNX Runtime fp32 latency ({mode})", et / ort if et and ort else None, 1.0, "{:.2f}")
    for backend in ("onnx", "executorch"):
        for mode in ("separate", "merged"):
            fp32, int8 = get(backend, "fp32", mode, "median_ms"), get(backend, "int8", mode, "median_ms")
            claim(f"{backend} int8 speed-up over fp32 ({mode})", fp32 / int8 if fp32 and int8 else None, 1.5, "{:.2f}x", "ge")
            claim(f"{backend} int8 PSNR vs fp32 PyTorch ({mode})", get(backend, "int8", mode, "worst_psnr_db"), 30.0,
                  "{:.1f} dB", "ge")
    for mode in ("separate", "merged"):
        fp32 = get("coreml", "fp32", mode, "bytes")
        for precision, limit in (("fp16", 0.55), ("int8", 0.3)):
            size = get("coreml", precision, mode, "bytes")
            claim(f"Core ML {precision} / fp32 size ({mode})", size / fp32 if size and fp32 else None, limit, "{:.2f}")
    for backend in ("onnx", "executorch"):
        fp32, int8 = get(backend, "fp32", "separate", "bytes"), get(backend, "int8", "separate", "bytes")
        claim(f"{backend} int8 / fp32 size (separate)", int8 / fp32 if int8 and fp32 else None, 0.3, "{:.2f}")
    for backend in ("onnx", "executorch", "coreml"):
        precision = "fp32"
        row = rows.get((backend, precision, "separate"))
        if row and row.get("source"):
            src = row["source"]
            reference = src["base"] + sum(src["adapters"])
            claim(f"{backend} fp32 separate bundle ({row['concepts']} concepts) / (base + adapters)",
                  row["bytes"] / reference, 1.1, "{:.3f}")

    machine = data.get("machine_info", {})
    cpu = machine.get("cpu", {})
    threads = next((r["threads"] for r in rows.values() if "threads" in r), "?")
    text = "\n".join([
        "# Export matrix: every backend x precision x concept mode",
        "",
        "Produced by `make bench-matrix` (benchmarks/test_export_matrix.py, then",
        "benchmarks/matrix_report.py). The embedded default bundle at 256x256, batch 1,",
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
        *table,
        "",
        "## Claims",
        "",
        "| claim | measured | limit | met |",
        "|---|---:|---:|---|",
        *claims,
        "",
    ])
    return text, ok


if __name__ == "__main__":
    text, ok = report(sys.argv[1])
    print(text)
    if len(sys.argv) > 2:
        open(sys.argv[2], "w").write(text)
    sys.exit(0 if ok else 1)
