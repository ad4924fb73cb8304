"""``distill-data --noise``: the teacher's ODE as pairs, (noise seed, prompt) -> DDIM output.

Diffusion2GAN learns the teacher's noise-to-image map as paired translation. Item ``i`` of a
dataset draws its prompt from the chosen emoji split (a seeded permutation, cycled when
``--noise`` exceeds the prompts) and its noise from ``seeded_noise(seed * 2^32 + i)``
(:mod:`pocketgan.runtime.seeded_noise`, the generator every runtime implements). The
teacher samples it with DDIM (``--steps``, classifier-free guidance ``--guidance-scale``).

Layout (the photo mode's index and resume rules, see :mod:`pocketgan.training.distill_data`)::

    dataset.json                  mode "noise", teacher, its step, DDIM steps, guidance, seed
    shards/<first>-<last>.safetensors
                                  "noise" float32 (B, 3, S, S) exactly as fed to the teacher,
                                  "target" float32 (B, 3, S, S) in [-1, 1], its output
    index-rank<R>.jsonl           one line per item: key, prompt, seed (the noise seed),
                                  shard, row (+ the photo mode's fields, photo/crop null)

A shard is written atomically before its index lines, so a kill loses at most the batch
in flight; rerunning the command continues; raising ``--noise`` adds items.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from pocketgan.runtime.seeded_noise import seeded_noise

SHARDS_DIR = "shards"
NOISE_RESUME_FIELDS = ("format_version", "mode", "teacher", "teacher_settings", "prompt", "size", "seed")


def item_noise_seed(seed: int, index: int) -> int:
    return (int(seed) << 32) | int(index)


def _prompts(split: str, side: int, cache: Path | None) -> list[str]:
    from pocketgan.generation.emoji import load_emoji

    return load_emoji(side, cache, progress=False).split(held_out=split == "held-out").prompts


def _item_prompts(prompts: list[str], seed: int, indices: list[int]) -> list[str]:
    order = np.random.default_rng([seed, 7]).permutation(len(prompts))
    return [prompts[order[i % len(prompts)]] for i in indices]


def _load_teacher(spec: str, options: dict):
    from pocketgan.generation.teacher import DEFAULT_GUIDANCE, load_teacher

    kind, _, path = spec.partition(":")
    if kind != "generation" or not path:
        raise ValueError(
            f"noise mode needs a teacher 'generation:PATH' (a train-generation-teacher pipeline), got {spec!r}"
        )
    teacher = load_teacher(Path(path), guidance=float(options.get("guidance_scale") or DEFAULT_GUIDANCE))
    info = Path(path) / "pocketgan-teacher.json"
    step = json.loads(info.read_text(encoding="utf-8")).get("step") if info.is_file() else None
    return teacher, step


def generate_noise_pairs(config: Any, rank: int, world_size: int, state: Any, start: float) -> dict[str, Any]:
    """This rank's share of a noise-mode dataset (``config``: a DistillDataConfig with noise > 0)."""
    import torch
    from safetensors.torch import save
    from tqdm import tqdm

    from pocketgan.atomic import atomic_write_bytes
    from pocketgan.training.distill_data import (
        FORMAT,
        FORMAT_VERSION,
        _check_or_write_dataset,
        _repair_index,
        index_path,
        read_index,
    )

    options = config.teacher_options
    teacher, teacher_step = _load_teacher(config.teacher, options)
    steps, batch = int(options.get("steps") or 25), int(options.get("batch_size") or 64)
    size = teacher.arch.image_size
    record = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "mode": "noise",
        "teacher": config.teacher,
        "teacher_settings": {"steps": steps, "guidance_scale": teacher.guidance, "teacher_step": teacher_step},
        "prompt": f"emoji:{config.prompts}",
        "size": size,
        "seed": config.seed,
        "count": config.noise,
        "noise": "seeded_noise(seed * 2^32 + index, (1, 3, size, size)), stored in the shards",
        "index": "index-rank<R>.jsonl",
    }
    out = config.out
    (out / SHARDS_DIR).mkdir(parents=True, exist_ok=True)
    _check_or_write_dataset(out, record, NOISE_RESUME_FIELDS)
    own_index = index_path(out, rank)
    _repair_index(own_index)
    done = {e["key"] for e in read_index(out)}
    mine = [i for i in range(config.noise) if i % world_size == rank]
    todo = [i for i in mine if f"{i:06d}" not in done]
    prompts = _prompts(config.prompts, size, config.emoji)
    written = 0
    show = config.progress and (state is None or state.local_process_index == 0)
    with (
        open(own_index, "a", encoding="utf-8") as index,
        tqdm(
            total=len(mine), initial=len(mine) - len(todo), desc="distill-data --noise", unit="pair", disable=not show
        ) as bar,
    ):
        for at in range(0, len(todo), batch):
            chunk = todo[at : at + batch]
            texts = _item_prompts(prompts, config.seed, chunk)
            noise = np.concatenate([seeded_noise(item_noise_seed(config.seed, i), (1, 3, size, size)) for i in chunk])
            target = teacher.sample(texts, torch.from_numpy(noise), steps)
            shard = f"{SHARDS_DIR}/{chunk[0]:06d}-{chunk[-1]:06d}.safetensors"
            atomic_write_bytes(out / shard, save({"noise": torch.from_numpy(noise), "target": target.contiguous()}))
            for row, (i, text) in enumerate(zip(chunk, texts)):
                entry = {"key": f"{i:06d}", "input": shard, "target": shard, "photo": None, "crop": None}
                entry |= {"seed": item_noise_seed(config.seed, i), "teacher": config.teacher, "prompt": text}
                index.write(json.dumps(entry | {"shard": shard, "row": row}, ensure_ascii=False) + "\n")
            index.flush()
            written += len(chunk)
            bar.update(len(chunk))
    return {
        "out": str(out),
        "rank": rank,
        "world_size": world_size,
        "items": config.noise,
        "assigned": len(mine),
        "skipped": len(mine) - len(todo),
        "written": written,
        "seconds": round(time.perf_counter() - start, 2),
        "index": str(own_index),
        "teacher": config.teacher,
    }


def load_noise_pairs(out: str | Path) -> dict[str, Any]:
    """Every finished item, sorted by key: ``noise`` and ``target`` float32 (N, 3, S, S),
    ``prompts`` (N,) and ``seeds`` (N,) of the noise, with each shard read once."""
    from safetensors.numpy import load_file

    from pocketgan.training.distill_data import read_dataset_config, read_index

    out = Path(out)
    if read_dataset_config(out).get("mode") != "noise":
        raise ValueError(f"{out} is a photo-mode dataset, not distill-data --noise pairs")
    entries = read_index(out)
    if not entries:
        raise ValueError(f"{out} has no finished pairs yet")
    shards: dict[str, dict] = {}
    noise, target = [], []
    for e in entries:
        if e["shard"] not in shards:
            shards[e["shard"]] = load_file(str(out / e["shard"]))
        noise.append(shards[e["shard"]]["noise"][e["row"]])
        target.append(shards[e["shard"]]["target"][e["row"]])
    return {
        "noise": np.stack(noise),
        "target": np.stack(target),
        "prompts": [e["prompt"] for e in entries],
        "seeds": [int(e["seed"]) for e in entries],
        "keys": [e["key"] for e in entries],
    }
