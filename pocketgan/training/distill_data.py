"""``distill-data``: edit a folder of photos with a teacher into a paired dataset on disk.

Resumable (run the same command again after a crash or a kill: finished pairs are kept,
nothing is duplicated) and shardable (``accelerate launch`` splits the work over processes,
GPUs and nodes; each rank writes its own index file). See docs/distill-data.md.

Layout of ``out/``::

    dataset.json              the configuration (teacher source, prompt, size, seed, ...)
    images/<key>.input.png    the (size, size, 3) RGB crop of the photo (after --input-transform)
    images/<key>.target.png   the teacher's edit of it, same size
    images/<key>.original.png the crop before --input-transform (only with one)
    index-rank<R>.jsonl       one JSON line per finished pair, written by rank R

``python -m pocketgan.training.distill_data --help`` lists the options.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from PIL import Image

from pocketgan.atomic import atomic_write_bytes, atomic_write_json
from pocketgan.diffusion_editor.tasks import TRANSFORMS, apply_transform, transform_seed
from pocketgan.photos import load_rgb
from pocketgan.training.distill_plan import (
    crop_photo,
    encode_png,
    item_seed,  # noqa: F401  (re-exported: its old home)
    plan_items,
)
from pocketgan.training.pairs import PairSet, resolve_inside
from pocketgan.training.teachers import DIFFUSION_KINDS, Teacher, teacher_from_spec

FORMAT = "pocketgan.distill-data"
FORMAT_VERSION = 1
DATASET_FILE = "dataset.json"
IMAGES_DIR = "images"
INDEX_FIELDS = ("key", "input", "target", "photo", "crop", "seed", "teacher")
# dataset.json fields that must match for a resume: they change the pairs themselves
RESUME_FIELDS = (
    "format_version",
    "teacher",
    "teacher_settings",
    "prompt",
    "size",
    "crops_per_photo",
    "seed",
    "input_transform",
)
TRAIN_SPLITS = ("train", "held-out")
_INDEX_NAME = re.compile(r"^index-rank(\d+)\.jsonl$")


@dataclass
class DistillDataConfig:
    out: Path = field(metadata={"help": "Dataset folder; created, or resumed when it exists."})
    teacher: str = field(
        metadata={
            "help": "Teacher spec: a procedural name (cartoon, stylize, ...), "
            "instruct-pix2pix:PATH_OR_HUB_ID or img2img:PATH_OR_HUB_ID; with --noise, "
            "generation:PATH (a train-generation-teacher pipeline folder)."
        }
    )
    photos: Path | None = field(
        default=None,
        metadata={"help": "Folder of photos (searched recursively: jpg, jpeg, png, webp, bmp); not with --noise."},
    )
    # noise mode (pocketgan.generation.ode_pairs, docs/one-step-generation.md)
    _NOISE = "Noise mode: this many (noise seed, prompt) items with a text-to-image teacher's DDIM output (0: photos)."
    noise: int = field(default=0, metadata={"help": _NOISE})
    prompts: str = field(default="train", metadata={"help": "Noise mode: emoji prompts.", "choices": TRAIN_SPLITS})
    emoji: Path | None = field(default=None, metadata={"help": "Noise mode: emoji cache (~/.cache/pocketgan/emoji)."})
    prompt: str | None = field(
        default=None,
        metadata={
            "help": "The edit, for diffusion teachers (an instruction for InstructPix2Pix, a description for img2img)."
        },
    )
    size: int = field(default=256, metadata={"help": "Side of the square pairs, pixels (a multiple of 8)."})
    crops_per_photo: int = field(
        default=1,
        metadata={
            "help": "Crops per photo: crop 0 is the centre square; crops 1.. are seeded random crops with random flips."
        },
    )
    seed: int = field(default=0, metadata={"help": "Seed of the random crops and of the teacher's per-pair seeds."})
    limit: int | None = field(
        default=None, metadata={"help": "Use at most this many photos (the first in sorted order)."}
    )
    input_transform: str | None = field(
        default=None,
        metadata={
            "help": "Turn each crop into the task's input before the teacher sees it: grayscale (colorize) or "
            "degrade (restore: seeded blur, noise, JPEG). The clean crop is kept as <key>.original.png.",
            "choices": ("grayscale", "degrade"),
        },
    )
    progress: bool = field(default=True, metadata={"help": "Show a tqdm bar (pairs done / total, ETA, skipped)."})
    teacher_options: dict[str, Any] = field(
        default_factory=dict,
        metadata={
            "help": "Diffusion teachers: DiffusersTeacher options (steps, guidance_scale, batch_size, device, ...)."
        },
    )

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.noise < 0:
            raise ValueError(f"noise must be >= 0 (0: photo mode), got {self.noise}")
        if (self.photos is None) == (self.noise == 0):
            raise ValueError("give photos (photo mode) or noise > 0 (noise mode), not both and not neither")
        if self.photos is not None:
            self.photos = Path(self.photos)
        if not isinstance(self.teacher, str) or not self.teacher.strip():
            raise ValueError("teacher must be a spec such as 'cartoon' or 'instruct-pix2pix:PATH'")
        if self.size <= 0 or self.size % 8:
            raise ValueError(f"size must be a positive multiple of 8, got {self.size}")
        if self.crops_per_photo < 1:
            raise ValueError(f"crops_per_photo must be >= 1, got {self.crops_per_photo}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.input_transform is not None and self.input_transform not in TRANSFORMS:
            raise ValueError(f"input_transform must be one of {TRANSFORMS} (or None), got {self.input_transform!r}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1 (or None for all photos), got {self.limit}")
        self.teacher_options = dict(self.teacher_options or {})


# -- index files ---------------------------------------------------------------------


def index_path(out: Path, rank: int) -> Path:
    return Path(out) / f"index-rank{rank}.jsonl"


def _index_files(out: Path) -> list[Path]:
    found = [(int(m.group(1)), p) for p in Path(out).glob("index-rank*.jsonl") if (m := _INDEX_NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def _parse_index(data: bytes, path: Path) -> tuple[list[dict], int]:
    """Entries of one index file and the byte length of its intact prefix.

    The last line may be torn (a crash mid-append): without its newline, or not valid JSON;
    it is left out. A bad line before the last one is corruption and raises ``ValueError``.
    """
    entries, good_end, pos = [], 0, 0
    lines = data.split(b"\n")
    for number, line in enumerate(lines, 1):
        last = number == len(lines)  # the segment after the final newline ("" for a clean file)
        end = pos + len(line) + (0 if last else 1)
        if line.strip():
            entry = None
            if not last:
                try:
                    entry = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    entry = None
                if not isinstance(entry, dict) or any(f not in entry for f in INDEX_FIELDS):
                    entry = None
            if entry is None:
                if last or not any(rest.strip() for rest in lines[number:]):
                    break  # torn tail: ignored here, truncated by its own rank before it appends
                raise ValueError(
                    f"{path}:{number}: corrupt index line {line[:80]!r}; remove it (and the pairs after it) to resume"
                )
            entries.append(entry)
        pos = end
        if not last:
            good_end = end
    return entries, good_end


def _repair_index(path: Path) -> int:
    """Cut a torn last line off this rank's own index file. Returns the bytes removed."""
    if not path.exists():
        return 0
    data = path.read_bytes()
    _, good_end = _parse_index(data, path)
    if good_end == len(data):
        return 0
    with open(path, "r+b") as f:
        f.truncate(good_end)
        f.flush()
        os.fsync(f.fileno())
    return len(data) - good_end


