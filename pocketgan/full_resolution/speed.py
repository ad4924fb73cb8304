"""How the cost of a full-resolution edit grows with the photo: latency, peak RSS and where the
time goes, from 256 x 256 to 12 MP, on this machine.

    python -m pocketgan.full_resolution.speed [--backend onnx] [--threads 2] [--out docs/full-resolution]

Each size runs in its own process (peak RSS is per process): it opens the bundle, builds the
photo (a real photo resized), edits it once to warm up and then ``--rounds`` times; the median
is reported, split into its stages: letterbox (resize to the model's size), model, fit (the
guided filter at the model's size), full-resolution pass. The slope of a log-log fit of latency
against pixels says how cost grows (1.0: linearly).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from pocketgan.atomic import atomic_write_bytes, atomic_write_json

SIZES = {
    "256x256": (256, 256),
    "512x512": (512, 512),
    "1280x720": (1280, 720),
    "1920x1080": (1920, 1080),
    "4 MP": (2309, 1732),
    "12 MP": (4000, 3000),
}
SOURCE_PHOTO = "/usr/share/backgrounds/mate/abstract/Elephants_5640x3172.jpg"

_CHILD = r"""
import json, resource, sys, time
import numpy as np
from PIL import Image
from pocketgan.runtime import open_bundle
from pocketgan.runtime.imaging import check_image, model_crops, to_model_input
from pocketgan.runtime.upsampling import apply_coefficients
width, height, backend, threads, rounds, resolution, source = sys.argv[1:8]
width, height, threads, rounds = int(width), int(height), int(threads), int(rounds)
with Image.open(source) as im:
    photo = np.asarray(im.convert("RGB").resize((width, height), Image.Resampling.BILINEAR))
rt = open_bundle(backend=backend, threads=threads)
concept = "detail_enhance" if "detail_enhance" in rt.concepts else rt.concepts[0]
stages = {"letterbox": [], "model": [], "fit": [], "full-resolution pass": [], "total": []}
rt.edit(photo, concept=concept, resolution=resolution)
for _ in range(rounds):
    t = time.perf_counter()
    rt.edit(photo, concept=concept, resolution=resolution)
    stages["total"].append(time.perf_counter() - t)
    if resolution != "full":
        continue
    t0 = time.perf_counter(); x, p = to_model_input(check_image(photo), rt.input_size)
    t1 = time.perf_counter(); y = rt.run_tensor(x, concept=concept)
    t2 = time.perf_counter(); lp, le, _ = model_crops(x, y, p); c = rt.upsampling[concept].coefficients(lp, le)
    t3 = time.perf_counter(); apply_coefficients(photo, c)
    t4 = time.perf_counter()
    for key, (a, b) in zip(list(stages)[:4], ((t0, t1), (t1, t2), (t2, t3), (t3, t4))):
        stages[key].append(b - a)
med = {k: float(np.median(v)) * 1e3 for k, v in stages.items() if v}
print(json.dumps({"ms": med, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure_size(width: int, height: int, *, backend: str, threads: int, rounds: int, resolution: str) -> dict:
    """One size in a fresh process: ``{"ms": {stage: median ms}, "peak_rss_mib": float}``."""
    args = [str(width), str(height), backend, str(threads), str(rounds), resolution, SOURCE_PHOTO]
    done = subprocess.run([sys.executable, "-c", _CHILD, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{width}x{height}: the measuring process failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def loglog_slope(pixels: list[int], ms: list[float]) -> float:
    """Slope of log(latency) against log(pixels): 1.0 is linear growth."""
    return float(np.polyfit(np.log(pixels), np.log(ms), 1)[0])


def sweep(*, backend: str = "onnx", threads: int = 2, rounds: int = 5) -> dict:
    rows = {}
    for label, (w, h) in SIZES.items():
        full = measure_size(w, h, backend=backend, threads=threads, rounds=rounds, resolution="full")
        model = measure_size(w, h, backend=backend, threads=threads, rounds=rounds, resolution="model")
        rows[label] = {"width": w, "height": h, "full": full, "model": model}
        print(f"{label:>10}: full {full['ms']['total']:8.1f} ms, {full['peak_rss_mib']:6.0f} MiB peak; "
              f"model-size preview {model['ms']['total']:6.1f} ms", flush=True)  # fmt: skip
    pixels = [r["width"] * r["height"] for r in rows.values()]
    big = [i for i, p in enumerate(pixels) if p >= 1_000_000]
    slope = loglog_slope([pixels[i] for i in big], [list(rows.values())[i]["full"]["ms"]["total"] for i in big])
    return {"backend": backend, "threads": threads, "rounds": rounds, "sizes": rows, "slope_over_1mp": slope}


def markdown(result: dict) -> str:
    lines = [
        f"Backend {result['backend']}, {result['threads']} threads, median of {result['rounds']} edits, "
        f"concept detail_enhance. Log-log slope of full-resolution latency over pixels (>= 1 MP): "
        f"**{result['slope_over_1mp']:.2f}** (1.0 = linear).",
        "",
        "| size | full: total | letterbox | model | fit | full-res pass | peak RSS | model-size preview |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, row in result["sizes"].items():
        ms = row["full"]["ms"]
        lines.append(
            f"| {label} | {ms['total']:.1f} ms | {ms['letterbox']:.1f} | {ms['model']:.1f} | {ms['fit']:.1f} "
            f"| {ms['full-resolution pass']:.1f} | {row['full']['peak_rss_mib']:.0f} MiB "
            f"| {row['model']['ms']['total']:.1f} ms |"
        )
    return "\n".join(lines) + "\n"


def chart(result: dict, path: Path) -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(result["sizes"].values())
    mp = [r["width"] * r["height"] / 1e6 for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.loglog(mp, [r["full"]["ms"]["total"] for r in rows], "o-", label="full resolution")
    ax.loglog(mp, [r["model"]["ms"]["total"] for r in rows], "s--", label="model-size preview")
    ax.set_xlabel("megapixels")
    ax.set_ylabel("latency, ms")
    ax.set_title(f"edit latency vs photo size ({result['backend']}, {result['threads']} threads)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pocketgan.full_resolution.speed", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--backend", default="onnx", help="runtime backend (default onnx)")
    parser.add_argument("--threads", type=int, default=2, help="backend threads (default 2)")
    parser.add_argument("--rounds", type=int, default=5, help="timed edits per size (default 5)")
    parser.add_argument("--out", type=Path, default=Path("docs/full-resolution"), help="results folder")
    args = parser.parse_args(argv)
    result = sweep(backend=args.backend, threads=args.threads, rounds=args.rounds)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / f"speed-{args.backend}.json", result)
    atomic_write_bytes(args.out / f"speed-{args.backend}.md", markdown(result).encode())
    chart(result, args.out / f"speed-{args.backend}.png")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
