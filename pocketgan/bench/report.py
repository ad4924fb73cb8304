"""Markdown tables and the latency chart from a results document (host or device), and the
reports of the pytest-benchmark suites in ``benchmarks/`` (:mod:`pocketgan.bench.report_pytest`).

    python -m pocketgan.bench.report RESULTS_JSON [--out DIR]       # -> DIR/results.md, DIR/latency.png
    python -m pocketgan.bench.report slice out/bench-slice.json     # make bench: the slice's ratio table
    python -m pocketgan.bench.report matrix out/bench-matrix.json [docs/export-matrix.md]   # make bench-matrix
    python -m pocketgan.bench.report suite out/bench-suite.json [DIR]   # make bench-suite: DIR/results.json, ...

The derived fields (ratios, GEMM shares, stability, claims) are recomputed from the records
first (``results.finalize``), so a document an app wrote with them empty reports the same
way as one from ``pocketgan bench``. The suite reports exit 1 when a claim is unmet.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pocketgan.bench.config import BACKEND_TITLES, GENERATOR, PEER, PEER_MODE
from pocketgan.bench.results import PEER_LATENCY_LIMIT, sort_key

PYTEST_KINDS = ("slice", "matrix", "suite")  # pocketgan.bench.report_pytest's reports

_MODE = {"separate": "separate", "merged": "merged", "none": "-"}


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f} ms" if value < 10 else f"{value:.1f} ms" if value < 1000 else f"{value / 1e3:.2f} s"


def _bytes(value: int | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1024:,.0f} KiB" if value < 10 * 2**20 else f"{value / 2**20:,.1f} MiB"


def _rss(r: dict) -> str:
    peak, base = r.get("peak_rss_bytes"), r.get("baseline_rss_bytes")
    if peak is None:
        return "-"
    return f"{peak / 2**20:,.0f} MiB" + (f" (+{(peak - base) / 2**20:,.0f})" if base is not None else "")


def _ratio(value: float | None, fmt: str = "{:.3f}") -> str:
    return "-" if value is None else fmt.format(value)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def machine_lines(results: dict) -> list[str]:
    m = results["machine"]
    v = m.get("versions", {})
    shown = ("torch", "onnxruntime", "executorch", "coremltools")
    libs = ", ".join(f"{k} {val}" for k, val in v.items() if val and k in shown)
    mem = f", {m['memory_bytes'] / 2**30:.0f} GiB" if m.get("memory_bytes") else ""
    flags = f" ({', '.join(m['cpu_flags'])})" if m.get("cpu_flags") else ""
    device = f"{m['device']}, " if m.get("device") else ""
    load = f"; load average {' / '.join(str(x) for x in m['load_average'])}" if m.get("load_average") else ""
    return [
        f"- **Machine**: {device}{m['cpu_model']}{flags}, {m.get('logical_cpus', '?')} logical CPUs{mem}; {m['os']}",
        f"- **Software**: Python {m.get('python') or '-'}, pocketgan {v.get('pocketgan', '?')}"
        + (f", {libs}" if libs else ""),
        f"- **Run**: {m['date']}, {m.get('threads') or '?'} threads for every backend{load}",
    ] + ([f"- **Command**: `{results['command']}`"] if results.get("command") else [])


def gemm_lines(results: dict) -> list[str]:
    g = results.get("gemm")
    if not g:
        return []
    lines = ["| precision | peak | best at | implementations (best over sizes) |", "|---|---:|---|---|"]
    for precision, unit in (("fp32", "GFLOP/s"), ("int8", "GOP/s")):
        entry = g.get(precision)
        if not entry or entry.get("peak_gops") is None:
            continue
        best_by_impl: dict[str, float] = {}
        for s in entry["samples"]:
            best_by_impl[s["impl"]] = max(best_by_impl.get(s["impl"], 0.0), s["gops"])
        impls = ", ".join(f"{k} {v:.0f}" for k, v in sorted(best_by_impl.items(), key=lambda kv: -kv[1]))
        best = entry.get("best") or {}
        at = f"{best.get('impl', '?')}, n={best.get('n', '?')}"
        lines.append(f"| {precision} | {entry['peak_gops']:.0f} {unit} | {at} | {impls} |")
    return lines


def records_table(results: dict) -> list[str]:
    lines = [
        "| size | backend | precision | model | concepts | latency median (IQR) | vs pix2pix | vs eager fp32 | "
        "G(FL)OP/s | GEMM peak | cold open | set_concept | peak RSS (+ over libraries) | bytes | stable |",
        "|---:|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in sorted(results["records"], key=sort_key):
        lat = r["latency_ms"]
        backend = BACKEND_TITLES.get(r["backend"], r["backend"])
        model = "pocketgan" if r["model"] == "pocketgan" else r["model_name"]
        if r["status"] != "ok" or lat is None:
            why = (r.get("error") or r["status"]).replace("|", "/")
            lines.append(
                f"| {r['size']} | {backend} | {r['precision']} | {model} | {_MODE[r['concept_mode']]} | "
                f"{r['status']}: {why} | | | | | | | | | |"
            )
            continue
        ratios = r["ratios"]
        swap = f"{r['set_concept_ms']['median'] * 1e3:.2f} µs" if r["set_concept_ms"] else "-"
        stable = "yes" if lat["stable"] else f"**NO** ({100 * lat['spread']:.0f}%)"
        if len(lat["repeat_medians"]) < 2:
            stable = "-"
        lines.append(
            f"| {r['size']} | {backend} | {r['precision']} | {model} | {_MODE[r['concept_mode']]} | "
            f"{_ms(lat['median'])} ({_ms(lat.get('iqr'))}) | {_ratio(ratios.get('vs_pix2pix_latency'))} | "
            f"{_ratio(ratios.get('vs_eager_latency'))} | "
            f"{_ratio(r['achieved_gops'], '{:.0f}')} | {_pct(r['gemm_peak_share'])} | "
            f"{_ms(r['open_ms']['median']) if r['open_ms'] else '-'} | "
            f"{swap} | {_rss(r)} | "
            f"{_bytes(r['artifact_bytes'])} | {stable} |"
        )
    return lines


def claims_table(results: dict) -> str:
    lines = ["| claim | measured | limit | met |", "|---|---:|---:|---|"]
    for c in results["claims"]:
        fmt = (
            "{:.1%}"
            if c["id"].startswith(("gemm-share", "stability"))
            else "{:.2e}"
            if c["id"].startswith("set-concept")
            else "{:.3f}"
        )
        value = "not measured" if c["value"] is None else fmt.format(c["value"])
        limit = ("≤ " if c["op"] == "le" else "≥ ") + fmt.format(c["limit"])
        met = "n/a" if c["met"] is None else "yes" if c["met"] else "**NO**"
        detail = f" ({c['detail']})" if c.get("detail") else ""
        lines.append(f"| {c['label']}{detail} | {value} | {limit} | {met} |")
    return "\n".join(lines)


def stability_lines(results: dict) -> list[str]:
    s = results["stability"]
    if not s["checked"]:
        return ["Stability: not checked (one repeat; run with --repeats 2 or more)."]
    if not s["unstable"]:
        return [
            f"Stability: all {s['checked']} groups' repeated medians are within {100 * s['tolerance']:.0f}% "
            "of each other."
        ]
    by_id = {r["id"]: r for r in results["records"]}
    lines = [
        f"Stability: {len(s['unstable'])} of {s['checked']} groups' repeated medians differ by more than "
        f"{100 * s['tolerance']:.0f}%; compare them with care:",
        "",
    ]
    for rid in s["unstable"]:
        lat = by_id[rid]["latency_ms"]
        meds = ", ".join(_ms(m) for m in lat["repeat_medians"])
        loads = [f for f in lat.get("foreign_load") or [] if f is not None]
        busy = ""
        if loads and max(loads) > 0.05:
            busy = f"; other processes used up to {100 * max(loads):.0f}% of the CPUs meanwhile"
        lines.append(f"- `{rid}`: medians {meds} (spread {100 * lat['spread']:.0f}%){busy}")
    return lines


def markdown(results: dict, chart: str | None = "latency.png") -> str:
    """The whole results page (what ``results.md`` holds)."""
    title = {
        "host": "pocketgan bench",
        "android": "pocketgan bench (Android device)",
        "ios": "pocketgan bench (iOS device)",
    }
    parts = [f"# {title.get(results['source'], 'pocketgan bench')}", "", *machine_lines(results), ""]
    gemm = gemm_lines(results)
    if gemm:
        parts += ["## GEMM peak", "", *gemm, ""]
    parts += [
        "## Results",
        "",
        "Batch 1. Ratios are latency ratios (lower is better): *vs pix2pix* against the "
        "pix2pix ResNet-9 peer on the same backend, precision and size; *vs eager fp32* against PyTorch eager of "
        "the same model and concept mode. *GEMM peak*: achieved G(FL)OP/s (2 x MACs / median latency) over this "
        "machine's GEMM peak at that precision.",
        "",
    ]
    if chart:
        parts += [f"![latency per backend and precision]({chart})", ""]
    parts += [*records_table(results), "", "## Claims", "", claims_table(results), "", *stability_lines(results), ""]
    return "\n".join(parts)


def _bars(ax, rs: list[dict], combos: list[tuple[str, str]], series: list[tuple], width: float) -> None:
    """One bar per (backend, precision) and series, with its IQR as error bars."""
    for i, (model, mode, label, color) in enumerate(series):
        xs, ys, lo, hi = [], [], [], []
        for j, (backend, precision) in enumerate(combos):
            match = [
                r
                for r in rs
                if r["backend"] == backend
                and r["precision"] == precision
                and r["model"] == model
                and r["concept_mode"] == mode
            ]
            if match:
                lat = match[0]["latency_ms"]
                xs.append(j + (i - (len(series) - 1) / 2) * width)
                ys.append(lat["median"])
                q1, q3 = lat.get("q1"), lat.get("q3")
                lo.append(lat["median"] - q1 if q1 is not None else 0.0)
                hi.append(q3 - lat["median"] if q3 is not None else 0.0)
        if xs:
            ax.bar(xs, ys, width, yerr=[lo, hi], label=label, color=color, capsize=2)
            for x, y in zip(xs, ys):
                ax.annotate(
                    f"{y:.0f}" if y >= 10 else f"{y:.1f}",
                    (x, y),
                    ha="center",
                    va="bottom",
                    fontsize=6,
                    xytext=(0, 2),
                    textcoords="offset points",
                )
    for j, (backend, precision) in enumerate(combos):  # the claim: pocketgan <= 0.25 x the peer
        peer = [r for r in rs if r["backend"] == backend and r["precision"] == precision and r["model"] == PEER]
        if peer:
            limit = PEER_LATENCY_LIMIT * peer[0]["latency_ms"]["median"]
            ax.hlines(
                limit,
                j - 0.45,
                j + 0.45 - width,
                colors="black",
                linestyles="dashed",
                linewidth=0.8,
                label=f"{PEER_LATENCY_LIMIT:g} x peer (the claim)" if j == 0 else None,
            )


def chart(results: dict, path: Path) -> Path:
    """Latency per backend and precision, the generator's concept modes against the peer;
    one panel per size, log scale (the peer is an order of magnitude slower)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    recs = [r for r in results["records"] if r["status"] == "ok" and r["latency_ms"]]
    sizes = sorted({r["size"] for r in recs}) or [0]
    names = {r["model"]: r["model_name"] for r in recs}
    gen, peer = names.get(GENERATOR, GENERATOR), names.get(PEER, PEER)
    series = [
        (GENERATOR, "separate", f"{gen}, separate (base + adapter)", "#1f77b4"),
        (GENERATOR, "merged", f"{gen}, merged", "#7fb3e0"),
        (PEER, PEER_MODE, f"{peer} (peer, no concepts)", "#d62728"),
    ]
    fig, axes = plt.subplots(1, len(sizes), figsize=(5.6 * len(sizes), 4.8), squeeze=False)
    for ax, size in zip(axes[0], sizes):
        rs = [r for r in recs if r["size"] == size]
        combos = sorted(
            {(r["backend"], r["precision"]) for r in rs},
            key=lambda bp: sort_key(
                {"size": 0, "backend": bp[0], "precision": bp[1], "model": GENERATOR, "concept_mode": "separate"}
            ),
        )
        _bars(ax, rs, combos, series, 0.8 / len(series))
        values = [r["latency_ms"]["median"] for r in rs]
        if values:
            ax.set_ylim(min(values) / 2.5, max(values) * 2.0)
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xticks(range(len(combos)))
        ax.set_xticklabels([f"{BACKEND_TITLES.get(b, b).replace(' ', chr(10), 1)}\n{p}" for b, p in combos], fontsize=7)
        ax.set_yscale("log")
        ax.set_ylabel("latency, median (ms, log)")
        ax.set_title(f"{size}x{size}, batch 1" if size else "no results")
        ax.grid(axis="y", which="both", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=7, frameon=False)
    m = results["machine"]
    fig.suptitle(f"{m.get('device') or m['cpu_model']}, {m.get('threads') or '?'} threads", fontsize=9)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(
    results: dict, out: Path, *, chart_name: str = "latency.png", md_name: str = "results.md"
) -> tuple[Path, Path]:
    """Write ``results.md`` and the chart into ``out`` (atomically: a reader never sees half a file)."""
    from pocketgan.atomic import atomic_write_bytes

    out = Path(out)
    png = out / chart_name
    tmp = out / f".{chart_name}.partial.png"
    chart(results, tmp)
    atomic_write_bytes(png, tmp.read_bytes())
    tmp.unlink()
    md = out / md_name
    atomic_write_bytes(md, markdown(results, chart_name).encode("utf-8"))
    return md, png