def read_index(out: str | Path) -> list[dict]:
    """All finished pairs of a dataset (every rank's index file), sorted by key, each key once.

    Each entry: ``key``, ``input`` and ``target`` (paths relative to ``out``), ``photo`` (path
    relative to the photos folder), ``crop``, ``seed`` (the teacher's), ``teacher`` (source).
    """
    by_key: dict[str, dict] = {}
    for path in _index_files(Path(out)):
        entries, _ = _parse_index(path.read_bytes(), path)
        for entry in entries:
            by_key.setdefault(entry["key"], entry)
    return [by_key[k] for k in sorted(by_key)]


def load_pairs(out: str | Path, keys: Iterable[str] | None = None) -> PairSet:
    """The dataset's pairs as a :class:`PairSet`: inputs and targets, (N, S, S, 3) uint8 RGB,
    sorted by key (``keys``: only those; all must be finished)."""
    out = Path(out)
    entries = read_index(out)
    if keys is not None:
        by_key = {e["key"]: e for e in entries}
        wanted = sorted(set(keys))
        missing = [k for k in wanted if k not in by_key]
        if missing:
            raise KeyError(f"{len(missing)} keys are not finished pairs of {out}: {missing[:5]}")
        entries = [by_key[k] for k in wanted]
    if not entries:
        raise ValueError(f"no finished pairs in {out} (no index-rank*.jsonl entries)")
    size = None
    if (out / DATASET_FILE).exists():
        size = json.loads((out / DATASET_FILE).read_text(encoding="utf-8"))["size"]
    inputs, targets = [], []
    for entry in entries:
        pair = []
        for which in ("input", "target"):
            path = resolve_inside(out, entry[which], f"{out}/index-rank*.jsonl: pair {entry['key']!r} {which!r}")
            if not path.is_file():
                raise FileNotFoundError(f"pair {entry['key']!r}: {path} is missing")
            with Image.open(path) as im:
                arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
            want = (size or arr.shape[0], size or arr.shape[0], 3)
            if arr.shape != want:
                raise ValueError(f"pair {entry['key']!r}: {path} is {arr.shape}, the dataset records {want}")
            pair.append(arr)
        inputs.append(pair[0])
        targets.append(pair[1])
    return PairSet(np.stack(inputs), np.stack(targets))


