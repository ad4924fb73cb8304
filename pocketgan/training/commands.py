"""``pocketgan train-base`` and ``pocketgan train-concept``: the typed entry points
(:func:`run_train_base`, :func:`run_train_concept`); their flags are in
:mod:`pocketgan.cli.training`.

Both read paired datasets written by ``pocketgan distill-data`` and write a *source*
bundle (base + concepts; export it afterwards). Checkpoints go to ``<out>.ckpt/`` unless
told otherwise; ``--resume`` continues a killed run exactly, and a finished run removes
its checkpoints.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

SELECTION_METHODS = ("cluster", "random")

# Rank 1 on the transformer block and the layers next to it keeps a concept under 1% of
# the base's bytes; the ResNet blocks, down2 and up1 stay frozen. No LoRA on the
# cross-attention's to_k/to_v: they only ever see the concept tokens, which are trained
# freely anyway, so a low-rank update there adds bytes and no expressiveness.
DEFAULT_CONCEPT_RANKS = {
    "down1.conv": 1,
    "ds.conv": 1,
    "transformer.self_attn.to_q": 1,
    "transformer.self_attn.to_k": 1,
    "transformer.self_attn.to_v": 1,
    "transformer.self_attn.to_out": 1,
    "transformer.cross_attn.to_q": 1,
    "transformer.cross_attn.to_out": 1,
    "transformer.mlp.fc1": 1,
    "transformer.mlp.fc2": 1,
    "us.conv": 1,
    "up2.conv": 1,
}


@dataclass
class ConceptRecipe:
    """How ``train-concept`` builds one concept; validated on construction."""

    rank: int | str = field(default=1, metadata={"help": "Uniform LoRA rank on every crucial layer, or 'search'."})
    rank_budget: int = field(default=2, metadata={"help": "search: match the parameter count of this uniform rank."})
    probe_rank: int = field(default=4, metadata={"help": "search: rank of the short probe run."})
    probe_steps: int = field(default=150, metadata={"help": "search: steps of the probe run."})
    pairs: int | None = field(default=None, metadata={"help": "Train on this many pairs (default: all)."})
    select: str = field(
        default="cluster",
        metadata={
            "help": "How --pairs picks: cluster = k-means on the base's features, nearest to each centre; or random.",
            "choices": SELECTION_METHODS,
        },
    )

    def __post_init__(self) -> None:
        if self.rank != "search" and not (isinstance(self.rank, int) and self.rank >= 1):
            raise ValueError(f"rank must be a positive integer or 'search', got {self.rank!r}")
        if self.rank_budget < 1 or self.probe_rank < 1 or self.probe_steps < 1:
            raise ValueError("rank_budget, probe_rank and probe_steps must be positive")
        if self.rank == "search" and self.probe_rank <= self.rank_budget:
            raise ValueError(
                f"probe_rank ({self.probe_rank}) must exceed rank_budget ({self.rank_budget}) "
                "for a search to choose anything"
            )
        if self.pairs is not None and self.pairs < 1:
            raise ValueError("pairs must be positive")
        if self.select not in SELECTION_METHODS:
            raise ValueError(f"select must be one of {SELECTION_METHODS}")


def concept_layers(bundle=None) -> list[str]:
    """The layers a new concept adapts: the bundle's (every concept of a bundle adapts the
    same layers), or the default crucial layers."""
    if bundle is not None:
        return list(bundle.rank_pattern)
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


def search_ranks(
    base,
    name,
    pairs,
    recipe: ConceptRecipe,
    train,
    loss,
    init_tokens,
    checkpoint_dir: Path | None,
    layers: list[str] | None = None,
) -> dict:
    """Probe at ``probe_rank``, allocate ranks at the ``rank_budget`` uniform cost (see
    :mod:`pocketgan.training.rank_search`). Returns {"ranks", "layers", "probe_seconds", ...}."""
    from dataclasses import replace

    from pocketgan.atomic import atomic_write_json
    from pocketgan.training import rank_search as rs
    from pocketgan.training.trainer import train_concept

    saved = checkpoint_dir / "search.json" if checkpoint_dir else None
    if saved and saved.is_file():
        return json.loads(saved.read_text())
    layers = layers or concept_layers()
    probe_train = replace(
        train, steps=recipe.probe_steps, checkpoint_dir=checkpoint_dir / "probe" if checkpoint_dir else None
    )
    probe = train_concept(
        base, name, pairs, rs.uniform_ranks(layers, recipe.probe_rank), probe_train, init_tokens=init_tokens, loss=loss
    )
    spectra, costs = rs.layer_spectra(probe.lora), rs.rank_costs(probe.lora)
    budget = rs.lora_parameters(rs.uniform_ranks(layers, recipe.rank_budget), costs)
    ranks = rs.allocate_ranks(spectra, costs, budget)
    result = {
        "ranks": ranks,
        "budget_parameters": budget,
        "parameters": rs.lora_parameters(ranks, costs),
        "probe_rank": recipe.probe_rank,
        "probe_steps": recipe.probe_steps,
        "probe_seconds": probe.training["seconds"],
        "layers": rs.search_report(spectra, ranks, costs),
    }
    if saved:
        atomic_write_json(saved, result)
    return result


def run_train_concept(
    bundle: Path | None,
    data: Path,
    name: str,
    out: Path,
    recipe: ConceptRecipe,
    train,
    loss,
    description: str = "",
    replace_existing: bool = False,
) -> dict:
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
    init_tokens = (
        source.concept(name).tokens
        if name in source.concept_names
        else torch.stack([c.tokens for c in source.concepts]).mean(0)
    )
    ckpt = train.checkpoint_dir
    search = None
    if recipe.rank == "search":
        search = search_ranks(base, name, pairs, recipe, train, loss, init_tokens, ckpt, concept_layers(source))
        ranks = search["ranks"]
    else:
        ranks = uniform_ranks(concept_layers(source), recipe.rank)
    main_train = replace(train, checkpoint_dir=ckpt / "train" if ckpt else None)
    concept = train_concept(
        base,
        name,
        pairs,
        ranks,
        main_train,
        init_tokens=init_tokens,
        loss=loss,
        description=description or _dataset_description(dataset, name),
        teacher=dataset.get("teacher", ""),
    )
    concept.training |= {
        "dataset": str(data),
        "selected_pairs": [int(i) for i in indices],
        "selection": recipe.select if recipe.pairs else "all",
    }
    if search:
        concept.training["rank_search"] = {k: v for k, v in search.items() if k != "layers"}
    concepts = [c for c in source.concepts if c.name != name] + [concept]
    result = Bundle.from_parts(source.size, base, concepts, upsampler=source.upsampler, neutral=source.neutral)
    if source.neutral is not None:  # the new concept's strength calibration (docs/strength-and-blending.md)
        from pocketgan.training.neutral import strength_curves

        result.strength_curves = {**source.strength_curves, **strength_curves(result, [name])}
    save_bundle(result, out)
    if ckpt and ckpt.exists():
        shutil.rmtree(ckpt)
    return concept.training


def _dataset_description(dataset: dict, name: str) -> str:
    """A concept's one-line description: the dataset's prompt, else its teacher's, else the name."""
    return dataset.get("prompt") or dataset.get("teacher_description") or name


def token_only_concept(base, name: str, tokens, description: str, teacher: str, record: dict):
    """A concept learned during base training: its tokens and an all-zero LoRA at the
    default ranks (so it shares the bundle's rank pattern and changes nothing)."""
    import copy

    import torch

    from pocketgan.concepts.concept import Concept
    from pocketgan.concepts.lora import inject_lora, lora_state_dict

    adapted = inject_lora(copy.deepcopy(base), DEFAULT_CONCEPT_RANKS)
    lora = {k: torch.zeros_like(v) for k, v in lora_state_dict(adapted).items()}
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
        concepts.append(
            token_only_concept(
                base,
                name,
                tokens[name],
                _dataset_description(dataset, name),
                dataset.get("teacher", ""),
                {"base_training": True, "dataset": str(data[name])},
            )
        )
    save_bundle(Bundle.from_parts(size, base, concepts), out)
    if train.checkpoint_dir and train.checkpoint_dir.exists():
        shutil.rmtree(train.checkpoint_dir)
    return record
