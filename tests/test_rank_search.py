"""Rank search (spectrum + greedy allocation) and k-means data selection."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pocketgan.training.data_selection import select_indices
from pocketgan.training.rank_search import (
    allocate_ranks,
    layer_spectra,
    lora_parameters,
    rank_costs,
    search_report,
    uniform_ranks,
)


def _lora(singular_values: dict[str, list[float]], out=16, inp=8, k=3, rank=4) -> dict:
    """LoRA weights whose update B·A has exactly the given singular values (conv layers)."""
    g = torch.Generator().manual_seed(0)
    weights = {}
    for layer, values in singular_values.items():
        u, _ = torch.linalg.qr(torch.randn(out, rank, generator=g))
        v, _ = torch.linalg.qr(torch.randn(inp * k * k, rank, generator=g))
        s = torch.tensor(values + [0.0] * (rank - len(values)))
        weights[f"{layer}.lora_B.weight"] = (u * s).reshape(out, rank, 1, 1)
        weights[f"{layer}.lora_A.weight"] = v.T.reshape(rank, inp, k, k).contiguous()
    return weights


def test_spectra_recover_the_singular_values():
    lora = _lora({"a": [3.0, 2.0, 1.0, 0.5], "b": [1.0]})
    spectra = layer_spectra(lora)
    assert np.allclose(spectra["a"], [3.0, 2.0, 1.0, 0.5], atol=1e-5)
    assert np.allclose(spectra["b"], [1.0, 0, 0, 0], atol=1e-5)
    assert rank_costs(lora) == {"a": 8 * 9 + 16, "b": 8 * 9 + 16}


@pytest.mark.parametrize(
    "spectra, budget_rank, expected",
    [
        # one layer carries the update: it takes every spare rank
        ({"a": [4.0, 3.0, 2.0, 1.0], "b": [0.1, 0.0, 0.0, 0.0]}, 2, {"a": 3, "b": 1}),
        # equal spectra: the budget splits evenly
        ({"a": [1.0, 1.0, 0.0, 0.0], "b": [1.0, 1.0, 0.0, 0.0]}, 2, {"a": 2, "b": 2}),
        # budget of rank 1: nothing to allocate beyond the minimum
        ({"a": [4.0, 3.0, 2.0, 1.0], "b": [1.0, 0.5, 0.0, 0.0]}, 1, {"a": 1, "b": 1}),
    ],
)
def test_allocation_follows_the_energy_within_budget(spectra, budget_rank, expected):
    costs = {layer: 100 for layer in spectra}
    budget = lora_parameters(uniform_ranks(spectra, budget_rank), costs)
    ranks = allocate_ranks(spectra, costs, budget)
    assert ranks == expected
    assert lora_parameters(ranks, costs) <= budget


def test_allocation_prefers_cheap_ranks_at_equal_energy():
    spectra = {"cheap": [1.0, 1.0, 1.0, 0.0], "dear": [1.0, 1.0, 1.0, 0.0]}
    costs = {"cheap": 10, "dear": 100}
    ranks = allocate_ranks(spectra, costs, budget=10 + 100 + 20)
    assert ranks == {"cheap": 3, "dear": 1}


def test_allocation_errors_and_report():
    spectra, costs = {"a": [1.0, 0.5]}, {"a": 10}
    with pytest.raises(ValueError, match="below rank"):
        allocate_ranks(spectra, costs, budget=5)
    with pytest.raises(ValueError, match="same layers"):
        allocate_ranks(spectra, {"b": 10}, budget=100)
    ranks = allocate_ranks(spectra, costs, budget=100)
    assert ranks == {"a": 2}  # capped by the probe's rank (the spectrum's length)
    row = search_report(spectra, ranks, costs)[0]
    assert row["energy_kept"] == 1.0 and row["parameters"] == 20


def test_search_on_a_real_probe(tmp_path):
    """End to end on the tiny generator: probe run, spectra, ranks within the budget."""
    from pocketgan.models import build_generator
    from pocketgan.training.commands import ConceptRecipe, search_ranks
    from pocketgan.training.trainer import LossConfig, PairSet, TrainConfig

    base = build_generator("tiny").eval()
    rng = np.random.default_rng(0)
    photos = rng.integers(0, 256, (4, 48, 48, 3), dtype=np.uint8)
    pairs = PairSet(photos, 255 - photos)
    recipe = ConceptRecipe(rank="search", rank_budget=2, probe_rank=4, probe_steps=3)
    train = TrainConfig(steps=3, batch_size=2, crop=32, progress=False)
    result = search_ranks(base, "c", pairs, recipe, train, LossConfig(), None, tmp_path)
    assert result["parameters"] <= result["budget_parameters"]
    assert all(1 <= r <= 4 for r in result["ranks"].values())
    assert (tmp_path / "search.json").is_file()  # a resumed run reuses the probe's choice
    assert search_ranks(base, "c", pairs, recipe, train, LossConfig(), None, tmp_path) == result


@pytest.mark.parametrize(
    "bad",
    [
        dict(rank=0),
        dict(rank="big"),
        dict(rank="search", rank_budget=4, probe_rank=4),
        dict(pairs=0),
        dict(select="best"),
    ],
)
def test_concept_recipe_validation(bad):
    from pocketgan.training.commands import ConceptRecipe

    with pytest.raises(ValueError):
        ConceptRecipe(**bad)


def test_cluster_selection_covers_every_group():
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], dtype=float)
    groups = np.repeat(np.arange(4), [20, 5, 3, 12])
    features = centres[groups] + rng.normal(0, 0.3, (len(groups), 2))
    chosen = select_indices(4, len(groups), "cluster", features)
    assert sorted(groups[chosen]) == [0, 1, 2, 3]  # one per group, even the small ones
    assert len(set(chosen)) == 4


def test_random_selection_is_seeded_and_errors_are_clear():
    a = select_indices(5, 20, "random", seed=1)
    assert np.array_equal(a, select_indices(5, 20, "random", seed=1)) and len(set(a)) == 5
    assert np.array_equal(select_indices(20, 20, "random"), np.arange(20))
    with pytest.raises(ValueError, match="cannot select"):
        select_indices(21, 20)
    with pytest.raises(ValueError, match="feature row"):
        select_indices(3, 20, "cluster", np.zeros((5, 2)))
    with pytest.raises(ValueError, match="unknown selection"):
        select_indices(3, 20, "best", np.zeros((20, 2)))


def test_base_features_separate_different_photos():
    from pocketgan.models import build_generator
    from pocketgan.training.data_selection import base_features

    torch.manual_seed(0)
    base = build_generator("tiny").eval()
    dark = np.full((3, 64, 64, 3), 20, np.uint8)
    bright = np.full((3, 64, 64, 3), 230, np.uint8)
    f = base_features(base, np.concatenate([dark, bright]), side=64)
    assert f.shape == (6, 2 * base.ds.conv.out_channels)
    assert np.allclose(f[0], f[1]) and not np.allclose(f[0], f[3])
