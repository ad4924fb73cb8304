"""``pocketgan train-base`` and ``pocketgan train-concept``: typed entry points
(:func:`run_train_base`, :func:`run_train_concept`) and the argparse wiring, kept apart.

Both read paired datasets written by ``pocketgan distill-data`` and write a *source*
bundle (base + concepts; export it afterwards). Checkpoints go to ``<out>.ckpt/`` unless
told otherwise; ``--resume`` continues a killed run exactly, and a finished run removes
its checkpoints.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

LOSS_PRESETS = ("recipe", "l1")
SELECTION_METHODS = ("cluster", "random")


@dataclass
class ConceptRecipe:
    """How ``train-concept`` builds one concept; validated on construction."""

    rank: int | str = field(default=1, metadata={"help": "Uniform LoRA rank on every crucial layer, or 'search'."})
    rank_budget: int = field(default=2, metadata={"help": "search: match the parameter count of this uniform rank."})
    probe_rank: int = field(default=4, metadata={"help": "search: rank of the short probe run."})
    probe_steps: int = field(default=150, metadata={"help": "search: steps of the probe run."})
    pairs: int | None = field(default=None, metadata={"help": "Train on this many pairs (default: all)."})
    select: str = field(default="cluster", metadata={"help": "How --pairs picks: k-means on base features, or random."})

    def __post_init__(self) -> None:
        if self.rank != "search" and not (isinstance(self.rank, int) and self.rank >= 1):
            raise ValueError(f"rank must be a positive integer or 'search', got {self.rank!r}")
        if self.rank_budget < 1 or self.probe_rank < 1 or self.probe_steps < 1:
            raise ValueError("rank_budget, probe_rank and probe_steps must be positive")
        if self.rank == "search" and self.probe_rank <= self.rank_budget:
            raise ValueError(f"probe_rank ({self.probe_rank}) must exceed rank_budget ({self.rank_budget}) for a search to choose anything")
        if self.pairs is not None and self.pairs < 1:
            raise ValueError("pairs must be positive")
        if self.select not in SELECTION_METHODS:
            raise ValueError(f"select must be one of {SELECTION_METHODS}")


def concept_layers(bundle=None) -> list[str]:
    """The layers a new concept adapts: the bundle's (every concept of a bundle adapts the
    same layers), or the default crucial layers."""
    if bundle is not None:
        return list(bundle.rank_pattern)
    from pocketgan.training.default_bundle import DEFAULT_CONCEPT_RANKS

    return list(DEFAULT_CONCEPT_RANKS)


def select_pairs(pairs, count: int | None, method: str, base, seed: int):
    """The training subset (all pairs when ``count`` is None) and its indices."""
    import numpy as np

    from pocketgan.training.data_selection import base_features, select_indices

    if count is None or count >= len(pairs):
        return pairs, np.arange(len(pairs))
    features = base_features(base, pairs.inputs) if method == "cluster" else None
    idx = select_indices(count, len(pairs), method, features, seed)
    return pairs.subset(idx), idx


def search_ranks(base, name, pairs, recipe: ConceptRecipe, train, loss, init_tokens, checkpoint_dir: Path | None,
                 layers: list[str] | None = None) -> dict:
    """Probe at ``probe_rank``, allocate ranks at the ``rank_budget`` uniform cost (see
    :mod:`pocketgan.training.rank_search`). Returns {"ranks", "layers", "probe_seconds", ...}."""
    from dataclasses import replace

    from pocketgan.atomic import atomic_write_json
    from pocketgan.training.rank_search import (
        allocate_ranks, layer_spectra, lora_parameters, rank_costs, search_report, uniform_ranks,
    )
    from pocketgan.training.trainer import train_concept

    saved = checkpoint_dir / "search.json" if checkpoint_dir else None
    if saved and saved.is_file():
        return json.loads(saved.read_text())
    layers = layers or concept_layers()
    probe_train = replace(train, steps=recipe.probe_steps,
                          checkpoint_dir=checkpoint_dir / "probe" if checkpoint_dir else None)
    probe = train_concept(base, name, pairs, uniform_ranks(layers, recipe.probe_rank), probe_train,
                          init_tokens=init_tokens, loss=loss)
    spectra, costs = layer_spectra(probe.lora), rank_costs(probe.lora)
    budget = lora_parameters(uniform_ranks(layers, recipe.rank_budget), costs)
    ranks = allocate_ranks(spectra, costs, budget)
    result = {"ranks": ranks, "budget_parameters": budget, "parameters": lora_parameters(ranks, costs),
              "probe_rank": recipe.probe_rank, "probe_steps": recipe.probe_steps,
              "probe_seconds": probe.training["seconds"], "layers": search_report(spectra, ranks, costs)}
    if saved:
        atomic_write_json(saved, result)
    return result


def run_train_concept(bundle: Path | None, data: Path, name: str, out: Path, recipe: ConceptRecipe, train, loss,
                      description: str = "", replace_existing: bool = False) -> dict:
    """Train one LoRA concept on ``data`` over ``bundle``'s frozen base; write ``out``.

    Returns the concept's training record (also stored in the bundle's manifest).
    """
    from dataclasses import replace

    import torch

    from pocketgan.bundle import Bundle, load_bundle, save_bundle
    from pocketgan.concepts.concept import validate_concept_name
    from pocketgan.training.distill_data import load_pairs, read_dataset_config
    from pocketgan.training.rank_search import uniform_ranks
    from pocketgan.training.trainer import train_concept

    validate_concept_name(name)
    source = load_bundle(bundle)
    if name in source.concept_names and not replace_existing:
        raise ValueError(f"the bundle already has a concept {name!r} (use --replace to retrain it)")
    base = source.base_generator()
    dataset = read_dataset_config(data)
    pairs, indices = select_pairs(load_pairs(data), recipe.pairs, recipe.select, base, train.seed)
    # retraining a concept starts from its own tokens (e.g. the base's tokens of a concept
    # learned in base training); a new one from the mean of the bundle's
    init_tokens = (source.concept(name).tokens if name in source.concept_names
                   else torch.stack([c.tokens for c in source.concepts]).mean(0))
    ckpt = train.checkpoint_dir
    search = None
    if recipe.rank == "search":
        search = search_ranks(base, name, pairs, recipe, train, loss, init_tokens, ckpt, concept_layers(source))
        ranks = search["ranks"]
    else:
        ranks = uniform_ranks(concept_layers(source), recipe.rank)
    main_train = replace(train, checkpoint_dir=ckpt / "train" if ckpt else None)
    concept = train_concept(base, name, pairs, ranks, main_train, init_tokens=init_tokens, loss=loss,
                            description=description or dataset.get("prompt") or dataset.get("teacher_description") or name,
                            teacher=dataset.get("teacher", ""))
    concept.training |= {"dataset": str(data), "selected_pairs": [int(i) for i in indices],
                         "selection": recipe.select if recipe.pairs else "all"}
    if search:
        concept.training["rank_search"] = {k: v for k, v in search.items() if k != "layers"}
    concepts = [c for c in source.concepts if c.name != name] + [concept]
    save_bundle(Bundle.from_parts(source.size, base, concepts), out)
    if ckpt and ckpt.exists():
        shutil.rmtree(ckpt)
    return concept.training


def token_only_concept(base, name: str, tokens, description: str, teacher: str, record: dict):
    """A concept learned during base training: its tokens and an all-zero LoRA at the
    default ranks (so it shares the bundle's rank pattern and changes nothing)."""
    import copy

    import torch

    from pocketgan.concepts.concept import Concept
    from pocketgan.concepts.lora import inject_lora, lora_state_dict
    from pocketgan.training.default_bundle import DEFAULT_CONCEPT_RANKS

    lora = {k: torch.zeros_like(v) for k, v in lora_state_dict(inject_lora(copy.deepcopy(base), DEFAULT_CONCEPT_RANKS)).items()}
    return Concept(name, lora, tokens, description, teacher, record)


def run_train_base(data: dict[str, Path], out: Path, size: str, train, loss) -> dict:
    """Train a base generator on several concepts' datasets at once; write ``out`` with one
    token-only concept per dataset."""
    from pocketgan.bundle import Bundle, save_bundle
    from pocketgan.models.registry import build_generator
    from pocketgan.training.distill_data import load_pairs, read_dataset_config
    from pocketgan.training.trainer import train_base

    if len(data) < 1:
        raise ValueError("train-base needs at least one --data NAME=DIR")
    pairs = {name: load_pairs(path) for name, path in data.items()}
    base, tokens, record = train_base(build_generator(size).config, pairs, train, loss)
    concepts = []
    for name in sorted(data):
        dataset = read_dataset_config(data[name])
        concepts.append(token_only_concept(base, name, tokens[name],
                                           dataset.get("prompt") or dataset.get("teacher_description") or name,
                                           dataset.get("teacher", ""), {"base_training": True, "dataset": str(data[name])}))
    save_bundle(Bundle.from_parts(size, base, concepts), out)
    if train.checkpoint_dir and train.checkpoint_dir.exists():
        shutil.rmtree(train.checkpoint_dir)
    return record


# ---------------------------------------------------------------- argparse wiring


def _add_train_options(s: argparse.ArgumentParser, steps: int, lr: float) -> None:
    g = s.add_argument_group("optimisation")
    g.add_argument("--steps", type=int, default=steps, help=f"optimizer steps (default {steps})")
    g.add_argument("--batch-size", type=int, default=8, help="pairs per step (default 8)")
    g.add_argument("--lr", type=float, default=lr, help=f"Adam learning rate, cosine-decayed (default {lr:g})")
    g.add_argument("--crop", type=int, default=128, help="random crop side, a multiple of 8 (default 128)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--threads", type=int, help="CPU threads for torch")
    g.add_argument("--checkpoint-dir", type=Path, help="where checkpoints go (default OUT.ckpt)")
    g.add_argument("--checkpoint-every", type=int, default=100, help="steps between atomic checkpoints (default 100)")
    g.add_argument("--resume", action="store_true", help="continue from the checkpoint of a killed run, exactly")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g = s.add_argument_group("losses (each part can be switched off to measure its effect)")
    g.add_argument("--loss", choices=LOSS_PRESETS, default="recipe",
                   help="recipe: L1 + ensembled perceptual + GAN + R1 + mix-and-match (default); l1: L1 only")
    g.add_argument("--l1", type=float, help="L1 weight")
    g.add_argument("--perceptual", type=float, help="perceptual weight (0: off)")
    g.add_argument("--perceptual-weights", type=Path, help="safetensors of pretrained perceptual features")
    g.add_argument("--no-ensemble", action="store_true", help="perceptual loss without the shared random augmentation")
    g.add_argument("--gan", type=float, help="GAN weight (0: off, and with it R1 and mix-and-match)")
    g.add_argument("--r1", type=float, help="R1 gamma (0: off)")
    g.add_argument("--mix-and-match", action=argparse.BooleanOptionalAction, default=None, help="mix-and-match fakes")


def _configs(args: argparse.Namespace, out: Path):
    from dataclasses import replace

    from pocketgan.training.trainer import LossConfig, TrainConfig

    loss = LossConfig.recipe() if args.loss == "recipe" else LossConfig()
    overrides = {"l1": args.l1, "perceptual": args.perceptual, "gan": args.gan, "r1_gamma": args.r1,
                 "mix_and_match": args.mix_and_match, "perceptual_weights": args.perceptual_weights}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if args.no_ensemble:
        overrides["ensemble"] = False
    if overrides.get("gan") == 0:  # GAN off takes its regularisers with it
        overrides.setdefault("r1_gamma", 0.0)
        overrides.setdefault("mix_and_match", False)
    loss = replace(loss, **overrides)
    checkpoint_dir = args.checkpoint_dir or out.with_name(out.name + ".ckpt")
    train = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, crop=args.crop, seed=args.seed,
                        progress=not args.no_progress, checkpoint_dir=checkpoint_dir,
                        checkpoint_every=args.checkpoint_every, resume=args.resume)
    unfinished = any(p.exists() for p in (checkpoint_dir / "state.json", checkpoint_dir / "probe" / "state.json",
                                          checkpoint_dir / "train" / "state.json", checkpoint_dir / "search.json"))
    if unfinished and not args.resume:
        raise ValueError(f"{checkpoint_dir} holds a checkpoint of an unfinished run: pass --resume to continue it, "
                         f"or delete it to start over")
    return train, loss