def report_file(results_json: Path, out: Path | None = None) -> tuple[Path, Path]:
    """Check a results document (``pocketgan bench``'s or a phone's), recompute its derived
    fields and write ``results.md`` and the chart into ``out`` (default: beside it)."""
    from pocketgan.bench.results import finalize, validate

    results_json = Path(results_json)
    results = json.loads(results_json.read_text())
    validate(results)
    finalize(results)  # documents written by the apps leave the derived fields (ratios, claims) to this
    validate(results)
    return write_report(results, out if out is not None else results_json.parent)


def main(argv: list[str] | None = None) -> int:
    """``python -m pocketgan.bench.report``: a results document's report, or (first argument
    ``slice``, ``matrix`` or ``suite``) a pytest-benchmark suite's (see the module docstring)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in PYTEST_KINDS:
        return _pytest_main(argv)
    ap = argparse.ArgumentParser(
        prog="python -m pocketgan.bench.report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("results", type=Path, help="a results.json (pocketgan bench or a device harness)")
    ap.add_argument("--out", type=Path, help="output directory (default: next to RESULTS)")
    args = ap.parse_args(argv)
    md, png = report_file(args.results, args.out)
    print(f"wrote {md}, {png}")
    return 0


def _pytest_main(argv: list[str]) -> int:
    from pocketgan.bench.report_pytest import run

    ap = argparse.ArgumentParser(
        prog="python -m pocketgan.bench.report",
        description="Tables and claims from a benchmarks/ suite's pytest-benchmark JSON.",
    )
    ap.add_argument(
        "kind", choices=PYTEST_KINDS, help="slice: make bench; matrix: make bench-matrix; suite: make bench-suite"
    )
    ap.add_argument("json", type=Path, help="the suite's --benchmark-json file")
    ap.add_argument(
        "out",
        type=Path,
        nargs="?",
        help="slice, matrix: also write the table to this file; suite: "
        "the folder for results.json/.md, latency.png (default: JSON "
        "without its suffix)",
    )
    args = ap.parse_args(argv)
    try:
        return run(args.kind, args.json, args.out)
    except (OSError, ValueError) as e:  # no such file; a suite run without --benchmark-save-data
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
