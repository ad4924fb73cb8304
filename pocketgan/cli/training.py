"""Training commands: ``distill-data``, ``train-base``, ``train-concept``, ``study`` and
``evaluate``, plus the parser of ``python -m pocketgan.training.default_bundle``.

Flags come from the configs (:class:`DistillDataConfig`, the diffusion teacher's
:class:`DiffusersTeacher`, :class:`TrainConfig`, :class:`LossConfig`,
:class:`ConceptRecipe`, :class:`StudyConfig`, :class:`DefaultBundleConfig`), built when
the command is parsed: several of those modules import torch.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from pocketgan.cli.common import defer
from pocketgan.cli.flags import add_config_flags, config_kwargs

DISTILL_DATA_DESCRIPTION = (
    "Edit a folder of photos with a teacher into a paired dataset (input/target PNGs + JSONL index). "
    "Resumable: rerun the same command after a crash or kill. Shardable: run under "
    "`accelerate launch -m pocketgan.training.distill_data ...` to split the work over processes/GPUs/nodes."
)
# DiffusersTeacher settings distill-data passes on to the teacher when given
TEACHER_OPTIONS = ("steps", "guidance_scale", "image_guidance_scale", "strength", "batch_size", "device", "dtype")


# ------------------------------------------------------------------ distill-data


def _distill_data_flags(p: argparse.ArgumentParser) -> None:
    from pocketgan.training.diffusers_teacher import DTYPES, DiffusersTeacher
    from pocketgan.training.distill_data import DistillDataConfig

    add_config_flags(p, DistillDataConfig)
    d = p.add_argument_group("diffusion teachers (instruct-pix2pix:..., img2img:...)")
    add_config_flags(
        d, DiffusersTeacher, only=TEACHER_OPTIONS, defaults_none=True, options={"dtype": {"choices": list(DTYPES)}}
    )
    s = p.add_argument_group("sharding (default: accelerate's process index / count)")
    s.add_argument("--rank", type=int, help="This shard's index, 0 <= rank < world size (give with --world-size).")
    s.add_argument("--world-size", type=int, help="Number of shards (give with --rank).")


def run_from_args(args: argparse.Namespace) -> int:
    """The ``distill-data`` command: run and print a one-line summary. Raises ValueError / OSError."""
    from pocketgan.training.diffusers_teacher import DiffusersTeacher
    from pocketgan.training.distill_data import DistillDataConfig, generate_pairs

    options = config_kwargs(args, DiffusersTeacher, drop_none=True)
    config = DistillDataConfig(**config_kwargs(args, DistillDataConfig), teacher_options=options)
    summary = generate_pairs(config, rank=args.rank, world_size=args.world_size)
    print(
        f"distill-data rank {summary['rank']}/{summary['world_size']}: {summary['written']} pairs written, "
        f"{summary['skipped']} already done, {summary['assigned']} of {summary['items']} items on this rank, "
        f"{summary['seconds']} s -> {summary['out']}",
        file=sys.stderr,
    )
    return 0


def add_distill_data_parser(sub) -> argparse.ArgumentParser:
    """Register ``distill-data`` on an ``add_subparsers()`` object; ``args.func(args)`` runs it."""
    p = sub.add_parser(
        "distill-data",
        help="edit photos with a teacher into a resumable paired dataset",
        description=DISTILL_DATA_DESCRIPTION,
    )
    defer(p, _distill_data_flags)
    p.set_defaults(func=run_from_args, interrupted="finished pairs are kept, rerun the same command to resume")
    return p


# ------------------------------------------------------------------ train-base, train-concept


def _train_flags(s: argparse.ArgumentParser, steps: int, lr: float) -> None:
    """The optimisation and loss flags shared by train-base and train-concept."""
    from pocketgan.training.trainer import LossConfig, TrainConfig

    g = s.add_argument_group("optimisation")
    add_config_flags(
        g,
        TrainConfig,
        skip=("eval_every",),
        options={
            "steps": {"default": steps},
            "lr": {"default": lr},
            "checkpoint_every": {"default": 100},
            "checkpoint_dir": {"help": "where checkpoints go (default OUT.ckpt)"},
        },
    )
    g.add_argument("--threads", type=int, help="CPU threads for torch")
    g = s.add_argument_group("losses (each part can be switched off to measure its effect)")
    g.add_argument(
        "--loss",
        choices=("recipe", "l1"),
        default="recipe",
        help="recipe: L1 + ensembled perceptual + GAN + R1 + mix-and-match (default); l1: L1 only",
    )
    add_config_flags(g, LossConfig, defaults_none=True, flags={"r1_gamma": "--r1"})


def _configs(args: argparse.Namespace, out: Path):
    """(TrainConfig, LossConfig) of a train-base / train-concept command line."""
    from dataclasses import replace

    from pocketgan.training.trainer import LossConfig, TrainConfig

    loss = LossConfig.recipe() if args.loss == "recipe" else LossConfig()
    overrides = config_kwargs(args, LossConfig, drop_none=True)
    if overrides.get("gan") == 0:  # GAN off takes its regularisers with it
        overrides.setdefault("r1_gamma", 0.0)
        overrides.setdefault("mix_and_match", False)
    loss = replace(loss, **overrides)
    checkpoint_dir = args.checkpoint_dir or out.with_name(out.name + ".ckpt")
    train = TrainConfig(**(config_kwargs(args, TrainConfig) | {"checkpoint_dir": checkpoint_dir}))
    unfinished = any(
        p.exists()
        for p in (
            checkpoint_dir / "state.json",
            checkpoint_dir / "probe" / "state.json",
            checkpoint_dir / "train" / "state.json",
            checkpoint_dir / "search.json",
        )
    )
    if unfinished and not args.resume:
        raise ValueError(
            f"{checkpoint_dir} holds a checkpoint of an unfinished run: pass --resume to continue it, "
            f"or delete it to start over"
        )
    return train, loss


def _threads(args: argparse.Namespace) -> None:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)


def cmd_train_concept(args: argparse.Namespace) -> int:
    from pocketgan.training.commands import ConceptRecipe, run_train_concept

    out = args.out or args.bundle
    if out is None:
        raise ValueError("--out is required when training on the embedded default bundle")
    recipe = ConceptRecipe(**config_kwargs(args, ConceptRecipe))
    train, loss = _configs(args, out)
    _threads(args)
    started = time.perf_counter()
    record = run_train_concept(
        args.bundle,
        args.data,
        args.name,
        out,
        recipe,
        train,
        loss,
        description=args.description or "",
        replace_existing=args.replace,
    )
    print(
        f"concept {args.name!r}: {record['trainable_parameters']:,} trainable parameters "
        f"({100 * record['trainable_parameters'] / record['base_parameters']:.2f}% of the base), "
        f"final L1 {record['final_l1']:.4f}, {time.perf_counter() - started:.0f} s -> {out}"
    )
    return 0


def cmd_train_base(args: argparse.Namespace) -> int:
    from pocketgan.training.commands import run_train_base

    data = {}
    for item in args.data:
        name, sep, path = item.partition("=")
        data[name if sep else Path(item).name] = Path(path if sep else item)
    train, loss = _configs(args, args.out)
    _threads(args)
    record = run_train_base(data, args.out, args.size, train, loss)
    print(f"base: {len(data)} concepts, final L1 {record['final_l1']:.4f}, {record['seconds']:.0f} s -> {args.out}")
    return 0


def _rank(text: str) -> int | str:
    return text if text == "search" else int(text)


def _recipe_flags(s: argparse.ArgumentParser) -> None:
    from pocketgan.training.commands import ConceptRecipe

    g = s.add_argument_group("LoRA ranks and data")
    add_config_flags(g, ConceptRecipe, options={"rank": {"type": _rank}})
    _train_flags(s, steps=800, lr=5e-3)


def add_training_commands(sub) -> None:
    """Register ``train-base`` and ``train-concept`` on the CLI's subparsers."""
    s = sub.add_parser("train-base", help="train a base generator on several concepts' paired data at once")
    s.add_argument(
        "--data",
        nargs="+",
        required=True,
        metavar="NAME=DIR",
        help="distill-data directories, one per concept (NAME defaults to the folder name)",
    )
    s.add_argument("--out", type=Path, required=True, help="source bundle to write (replaced atomically)")
    s.add_argument("--size", default="small", help="generator size: tiny | small | base (default small)")
    defer(s, lambda parser: _train_flags(parser, steps=4000, lr=2e-3))
    s.set_defaults(func=cmd_train_base)

    s = sub.add_parser("train-concept", help="train a LoRA concept on a frozen base from paired data")
    s.add_argument("bundle", nargs="?", type=Path, help="source bundle with the base (default: the embedded one)")
    s.add_argument("--data", type=Path, required=True, help="distill-data directory of the concept's pairs")
    s.add_argument("--name", required=True, help="concept name ([a-z0-9_-])")
    s.add_argument("--out", type=Path, help="bundle to write (default: replace BUNDLE)")
    s.add_argument("--description", help="one line for app UIs (default: the dataset's prompt)")
    s.add_argument("--replace", action="store_true", help="retrain a concept the bundle already has")
    defer(s, _recipe_flags)
    s.set_defaults(func=cmd_train_concept)


