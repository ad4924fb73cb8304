"""Distil the trained editor into the ``colorize`` and ``restore`` concepts of a bundle.

    python -m pocketgan.diffusion_editor.distill --teacher out/teacher/editor/pipeline \\
        --out out/teacher/default-src
    pocketgan export out/teacher/default-src --targets onnx --out pocketgan/default_bundle

It runs the SDK's own commands, each resumable (rerun after a kill; finished stages are
skipped, the interrupted one continues):

1. the editor's training photos (never the held-out ones) go into ``WORK/photos``;
2. ``distill-data`` per task: 256 px crops, the task's input transform (grayscale /
   degrade), the teacher sampled with DDIM at ``--teacher-steps``, seeded per pair;
3. ``train-concept`` per task: a LoRA on the bundle's frozen base, the default bundle's
   concept recipe (rank 1, 800 steps, L1 + ensembled perceptual).

The same by hand: ``pocketgan distill-data --teacher instruct-pix2pix:PIPELINE --prompt
"colorize the photo" --input-transform grayscale --photos WORK/photos --out WORK/data/colorize
--steps 20 --guidance-scale 1 --image-guidance-scale 1``, then ``pocketgan train-concept``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from pocketgan.diffusion_editor.tasks import INPUT_TRANSFORMS, INSTRUCTIONS, TASKS

DESCRIPTIONS = {
    "colorize": "Colour for a black-and-white photo (distilled from the diffusion editor)",
    "restore": "Repair blur, noise and JPEG damage (distilled from the diffusion editor)",
}


def teacher_options(steps: int, batch_size: int) -> dict:
    """How distill-data samples the editor: DDIM, no guidance (the editor is trained for
    exactly these tasks; guidance would triple the cost and push colours past the photos')."""
    return {"steps": steps, "guidance_scale": 1.0, "image_guidance_scale": 1.0, "batch_size": batch_size}


def make_datasets(teacher: Path, work: Path, crops: int, steps: int, batch_size: int) -> dict[str, Path]:
    from pocketgan.diffusion_editor.photos import training_photos
    from pocketgan.training.default_bundle import write_training_photos
    from pocketgan.training.distill_data import DistillDataConfig, generate_pairs

    count = write_training_photos(work / "photos", training_photos())
    print(f"{count} training photos, {crops} crops each", flush=True)
    data = {}
    for task in TASKS:
        data[task] = work / "data" / task
        config = DistillDataConfig(
            photos=work / "photos",
            out=data[task],
            teacher=f"instruct-pix2pix:{teacher}",
            prompt=INSTRUCTIONS[task],
            size=256,
            crops_per_photo=crops,
            input_transform=INPUT_TRANSFORMS[task],
            teacher_options=teacher_options(steps, batch_size),
        )
        generate_pairs(config, rank=0, world_size=1)
    return data


def train_concepts(bundle: Path | None, data: dict[str, Path], out: Path, work: Path, steps: int, rank: int) -> dict:

    from pocketgan.bundle import load_bundle, save_bundle
    from pocketgan.runtime.session import default_bundle_path
    from pocketgan.training.commands import ConceptRecipe, run_train_concept
    from pocketgan.training.trainer import LossConfig, TrainConfig

    if not out.exists():
        source = load_bundle(bundle or default_bundle_path())
        # the tasks' concepts are trained from this run's data, never taken over from the source
        # (the embedded bundle ships them): a concept in OUT is one this run finished
        save_bundle(source.with_concepts([c for c in source.concepts if c.name not in TASKS]), out)
    records = {}
    for task in TASKS:
        current = load_bundle(out)
        if task in current.concept_names:
            records[task] = current.concept(task).training
            continue  # trained before a kill
        ckpt = work / "concepts.ckpt" / task
        train = TrainConfig(steps=steps, lr=5e-3, seed=1, checkpoint_dir=ckpt, resume=ckpt.exists())
        records[task] = run_train_concept(
            out, data[task], task, out, ConceptRecipe(rank=rank), train, LossConfig(perceptual=4.0), DESCRIPTIONS[task]
        )
    shutil.rmtree(work / "concepts.ckpt", ignore_errors=True)
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pocketgan.diffusion_editor.distill",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--teacher", type=Path, required=True, help="the editor pipeline (train-teacher's OUT/pipeline)"
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="source bundle to write (the input bundle + 2 concepts)"
    )
    parser.add_argument(
        "--bundle", type=Path, help="bundle whose base the concepts train on (default: the embedded one)"
    )
    parser.add_argument("--work", type=Path, help="photos, datasets, checkpoints (default OUT.work)")
    parser.add_argument("--crops", type=int, default=20, help="crops per training photo (default 20)")
    parser.add_argument("--teacher-steps", type=int, default=20, help="DDIM steps per pair (default 20)")
    parser.add_argument("--batch-size", type=int, default=4, help="teacher images per call (default 4)")
    parser.add_argument("--concept-steps", type=int, default=800, help="train-concept steps (default 800)")
    parser.add_argument("--rank", type=int, default=1, help="LoRA rank (default 1, the bundle's other concepts')")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args(argv)
    from pocketgan._quiet import quiet_library_logs, quiet_library_warnings

    quiet_library_logs()  # before torchao and diffusers are imported
    quiet_library_warnings()
    import torch

    torch.set_num_threads(args.threads)
    work = args.work or args.out.with_name(args.out.name + ".work")
    data = make_datasets(args.teacher, work, args.crops, args.teacher_steps, args.batch_size)
    records = train_concepts(args.bundle, data, args.out, work, args.concept_steps, args.rank)
    print(
        json.dumps(
            {t: {k: r.get(k) for k in ("steps", "seconds", "final_l1", "pairs")} for t, r in records.items()}, indent=2
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
