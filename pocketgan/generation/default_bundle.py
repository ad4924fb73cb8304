"""``python -m pocketgan.generation.default_bundle``: package a trained one-step generator as a bundle.

Takes the teacher's pipeline (its prompt table is the bundle's) and a
``train-generation-student`` run folder, and writes a generation bundle (ONNX by default;
``pocketgan export BUNDLE --targets executorch coreml`` adds the others) with the runs'
provenance: the teacher's step and settings, the ODE pairs' settings, the student's losses
and validation history. ``--out pocketgan/default_generation_bundle`` refreshes the bundle
that ships with the package (docs/one-step-generation.md has the commands that made it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def package_student(teacher_dir: Path, student_dir: Path, out: Path, targets: tuple[str, ...] = ("onnx",)) -> Path:
    from pocketgan.generation.bundle import write_generation_bundle
    from pocketgan.generation.report import load_student
    from pocketgan.generation.teacher import load_teacher

    teacher = load_teacher(teacher_dir)
    student = load_student(teacher, student_dir)
    run = _json(Path(student_dir) / "run.json") or {}
    pairs = _json(Path(run.get("pairs", "")) / "dataset.json") if run.get("pairs") else None
    provenance = {
        "teacher": _json(Path(teacher_dir) / "pocketgan-teacher.json"),
        "ode_pairs": pairs,
        "student": _json(Path(student_dir) / "generator" / "generator.json"),
    }
    table = teacher.prompt_encoder.table.weight.detach().float()
    return write_generation_bundle(out, student, table, provenance, targets=targets, progress=print)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m pocketgan.generation.default_bundle", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--teacher", type=Path, required=True, help="teacher pipeline folder")
    p.add_argument("--student", type=Path, required=True, help="train-generation-student run folder")
    p.add_argument("--out", type=Path, required=True, help="bundle folder to write (replaced atomically)")
    p.add_argument("--targets", nargs="+", default=["onnx"], choices=["onnx", "executorch", "coreml"])
    args = p.parse_args(argv)
    print(package_student(args.teacher, args.student, args.out, tuple(args.targets)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