# ------------------------------------------------------------------ study, evaluate


def _study_flags(s: argparse.ArgumentParser) -> None:
    from pocketgan.training.study import StudyConfig

    add_config_flags(
        s, StudyConfig, options={name: {"nargs": "*"} for name in ("pair_counts", "random_counts", "rank_seeds")}
    )


def cmd_study(args: argparse.Namespace) -> int:
    import torch

    from pocketgan.training.study import StudyConfig, run_study
    from pocketgan.training.study_report import RESULTS, write_report

    if args.report_only:
        results = json.loads((args.out.parent / args.out.stem / RESULTS).read_text())
        write_report(results, args.out)
        return 0
    torch.set_num_threads(args.threads)
    run_study(StudyConfig(**config_kwargs(args, StudyConfig)), args.out, args.bundle, progress=not args.no_progress)
    return 0


def add_study_command(sub) -> None:
    s = sub.add_parser("study", help="reproduce E2GAN's training claims at this machine's scale (report + plots)")
    s.add_argument(
        "--out", type=Path, default=Path("docs/training-study.md"), help="report path (default docs/training-study.md)"
    )
    s.add_argument("--bundle", type=Path, help="source bundle whose base is used (default: the embedded one)")
    defer(s, _study_flags)
    s.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    s.add_argument("--report-only", action="store_true", help="rewrite the report from saved results, train nothing")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=cmd_study)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from pocketgan.photos import list_images
    from pocketgan.training.evaluate import evaluate_bundle, format_table

    result = evaluate_bundle(args.bundle, list_images(args.photos) if args.photos else None)
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return 0


