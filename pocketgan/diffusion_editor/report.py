"""Teacher against student: latency, fidelity, task quality, steps vs quality.

    python -m pocketgan.diffusion_editor.report --teacher out/teacher/editor/pipeline \\
        [--bundle DIR] [--out docs/diffusion-teacher]

On the held-out photos (:func:`pocketgan.diffusion_editor.photos.held_out_photo_paths`, the
centre square at 256 px) and for each task (colorize, restore):

- the teacher (DDIM, no guidance, one seed per photo) at 1, 2, 4, 10, 20, 50 steps, and the
  student concept of the bundle (ONNX Runtime, one pass);
- PSNR / SSIM against the clean photo for all of them and for the trivial baselines (the
  gray photo; the degraded photo and OpenCV's non-local-means denoiser, its best ``h`` on
  these photos);
- fidelity: PSNR / SSIM of the student against the teacher at its default 20 steps (the
  count the concepts' datasets were sampled with) and at 50, and of the teacher's n-step
  outputs against its 50-step output;
- colourfulness (Hasler and Suesstrunk) for colorize: PSNR rewards grey;
- latency at 256 px on this CPU: the teacher at its default steps and the student, both in
  PyTorch, and the student in ONNX Runtime.

Writes ``results.json``, ``results.md``, ``steps.png`` and ``grid-<task>.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import io
import statistics
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from pocketgan.atomic import atomic_write_bytes, atomic_write_json
from pocketgan.diffusion_editor.tasks import INPUT_TRANSFORMS, INSTRUCTIONS, TASKS, apply_transform, transform_seed
from pocketgan.full_resolution.quality import scores

STEPS = (1, 2, 4, 10, 20, 50)
DEFAULT_STEPS = 20  # DiffusersTeacher's default, and the count the concepts' datasets were sampled with
SIZE = 256
NLM_H = (3, 6, 10)
GRID_STEPS = (1, 4, 20, 50)


def colourfulness(rgb: np.ndarray) -> float:
    """Hasler and Suesstrunk's colourfulness of a (H, W, 3) uint8 image (0 for gray)."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    rg, yb = r - g, 0.5 * (r + g) - b
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def held_out_squares() -> dict[str, np.ndarray]:
    """{photo stem: its centre square at SIZE px} of the held-out photos."""
    from pocketgan.diffusion_editor.photos import held_out_photo_paths
    from pocketgan.photos import load_rgb
    from pocketgan.training.distill_plan import crop_photo

    return {p.stem: crop_photo(load_rgb(p, 1024), SIZE, 0, 0, p.stem) for p in held_out_photo_paths()}


def nlm(rgb: np.ndarray, h: float) -> np.ndarray:
    import cv2

    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    return cv2.cvtColor(cv2.fastNlMeansDenoisingColored(bgr, None, h, h, 7, 21), cv2.COLOR_BGR2RGB)


def _teacher(pipeline: Path, task: str, steps: int):
    from pocketgan.diffusion_editor.distill import teacher_options
    from pocketgan.training.diffusers_teacher import DiffusersTeacher

    return DiffusersTeacher(
        kind="instruct-pix2pix", model=str(pipeline), prompt=INSTRUCTIONS[task], **teacher_options(steps, 4)
    )


def _mean_scores(outputs: list[np.ndarray], references: list[np.ndarray]) -> dict[str, float]:
    pairs = [scores(o, r) for o, r in zip(outputs, references)]
    return {
        "psnr": round(statistics.fmean(p for p, _ in pairs), 2),
        "ssim": round(statistics.fmean(s for _, s in pairs), 4),
    }


