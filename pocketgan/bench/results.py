"""The results document (``schema.json``): machine details, records, derived ratios,
GEMM shares, stability and the issue's claims.

:func:`finalize` derives everything that is computed from the measured records (so the
host run and the device harnesses share it): each record's ratios to the pix2pix peer and
to PyTorch eager, its achieved throughput and share of the GEMM peak, the stability
summary and the claims. :func:`validate` checks a document against the schema.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
from importlib import resources

from pocketgan.bench.config import BACKEND_ORDER, BACKEND_TITLES, EAGER, GENERATOR, PEER, PEER_MODE, RECORD_MODES
from pocketgan.runtime.targets import PRECISIONS

SCHEMA_NAME = "pocketgan-bench"
SCHEMA_VERSION = 1
# The claims (docs/benchmarks.md): limits and directions.
PEER_LATENCY_LIMIT = 0.25  # pocketgan latency / pix2pix latency, same backend + precision + size
GEMM_SHARE_LIMIT = 0.40  # best backend's share of the measured GEMM peak
SWAP_LIMIT = 0.01  # set_concept / cold open, every backend
DEFAULT_TOLERANCE = 0.10  # repeated medians within 10%
_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx_vnni",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "asimd",
    "asimddp",
    "i8mm",
    "sve",
    "sme",
)


def load_schema() -> dict:
    return json.loads(resources.files("pocketgan.bench").joinpath("schema.json").read_text())


def validate(results: dict) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``results`` follows ``schema.json``."""
    import jsonschema

    jsonschema.validate(results, load_schema(), cls=jsonschema.Draft202012Validator)


def record_id(model: str, backend: str, precision: str, concept_mode: str, size: int) -> str:
    return f"{model}/{backend}/{precision}/{concept_mode}/{size}"


def new_record(
    model: str, model_name: str, backend: str, precision: str, concept_mode: str, size: int, **fields
) -> dict:
    """A record with every schema field present (``None`` where not measured)."""
    rec = {
        "id": record_id(model, backend, precision, concept_mode, size),
        "model": model,
        "model_name": model_name,
        "backend": backend,
        "precision": precision,
        "concept_mode": concept_mode,
        "size": size,
        "concept": None,
        "concepts": None,
        "status": "ok",
        "error": None,
        "latency_ms": None,
        "open_ms": None,
        "open_fresh_process_ms": None,
        "set_concept_ms": None,
        "peak_rss_bytes": None,
        "baseline_rss_bytes": None,
        "artifact_bytes": None,
        "parity_psnr_db": None,
        "flops": None,
        "achieved_gops": None,
        "gemm_peak_share": None,
        "ratios": {},
        "extra": {},
        "notes": [],
    }
    unknown = set(fields) - set(rec)
    if unknown:
        raise ValueError(f"unknown record fields {sorted(unknown)}")
    rec.update(fields)
    return rec


def latency_entry(samples_by_repeat: list[list[float]], warmup: int, tolerance: float) -> dict:
    """``latency_ms`` of a record from each repeat's samples (ms): pooled stats + per-repeat medians."""
    from pocketgan.bench.measure import spread, summarize

    pooled = [s for rep in samples_by_repeat for s in rep]
    medians = [summarize(rep).median for rep in samples_by_repeat if rep]
    sp = spread(medians)
    return {
        **summarize(pooled).to_dict(),
        "warmup": warmup,
        "repeat_medians": medians,
        "spread": sp,
        "stable": sp <= tolerance,
    }


# --- machine ------------------------------------------------------------------------------


def _cpu_model() -> tuple[str, list[str]]:
    """CPU model name and the SIMD flags that matter for GEMM (x86 and Arm Linux; macOS sysctl)."""
    model, flags = "", []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key in ("model name", "Model", "Hardware") and value and not model:
                    model = value
                elif key in ("flags", "Features") and not flags:
                    have = set(value.split())
                    flags = [f for f in _FLAGS if f in have]
    except OSError:
        pass
    if not model and sys.platform == "darwin":
        import subprocess

        try:
            model = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return model or platform.processor() or platform.machine(), flags


