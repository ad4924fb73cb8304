"""Train the default bundle shipped in ``pocketgan/default_bundle`` (CPU, procedural teachers).

    python -m pocketgan.training.default_bundle --out /tmp/default-src
    pocketgan export /tmp/default-src --targets onnx --out pocketgan/default_bundle

docs/default-bundle.md records the settings and the measured results.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from pocketgan.bundle import Bundle, save_bundle
from pocketgan.models.registry import DEFAULT_SIZE, build_generator
from pocketgan.models.diagnostics import check_alive
from pocketgan.training.photos import load_rgb, random_crops, sample_photo_paths, training_photos
from pocketgan.training.teachers import procedural_teacher
from pocketgan.training.trainer import PairSet, TrainConfig, to_model_range, train_base, train_concept

BASE_CONCEPTS = ("pencil_sketch", "color_pencil", "stylize", "detail_enhance", "smooth")
SHIPPED_CONCEPTS = ("pencil_sketch", "color_pencil", "stylize", "cartoon", "detail_enhance")  # cartoon is new to the base

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


def _square(rgb: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(rgb).resize((size, size), Image.Resampling.BICUBIC))


def make_pairs(name: str, photos: list[np.ndarray], count: int, size: int, seed: int) -> PairSet:
    teacher = procedural_teacher(name)
    crops = random_crops(photos, count, size, np.random.default_rng(seed))
    return PairSet(np.stack(crops), np.stack([teacher(c) for c in crops]))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="bundle directory to write (source bundle, no export)")
    ap.add_argument("--size", default=DEFAULT_SIZE, help="generator size")
    ap.add_argument("--pairs", type=int, default=240, help="training pairs per concept")
    ap.add_argument("--base-steps", type=int, default=1500)
    ap.add_argument("--concept-steps", type=int, default=400)
    ap.add_argument("--base-lr", type=float, default=2e-3)
    ap.add_argument("--strict-liveness", action="store_true",
                    help="fail if a generator stage died or the concept tokens do not change the output")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    photos = training_photos()
    print(f"{len(photos)} training photos")
    names = sorted(set(BASE_CONCEPTS) | set(SHIPPED_CONCEPTS))
    pairs = {n: make_pairs(n, photos, args.pairs, 256, seed=i) for i, n in enumerate(names)}
    config = build_generator(args.size).config
    base, tokens, base_record = train_base(
        config, {n: pairs[n] for n in BASE_CONCEPTS}, TrainConfig(steps=args.base_steps, lr=args.base_lr)
    )
    held_out = torch.cat([to_model_range(np.stack([_square(load_rgb(p), 256)])) for p in sample_photo_paths()])
    try:
        base_record["liveness"] = check_alive(base, held_out, tokens)
    except RuntimeError as e:
        if args.strict_liveness:
            raise
        base_record["liveness"] = {"error": str(e)}
        print(f"WARNING: {e} (the bundle is still written; --strict-liveness makes this fatal)")
    print(json.dumps(base_record["liveness"], indent=2))
    concepts = []
    for name in SHIPPED_CONCEPTS:
        teacher = procedural_teacher(name)
        init = tokens.get(name, torch.stack(list(tokens.values())).mean(0))
        concept = train_concept(
            base, name, pairs[name], DEFAULT_CONCEPT_RANKS, TrainConfig(steps=args.concept_steps, lr=5e-3, seed=1),
            init_tokens=init, description=teacher.description, teacher=teacher.source,
        )
        concept.training["in_base_training"] = name in BASE_CONCEPTS
        concepts.append(concept)
    bundle = Bundle.from_parts(args.size, base, concepts)
    save_bundle(bundle, args.out)
    record = {"base": base_record, "concepts": {c.name: c.training for c in concepts},
              "photos": len(photos), "total_seconds": round(time.perf_counter() - start, 1)}
    (args.out.parent / f"{args.out.name}.training.json").write_text(json.dumps(record, indent=2))
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