def measure_task(task: str, squares: dict[str, np.ndarray], pipeline: Path, runtime, steps: tuple[int, ...]) -> dict:
    names = sorted(squares)
    clean = [squares[n] for n in names]
    given = [apply_transform(INPUT_TRANSFORMS[task], c, transform_seed(n, 0)) for n, c in zip(names, clean)]
    seeds = list(range(len(names)))
    teacher = {n: _teacher(pipeline, task, n).edit(given, seeds) for n in steps}
    student = [runtime.edit(g, concept=task, resolution="model") for g in given]
    quality = {f"teacher {n} steps": _mean_scores(teacher[n], clean) for n in steps}
    quality["student"] = _mean_scores(student, clean)
    if task == "colorize":
        quality["baseline: the gray photo"] = _mean_scores(given, clean)
    else:
        quality["baseline: the degraded photo"] = _mean_scores(given, clean)
        best = max(NLM_H, key=lambda h: _mean_scores([nlm(g, h) for g in given], clean)["psnr"])
        quality[f"baseline: OpenCV NL-means (h={best})"] = _mean_scores([nlm(g, best) for g in given], clean)
    record = {
        "photos": names,
        "quality": quality,
        "fidelity": {
            f"student vs teacher {DEFAULT_STEPS} steps": _mean_scores(student, teacher[DEFAULT_STEPS]),
            "student vs teacher 50 steps": _mean_scores(student, teacher[50]),
            **{f"teacher {n} steps vs 50 steps": _mean_scores(teacher[n], teacher[50]) for n in steps if n != 50},
        },
    }
    if task == "colorize":
        record["colourfulness"] = {
            "original": round(statistics.fmean(map(colourfulness, clean)), 2),
            "student": round(statistics.fmean(map(colourfulness, student)), 2),
            **{f"teacher {n} steps": round(statistics.fmean(map(colourfulness, teacher[n])), 2) for n in steps},
        }
    images = {
        "input": given,
        **{f"teacher {n}": teacher[n] for n in GRID_STEPS if n in teacher},
        "student": student,
        "original": clean,
    }
    return record, images


