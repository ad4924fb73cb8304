"""The generator: sizes, forward contract, config validation, LoRA targets, costs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pocketgan.models import (
    DEFAULT_SIZE,
    GENERATOR_SIZES,
    Generator,
    GeneratorConfig,
    build_generator,
    generator_config,
)
from pocketgan.models.attention import Attention
from pocketgan.models.cost import cost_table, count_macs, format_cost_table, generator_cost, pix2pix_cost
from pocketgan.models.pix2pix_resnet import Pix2PixResnetGenerator


@pytest.fixture(scope="module")
def generators():
    torch.manual_seed(0)
    return {size: build_generator(size).eval() for size in GENERATOR_SIZES}


@pytest.fixture(scope="module")
def costs():
    return {c.name: c for c in cost_table(256)}


def test_default_size_is_registered():
    assert DEFAULT_SIZE in GENERATOR_SIZES
    assert set(GENERATOR_SIZES) >= {"tiny", "small", "base"}


@pytest.mark.parametrize("size", sorted(GENERATOR_SIZES))
def test_every_size_builds_from_name_and_config(size, generators):
    g = generators[size]
    assert isinstance(g, Generator)
    assert g.config == GENERATOR_SIZES[size] == generator_config(size)
    assert isinstance(build_generator(GENERATOR_SIZES[size]), Generator)


def test_unknown_size_is_a_value_error():
    with pytest.raises(ValueError, match="unknown generator size 'huge'"):
        build_generator("huge")


@pytest.mark.parametrize("size", sorted(GENERATOR_SIZES))
def test_forward_shape_and_range(size, generators):
    g = generators[size]
    cfg = g.config
    torch.manual_seed(1)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    tokens = torch.randn(cfg.token_count, cfg.token_dim) * 3
    with torch.no_grad():
        y2 = g(x, tokens)  # (T, D): shared by the batch
        y3 = g(x, tokens.expand(2, -1, -1))  # (B, T, D)
    assert y2.shape == (2, 3, 64, 64)
    assert y2.dtype == torch.float32
    assert float(y2.min()) >= -1.0 and float(y2.max()) <= 1.0
    assert torch.isfinite(y2).all()
    torch.testing.assert_close(y2, y3)


def test_batched_tokens_condition_each_sample(generators):
    g = generators["tiny"]
    cfg = g.config
    torch.manual_seed(2)
    x = torch.rand(1, 3, 64, 64).expand(2, -1, -1, -1) * 2 - 1
    tokens = torch.randn(2, cfg.token_count, cfg.token_dim) * 3
    with torch.no_grad():
        y = g(x, tokens)
        y0 = g(x[:1], tokens[0])
        y1 = g(x[:1], tokens[1])
    torch.testing.assert_close(y[:1], y0)
    torch.testing.assert_close(y[1:], y1)
    assert not torch.allclose(y0, y1), "the concept tokens must change the output"


@pytest.mark.parametrize("hw", [(64, 96), (128, 40)])
def test_non_square_multiples_of_eight(hw, generators):
    g = generators["tiny"]
    x = torch.zeros(1, 3, *hw)
    with torch.no_grad():
        assert g(x, torch.zeros(g.config.token_count, g.config.token_dim)).shape == (1, 3, *hw)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"ngf": 0}, "ngf must be positive"),
        ({"ngf": -16}, "ngf must be positive"),
        ({"token_count": 0}, "token_count must be positive"),
        ({"token_dim": -1}, "token_dim must be positive"),
        ({"heads": 0}, "heads must be positive"),
        ({"image_size": 0}, "image_size must be positive"),
        ({"image_size": 100}, "multiple of 8"),
        ({"image_size": 4}, "multiple of 8"),
        ({"ngf": 3, "heads": 8}, "divisible by heads"),
        ({"ngf": 16, "heads": 3}, "divisible by heads"),
        ({"mlp_ratio": 0.0}, "mlp_ratio must be positive"),
        ({"mlp_ratio": -1.0}, "mlp_ratio must be positive"),
    ],
)
def test_generator_config_rejects_bad_values(overrides, message):
    with pytest.raises(ValueError, match=message):
        GeneratorConfig(**overrides)


@pytest.mark.parametrize("overrides", [{}, {"ngf": 8, "heads": 1}, {"image_size": 64}, {"mlp_ratio": 0.5}])
def test_generator_config_accepts_good_values(overrides):
    cfg = GeneratorConfig(**overrides)
    assert cfg.to_dict() == {**GeneratorConfig().to_dict(), **overrides}
    assert GeneratorConfig(**cfg.to_dict()) == cfg


def test_attention_rejects_indivisible_heads():
    with pytest.raises(ValueError, match="not divisible"):
        Attention(10, 10, 3)


@pytest.mark.parametrize("size", sorted(GENERATOR_SIZES))
def test_lora_targets_are_the_crucial_layers(size, generators):
    g = generators[size]
    targets = g.lora_target_modules()
    modules = dict(g.named_modules())
    assert targets and len(set(targets)) == len(targets)
    for prefix in ("down1.", "ds.", "transformer.", "us.", "up"):
        assert any(t.startswith(prefix) for t in targets), f"no LoRA target under {prefix}"
    assert not [t for t in targets if t.startswith(("encoder_res", "decoder_res"))], "ResNet blocks stay frozen"
    assert all(isinstance(modules[t], (nn.Conv2d, nn.Linear)) for t in targets)
    # every attention projection and the MLP are adapted
    for attn in ("self_attn", "cross_attn"):
        for proj in ("to_q", "to_k", "to_v", "to_out"):
            assert f"transformer.{attn}.{proj}" in targets
    assert {"transformer.mlp.fc1", "transformer.mlp.fc2", "ds.conv", "us.conv", "down1.conv", "up2.conv"} <= set(
        targets
    )


def test_pix2pix_peer_has_about_11_4m_params(costs):
    peer = costs["pix2pix-resnet9 (ngf=64)"]
    assert peer.parameters == sum(p.numel() for p in Pix2PixResnetGenerator().parameters())
    assert peer.parameters == pytest.approx(11.4e6, rel=0.01)


@pytest.mark.parametrize("size", sorted(GENERATOR_SIZES))
def test_every_size_is_cheaper_than_pix2pix(size, costs):
    ours, peer = costs[f"pocketgan-{size}"], costs["pix2pix-resnet9 (ngf=64)"]
    assert 0 < ours.macs < peer.macs
    assert 0 < ours.parameters < peer.parameters
    assert ours.resolution == peer.resolution == 256
    assert ours.parameters == sum(p.numel() for p in build_generator(size).parameters())


def test_sizes_grow_in_cost(costs):
    rows = [costs[f"pocketgan-{s}"] for s in ("tiny", "small", "base")]
    assert [r.parameters for r in rows] == sorted(r.parameters for r in rows)
    assert [r.macs for r in rows] == sorted(r.macs for r in rows)


def test_macs_scale_with_resolution():
    small, large = generator_cost("tiny", 64), generator_cost("tiny", 128)
    # convolutions scale 4x with 2x side; attention (quadratic in positions) a bit more
    assert 3.9 < large.macs / small.macs < 6.0
    p64, p128 = pix2pix_cost(64), pix2pix_cost(128)
    assert p128.macs / p64.macs == pytest.approx(4.0, rel=0.01)


def test_count_macs_of_a_single_conv():
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert count_macs(conv, torch.zeros(1, 3, 16, 16)) == 8 * 3 * 9 * 16 * 16


def test_format_cost_table(costs):
    rows = list(costs.values())
    table = format_cost_table(rows).splitlines()
    assert len(table) == 2 + len(rows)
    assert table[-1].startswith("| pix2pix-resnet9") and table[-1].endswith("| 1.000x |")
    assert "GMACs @ 256²" in table[0]


@pytest.mark.parametrize("shape", [(2, 7, 16), (1, 1024, 128), (3, 5)])
def test_plain_op_layer_norm_matches_torch(shape):
    """Same parameters and output as nn.LayerNorm (it replaces it for XNNPACK delegation)."""
    from torch import nn

    from pocketgan.models.attention import LayerNorm

    torch.manual_seed(0)
    dim = shape[-1]
    ours, ref = LayerNorm(dim), nn.LayerNorm(dim)
    with torch.no_grad():
        ref.weight.normal_()
        ref.bias.normal_()
    ours.load_state_dict(ref.state_dict())  # state-dict compatible: same keys, no extra buffers
    x = torch.randn(shape) * 3 + 1
    torch.testing.assert_close(ours(x), ref(x), atol=2e-5, rtol=1e-4)


def test_up_conv_act_doubles_the_size():
    from pocketgan.models.blocks import UpConvAct, UpsampleToImage

    x = torch.randn(2, 8, 5, 6)
    assert UpConvAct(8, 4)(x).shape == (2, 4, 10, 12)
    assert (UpConvAct(8, 4)(x) >= 0).all() and (UpConvAct(8, 4, act=False)(x) < 0).any()
    image = torch.rand(2, 3, 10, 12)
    assert UpsampleToImage(8)(x, image).shape == (2, 3, 10, 12)
