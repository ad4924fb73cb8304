"""Liveness checks catch a dead stage and a generator that ignores its concept tokens."""

from __future__ import annotations

import pytest
import torch

from pocketgan.models import build_generator
from pocketgan.models.diagnostics import STAGES, check_alive, stage_activity, token_influence


@pytest.fixture()
def generator():
    torch.manual_seed(0)
    return build_generator("tiny").eval()


def _inputs(g):
    torch.manual_seed(1)
    image = torch.rand(2, 3, 64, 64) * 2 - 1
    tokens = {name: torch.randn(g.config.token_count, g.config.token_dim) for name in ("a", "b")}
    return image, tokens


def test_a_random_generator_is_alive(generator):
    image, tokens = _inputs(generator)
    report = check_alive(generator, image, tokens)
    assert set(report["stage_activity"]) == set(STAGES)
    assert report["min_token_influence"] > 1e-3


def test_a_dead_stage_is_reported(generator):
    image, tokens = _inputs(generator)
    with torch.no_grad():
        generator.up1.conv.bias.fill_(-1e4)  # ReLU after it now outputs exact zeros
    assert stage_activity(generator, image, tokens["a"])["up1"] == 0.0
    with pytest.raises(RuntimeError, match="died"):
        check_alive(generator, image, tokens)


def test_ignored_tokens_are_reported(generator):
    image, tokens = _inputs(generator)
    with torch.no_grad():
        generator.transformer.cross_attn.to_out.weight.zero_()
        generator.transformer.cross_attn.to_out.bias.zero_()
    assert token_influence(generator, image, tokens["a"], tokens["b"]) == 0.0
    with pytest.raises(RuntimeError, match="cross-attention"):
        check_alive(generator, image, tokens)
