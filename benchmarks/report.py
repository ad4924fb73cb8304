"""Ratios and claims from a pytest-benchmark JSON file (``make bench`` calls this).

    python benchmarks/report.py out/bench-slice.json
"""

from __future__ import annotations

import json
import sys


def _median(bench: dict) -> float:
    return bench["stats"]["median"]


def report(path: str) -> tuple[str, bool]:
    data = json.loads(open(path).read())
    by_name = {b["name"]: b for b in data["benchmarks"]}

    def med(name: str) -> float:
        return _median(by_name[name])

    rows, ok = [], True

    def claim(label: str, value: float, limit: float, fmt: str) -> None:
        nonlocal ok
        passed = value <= limit
        ok &= passed
        rows.append(f"| {label} | {fmt.format(value)} | ≤ {fmt.format(limit)} | {'yes' if passed else 'NO'} |")

    for mode in ("separate", "merged"):
        eager, ort = med(f"test_torch_eager[{mode}]"), med(f"test_onnx_runtime[{mode}]")
        rows.append(f"| PyTorch eager, {mode} | {eager * 1e3:.1f} ms | | |")
        rows.append(f"| ONNX Runtime, {mode} | {ort * 1e3:.1f} ms | | |")
        claim(f"ORT / eager latency ({mode})", ort / eager, 0.5, "{:.3f}")
        et_name = f"test_executorch[{mode}]"
        if et_name in by_name:
            rows.append(f"| ExecuTorch XNNPACK, {mode} | {med(et_name) * 1e3:.1f} ms | | |")
            claim(f"ExecuTorch / ORT latency ({mode})", med(et_name) / ort, 1.0, "{:.3f}")
    open_s, swap_s = med("test_open_bundle_cold"), med("test_set_concept")
    rows.append(f"| open bundle cold | {open_s * 1e3:.1f} ms | | |")
    rows.append(f"| set_concept | {swap_s * 1e6:.2f} µs | | |")
    claim("set_concept / cold open", swap_s / open_s, 0.01, "{:.6f}")
    machine = data.get("machine_info", {})
    cpu = machine.get("cpu", {}).get("brand_raw", "?")
    head = [f"machine: {cpu}, {machine.get('cpu', {}).get('count', '?')} cores, python {machine.get('python_version', '?')}",
            "", "| measurement | value | limit | met |", "|---|---:|---:|---|"]
    return "\n".join(head + rows), ok


if __name__ == "__main__":
    text, ok = report(sys.argv[1])
    print(text)
    sys.exit(0 if ok else 1)