def measure_latency(pipeline: Path, bundle_dir: Path, rounds: int) -> dict:
    import torch

    from pocketgan.bench.measure import median_ms
    from pocketgan.bundle import load_bundle
    from pocketgan.runtime import open_bundle

    photo = np.full((SIZE, SIZE, 3), 128, np.uint8)
    teacher = _teacher(pipeline, "restore", DEFAULT_STEPS)
    teacher_ms = median_ms(lambda: teacher.edit([photo], [0]), rounds=max(1, rounds // 10), warmup=1)
    model = load_bundle(bundle_dir).model_for("restore").eval()
    x = torch.zeros(1, 3, SIZE, SIZE)

    def student_torch():
        with torch.inference_mode():
            model(x)

    torch_ms = median_ms(student_torch, rounds=rounds, warmup=1)
    runtime = open_bundle(bundle_dir, concept="restore")
    onnx_ms = median_ms(lambda: runtime.edit(photo, resolution="model"), rounds=rounds, warmup=1)
    return {
        "threads": torch.get_num_threads(),
        "teacher_pytorch_ms": round(teacher_ms, 1),
        "teacher_steps": DEFAULT_STEPS,
        "student_pytorch_ms": round(torch_ms, 2),
        "student_onnx_ms": round(onnx_ms, 2),
        "ratio_pytorch": round(teacher_ms / torch_ms, 1),
        "ratio_teacher_pytorch_vs_student_onnx": round(teacher_ms / onnx_ms, 1),
    }


def grid(images: dict[str, list[np.ndarray]], rows: int = 4, tile: int = 192) -> Image.Image:
    columns = list(images)
    sheet = Image.new("RGB", (tile * len(columns), 18 + tile * rows), "white")
    draw = ImageDraw.Draw(sheet)
    for c, name in enumerate(columns):
        draw.text((c * tile + 4, 3), name, fill="black")
        for r in range(rows):
            im = Image.fromarray(images[name][r]).resize((tile, tile), Image.Resampling.LANCZOS)
            sheet.paste(im, (c * tile, 18 + r * tile))
    return sheet


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, task in zip(axes, TASKS):
        q = results["tasks"][task]["quality"]
        steps = [n for n in STEPS if f"teacher {n} steps" in q]
        ax.plot(steps, [q[f"teacher {n} steps"]["psnr"] for n in steps], "o-", label="teacher (DDIM)")
        ax.axhline(q["student"]["psnr"], color="C1", ls="--", label="student (1 pass)")
        ax.plot([1], [q["student"]["psnr"]], "s", color="C1")
        for i, key in enumerate(k for k in q if k.startswith("baseline")):
            ax.axhline(q[key]["psnr"], color=f"C{i + 2}", ls=":", label=key.removeprefix("baseline: "))
        ax.set_xscale("log")
        ax.set_xticks(steps, [str(n) for n in steps])
        ax.set_xlabel("teacher sampling steps")
        ax.set_ylabel("PSNR vs the clean photo (dB)")
        ax.set_title(task)
        ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def markdown(results: dict) -> str:
    lines = []
    lat = results["latency"]
    lines += [
        "| latency at 256 px, this CPU | ms |",
        "|---|---:|",
        f"| teacher, {lat['teacher_steps']} DDIM steps, PyTorch | {lat['teacher_pytorch_ms']} |",
        f"| student, PyTorch | {lat['student_pytorch_ms']} |",
        f"| student, ONNX Runtime (runtime.edit) | {lat['student_onnx_ms']} |",
        f"| ratio, PyTorch / PyTorch | **{lat['ratio_pytorch']}x** |",
        "",
    ]
    for task, r in results["tasks"].items():
        lines += [f"### {task}", "", "| against the clean photo | PSNR dB | SSIM |", "|---|---:|---:|"]
        lines += [f"| {k} | {v['psnr']} | {v['ssim']} |" for k, v in r["quality"].items()]
        lines += ["", "| fidelity | PSNR dB | SSIM |", "|---|---:|---:|"]
        lines += [f"| {k} | {v['psnr']} | {v['ssim']} |" for k, v in r["fidelity"].items()]
        if "colourfulness" in r:
            lines += ["", "| colourfulness | |", "|---|---:|"] + [
                f"| {k} | {v} |" for k, v in r["colourfulness"].items()
            ]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pocketgan.diffusion_editor.report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--teacher", type=Path, required=True, help="the editor pipeline directory")
    parser.add_argument("--bundle", type=Path, help="bundle with colorize and restore (default: the embedded one)")
    parser.add_argument("--out", type=Path, default=Path("docs/diffusion-teacher"), help="report folder")
    parser.add_argument("--rounds", type=int, default=20, help="latency rounds of the student (teacher: 1/10)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args(argv)
    from pocketgan._quiet import quiet_library_logs, quiet_library_warnings

    quiet_library_logs()  # before torchao and diffusers are imported
    quiet_library_warnings()
    import torch

    from pocketgan.runtime import open_bundle
    from pocketgan.runtime.session import default_bundle_path

    torch.set_num_threads(args.threads)
    bundle = args.bundle or default_bundle_path()
    runtime = open_bundle(bundle)
    squares = held_out_squares()
    results = {"teacher": str(args.teacher), "bundle": str(bundle), "size": SIZE, "tasks": {}}
    for task in TASKS:
        print(f"measuring {task} on {len(squares)} held-out photos ...", flush=True)
        record, images = measure_task(task, squares, args.teacher, runtime, STEPS)
        results["tasks"][task] = record
        buf = io.BytesIO()
        grid(images).save(buf, format="PNG")
        atomic_write_bytes(args.out / f"grid-{task}.png", buf.getvalue())
    print("measuring latency ...", flush=True)
    results["latency"] = measure_latency(args.teacher, bundle, args.rounds)
    atomic_write_json(args.out / "results.json", results)
    atomic_write_bytes(args.out / "results.md", markdown(results).encode())
    plot(results, args.out / "steps.png")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