# -- generation ----------------------------------------------------------------------


def read_dataset_config(out: str | Path) -> dict[str, Any]:
    """The ``dataset.json`` of a distill-data directory (teacher, prompt, size, ...)."""
    path = Path(out) / DATASET_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{out} is not a distill-data dataset (no {DATASET_FILE}); make one with `pocketgan distill-data`"
        )
    record = json.loads(path.read_text(encoding="utf-8"))
    if record.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} dataset")
    return record


def _dataset_record(config: DistillDataConfig, teacher: Teacher) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "teacher": teacher.source,
        "teacher_name": teacher.name,
        "teacher_description": teacher.description,
        "teacher_settings": json.loads(json.dumps(getattr(teacher, "settings", {}))),
        "prompt": config.prompt,
        "size": config.size,
        "crops_per_photo": config.crops_per_photo,
        "seed": config.seed,
        "input_transform": config.input_transform,
        "photos": str(config.photos),
        "images": f"{IMAGES_DIR}/<key>.input.png, {IMAGES_DIR}/<key>.target.png",
        "index": "index-rank<R>.jsonl",
    }


def _check_or_write_dataset(out: Path, record: dict[str, Any], fields: Sequence[str] = RESUME_FIELDS) -> None:
    path = out / DATASET_FILE
    if path.exists():
        existing = json.loads(path.read_text(encoding="utf-8"))
        if existing.get("format") != FORMAT:
            raise ValueError(f"{path} is not a {FORMAT} dataset")
        diff = [
            f"{k}: dataset has {existing.get(k)!r}, this run {record[k]!r}"
            for k in fields
            if existing.get(k) != record[k]
        ]
        if diff:
            raise ValueError(
                f"{out} was made with a different configuration; resume with the same settings or "
                f"use another --out. Differences: " + "; ".join(diff)
            )
    else:
        atomic_write_json(path, record)  # ranks racing here write the same bytes


