"""A concept: LoRA weights for the crucial layers plus its embedding tokens.

On disk a concept is a directory that stock PEFT can load onto a bare
:class:`~pocketgan.models.Generator` (``PeftModel.from_pretrained(generator, dir)``)::

    adapter_model.safetensors    LoRA weights, PEFT key layout
    adapter_config.json          PEFT LoraConfig (rank_pattern, alpha_pattern)
    concept_embedding.safetensors  {"tokens": float32 (T, D)}
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file

from pocketgan.atomic import atomic_write_bytes
from pocketgan.concepts.lora import lora_config, pad_lora, ranks_of

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
EMBEDDING = "concept_embedding.safetensors"
CONCEPT_FILES = (ADAPTER_WEIGHTS, ADAPTER_CONFIG, EMBEDDING)
_PEFT_PREFIX = "base_model.model."
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def validate_concept_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ValueError(
            f"invalid concept name {name!r}: use 1-64 lowercase letters, digits, '_' or '-', "
            "starting with a letter or digit"
        )
    return name


@dataclass
class Concept:
    """One editing concept.

    Attributes:
        name: identifier used by ``set_concept`` (lowercase, ``[a-z0-9_-]``).
        lora: LoRA weights keyed ``<module>.lora_A.weight`` / ``<module>.lora_B.weight``,
            A of shape (r, in, kh, kw) or (r, in), B of shape (out, r, 1, 1) or (out, r);
            PEFT scaling is 1 (alpha == r).
        tokens: float32 (T, D) embedding the transformer block cross-attends to.
        description: one line for humans and app UIs.
        teacher: how the training pairs were made.
        upsampler: the concept's learned full-resolution stage
            (:meth:`pocketgan.models.guided_upsampler.GuidedUpsampler.tensors`), or None; saved by
            the bundle (``upsampler/<name>.safetensors``), not in the concept's directory.
    """

    name: str
    lora: dict[str, torch.Tensor]
    tokens: torch.Tensor
    description: str = ""
    teacher: str = ""
    training: dict = field(default_factory=dict)
    upsampler: dict[str, torch.Tensor] | None = None

    def __post_init__(self) -> None:
        validate_concept_name(self.name)
        if self.tokens.dim() != 2:
            raise ValueError(f"concept {self.name!r}: tokens must be (T, D), got {tuple(self.tokens.shape)}")
        ranks_of(self.lora)  # raises on a malformed layout

    @property
    def ranks(self) -> dict[str, int]:
        return ranks_of(self.lora)

    def num_parameters(self) -> int:
        return sum(t.numel() for t in self.lora.values()) + self.tokens.numel()

    def padded(self, rank_pattern: dict[str, int]) -> dict[str, torch.Tensor]:
        return pad_lora(self.lora, rank_pattern)

    def save(self, directory: Path) -> None:
        """Write the three concept files into ``directory`` (each atomically)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        peft_weights = {_PEFT_PREFIX + k: v.contiguous() for k, v in sorted(self.lora.items())}
        atomic_write_bytes(directory / ADAPTER_WEIGHTS, _safetensors_bytes(peft_weights, {"format": "pt"}))
        config = lora_config(self.ranks).to_dict()
        config = {k: sorted(v) if isinstance(v, set) else v for k, v in config.items()}
        config["base_model_name_or_path"] = None
        atomic_write_bytes(directory / ADAPTER_CONFIG, (json.dumps(config, indent=2, sort_keys=True) + "\n").encode())
        tokens = {"tokens": self.tokens.detach().float().contiguous()}
        atomic_write_bytes(directory / EMBEDDING, _safetensors_bytes(tokens, {"concept": self.name}))

    @classmethod
    def load(cls, directory: Path, name: str, **metadata) -> "Concept":
        directory = Path(directory)
        for file in CONCEPT_FILES:
            if not (directory / file).is_file():
                raise FileNotFoundError(f"concept {name!r}: missing {directory / file}")
        raw = load_file(directory / ADAPTER_WEIGHTS)
        bad = [k for k in raw if not k.startswith(_PEFT_PREFIX)]
        if bad:
            raise ValueError(f"concept {name!r}: unexpected keys in {ADAPTER_WEIGHTS}: {bad[:3]}")
        lora = {k[len(_PEFT_PREFIX) :]: v for k, v in raw.items()}
        tokens = load_file(directory / EMBEDDING)["tokens"]
        return cls(name=name, lora=lora, tokens=tokens, **metadata)


def _safetensors_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    from safetensors.torch import save

    return save(tensors, metadata=metadata)


__all__ = ["CONCEPT_FILES", "Concept", "validate_concept_name"]
