"""Train the default bundle shipped in ``pocketgan/default_bundle`` with the training
pipeline's own commands (procedural teachers, offline, CPU):

    python -m pocketgan.training.default_bundle --out /tmp/default-src
    pocketgan export /tmp/default-src --targets onnx --out pocketgan/default_bundle

1. the offline training photos go into ``WORK/photos`` (never the shipped, held-out ones);
2. ``distill-data`` makes one paired dataset per teacher in ``WORK/data/<name>``;
3. ``train-base`` trains the base on the five base effects at once;
4. ``train-concept`` trains (or retrains) each shipped concept as a LoRA on the frozen base.

Every stage is resumable: rerun the same command after a kill and finished stages are
skipped, the interrupted one continues from its checkpoint. docs/default-bundle.md
records the settings and the measured results.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from pocketgan.models.registry import DEFAULT_SIZE
from pocketgan.training.pairs import PairSet
from pocketgan.training.photos import random_crops

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


def make_pairs(name: str, photos: list[np.ndarray], count: int, size: int, seed: int) -> PairSet:
    """In-memory pairs (the study's quick path; the bundle itself is made from distill-data)."""
    from pocketgan.training.teachers import procedural_teacher

    teacher = procedural_teacher(name)
    crops = random_crops(photos, count, size, np.random.default_rng(seed))
    return PairSet(np.stack(crops), np.stack([teacher(c) for c in crops]))


def write_training_photos(folder: Path) -> int:
    """The offline training photos as PNGs in ``folder`` (idempotent)."""
    from pocketgan.atomic import atomic_write_bytes
    from pocketgan.training.distill_data import encode_png
    from pocketgan.training.photos import training_photos

    folder.mkdir(parents=True, exist_ok=True)
    photos = training_photos(max_side=640)
    for i, rgb in enumerate(photos):
        path = folder / f"photo-{i:03d}.png"
        if not path.exists():
            atomic_write_bytes(path, encode_png(rgb))
    return len(photos)


def main(argv: list[str] | None = None) -> None:
    from pocketgan.bundle import Bundle, load_bundle, save_bundle
    from pocketgan.models.diagnostics import check_alive
    from pocketgan.training.commands import ConceptRecipe, run_train_base, run_train_concept, token_only_concept
    from pocketgan.training.distill_data import DistillDataConfig, generate_pairs
    from pocketgan.training.photos import load_rgb, sample_photo_paths
    from pocketgan.training.trainer import LossConfig, TrainConfig, to_model_range

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="bundle directory to write (source bundle, no export)")
    ap.add_argument("--work", type=Path, help="working directory for photos, datasets, stages (default OUT.work)")
    ap.add_argument("--size", default=DEFAULT_SIZE, help="generator size")
    ap.add_argument("--pairs", type=int, default=400, help="training pairs per concept")
    ap.add_argument("--base-steps", type=int, default=4000)
    ap.add_argument("--concept-steps", type=int, default=800)
    ap.add_argument("--base-lr", type=float, default=2e-3)
    ap.add_argument("--base-from", type=Path,
                    help="reuse this source bundle's base instead of training one (its concepts' tokens start the "
                         "retraining of the same-named concepts; every LoRA is trained afresh)")
    ap.add_argument("--concept-loss", choices=("l1", "perceptual", "recipe"), default="perceptual",
                    help="concept stage loss: l1; perceptual = L1 + ensembled perceptual (default); recipe = + GAN, R1, mix-and-match")
    ap.add_argument("--strict-liveness", action="store_true",
                    help="fail if a generator stage died or the concept tokens do not change the output")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    work = args.work or args.out.with_name(args.out.name + ".work")

    count = write_training_photos(work / "photos")
    crops = math.ceil(args.pairs / count)
    print(f"{count} training photos, {crops} crops each")
    data = {}
    for name in sorted(set(BASE_CONCEPTS) | set(SHIPPED_CONCEPTS)):
        data[name] = work / "data" / name
        generate_pairs(DistillDataConfig(photos=work / "photos", out=data[name], teacher=name, size=256,
                                         crops_per_photo=crops, seed=0), rank=0, world_size=1)

    base_dir, stage = work / "base", work / "stage"
    if args.base_from and not base_dir.exists():
        reused = load_bundle(args.base_from)
        base_only = reused.base_generator()
        concepts = [token_only_concept(base_only, c.name, c.tokens, c.description, c.teacher,
                                       {"base_training": True, "tokens_from": str(args.base_from)})
                    for c in reused.concepts]
        save_bundle(Bundle.from_parts(reused.size, base_only, concepts), base_dir)
    if not base_dir.exists():
        train = TrainConfig(steps=args.base_steps, lr=args.base_lr, checkpoint_dir=work / "base.ckpt",
                            resume=(work / "base.ckpt").exists())
        run_train_base({n: data[n] for n in BASE_CONCEPTS}, base_dir, args.size, train, LossConfig())
    base_bundle = load_bundle(base_dir)
    base = base_bundle.base_generator()
    held_out = torch.cat([to_model_range(np.stack([_square(load_rgb(p), 256)])) for p in sample_photo_paths()])
    tokens = {c.name: c.tokens for c in base_bundle.concepts}
    try:
        liveness = check_alive(base, held_out, tokens)
    except RuntimeError as e:
        if args.strict_liveness:
            raise
        liveness = {"error": str(e)}
        print(f"WARNING: {e} (the bundle is still written; --strict-liveness makes this fatal)")
    print(json.dumps(liveness, indent=2))

    loss = {"l1": LossConfig(), "perceptual": LossConfig(perceptual=4.0), "recipe": LossConfig.recipe()}[args.concept_loss]
    if not stage.exists():
        save_bundle(base_bundle, stage)
    for name in SHIPPED_CONCEPTS:
        current = load_bundle(stage)
        if name in current.concept_names and not current.concept(name).training.get("base_training"):
            continue  # trained before a kill
        ckpt = work / "concepts.ckpt" / name
        train = TrainConfig(steps=args.concept_steps, lr=5e-3, seed=1, checkpoint_dir=ckpt, resume=ckpt.exists())
        run_train_concept(stage, data[name], name, stage, ConceptRecipe(rank=1), train, loss,
                          replace_existing=True)
    shutil.rmtree(work / "concepts.ckpt", ignore_errors=True)
    final = load_bundle(stage)
    concepts = [final.concept(n) for n in SHIPPED_CONCEPTS]
    for c in concepts:
        c.training["in_base_training"] = c.name in BASE_CONCEPTS
    save_bundle(Bundle.from_parts(args.size, final.base_generator(), concepts), args.out)
    base_record = ({"reused_from": str(args.base_from)} if args.base_from else
                   {"steps": args.base_steps, "lr": args.base_lr, "loss": "L1", "concepts": list(BASE_CONCEPTS)})
    record = {"base": {"liveness": liveness, **base_record}, "concept_loss": loss.summary(),
              "concepts": {c.name: c.training for c in concepts}, "photos": count, "crops_per_photo": crops,
              "total_seconds": round(time.perf_counter() - start, 1)}
    (args.out.parent / f"{args.out.name}.training.json").write_text(json.dumps(record, indent=2))
    print(json.dumps({k: v for k, v in record.items() if k != "concepts"}, indent=2))


def _square(rgb: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(rgb).resize((size, size), Image.Resampling.BICUBIC))


if __name__ == "__main__":
    main()
