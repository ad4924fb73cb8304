"""A generator bound to one concept: the single-input model every exporter consumes.

This is the model provider of the export toolchain: ``ConceptModel(image) -> edited``,
with the concept's LoRA either kept as a separate low-rank branch (``separate``: LoRA
tensors and the concept tokens are parameters an exporter can expose as inputs) or
folded into the base weights (``merged``).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from pocketgan.concepts.concept import Concept
from pocketgan.concepts.lora import inject_lora, inject_mix_slot, load_lora_state_dict, merge_lora
from pocketgan.models.generator import Generator

CONCEPT_TOKENS = "concept_tokens"


class ConceptModel(nn.Module):
    """image (B, 3, S, S) float32 in [-1, 1] -> edited image, same shape and range."""

    def __init__(self, generator: Generator, tokens: torch.Tensor) -> None:
        super().__init__()
        self.generator = generator
        self.concept_tokens = nn.Parameter(tokens.detach().clone().reshape(1, *tokens.shape[-2:]), requires_grad=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        tokens = self.concept_tokens
        if image.shape[0] != 1:  # static at export time; batch 1 needs no expand (not delegated by XNNPACK)
            tokens = tokens.expand(image.shape[0], -1, -1)
        return self.generator(image, tokens)


def concept_model(
    base: Generator,
    concept: Concept | None,
    rank_pattern: dict[str, int],
    *,
    mode: str = "separate",
    mix_ranks: dict[str, int] | None = None,
) -> ConceptModel:
    """Bind a copy of ``base`` to ``concept`` (``None``: zero LoRA and zero tokens).

    ``separate`` injects LoRA at ``rank_pattern`` (the concept zero-padded to it), so every
    concept of a bundle yields the same graph; ``merged`` folds the LoRA into the weights.
    ``mix_ranks`` (separate only) adds the zero second LoRA of strength and blending
    (:func:`~pocketgan.concepts.lora.inject_mix_slot`).
    """
    if mode not in ("separate", "merged"):
        raise ValueError(f"mode must be 'separate' or 'merged', got {mode!r}")
    generator = copy.deepcopy(base).eval()
    cfg = generator.config
    inject_lora(generator, rank_pattern)
    if concept is not None:
        load_lora_state_dict(generator, concept.padded(rank_pattern))
        tokens = concept.tokens
    else:
        tokens = torch.zeros(cfg.token_count, cfg.token_dim)
    if mix_ranks is not None:
        if mode != "separate":
            raise ValueError("the mix slot exists in separate mode only")
        inject_mix_slot(generator, mix_ranks)
    if mode == "merged":
        merge_lora(generator)
    for p in generator.parameters():
        p.requires_grad_(False)
    return ConceptModel(generator, tokens).eval()
