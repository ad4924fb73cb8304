"""The mix model: every concept of a bundle in one graph, weighted by an input vector.

``MixModel(image, weights) -> edited`` runs the mix ``{concept_k: weights[k]}`` of
``pocketgan.runtime.concept_mix`` (the neutral concept takes ``1 - sum(weights)``) with all
the concepts' LoRA weights baked in as constants. Each adapted layer carries one low-rank
branch holding every concept's rank rows side by side (rank ``sum_k r_k + r_neutral``);
the weight vector scales the rows' activations::

    y = W x + B (g * (A x)),   g = the weight of the concept each rank row belongs to

which is ``sum_k w_k * B_k A_k x`` exactly. Why this form for ExecuTorch and Core ML: the
convolution and linear weights stay constants, so XNNPACK delegates them as it does the
per-concept methods (runtime-supplied LoRA weights would leave the convolutions to the
portable kernels, docs/strength-and-blending.md has the measurement), and the app passes a
few floats, not tensors. The cost is the wider branch: rank 9 instead of 1 for the default
bundle's seven concepts and its neutral.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from pocketgan.concepts.concept import Concept
from pocketgan.models.generator import Generator

WEIGHTS_INPUT = "concept_weights"


class _PassState:
    """Per-forward state shared by the layers of one MixModel (plain object: not module state)."""

    weights: torch.Tensor | None = None


class WeightedLoRALayer(nn.Module):
    """``base(x) + B((A x) * gains)``: a Conv2d/Linear with a gain per LoRA rank row.

    ``gains`` comes from :attr:`source` (the :class:`MixModel`), set per forward pass.
    """

    def __init__(self, base: nn.Module, a: torch.Tensor, b: torch.Tensor, owners: torch.Tensor, source) -> None:
        super().__init__()
        self.base = base
        rank = a.shape[0]
        if isinstance(base, nn.Conv2d):
            self.lora_a = nn.Conv2d(base.in_channels, rank, base.kernel_size, base.stride, base.padding, bias=False)
            self.lora_b = nn.Conv2d(rank, base.out_channels, 1, bias=False)
        else:
            self.lora_a = nn.Linear(base.in_features, rank, bias=False)
            self.lora_b = nn.Linear(rank, base.out_features, bias=False)
        with torch.no_grad():
            self.lora_a.weight.copy_(a)
            self.lora_b.weight.copy_(b)
        # owners[j, k] = 1 when rank row j belongs to weight k (one-hot, (R, K + 1))
        self.register_buffer("owners", owners, persistent=False)
        self._source = [source]  # a list: not registered as a submodule (no cycle)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (R,): each rank row's weight (a product and a sum, not a matrix-vector product,
        # which Core ML's converter cannot type with a 1-D operand)
        gains = (self.owners * self._source[0].current_weights().reshape(1, -1)).sum(-1)
        h = self.lora_a(x)
        h = h * (gains.reshape(1, -1, 1, 1) if h.dim() == 4 else gains)
        return self.base(x) + self.lora_b(h)


class MixModel(nn.Module):
    """``(image (1, 3, S, S) float32 in [-1, 1], weights (K,) float32) -> edited``, same shape/range.

    ``weights[k]`` is the weight of ``concepts[k]``; the neutral concept gets ``1 - sum``.
    """

    def __init__(self, base: Generator, concepts: list[Concept], neutral: Concept) -> None:
        super().__init__()
        self.concept_names = [c.name for c in concepts]
        self.generator = copy.deepcopy(base).eval()
        members = list(concepts) + [neutral]
        count = len(members)
        # the weights of the pass in progress, read by every WeightedLoRALayer; a list, not a
        # tensor attribute, so that torch.export traces it as data flow, not module state
        self._pass = _PassState()
        modules = dict(self.generator.named_modules())
        for layer in neutral.ranks:
            a = torch.cat([m.lora[f"{layer}.lora_A.weight"] for m in members], 0)
            b = torch.cat([m.lora[f"{layer}.lora_B.weight"] for m in members], 1)
            owners = torch.cat(
                [torch.nn.functional.one_hot(torch.full((m.ranks[layer],), k), count) for k, m in enumerate(members)]
            ).float()
            parent_name, _, child = layer.rpartition(".")
            parent = self.generator.get_submodule(parent_name) if parent_name else self.generator
            setattr(parent, child, WeightedLoRALayer(modules[layer], a, b, owners, self))
        # tokens = n + sum_k w_k (t_k - n) = offsets^T w + n
        n = neutral.tokens
        self.register_buffer("token_offsets", torch.stack([c.tokens - n for c in concepts]).flatten(1))
        self.register_buffer("neutral_tokens", n[None].clone())
        self.requires_grad_(False)

    def current_weights(self) -> torch.Tensor:
        """(K + 1,): the concepts' weights of the pass in progress, then the neutral's."""
        return self._pass.weights

    def forward(self, image: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        self._pass.weights = torch.cat([weights, 1.0 - weights.sum().reshape(1)])
        tokens = self.neutral_tokens + (weights.reshape(1, -1) @ self.token_offsets).reshape(self.neutral_tokens.shape)
        return self.generator(image, tokens)


def mix_model(bundle) -> MixModel:
    """The :class:`MixModel` of a bundle with a neutral concept (its concepts in manifest order)."""
    if bundle.neutral is None:
        raise ValueError("the bundle has no neutral concept: train one with pocketgan train-neutral")
    return MixModel(bundle.base_generator(), bundle.concepts, bundle.neutral).eval()


def mix_weights(concept_names: list[str], weights: dict[str, float]) -> torch.Tensor:
    """A ``{name: weight}`` mix as the model's (K,) float32 weight vector."""
    return torch.tensor([float(weights.get(n, 0.0)) for n in concept_names], dtype=torch.float32)