def _resolve_rank(rank: int | None, world_size: int | None) -> tuple[int, int, Any]:
    """(rank, world_size, accelerate state or None); both None -> accelerate's PartialState."""
    if (rank is None) != (world_size is None):
        raise ValueError("give both rank and world_size, or neither (then accelerate decides)")
    state = None
    if rank is None:
        launched = _launcher_world_size()
        try:
            from accelerate import PartialState
        except ImportError:  # accelerate is in the toolchain extra; without it, one process
            if launched > 1:
                raise ValueError(
                    f"launched as {launched} processes but accelerate is not installed: "
                    "pip install accelerate, or pass --rank/--world-size"
                ) from None
            rank, world_size = 0, 1
        else:
            import torch

            # without cpu=True, accelerate treats torchrun/`accelerate launch` processes on a machine
            # without CUDA as independent single processes, and every one would do all the work
            cpu = (
                os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
                or not torch.cuda.is_available()
            )
            state = PartialState(cpu=cpu)
            rank, world_size = state.process_index, state.num_processes
            if launched != world_size:
                raise ValueError(
                    f"the launcher started {launched} processes but accelerate sees {world_size} "
                    f"(distributed type {state.distributed_type}); pass --rank/--world-size explicitly"
                )
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank {rank}, world_size {world_size}")
    return rank, world_size, state


def _launcher_world_size() -> int:
    """Processes started by torchrun / accelerate launch / MPI, from their environment (1 if none)."""
    for name in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"):
        value = os.environ.get(name, "").strip()
        if value.isdigit():
            return max(1, int(value))
    return 1


def _remove_stale_temps(images: Path, keys: set[str]) -> None:
    """Temporary files left by a killed run, for keys only this rank writes."""
    for name in os.listdir(images):
        if name.startswith(".") and name.endswith(".tmp"):
            base = name[1:].split(".png.", 1)[0]  # ".<key>.input.png.<random>.tmp"
            key = base.removesuffix(".input").removesuffix(".target").removesuffix(".original")
            if key in keys:
                (images / name).unlink(missing_ok=True)


def _teacher_for(config: DistillDataConfig, state: Any) -> Teacher:
    """The teacher ``config`` names; under a multi-process launcher each process's diffusion
    teacher runs on that process's GPU unless ``device`` was given."""
    options = dict(config.teacher_options)
    diffusion = config.teacher.partition(":")[0] in DIFFUSION_KINDS
    if diffusion and "device" not in options and state is not None and state.num_processes > 1:
        options["device"] = str(state.device)  # one GPU per process
    return teacher_from_spec(config.teacher, config.prompt, **options)


def _edit_batch(teacher: Teacher, config: DistillDataConfig, chunk: list, cache: dict) -> list[tuple]:
    """[(item, input, target, original or None)] of one batch: (size, size, 3) uint8 crops, their
    edits, and the crops before the input transform. ``cache`` holds the last photo read
    (items come in photo order)."""
    inputs, originals = [], []
    for it in chunk:
        if cache.get("path") != it.photo:
            cache.update(path=it.photo, rgb=load_rgb(it.photo))
        crop = crop_photo(cache["rgb"], config.size, it.crop, config.seed, it.key)
        if config.input_transform:
            originals.append(crop)
            crop = apply_transform(config.input_transform, crop, transform_seed(it.key, config.seed))
        else:
            originals.append(None)
        inputs.append(crop)
    targets = teacher.edit(inputs, [it.seed for it in chunk])
    if len(targets) != len(chunk):
        raise RuntimeError(f"teacher {teacher.name!r} returned {len(targets)} images for {len(chunk)}")
    out = []
    for it, x, y, original in zip(chunk, inputs, targets, originals):
        y = np.asarray(y)
        if y.shape != x.shape or y.dtype != np.uint8:
            raise RuntimeError(f"teacher {teacher.name!r} returned {y.dtype} {y.shape} for a {x.shape} uint8 input")
        out.append((it, x, y, original))
    return out


