"""Generation commands: train the emoji text-to-image teacher (docs/one-step-generation.md)."""

from __future__ import annotations

import argparse
import json

from pocketgan.cli.common import defer
from pocketgan.cli.flags import add_config_flags, config_kwargs


def cmd_train_generation_teacher(args: argparse.Namespace) -> int:
    from pocketgan.generation.teacher import GenerationArchitecture
    from pocketgan.generation.teacher_training import GenerationTeacherConfig, train_generation_teacher

    arch = GenerationArchitecture(**config_kwargs(args, GenerationArchitecture))
    summary = train_generation_teacher(
        GenerationTeacherConfig(**config_kwargs(args, GenerationTeacherConfig), arch=arch)
    )
    print(json.dumps(summary, indent=2))
    return 0


def _teacher_flags(s: argparse.ArgumentParser) -> None:
    from pocketgan.generation.teacher import GenerationArchitecture
    from pocketgan.generation.teacher_training import GenerationTeacherConfig

    add_config_flags(s, GenerationTeacherConfig, skip=("arch",))
    add_config_flags(
        s.add_argument_group("architecture (fixed for a run)"),
        GenerationArchitecture,
        options={"prediction_type": {"choices": ["epsilon", "v_prediction", "sample"]}},
    )


def cmd_train_generation_student(args: argparse.Namespace) -> int:
    from pocketgan.generation.student_training import StudentTrainingConfig, train_generation_student
    from pocketgan.training.trainer import LossConfig

    loss = LossConfig(**config_kwargs(args, LossConfig))
    summary = train_generation_student(StudentTrainingConfig(**config_kwargs(args, StudentTrainingConfig), loss=loss))
    print(json.dumps(summary, indent=2))
    return 0


def _student_flags(s: argparse.ArgumentParser) -> None:
    from pocketgan.generation.student_training import StudentTrainingConfig
    from pocketgan.training.trainer import LossConfig

    add_config_flags(s, StudentTrainingConfig, skip=("loss",))
    add_config_flags(
        s.add_argument_group("losses (0 switches a part off)"),
        LossConfig,
        skip=("perceptual_weights",),
        options={
            "l1": {"default": 0.0},
            "mse": {"default": 1.0},
            "d_channels": {"help": "(unused: D is the teacher's encoder)"},
        },
    )


def register(sub) -> None:
    """Add the generation commands to the CLI's subparsers."""
    s = sub.add_parser(
        "train-generation-teacher",
        help="train the emoji text-to-image diffusion teacher that one-step generators are distilled from",
        description="Train a pixel-space text-to-image diffusion model (diffusers UNet2DConditionModel, "
        "hashed bag-of-words prompts) on Noto Color Emoji glyphs, held-out prompts excluded "
        "(docs/one-step-generation.md). Resumable: rerun the same command. "
        "Data-parallel on GPUs: accelerate launch -m pocketgan train-generation-teacher ...",
    )
    defer(s, _teacher_flags)
    s.set_defaults(
        func=cmd_train_generation_teacher, interrupted="the last checkpoint is kept, rerun the same command to resume"
    )
    s = sub.add_parser(
        "train-generation-student",
        help="distil the generation teacher into a one-step generator (regression, then + GAN)",
        description="Diffusion2GAN on distill-data --noise pairs: stage 1 regresses the teacher's DDIM output "
        "(--mse, --perceptual [--no-ensemble]); stage 2 (--init STAGE1 --gan W --r1-gamma G --mix-and-match) adds "
        "the conditional GAN with the teacher-encoder discriminator (docs/one-step-generation.md). Resumable.",
    )
    defer(s, _student_flags)
    s.set_defaults(
        func=cmd_train_generation_student, interrupted="the last checkpoint is kept, rerun the same command to resume"
    )