def meminfo_bytes(field: str = "MemTotal") -> int | None:
    """A ``/proc/meminfo`` field (``MemTotal``, ``MemAvailable``, ...) in bytes; None where
    there is no such file or field."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def versions() -> dict:
    """pocketgan's and its toolchain's versions (recorded with results, part of export cache keys)."""
    import importlib.metadata as md

    import pocketgan

    out = {"pocketgan": pocketgan.__version__}
    for dist in ("torch", "onnxruntime", "executorch", "numpy", "coremltools", "onnx"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = None
    return out


def machine_info(threads: int | None) -> dict:
    model, flags = _cpu_model()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cpu_model": model,
        "cpu_flags": flags,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "threads": threads,
        "memory_bytes": meminfo_bytes("MemTotal"),
        "os": platform.platform(),
        "device": None,
        "python": platform.python_version(),
        "versions": versions(),
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "load_average": load,
    }


def new_results(
    source: str,
    machine: dict,
    *,
    command: str | None = None,
    config: dict | None = None,
    gemm: dict | None = None,
    models: dict | None = None,
    records: list | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    repeats: int = 1,
) -> dict:
    return {
        "schema": SCHEMA_NAME,
        "schema_version": SCHEMA_VERSION,
        "created": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": command,
        "source": source,
        "machine": machine,
        "config": config or {},
        "gemm": gemm,
        "models": models or {},
        "records": list(records or []),
        "stability": {"tolerance": tolerance, "repeats": repeats, "checked": 0, "unstable": []},
        "claims": [],
    }


# --- derived figures -----------------------------------------------------------------------


def _median(stats: dict | None) -> float | None:
    return None if not stats else stats.get("median")


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b not in (None, 0) else None


def gemm_peak_for(gemm: dict | None, precision: str) -> float | None:
    """The GEMM peak a record at ``precision`` is compared with (fp32 peak for fp32, int8 for int8)."""
    if not gemm:
        return None
    entry = gemm.get("int8" if precision == "int8" else "fp32" if precision == "fp32" else "")
    return entry.get("peak_gops") if entry else None


def finished_results(*args, **kwargs) -> dict:
    """:func:`new_results` (same arguments), every derived field filled, schema-checked."""
    results = new_results(*args, **kwargs)
    finalize(results)
    validate(results)
    return results


def finalize(results: dict) -> dict:
    """Fill every derived field (ratios, throughput, GEMM share, stability, claims) in place."""
    records = results["records"]
    by_key = {(r["model"], r["backend"], r["precision"], r["concept_mode"], r["size"]): r for r in records}

    def peer(rec):
        return by_key.get((PEER, rec["backend"], rec["precision"], PEER_MODE, rec["size"]))

    for rec in records:
        lat = _median(rec["latency_ms"])
        p = peer(rec) if rec["model"] == GENERATOR else None
        eager = by_key.get((rec["model"], EAGER, "fp32", rec["concept_mode"], rec["size"]))
        ratios = {
            "vs_pix2pix_latency": _ratio(lat, _median(p["latency_ms"])) if p else None,
            "vs_eager_latency": _ratio(lat, _median(eager["latency_ms"])) if eager and eager is not rec else None,
            "vs_pix2pix_bytes": _ratio(rec["artifact_bytes"], p["artifact_bytes"]) if p else None,
            "vs_pix2pix_peak_rss": _ratio(rec["peak_rss_bytes"], p["peak_rss_bytes"]) if p else None,
            "set_concept_vs_open": _ratio(_median(rec["set_concept_ms"]), _median(rec["open_ms"])),
        }
        rec["ratios"] = ratios
        if rec["flops"] and lat:
            rec["achieved_gops"] = rec["flops"] / (lat / 1e3) / 1e9
            peak = gemm_peak_for(results.get("gemm"), rec["precision"])
            rec["gemm_peak_share"] = _ratio(rec["achieved_gops"], peak)
        else:
            rec["achieved_gops"] = rec["gemm_peak_share"] = None
    tol = results["stability"]["tolerance"]
    measured = [r for r in records if r["latency_ms"]]
    for r in measured:
        r["latency_ms"]["stable"] = r["latency_ms"]["spread"] <= tol
    checked = [r for r in measured if len(r["latency_ms"]["repeat_medians"]) >= 2]
    unstable = [r["id"] for r in checked if not r["latency_ms"]["stable"]]
    results["stability"].update(checked=len(checked), unstable=unstable)
    results["claims"] = claims(results)
    return results


def _claim(cid: str, label: str, value: float | None, limit: float, op: str, detail: str = "") -> dict:
    met = None if value is None else (value <= limit if op == "le" else value >= limit)
    return {"id": cid, "label": label, "value": value, "limit": limit, "op": op, "met": met, "detail": detail}


def _group_claims(records: list[dict], fields: tuple[str, ...], value, make) -> list[dict]:
    """One claim per group of ``records`` with the same ``fields`` (those whose ``value(r)`` is
    not None), in table order: ``make(group key, the group's record of largest value)`` (the
    worst ratio, or the best share)."""
    groups: dict[tuple, list] = {}
    for r in records:
        if value(r) is not None:
            groups.setdefault(tuple(r[f] for f in fields), []).append(r)
    ordered = sorted(groups.items(), key=lambda kv: _order(dict(zip(fields, kv[0]))))
    return [make(key, max(rs, key=value)) for key, rs in ordered]


def _peer_ratio(r: dict) -> float | None:
    return r["ratios"].get("vs_pix2pix_latency")


def _gemm_share(r: dict) -> float | None:
    return r["gemm_peak_share"]


def _swap_ratio(r: dict) -> float | None:
    return r["ratios"].get("set_concept_vs_open")


def _latency_claim(key: tuple, worst: dict) -> dict:
    """Latency vs pix2pix, same backend + precision + size; the worst concept mode binds."""
    backend, precision, size = key
    title = f"{BACKEND_TITLES.get(backend, backend)} {precision} {size}²: pocketgan / pix2pix latency"
    detail = f"worst concept mode: {worst['concept_mode']}"
    cid = f"latency-vs-pix2pix/{backend}/{precision}/{size}"
    return _claim(cid, title, _peer_ratio(worst), PEER_LATENCY_LIMIT, "le", detail)


def _gemm_claim(gemm: dict | None):
    """The best backend's share of the GEMM peak, per precision and size."""

    def make(key: tuple, best: dict) -> dict:
        precision, size = key
        title = f"best backend's share of the {precision} GEMM peak, {size}²"
        detail = (
            f"{BACKEND_TITLES.get(best['backend'], best['backend'])} {best['concept_mode']}: "
            f"{best['achieved_gops']:.0f} of {gemm_peak_for(gemm, precision):.0f} G(FL)OP/s"
        )
        return _claim(f"gemm-share/{precision}/{size}", title, _gemm_share(best), GEMM_SHARE_LIMIT, "ge", detail)

    return make


