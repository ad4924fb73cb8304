"""pytest-benchmark JSON of ``benchmarks/test_bench_suite.py`` -> the ``pocketgan bench``
results schema, table and chart (``pocketgan.bench.results`` / ``report``).

    python benchmarks/bench_results.py out/bench-suite.json [OUT_DIR]

Prints the claims table; exits 1 if a claim is unmet.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def convert(data: dict, tolerance: float = 0.10) -> dict:
    from pocketgan.bench.results import finalize, latency_entry, machine_info, new_record, new_results, validate

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
                raise SystemExit("run pytest with --benchmark-save-data: the stability check needs every sample")
            g["latency"][info["repeat"]] = [t * 1e3 for t in stats["data"]]
        elif kind == "open":
            g["open"] = stats
        elif kind == "set_concept":
            g["swap"] = stats
        elif kind == "memory":
            g["memory"] = info
    records = []
    warmup = 0
    for gid, g in groups.items():
        i = g["info"]
        flops = i.get("flops")
        rec = new_record(i["model"], i["model_name"], i["backend"], i["precision"], i["concept_mode"], i["size"],
                         concept=i.get("concept"), concepts=i.get("concepts"), artifact_bytes=i.get("artifact_bytes"),
                         parity_psnr_db=i.get("parity_psnr_db"), flops=flops)
        if g["latency"]:
            warmup = i.get("warmup", warmup)
            rec["latency_ms"] = latency_entry([g["latency"][r] for r in sorted(g["latency"])], warmup, tolerance)
        for key, src in (("open_ms", g["open"]), ("set_concept_ms", g["swap"])):
            if src:
                rec[key] = {"median": src["median"] * 1e3, "iqr": src["iqr"] * 1e3, "q1": src["q1"] * 1e3,
                            "q3": src["q3"] * 1e3, "mean": src["mean"] * 1e3, "min": src["min"] * 1e3,
                            "max": src["max"] * 1e3, "rounds": src["rounds"]}
        if g["memory"]:
            rec.update(peak_rss_bytes=g["memory"]["peak_rss_bytes"], baseline_rss_bytes=g["memory"]["baseline_rss_bytes"],
                       open_fresh_process_ms=g["memory"]["open_ms"])
        records.append(rec)
    threads = next((g["info"].get("threads") for g in groups.values()), None)
    machine = machine_info(threads)
    machine["date"] = data.get("datetime", machine["date"])
    repeats = max((len(g["latency"]) for g in groups.values()), default=1)
    results = new_results("host", machine, command="pytest benchmarks/test_bench_suite.py", gemm=gemm, records=records,
                          tolerance=tolerance, repeats=repeats)
    finalize(results)
    validate(results)
    return results


if __name__ == "__main__":
    from pocketgan.atomic import atomic_write_json
    from pocketgan.bench.report import claims_table, write_report

    results = convert(json.loads(Path(sys.argv[1]).read_text()))
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(sys.argv[1]).with_suffix("")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "results.json", results)
    write_report(results, out)
    print(claims_table(results))
    sys.exit(0 if all(c["met"] is not False for c in results["claims"]) else 1)