def add_evaluate_command(sub) -> None:
    s = sub.add_parser("evaluate", help="held-out PSNR / SSIM of a bundle's concepts against their teachers")
    s.add_argument("bundle", nargs="?", type=Path, help="bundle (default: the embedded one)")
    s.add_argument("--photos", type=Path, help="folder of held-out photos (default: the shipped ones)")
    s.add_argument("--json", action="store_true", help="print the scores as JSON")
    s.set_defaults(func=cmd_evaluate)


def cmd_train_upsampler(args: argparse.Namespace) -> int:
    from pocketgan.full_resolution.train import UpsamplerTrainingConfig, run_train_upsampler

    config = UpsamplerTrainingConfig(**config_kwargs(args, UpsamplerTrainingConfig), bundle=args.bundle)
    record = run_train_upsampler(config)
    print(json.dumps(record["concepts"], indent=2))
    return 0


def add_train_upsampler_command(sub) -> None:
    from pocketgan.full_resolution.train import UpsamplerTrainingConfig

    s = sub.add_parser(
        "train-upsampler",
        help="train each concept's full-resolution stage against its teacher at full size",
        description="Train each concept's learned guided-filter stage (docs/full-resolution.md).",
    )
    s.add_argument("bundle", nargs="?", type=Path, help="source bundle (default: the embedded one)")
    add_config_flags(s, UpsamplerTrainingConfig, skip=("bundle",))
    s.set_defaults(func=cmd_train_upsampler)


