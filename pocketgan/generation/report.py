"""``python -m pocketgan.generation.report``: the one-step generation report's numbers and pictures.

For the held-out prompts (no training saw them or their glyphs), one image each, noise
``seeded_noise(REPORT_SEED * 2^32 + i)``:

- the teacher with DDIM at 1, 2, 4, 10, 25, 50 steps (classifier-free guidance as in the
  ODE pairs) and every student given with ``--student NAME=RUN_DIR``, for the same noise;
- the Fréchet distance of each to the held-out glyphs, on the embedding of the FD
  classifier trained here (:mod:`pocketgan.generation.frechet`), all at the same N, with the
  train-vs-held-out FD at that N as the floor;
- each student's PSNR and perceptual distance (the trained LPIPS-style features, no
  augmentation) to the teacher's 50-step output for the same noise and prompt;
- latency at batch 1 on the same backend: PyTorch eager, and ONNX Runtime (the student's
  graph vs the teacher's UNet graph run ``2 x steps`` times, CFG's two branches);
- a grid (held-out prompts x teacher steps + students) and plots.

Writes ``OUT/results.json``, ``OUT/results.md``, ``OUT/grid.png``, ``OUT/fd-vs-steps.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pocketgan.runtime.seeded_noise import seeded_noise

TEACHER_STEPS = (1, 2, 4, 10, 25, 50)
REPORT_SEED = 7_000_003
GRID_PROMPTS = 8


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, 3, S, S) in [-1, 1] -> uint8 (N, S, S, 3)."""
    return ((images.clamp(-1, 1).permute(0, 2, 3, 1).numpy() + 1) * 127.5).round().astype(np.uint8)


def held_out_inputs(emoji, side: int) -> tuple[list[str], torch.Tensor]:
    prompts = emoji.prompts
    noise = np.concatenate([seeded_noise((REPORT_SEED << 32) | i, (1, 3, side, side)) for i in range(len(prompts))])
    return prompts, torch.from_numpy(noise)


def load_student(teacher, run_dir: Path):
    from safetensors.torch import load_file

    from pocketgan.generation.student import OneStepGenerator

    student = OneStepGenerator.from_teacher(teacher)
    student.unet.load_state_dict(load_file(str(Path(run_dir) / "generator" / "generator.safetensors")))
    return student.eval()


@torch.no_grad()
def student_images(student, teacher, prompts: list[str], noise: torch.Tensor, batch: int = 128) -> torch.Tensor:
    states = teacher.prompt_encoder.encode(prompts)
    return torch.cat([student(noise[i : i + batch], states[i : i + batch]) for i in range(0, len(noise), batch)])


def teacher_images(teacher, prompts: list[str], noise: torch.Tensor, steps: int, batch: int = 128) -> torch.Tensor:
    return torch.cat(
        [teacher.sample(prompts[i : i + batch], noise[i : i + batch], steps) for i in range(0, len(noise), batch)]
    )


def psnr_db(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = torch.mean((a - b) ** 2).item() / 4.0  # [-1, 1] -> [0, 1]
    return 10 * math.log10(1.0 / max(mse, 1e-12))


@torch.no_grad()
def perceptual_distance(loss, a: torch.Tensor, b: torch.Tensor) -> float:
    return float(np.mean([loss(a[i : i + 128], b[i : i + 128]).item() for i in range(0, len(a), 128)]))


def _median_ms(fn, runs: int) -> float:
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)


@torch.no_grad()
def torch_latency(teacher, student, steps: int, runs: int) -> dict[str, float]:
    s = teacher.arch.image_size
    noise = torch.from_numpy(seeded_noise(1, (1, 3, s, s)))
    states = teacher.prompt_encoder.encode(["red apple"])
    return {
        "student_ms": _median_ms(lambda: student(noise, states), runs * 5),
        f"teacher_{steps}_steps_ms": _median_ms(lambda: teacher.sample(["red apple"], noise, steps), runs),
    }


class _TeacherEval(torch.nn.Module):
    """One teacher UNet evaluation as the DDIM loop runs it: (latents, timestep, states) -> v."""

    def __init__(self, unet: torch.nn.Module) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, latents: torch.Tensor, timestep: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        return self.unet(latents, timestep, encoder_hidden_states=states, return_dict=False)[0]


