"""Per-layer LoRA ranks from the spectrum of a short high-rank run (E2GAN's rank search).

The procedure (``pocketgan train-concept --rank search``):

1. **Probe.** Train the concept briefly with the same high rank ``R`` on every crucial
   layer (``probe_rank``, ``probe_steps``).
2. **Spectrum.** For each layer take the learned update ``ΔW = B·A`` (a conv's A is
   flattened to ``(R, in·kh·kw)``) and its singular values ``σ₁ ≥ … ≥ σ_R``. The
   share of the update a rank-k LoRA can express is ``E_l(k) = Σ_{i≤k} σ_i² / Σ_i σ_i²``.
3. **Allocate** under a parameter budget (by default: what uniform rank ``r`` costs, so
   the comparison with uniform ranks is at equal parameter count). A rank-k LoRA on a
   layer costs ``k · (in·kh·kw + out)`` parameters. Every layer keeps at least rank 1;
   each further rank goes, greedily, to the layer where it adds the most update energy
   per parameter: ``σ_{k+1}² / ‖ΔW‖²_total · 1/cost_l`` with ``‖ΔW‖²_total`` summed over
   all layers, so layers the concept barely changes get little, layers it rewrites get
   more.
4. **Train** the concept afresh at the searched ranks (the probe only chose the ranks).

The greedy allocation is optimal for this separable objective: each layer's marginal
energy ``σ_k²`` is non-increasing in k, so picking the best ratio first never blocks a
better one later except through the budget's last, partial step.
"""

from __future__ import annotations

import torch

SUFFIX_A, SUFFIX_B = ".lora_A.weight", ".lora_B.weight"


def layer_updates(lora: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``ΔW = B·A`` per layer as an (out, in·kh·kw) float64 matrix."""
    updates = {}
    for key, a in lora.items():
        if not key.endswith(SUFFIX_A):
            continue
        layer = key[: -len(SUFFIX_A)]
        b = lora[layer + SUFFIX_B]
        updates[layer] = b.reshape(b.shape[0], b.shape[1]).double() @ a.reshape(a.shape[0], -1).double()
    if not updates:
        raise ValueError("no LoRA layers in the given weights")
    return updates


def layer_spectra(lora: dict[str, torch.Tensor]) -> dict[str, list[float]]:
    """Singular values of each layer's update, largest first (as many as the LoRA's rank:
    ``B·A`` has no more non-zero ones)."""
    ranks = {k[: -len(SUFFIX_A)]: a.shape[0] for k, a in lora.items() if k.endswith(SUFFIX_A)}
    return {layer: torch.linalg.svdvals(delta)[: ranks[layer]].tolist() for layer, delta in layer_updates(lora).items()}


def rank_costs(lora: dict[str, torch.Tensor]) -> dict[str, int]:
    """Parameters one rank costs per layer: in·kh·kw (a row of A) + out (a column of B)."""
    costs = {}
    for key, a in lora.items():
        if key.endswith(SUFFIX_A):
            layer = key[: -len(SUFFIX_A)]
            costs[layer] = a[0].numel() + lora[layer + SUFFIX_B].shape[0]
    return costs


def lora_parameters(ranks: dict[str, int], costs: dict[str, int]) -> int:
    return sum(ranks[layer] * costs[layer] for layer in ranks)


def allocate_ranks(
    spectra: dict[str, list[float]], costs: dict[str, int], budget: int, min_rank: int = 1, max_rank: int | None = None
) -> dict[str, int]:
    """Greedy energy-per-parameter allocation of ranks under ``budget`` parameters.

    Args:
        spectra: singular values per layer (largest first), from :func:`layer_spectra`.
        costs: parameters per rank per layer, from :func:`rank_costs`.
        budget: total LoRA parameters allowed (the result never exceeds it).
        min_rank: every layer gets at least this rank.
        max_rank: no layer gets more (default: the probe's rank, len of its spectrum).
    """
    if set(spectra) != set(costs):
        raise ValueError("spectra and costs must cover the same layers")
    ranks = {layer: min_rank for layer in spectra}
    if lora_parameters(ranks, costs) > budget:
        raise ValueError(
            f"budget {budget} is below rank {min_rank} on every layer ({lora_parameters(ranks, costs)} parameters)"
        )
    total = sum(s * s for values in spectra.values() for s in values) or 1.0
    spent = lora_parameters(ranks, costs)
    while True:
        best, best_gain = None, 0.0
        for layer, values in spectra.items():
            k = ranks[layer]
            limit = min(len(values), max_rank or len(values))
            if k >= limit or spent + costs[layer] > budget:
                continue
            gain = values[k] ** 2 / total / costs[layer]
            if gain > best_gain:
                best, best_gain = layer, gain
        if best is None:
            return ranks
        ranks[best] += 1
        spent += costs[best]


def uniform_ranks(layers: list[str] | dict, rank: int) -> dict[str, int]:
    return {layer: rank for layer in layers}


def search_report(spectra: dict[str, list[float]], ranks: dict[str, int], costs: dict[str, int]) -> list[dict]:
    """One row per layer: chosen rank, energy it keeps, parameters — for docs and logs."""
    rows = []
    for layer, values in spectra.items():
        energy = sum(s * s for s in values) or 1.0
        kept = sum(s * s for s in values[: ranks[layer]]) / energy
        rows.append(
            {
                "layer": layer,
                "rank": ranks[layer],
                "energy_kept": round(kept, 4),
                "update_norm": round(energy**0.5, 5),
                "parameters": ranks[layer] * costs[layer],
            }
        )
    return rows