def _swap_claim(key: tuple, worst: dict) -> dict:
    """set_concept / cold open, every backend (the worst over precision, size and mode)."""
    (backend,) = key
    title = f"{BACKEND_TITLES.get(backend, backend)}: set_concept / cold open"
    swap_us, open_ms = worst["set_concept_ms"]["median"] * 1e3, worst["open_ms"]["median"]
    detail = (
        f"worst: {worst['precision']} {worst['concept_mode']} {worst['size']}² ({swap_us:.2f} µs vs {open_ms:.1f} ms)"
    )
    return _claim(f"set-concept-vs-open/{backend}", title, _swap_ratio(worst), SWAP_LIMIT, "le", detail)


def _stability_claim(records: list[dict], stability: dict) -> dict:
    """The worst spread of repeated medians against the tolerance."""
    spreads = [
        r["latency_ms"]["spread"] for r in records if r["latency_ms"] and len(r["latency_ms"]["repeat_medians"]) >= 2
    ]
    unstable = stability["unstable"]
    detail = ("not within tolerance: " + ", ".join(unstable)) if unstable else "every group within tolerance"
    return _claim(
        "stability",
        f"repeated medians' spread, worst of {len(spreads)} groups",
        max(spreads) if spreads else None,
        stability["tolerance"],
        "le",
        detail,
    )


def claims(results: dict) -> list[dict]:
    """The issue's four claims, evaluated on the records (one row per comparison group)."""
    records = [r for r in results["records"] if r["status"] == "ok"]
    gen = [r for r in records if r["model"] == GENERATOR]
    return [
        *_group_claims(gen, ("backend", "precision", "size"), _peer_ratio, _latency_claim),
        *_group_claims(gen, ("precision", "size"), _gemm_share, _gemm_claim(results.get("gemm"))),
        *_group_claims(gen, ("backend",), _swap_ratio, _swap_claim),
        _stability_claim(records, results["stability"]),
    ]


_BACKEND_ORDER = {b: i for i, b in enumerate(BACKEND_ORDER)}
_PRECISION_ORDER = {p: i for i, p in enumerate(PRECISIONS)}
_MODE_ORDER = {m: i for i, m in enumerate(RECORD_MODES)}


def _order(fields: dict) -> tuple:
    """Table order of a claim group: its backend, precision and size (those of them it has)."""
    order = {"backend": _BACKEND_ORDER.get, "precision": _PRECISION_ORDER.get}
    return tuple(order[k](v, 9) if k in order else v for k, v in fields.items())


def sort_key(rec: dict) -> tuple:
    """Table order: size, backend, precision, pocketgan modes then the peer."""
    return (
        rec["size"],
        _BACKEND_ORDER.get(rec["backend"], 9),
        _PRECISION_ORDER.get(rec["precision"], 9),
        rec["model"] != GENERATOR,
        _MODE_ORDER.get(rec["concept_mode"], 9),
    )