def _threads(args: argparse.Namespace) -> None:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)


def cmd_train_concept(args: argparse.Namespace) -> int:
    out = args.out or args.bundle
    if out is None:
        raise ValueError("--out is required when training on the embedded default bundle")
    rank = "search" if args.rank == "search" else int(args.rank)
    recipe = ConceptRecipe(rank=rank, rank_budget=args.rank_budget, probe_rank=args.probe_rank,
                           probe_steps=args.probe_steps, pairs=args.pairs, select=args.select)
    train, loss = _configs(args, out)
    _threads(args)
    started = time.perf_counter()
    record = run_train_concept(args.bundle, args.data, args.name, out, recipe, train, loss,
                               description=args.description or "", replace_existing=args.replace)
    print(f"concept {args.name!r}: {record['trainable_parameters']:,} trainable parameters "
          f"({100 * record['trainable_parameters'] / record['base_parameters']:.2f}% of the base), "
          f"final L1 {record['final_l1']:.4f}, {time.perf_counter() - started:.0f} s -> {out}")
    return 0


def cmd_train_base(args: argparse.Namespace) -> int:
    data = {}
    for item in args.data:
        name, sep, path = item.partition("=")
        data[name if sep else Path(item).name] = Path(path if sep else item)
    train, loss = _configs(args, args.out)
    _threads(args)
    record = run_train_base(data, args.out, args.size, train, loss)
    print(f"base: {len(data)} concepts, final L1 {record['final_l1']:.4f}, {record['seconds']:.0f} s -> {args.out}")
    return 0