def onnx_latency(teacher, student, steps: int, runs: int) -> dict[str, float]:
    """ONNX Runtime, batch 1: the student's graph once vs the teacher UNet's graph ``steps`` times
    at batch 2 (classifier-free guidance's two branches), both exported the same way.

    The DDIM update between UNet calls (a few element-wise numpy ops) is left out of the
    teacher's time, which favours the teacher."""
    from pocketgan.export.onnx_target import export_onnx_model
    from pocketgan.runtime.backends.onnx import open_session, session_options

    s = teacher.arch.image_size
    c, h, _ = teacher.arch.latent_shape
    noise = torch.from_numpy(seeded_noise(1, (1, 3, s, s)))
    states = teacher.prompt_encoder.encode(["red apple"]).detach()
    student_proto = export_onnx_model(student, (noise, states), ("noise", "prompt_states"))
    examples = (torch.randn(2, c, h, h), torch.tensor(999), torch.cat([states, states]))
    teacher_proto = export_onnx_model(_TeacherEval(teacher.unet), examples, ("latents", "timestep", "states"))
    options = session_options(2)
    one = open_session(student_proto.SerializeToString(), "student.onnx", options)
    unet = open_session(teacher_proto.SerializeToString(), "teacher_unet.onnx", options)
    feeds = {"noise": noise.numpy(), "prompt_states": states.numpy()}
    teacher_feeds = {"latents": examples[0].numpy(), "timestep": np.array(999), "states": examples[2].numpy()}

    def teacher_run() -> None:
        for _ in range(steps):
            unet.run(None, teacher_feeds)

    return {
        "student_ms": _median_ms(lambda: one.run(None, feeds), runs * 5),
        f"teacher_{steps}_steps_ms": _median_ms(teacher_run, runs),
    }


