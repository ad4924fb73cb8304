"""The slice's trainers on the tiny generator: a few real optimizer steps each."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pocketgan.models.registry import generator_config
from pocketgan.training.trainer import PairSet, TrainConfig, train_base, train_concept


@pytest.fixture(scope="module")
def pairs():
    rng = np.random.default_rng(0)
    photos = rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    return {"invert": PairSet(photos, 255 - photos), "same": PairSet(photos, photos.copy())}


def test_train_base_and_concept(pairs):
    config = generator_config("tiny")
    train = TrainConfig(steps=4, batch_size=2, crop=32, progress=False)
    base, tokens, record = train_base(config, pairs, train)
    assert set(tokens) == {"invert", "same"} and tokens["invert"].shape == (config.token_count, config.token_dim)
    assert record["steps"] == 4 and np.isfinite(record["final_l1"])
    assert not base.training
    ranks = {"ds.conv": 2, "up2.conv": 1, "transformer.self_attn.to_q": 1}
    before = {k: v.clone() for k, v in base.state_dict().items()}
    concept = train_concept(base, "inverted", pairs["invert"], ranks, train, init_tokens=tokens["invert"])
    assert concept.ranks == ranks
    lora_b = [v for k, v in concept.lora.items() if "lora_B" in k]
    assert any(v.abs().sum() > 0 for v in lora_b), "B starts at zero; training must move it"
    assert 0 < concept.training["trainable_parameters"] < 0.05 * concept.training["base_parameters"]
    # the base itself was not touched by concept training (it trains a copy)
    after = base.state_dict()
    assert set(after) == set(before) and all(torch.equal(before[k], after[k]) for k in before)


def test_training_sees_the_unclamped_edit():
    """The clamp to [-1, 1] has zero gradient outside the range; training uses clamp=False."""
    from pocketgan.models import build_generator

    g = build_generator("tiny")
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    tokens = torch.zeros(4, 32)
    with torch.no_grad():
        g.up2.conv.bias.fill_(5.0)  # push every pixel far above the range
    raw, clamped = g(x, tokens, clamp=False), g(x, tokens)
    assert raw.max() > 1.5 and clamped.max() <= 1.0
    raw.sum().backward()
    assert g.up2.conv.bias.grad.abs().sum() > 0