def cmd_train_neutral(args: argparse.Namespace) -> int:
    from pocketgan.training.neutral import NeutralConfig, run_train_neutral

    out = args.out or args.bundle
    if out is None:
        raise SystemExit("pocketgan train-neutral: give --out (the embedded bundle is not rewritten in place)")
    ckpt = Path(f"{out}.neutral.ckpt")
    record = run_train_neutral(args.bundle, out, NeutralConfig(**config_kwargs(args, NeutralConfig)), ckpt)
    shutil.rmtree(ckpt, ignore_errors=True)
    print(json.dumps({k: record[k] for k in ("heldout_psnr_db", "steps", "seconds", "final_l1") if k in record}))
    return 0


def add_train_neutral_command(sub) -> None:
    from pocketgan.training.neutral import NeutralConfig
    from pocketgan.training.neutral import __doc__ as doc

    s = sub.add_parser(
        "train-neutral",
        help="train the neutral (identity) concept that concept strength and blending need",
        description=doc.split("\n\n")[1] + " docs/strength-and-blending.md.",
    )
    s.add_argument("bundle", nargs="?", type=Path, help="source bundle (default: the embedded one)")
    s.add_argument("--out", type=Path, help="bundle to write (default: replace BUNDLE)")
    add_config_flags(s, NeutralConfig)
    s.set_defaults(func=cmd_train_neutral, interrupted="the last checkpoint is kept, rerun the same command to resume")


def cmd_train_teacher(args: argparse.Namespace) -> int:
    from pocketgan.diffusion_editor.pipeline import EditorArchitecture
    from pocketgan.diffusion_editor.train import TeacherTrainingConfig, train_teacher

    arch = EditorArchitecture(**config_kwargs(args, EditorArchitecture))
    summary = train_teacher(TeacherTrainingConfig(**config_kwargs(args, TeacherTrainingConfig), arch=arch))
    print(json.dumps(summary, indent=2))
    return 0


def _train_teacher_flags(s: argparse.ArgumentParser) -> None:
    from pocketgan.diffusion_editor.pipeline import EditorArchitecture
    from pocketgan.diffusion_editor.train import TeacherTrainingConfig

    add_config_flags(s, TeacherTrainingConfig, skip=("arch",))
    add_config_flags(
        s.add_argument_group("architecture (fixed for a run)"),
        EditorArchitecture,
        options={"prediction_type": {"choices": ["epsilon", "v_prediction", "sample"]}},
    )


def add_train_teacher_command(sub) -> None:
    s = sub.add_parser(
        "train-teacher",
        help="train the diffusion photo editor (colorize, restore) that concepts are distilled from",
        description="Train an InstructPix2Pix-style pixel-space diffusion editor on real photos "
        "(docs/diffusion-teacher.md). Resumable: rerun the same command. "
        "Data-parallel on GPUs: accelerate launch -m pocketgan train-teacher ...",
    )
    defer(s, _train_teacher_flags)
    s.set_defaults(func=cmd_train_teacher, interrupted="the last checkpoint is kept, rerun the same command to resume")


def register(sub) -> None:
    """Add the training commands to the CLI's subparsers."""
    add_distill_data_parser(sub)
    add_train_teacher_command(sub)
    add_training_commands(sub)
    add_train_upsampler_command(sub)
    add_train_neutral_command(sub)
    add_study_command(sub)
    add_evaluate_command(sub)


# ------------------------------------------------------------------ python -m pocketgan.training.default_bundle


def default_bundle_main(argv: list[str] | None = None) -> int:
    """``python -m pocketgan.training.default_bundle``: flags from :class:`DefaultBundleConfig`."""
    from pocketgan.training.default_bundle import CONCEPT_LOSSES, DefaultBundleConfig, train_default_bundle
    from pocketgan.training.default_bundle import __doc__ as doc

    parser = argparse.ArgumentParser(
        prog="python -m pocketgan.training.default_bundle",
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_flags(parser, DefaultBundleConfig, options={"concept_loss": {"choices": CONCEPT_LOSSES}})
    args = parser.parse_args(argv)
    train_default_bundle(DefaultBundleConfig(**config_kwargs(args, DefaultBundleConfig)))
    return 0