def add_training_commands(sub) -> None:
    """Register ``train-base`` and ``train-concept`` on the CLI's subparsers."""
    s = sub.add_parser("train-base", help="train a base generator on several concepts' paired data at once")
    s.add_argument("--data", nargs="+", required=True, metavar="NAME=DIR",
                   help="distill-data directories, one per concept (NAME defaults to the folder name)")
    s.add_argument("--out", type=Path, required=True, help="source bundle to write (replaced atomically)")
    s.add_argument("--size", default="small", help="generator size: tiny | small | base (default small)")
    _add_train_options(s, steps=4000, lr=2e-3)
    s.set_defaults(func=cmd_train_base)

    s = sub.add_parser("train-concept", help="train a LoRA concept on a frozen base from paired data")
    s.add_argument("bundle", nargs="?", type=Path, help="source bundle with the base (default: the embedded one)")
    s.add_argument("--data", type=Path, required=True, help="distill-data directory of the concept's pairs")
    s.add_argument("--name", required=True, help="concept name ([a-z0-9_-])")
    s.add_argument("--out", type=Path, help="bundle to write (default: replace BUNDLE)")
    s.add_argument("--description", help="one line for app UIs (default: the dataset's prompt)")
    s.add_argument("--replace", action="store_true", help="retrain a concept the bundle already has")
    g = s.add_argument_group("LoRA ranks and data")
    g.add_argument("--rank", default="1", help="uniform rank on every crucial layer, or 'search' (default 1)")
    g.add_argument("--rank-budget", type=int, default=2, help="search: parameter budget = this uniform rank's (default 2)")
    g.add_argument("--probe-rank", type=int, default=4, help="search: rank of the probe run (default 4)")
    g.add_argument("--probe-steps", type=int, default=150, help="search: steps of the probe run (default 150)")
    g.add_argument("--pairs", type=int, help="train on this many pairs, selected by --select (default: all)")
    g.add_argument("--select", choices=SELECTION_METHODS, default="cluster",
                   help="cluster: k-means on the base's features, nearest to each centre (default); random")
    _add_train_options(s, steps=800, lr=5e-3)
    s.set_defaults(func=cmd_train_concept)

