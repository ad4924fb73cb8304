"""The strength term: fine-tune a concept so its intermediate strengths are intermediate edits.

Some concepts, mixed with the neutral at a weight between 0 and 1, do not fade from the photo
to the edit: the pencil sketches whiten the photo region by region and tint it
(docs/strength-and-blending.md). This fine-tunes such a concept's LoRA and tokens, through
the same mix the runtimes run (:class:`~pocketgan.concepts.mixing.MixModel`, the neutral
frozen), on two terms per step:

- the concept at weight 1 against its teacher's edit (L1): it stays the concept;
- the concept at a random weight ``s`` against the cross-fade ``(1 - s) photo + s edit`` (L1,
  times ``strength_weight``): what an intermediate edit should look like.

``python -m pocketgan.training.strength_training --bundle SRC --concepts pencil_sketch,color_pencil
--out OUT`` writes the bundle with those concepts tuned and their calibration curves measured
again; the pairs come from the concepts' procedural teachers on the offline training photos.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class StrengthTrainingConfig:
    """Settings of :func:`tune_strength`."""

    steps: int = field(default=300, metadata={"help": "Optimizer steps per concept."})
    lr: float = field(default=2e-3, metadata={"help": "Adam learning rate (cosine-decayed)."})
    batch_size: int = field(default=8, metadata={"help": "Crops per step."})
    crop: int = field(default=128, metadata={"help": "Training crop side."})
    pairs: int = field(default=256, metadata={"help": "Teacher pairs (160 px crops of the training photos)."})
    strength_weight: float = field(default=1.0, metadata={"help": "Weight of the intermediate-strength term."})
    seed: int = field(default=0, metadata={"help": "Seed of the pairs, crops and strengths."})

    def __post_init__(self) -> None:
        if min(self.steps, self.batch_size, self.crop, self.pairs) <= 0 or self.lr <= 0:
            raise ValueError("steps, batch_size, crop, pairs and lr must be positive")


def tune_strength(bundle, name: str, pairs, config: StrengthTrainingConfig, progress: bool = True):
    """``bundle``'s concept ``name`` fine-tuned with the strength term; returns the new Concept."""
    import torch
    from tqdm import tqdm

    from pocketgan.concepts.concept import Concept
    from pocketgan.concepts.mixing import MixModel, WeightedLoRALayer
    from pocketgan.training.trainer import to_model_range

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    concept, neutral = bundle.concept(name), bundle.neutral
    model = MixModel(bundle.base_generator(), [concept], neutral)
    layers = {n: m for n, m in model.generator.named_modules() if isinstance(m, WeightedLoRALayer)}
    params = []
    for layer_name, layer in layers.items():
        r = concept.ranks[layer_name]
        for weight, rows in ((layer.lora_a.weight, True), (layer.lora_b.weight, False)):
            mask = torch.zeros_like(weight)
            if rows:
                mask[:r] = 1.0
            else:
                mask[:, :r] = 1.0
            weight.requires_grad_(True)
            weight.register_hook(lambda g, m=mask: g * m)  # the neutral's rows stay as they are
            params.append(weight)
    offsets = torch.nn.Parameter(model.token_offsets.clone())
    model.token_offsets = offsets
    params.append(offsets)
    optimizer = torch.optim.Adam(params, lr=config.lr)
    inputs, targets = pairs.inputs, pairs.targets
    bar = tqdm(range(config.steps), desc=f"strength term {name}", disable=not progress)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = config.lr * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * step / config.steps)))
        idx = rng.integers(len(inputs), size=config.batch_size)
        top, left = rng.integers(0, inputs.shape[1] - config.crop + 1, size=2)
        x = to_model_range(inputs[idx, top : top + config.crop, left : left + config.crop])
        y = to_model_range(targets[idx, top : top + config.crop, left : left + config.crop])
        s = float(rng.uniform(0.05, 0.95))
        full = model(x, torch.ones(1))
        part = model(x, torch.full((1,), s))
        loss = (full - y).abs().mean() + config.strength_weight * (part - ((1 - s) * x + s * y)).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        bar.set_postfix(loss=f"{loss.item():.4f}")
    lora = {}
    with torch.no_grad():
        for layer_name, layer in layers.items():
            r = concept.ranks[layer_name]
            lora[f"{layer_name}.lora_A.weight"] = layer.lora_a.weight[:r].detach().clone()
            lora[f"{layer_name}.lora_B.weight"] = layer.lora_b.weight[:, :r].detach().clone()
        tokens = (neutral.tokens + offsets[0].reshape(neutral.tokens.shape)).detach().clone()
    training = dict(concept.training) | {"strength_term": {**config.__dict__, "final_loss": round(loss.item(), 5)}}
    return Concept(name, lora, tokens, concept.description, concept.teacher, training, concept.upsampler)


def main(argv: list[str] | None = None) -> int:
    from pocketgan.cli.flags import add_config_flags, config_kwargs

    parser = argparse.ArgumentParser(
        prog="python -m pocketgan.training.strength_training",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--bundle", type=Path, help="source bundle with a neutral concept (default: the embedded one)")
    parser.add_argument("--concepts", required=True, help="comma-separated procedural concepts to tune")
    parser.add_argument("--out", type=Path, required=True, help="source bundle to write")
    parser.add_argument("--threads", type=int, default=2)
    add_config_flags(parser, StrengthTrainingConfig)
    args = parser.parse_args(argv)
    import torch

    from pocketgan.bundle import load_bundle, save_bundle
    from pocketgan.photos import training_photos
    from pocketgan.training.default_bundle import make_pairs
    from pocketgan.training.neutral import strength_curves

    torch.set_num_threads(args.threads)
    config = StrengthTrainingConfig(**config_kwargs(args, StrengthTrainingConfig))
    bundle = load_bundle(args.bundle)
    if bundle.neutral is None:
        raise SystemExit("the bundle has no neutral concept: run pocketgan train-neutral first")
    names = [n.strip() for n in args.concepts.split(",") if n.strip()]
    photos = training_photos()
    tuned = {n: tune_strength(bundle, n, make_pairs(n, photos, config.pairs, 160, config.seed), config) for n in names}
    result = bundle.with_concepts([tuned.get(c.name, c) for c in bundle.concepts])
    result.strength_curves = {**bundle.strength_curves, **strength_curves(result, names)}
    save_bundle(result, args.out)
    print(f"wrote {args.out}: {', '.join(names)} tuned with the strength term")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
