"""Concepts: PEFT LoRA + tokens; disk format, stock-PEFT compatibility, padding, merging."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file

from helpers import random_lora
from pocketgan.concepts import (
    CONCEPT_FILES,
    Concept,
    inject_lora,
    load_lora_state_dict,
    lora_state_dict,
    merge_lora,
    pad_lora,
    ranks_of,
    validate_concept_name,
)
from pocketgan.concepts.conditioned import ConceptModel, concept_model
from pocketgan.concepts.lora import lora_config, lora_layers


@pytest.fixture(scope="module")
def x():
    torch.manual_seed(3)
    return torch.rand(2, 3, 64, 64) * 2 - 1


def _out(model, x):
    with torch.no_grad():
        return model(x)


def _concept(tiny_concepts, name):
    return next(c for c in tiny_concepts if c.name == name)


# --- disk format -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["alpha", "beta-2", "gamma_3"])
def test_save_load_round_trip_is_exact(tmp_path, tiny_concepts, name):
    c = _concept(tiny_concepts, name)
    c.save(tmp_path / name)
    assert sorted(p.name for p in (tmp_path / name).iterdir()) == sorted(CONCEPT_FILES)
    loaded = Concept.load(tmp_path / name, name, description=c.description, teacher=c.teacher)
    assert loaded.name == name and loaded.description == c.description and loaded.teacher == c.teacher
    assert set(loaded.lora) == set(c.lora)
    for k, v in c.lora.items():
        assert loaded.lora[k].dtype == v.dtype
        assert torch.equal(loaded.lora[k], v), k
    assert torch.equal(loaded.tokens, c.tokens)
    assert loaded.ranks == c.ranks
    assert loaded.num_parameters() == c.num_parameters()


def test_saved_files_use_peft_layout(tmp_path, tiny_concepts):
    c = _concept(tiny_concepts, "beta-2")
    c.save(tmp_path)
    weights = load_file(tmp_path / "adapter_model.safetensors")
    assert set(weights) == {f"base_model.model.{k}" for k in c.lora}
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA"
    assert config["rank_pattern"] == c.ranks
    assert config["alpha_pattern"] == c.ranks, "alpha == r per layer: PEFT scaling 1"
    assert sorted(config["target_modules"]) == sorted(c.ranks)
    assert load_file(tmp_path / "concept_embedding.safetensors").keys() == {"tokens"}
    # no temporary files of the atomic writes are left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(CONCEPT_FILES)


@pytest.mark.parametrize("name", ["alpha", "beta-2", "gamma_3"])
def test_stock_peft_loads_a_saved_concept(tmp_path, tiny_bundle, tiny_concepts, x, name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import peft

    c = _concept(tiny_concepts, name)
    c.save(tmp_path / name)
    peft_model = peft.PeftModel.from_pretrained(tiny_bundle.base_generator(), tmp_path / name).eval()
    layers = lora_layers(peft_model)
    assert {n.removeprefix("base_model.model."): layer.r["default"] for n, layer in layers.items()} == c.ranks
    assert all(layer.scaling["default"] == 1.0 for layer in layers.values())
    ours = concept_model(tiny_bundle.base_generator(), c, c.ranks)
    with torch.no_grad():
        want = ours(x)
        got = peft_model(x, c.tokens)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    # and the LoRA actually does something: the bare base differs
    with torch.no_grad():
        base_out = tiny_bundle.base_generator()(x, c.tokens)
    assert (base_out - want).abs().max() > 1e-3


def test_load_rejects_missing_files(tmp_path, tiny_concepts):
    c = _concept(tiny_concepts, "alpha")
    c.save(tmp_path)
    (tmp_path / "concept_embedding.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="concept_embedding.safetensors"):
        Concept.load(tmp_path, "alpha")


def test_load_rejects_non_peft_keys(tmp_path, tiny_concepts):
    c = _concept(tiny_concepts, "alpha")
    c.save(tmp_path)
    save_file({k: v.contiguous() for k, v in c.lora.items()}, tmp_path / "adapter_model.safetensors")
    with pytest.raises(ValueError, match="unexpected keys"):
        Concept.load(tmp_path, "alpha")


# --- names and construction -------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "0", "pencil_sketch", "van-gogh-2", "a" * 64])
def test_valid_concept_names(name):
    assert validate_concept_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "Pencil", "-lead", "_lead", "has space", "a" * 65, "dot.name", "slash/x", "../up", "ünï", "tab\t", None, 7],
)
def test_invalid_concept_names_are_rejected(name, tiny_concepts):
    with pytest.raises(ValueError, match="invalid concept name"):
        validate_concept_name(name)
    c = tiny_concepts[0]
    with pytest.raises(ValueError, match="invalid concept name"):
        Concept(name, c.lora, c.tokens)


@pytest.mark.parametrize("shape", [(32,), (1, 4, 32), ()])
def test_tokens_must_be_two_dimensional(shape, tiny_concepts):
    with pytest.raises(ValueError, match="tokens must be"):
        Concept("x", tiny_concepts[0].lora, torch.zeros(shape))


def _malformed(kind: str, lora: dict) -> dict:
    lora = dict(lora)
    if kind == "missing B":
        del lora["down1.conv.lora_B.weight"]
    elif kind == "missing A":
        del lora["down1.conv.lora_A.weight"]
    elif kind == "rank mismatch":
        b = lora["ds.conv.lora_B.weight"]
        lora["ds.conv.lora_B.weight"] = torch.cat([b, b], dim=1)
    elif kind == "stray key":
        lora["down1.conv.weight"] = torch.zeros(1)
    return lora


@pytest.mark.parametrize(
    "kind",
    ["missing B", "missing A", "rank mismatch", "stray key"],
)
def test_malformed_lora_layout_is_rejected(kind, tiny_concepts):
    c = tiny_concepts[0]
    with pytest.raises(ValueError):
        Concept("x", _malformed(kind, c.lora), c.tokens)


# --- LoRA helpers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "ranks, message",
    [({}, "at least one target"), ({"ds.conv": 0}, "positive integers"), ({"ds.conv": 1.5}, "positive integers")],
)
def test_lora_config_validation(ranks, message):
    with pytest.raises(ValueError, match=message):
        lora_config(ranks)


def test_inject_rejects_unknown_targets(tiny_bundle):
    with pytest.raises(ValueError, match="not in the model"):
        inject_lora(tiny_bundle.base_generator(), {"encoder.nope": 1})


def test_inject_and_state_dict_round_trip(tiny_bundle, tiny_concepts):
    c = _concept(tiny_concepts, "gamma_3")
    g = tiny_bundle.base_generator()
    inject_lora(g, c.ranks)
    assert ranks_of(lora_state_dict(g)) == c.ranks
    assert all(torch.count_nonzero(v) == 0 for k, v in lora_state_dict(g).items() if ".lora_B." in k), "B starts at 0"
    load_lora_state_dict(g, c.lora)
    got = lora_state_dict(g)
    assert set(got) == set(c.lora)
    assert all(torch.equal(got[k], c.lora[k]) for k in got)


def test_load_lora_state_dict_rejects_mismatch(tiny_bundle, tiny_concepts):
    c = _concept(tiny_concepts, "beta-2")
    g = tiny_bundle.base_generator()
    inject_lora(g, c.ranks)
    missing = {k: v for k, v in c.lora.items() if not k.startswith("ds.conv")}
    with pytest.raises(ValueError, match="missing"):
        load_lora_state_dict(g, missing)
    padded = pad_lora(c.lora, {k: r + 1 for k, r in c.ranks.items()})
    with pytest.raises(ValueError, match="shape"):
        load_lora_state_dict(g, padded)


@pytest.mark.parametrize("extra", [0, 1, 3])
def test_pad_lora_pads_with_zeros(tiny_concepts, extra):
    c = _concept(tiny_concepts, "beta-2")
    target = {k: r + extra for k, r in c.ranks.items()}
    padded = pad_lora(c.lora, target)
    assert ranks_of(padded) == target
    for layer, r in c.ranks.items():
        a, b = padded[f"{layer}.lora_A.weight"], padded[f"{layer}.lora_B.weight"]
        assert torch.equal(a[:r], c.lora[f"{layer}.lora_A.weight"])
        assert torch.equal(b[:, :r], c.lora[f"{layer}.lora_B.weight"])
        assert torch.count_nonzero(a[r:]) == 0 and torch.count_nonzero(b[:, r:]) == 0


def test_pad_to_smaller_rank_raises(tiny_concepts):
    c = _concept(tiny_concepts, "beta-2")
    layer = next(k for k, r in c.ranks.items() if r == 2)
    with pytest.raises(ValueError, match="cannot pad"):
        pad_lora(c.lora, {**c.ranks, layer: 1})
    with pytest.raises(ValueError, match="cannot pad"):
        c.padded({**c.ranks, layer: 1})


def test_pad_to_other_layers_raises(tiny_concepts):
    c = _concept(tiny_concepts, "alpha")
    ranks = dict(c.ranks)
    ranks.pop("ds.conv")
    with pytest.raises(ValueError, match="rank pattern covers"):
        pad_lora(c.lora, ranks)


@pytest.mark.parametrize("name", ["alpha", "beta-2", "gamma_3"])
@pytest.mark.parametrize("extra", [1, 4])
def test_padding_keeps_the_output(tiny_bundle, tiny_concepts, x, name, extra):
    c = _concept(tiny_concepts, name)
    own = _out(concept_model(tiny_bundle.base_generator(), c, c.ranks), x)
    wider = _out(concept_model(tiny_bundle.base_generator(), c, {k: r + extra for k, r in c.ranks.items()}), x)
    torch.testing.assert_close(wider, own, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ["alpha", "beta-2", "gamma_3"])
def test_merged_matches_separate(tiny_bundle, tiny_concepts, x, name):
    c = _concept(tiny_concepts, name)
    separate = concept_model(tiny_bundle.base_generator(), c, tiny_bundle.rank_pattern, mode="separate")
    merged = concept_model(tiny_bundle.base_generator(), c, tiny_bundle.rank_pattern, mode="merged")
    assert lora_layers(separate) and not lora_layers(merged), "merged folds and unwraps every LoRA layer"
    assert not [n for n, _ in merged.named_parameters() if "lora_" in n]
    torch.testing.assert_close(_out(merged, x), _out(separate, x), atol=1e-5, rtol=0)


def test_merge_lora_in_place(tiny_bundle, tiny_concepts, x):
    c = _concept(tiny_concepts, "alpha")
    g = tiny_bundle.base_generator()
    inject_lora(g, c.ranks)
    load_lora_state_dict(g, c.lora)
    with torch.no_grad():
        before = g(x, c.tokens)
    assert merge_lora(g) is g
    assert not lora_layers(g)
    with torch.no_grad():
        torch.testing.assert_close(g(x, c.tokens), before, atol=1e-5, rtol=0)


def test_concept_model_binds_tokens_and_copies_base(tiny_bundle, tiny_concepts, x):
    c = _concept(tiny_concepts, "alpha")
    base = tiny_bundle.base_generator()
    before = {k: v.clone() for k, v in base.state_dict().items()}
    model = concept_model(base, c, tiny_bundle.rank_pattern)
    assert isinstance(model, ConceptModel)
    assert model.concept_tokens.shape == (1, *c.tokens.shape)
    assert torch.equal(model.concept_tokens[0], c.tokens)
    assert not any(p.requires_grad for p in model.parameters())
    assert not lora_layers(base), "the base generator passed in is not modified"
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())
    # the model equals the generator called with the concept's LoRA and tokens
    g = tiny_bundle.base_generator()
    inject_lora(g, tiny_bundle.rank_pattern)
    load_lora_state_dict(g, c.padded(tiny_bundle.rank_pattern))
    with torch.no_grad():
        torch.testing.assert_close(model(x), g(x, c.tokens), atol=1e-6, rtol=0)


def test_concepts_differ(tiny_bundle, tiny_concepts, x):
    outs = [_out(concept_model(tiny_bundle.base_generator(), c, tiny_bundle.rank_pattern), x) for c in tiny_concepts]
    for i in range(len(outs)):
        for j in range(i + 1, len(outs)):
            assert (outs[i] - outs[j]).abs().mean() > 1e-3


def test_no_concept_is_the_bare_base(tiny_bundle, x):
    cfg = tiny_bundle.config
    model = concept_model(tiny_bundle.base_generator(), None, tiny_bundle.rank_pattern)
    with torch.no_grad():
        want = tiny_bundle.base_generator()(x, torch.zeros(cfg.token_count, cfg.token_dim))
    torch.testing.assert_close(_out(model, x), want, atol=1e-6, rtol=0)


def test_concept_model_rejects_unknown_mode(tiny_bundle, tiny_concepts):
    with pytest.raises(ValueError, match="mode must be"):
        concept_model(tiny_bundle.base_generator(), tiny_concepts[0], tiny_bundle.rank_pattern, mode="fused")


def test_random_lora_helper_is_nonzero(tiny_generator):
    # guards the fixtures: concepts must really differ from the base
    lora = random_lora(tiny_generator, {"ds.conv": 2}, seed=0)
    assert all(torch.count_nonzero(v) == v.numel() for v in lora.values())