def grid(rows: list[list[np.ndarray]], scale: int = 3, gap: int = 2) -> np.ndarray:
    """uint8 image of ``rows`` x columns of (S, S, 3) tiles on white, nearest-upscaled."""
    s = rows[0][0].shape[0] * scale
    h, w = len(rows), max(len(r) for r in rows)
    out = np.full((h * (s + gap) + gap, w * (s + gap) + gap, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            big = tile.repeat(scale, 0).repeat(scale, 1)
            out[gap + r * (s + gap) : gap + r * (s + gap) + s, gap + c * (s + gap) : gap + c * (s + gap) + s] = big
    return out


def fd_vs_steps_plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    steps = [int(k) for k in results["teacher"]]
    ax.plot(steps, [results["teacher"][str(k)]["fd"] for k in steps], "o-", label="teacher (DDIM, CFG)")
    for i, (name, r) in enumerate(results["students"].items()):
        ax.axhline(r["fd"], ls="--", color=f"C{i + 1}", label=f"student 1 step: {name}")
    ax.axhline(results["fd_floor"], ls=":", color="gray", label="floor: training vs held-out glyphs")
    ax.set_xscale("log")
    ax.set_xlabel("teacher DDIM steps")
    ax.set_ylabel("Fréchet distance to held-out glyphs (lower is better)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_report(
    teacher_dir: Path,
    students: dict[str, Path],
    fd_dir: Path,
    perceptual_dir: Path,
    out: Path,
    runs: int = 5,
    guidance: float = 1.5,
) -> dict[str, Any]:
    from PIL import Image

    from pocketgan.generation.emoji import load_emoji
    from pocketgan.generation.features import load_perceptual_loss
    from pocketgan.generation.frechet import FDFeatures, frechet_distance
    from pocketgan.generation.teacher import load_teacher

    out.mkdir(parents=True, exist_ok=True)
    teacher = load_teacher(teacher_dir, guidance)
    side = teacher.arch.image_size
    emoji = load_emoji(side, progress=False)
    held = emoji.split(held_out=True)
    train = emoji.split(held_out=False)
    prompts, noise = held_out_inputs(held, side)
    fd_net = FDFeatures.load(fd_dir)
    real = fd_net.embed(held.images)
    floor_idx = np.random.default_rng(0).choice(len(train), size=len(held), replace=False)
    results: dict[str, Any] = {
        "n": len(prompts),
        "guidance": teacher.guidance,
        "fd_floor": frechet_distance(fd_net.embed(train.images[floor_idx]), real),
    }
    lpips = load_perceptual_loss(perceptual_dir, ensemble=False)
    images: dict[str, torch.Tensor] = {}
    results["teacher"] = {}
    for steps in TEACHER_STEPS:
        images[f"teacher {steps}"] = x = teacher_images(teacher, prompts, noise, steps)
        results["teacher"][str(steps)] = {"fd": frechet_distance(fd_net.embed(to_uint8(x)), real)}
    reference = images["teacher 50"]
    results["students"] = {}
    for name, run_dir in students.items():
        student = load_student(teacher, run_dir)
        images[name] = x = student_images(student, teacher, prompts, noise)
        results["students"][name] = {
            "fd": frechet_distance(fd_net.embed(to_uint8(x)), real),
            "psnr_to_teacher_50_db": psnr_db(x, reference),
            "perceptual_to_teacher_50": perceptual_distance(lpips, x, reference),
            "run": str(run_dir),
        }
    for steps in TEACHER_STEPS:
        x = images[f"teacher {steps}"]
        results["teacher"][str(steps)] |= {
            "psnr_to_teacher_50_db": psnr_db(x, reference) if steps != 50 else None,
            "perceptual_to_teacher_50": perceptual_distance(lpips, x, reference),
        }
    if students:
        first = load_student(teacher, next(iter(students.values())))
        results["latency_torch"] = torch_latency(teacher, first, 50, runs)
        results["latency_onnx"] = onnx_latency(teacher, first, 50, runs)
    rows = []
    for i in np.linspace(0, len(prompts) - 1, GRID_PROMPTS).astype(int):
        rows.append([to_uint8(images[k][i : i + 1])[0] for k in images] + [held.images[i]])
    Image.fromarray(grid(rows)).save(out / "grid.png")
    results["grid"] = {
        "columns": [*images, "held-out glyph"],
        "prompts": [prompts[i] for i in np.linspace(0, len(prompts) - 1, GRID_PROMPTS).astype(int)],
    }
    fd_vs_steps_plot(results, out / "fd-vs-steps.png")
    (out / "results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    (out / "results.md").write_text(results_markdown(results), encoding="utf-8")
    return results


def results_markdown(results: dict) -> str:
    """The report's tables (results.md), from results.json."""
    ref50 = results["teacher"]["50"]["fd"]
    lines = [
        f"N = {results['n']} held-out prompts, one image each; FD floor (training vs held-out glyphs at this N): "
        f"{results['fd_floor']:.2f}.",
        "",
        "| sampler | passes | FD to held-out glyphs | FD / teacher 50 | PSNR to teacher 50 (dB) "
        "| perceptual dist. to teacher 50 |",
        "|---|---|---|---|---|---|",
    ]
    for steps, r in results["teacher"].items():
        psnr = "-" if r["psnr_to_teacher_50_db"] is None else f"{r['psnr_to_teacher_50_db']:.2f}"
        lines.append(
            f"| teacher, DDIM {steps} steps, CFG | {2 * int(steps)} | {r['fd']:.2f} | {r['fd'] / ref50:.2f}x | {psnr} "
            f"| {r['perceptual_to_teacher_50']:.4f} |"
        )
    for name, r in results["students"].items():
        lines.append(
            f"| student: {name} | 1 | {r['fd']:.2f} | {r['fd'] / ref50:.2f}x | {r['psnr_to_teacher_50_db']:.2f} "
            f"| {r['perceptual_to_teacher_50']:.4f} |"
        )
    for backend in ("torch", "onnx"):
        lat = results.get(f"latency_{backend}")
        if lat:
            teacher = lat["teacher_50_steps_ms"]
            lines += [
                "",
                f"Latency, batch 1, {'PyTorch eager' if backend == 'torch' else 'ONNX Runtime'}: student "
                f"{lat['student_ms']:.2f} ms, teacher 50 DDIM steps with CFG {teacher:.1f} ms: "
                f"**{teacher / lat['student_ms']:.0f}x** lower.",
            ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pocketgan.generation.report", description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", type=Path, required=True, help="teacher pipeline folder")
    p.add_argument("--student", action="append", default=[], help="NAME=RUN_DIR (repeat)")
    nets = Path(__file__).parent / "feature_nets"
    p.add_argument("--fd-features", type=Path, default=nets / "fd", help="trained FD classifier folder")
    p.add_argument("--perceptual-features", type=Path, default=nets / "perceptual", help="perceptual features folder")
    p.add_argument("--out", type=Path, default=Path("docs/one-step-generation"))
    p.add_argument("--runs", type=int, default=5, help="latency runs (median)")
    p.add_argument("--guidance", type=float, default=1.5, help="the teacher's CFG scale (as in the ODE pairs)")
    args = p.parse_args(argv)
    students = dict(s.split("=", 1) for s in args.student)
    results = run_report(
        args.teacher,
        {k: Path(v) for k, v in students.items()},
        args.fd_features,
        args.perceptual_features,
        args.out,
        args.runs,
        args.guidance,
    )
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
