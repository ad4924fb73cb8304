"""Training checkpoints without pickle: safetensors for tensors, JSON for the rest.

A checkpoint is a directory written atomically (staging directory + rename), so a kill at
any moment leaves either the previous checkpoint or the new one::

    state.safetensors   every tensor: model, tokens, optimizer moments, torch RNG states
    state.json          step, elapsed time, loss history, numpy RNG state, optimizer
                        hyper-parameters, the run's config, sha256 of state.safetensors

Optimizer state dicts are split into their tensors (``<prefix>/state/<param>/<key>``)
and their JSON-able ``param_groups``, and put back together on load.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from pocketgan.atomic import atomic_directory

TENSORS = "state.safetensors"
META = "state.json"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, or belongs to a different run."""


def save_checkpoint(directory: Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Write ``tensors`` and ``meta`` as one checkpoint, replacing ``directory`` atomically."""
    with atomic_directory(Path(directory)) as staging:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(staging / TENSORS))
        digest = hashlib.sha256((staging / TENSORS).read_bytes()).hexdigest()
        (staging / META).write_text(json.dumps({**meta, "tensors_sha256": digest}, indent=1))


def load_checkpoint(directory: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a checkpoint written by :func:`save_checkpoint`, verifying its checksum."""
    directory = Path(directory)
    if not (directory / META).is_file() or not (directory / TENSORS).is_file():
        raise CheckpointError(f"no checkpoint in {directory}")
    meta = json.loads((directory / META).read_text())
    digest = hashlib.sha256((directory / TENSORS).read_bytes()).hexdigest()
    if digest != meta.get("tensors_sha256"):
        raise CheckpointError(f"checkpoint {directory}: {TENSORS} does not match its recorded sha256")
    return load_file(str(directory / TENSORS)), meta


def has_checkpoint(directory: Path | None) -> bool:
    return directory is not None and (Path(directory) / META).is_file()


def flatten_optimizer(prefix: str, state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer ``state_dict`` into tensors and JSON (param_groups, scalar state)."""
    tensors, scalars = {}, {}
    for index, state in state_dict["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}/state/{index}/{key}"] = value
            else:
                scalars[f"{index}/{key}"] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def unflatten_optimizer(prefix: str, tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    head = f"{prefix}/state/"
    for name, value in tensors.items():
        if name.startswith(head):
            index, key = name[len(head) :].split("/", 1)
            state.setdefault(int(index), {})[key] = value
    for name, value in meta["scalars"].items():
        index, key = name.split("/", 1)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}