def _write_pair(
    out: Path, index, it, x: np.ndarray, y: np.ndarray, source: str, original: np.ndarray | None = None
) -> None:
    """The pair's PNGs, then its index line (a pair is finished once its line is on disk)."""
    entry = {
        "key": it.key,
        "input": f"{IMAGES_DIR}/{it.key}.input.png",
        "target": f"{IMAGES_DIR}/{it.key}.target.png",
        "photo": it.photo_rel,
        "crop": it.crop,
        "seed": it.seed,
        "teacher": source,
    }
    if original is not None:
        entry["original"] = f"{IMAGES_DIR}/{it.key}.original.png"
        atomic_write_bytes(out / entry["original"], encode_png(original))
    atomic_write_bytes(out / entry["input"], encode_png(x))
    atomic_write_bytes(out / entry["target"], encode_png(y))
    index.write(json.dumps(entry, ensure_ascii=False) + "\n")
    index.flush()
    os.fsync(index.fileno())


def generate_pairs(
    config: DistillDataConfig, teacher: Teacher | None = None, rank: int | None = None, world_size: int | None = None
) -> dict[str, Any]:
    """Make this rank's share of the dataset's pairs; resume where an earlier run stopped.

    Item ``i`` of :func:`plan_items` belongs to rank ``i % world_size``; ``rank`` and
    ``world_size`` default to accelerate's ``PartialState`` (one plain process: 0 of 1).
    ``teacher`` overrides ``config.teacher`` (which then only names it). Returns a summary:
    ``items`` (whole dataset), ``assigned`` (this rank), ``skipped`` (already finished),
    ``written``, ``seconds``, ``rank``, ``world_size``, ``index``, ``teacher``.
    """
    from tqdm import tqdm

    start = time.perf_counter()
    rank, world_size, state = _resolve_rank(rank, world_size)
    if config.noise:
        from pocketgan.generation.ode_pairs import generate_noise_pairs

        return generate_noise_pairs(config, rank, world_size, state, start)
    teacher = teacher if teacher is not None else _teacher_for(config, state)
    out = config.out
    items = plan_items(config)
    images = out / IMAGES_DIR
    images.mkdir(parents=True, exist_ok=True)
    _check_or_write_dataset(out, _dataset_record(config, teacher))
    own_index = index_path(out, rank)
    _repair_index(own_index)
    done = {e["key"] for e in read_index(out)}
    mine = [it for it in items if it.index % world_size == rank]
    todo = [it for it in mine if it.key not in done]
    skipped = len(mine) - len(todo)
    _remove_stale_temps(images, {it.key for it in todo})
    batch = max(1, int(getattr(teacher, "batch_size", 1) or 1))
    show = config.progress and (state is None or state.local_process_index == 0)
    written, cache = 0, {}
    with (
        open(own_index, "a", encoding="utf-8") as index,
        tqdm(
            total=len(mine),
            initial=skipped,
            desc=f"distill-data rank {rank}/{world_size}",
            unit="pair",
            disable=not show,
            dynamic_ncols=True,
        ) as bar,
    ):
        bar.set_postfix(skipped=skipped)
        for at in range(0, len(todo), batch):
            for it, x, y, original in _edit_batch(teacher, config, todo[at : at + batch], cache):
                _write_pair(out, index, it, x, y, teacher.source, original)
                written += 1
                bar.update(1)
    return {
        "out": str(out),
        "rank": rank,
        "world_size": world_size,
        "items": len(items),
        "assigned": len(mine),
        "skipped": skipped,
        "written": written,
        "seconds": round(time.perf_counter() - start, 2),
        "index": str(own_index),
        "teacher": teacher.source,
    }


# -- command line: the flags are built from DistillDataConfig in pocketgan.cli.training ----------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pocketgan.training.distill_data [options]``: ``pocketgan distill-data [options]``."""
    from pocketgan.cli import command_main

    return command_main("distill-data", argv)


if __name__ == "__main__":
    sys.exit(main())
