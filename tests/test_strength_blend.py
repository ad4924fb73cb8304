"""Concept strength and blending (pocketgan.runtime.concept_mix), on the tiny generator.

The reference of every mix is computed here independently of the mixing code: the base
weights plus ``sum_i w_i * B_i @ A_i + (1 - sum w) * B_n @ A_n`` folded into each layer, and
the tokens ``n + sum_i w_i (t_i - n)``. The ONNX export of a bundle with a neutral concept
must run the same mixes through the runtime (fed tensors, the adapters unchanged).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

MIXES = [
    {"alpha": 0.0},
    {"alpha": 0.5},
    {"alpha": 1.0},
    {"alpha": 1.5},
    {"beta-2": 0.25},
    {"alpha": 0.6, "beta-2": 0.4},
    {"alpha": 0.3, "gamma_3": 0.3},  # the neutral takes 0.4
    {"beta-2": 1.0, "gamma_3": 0.5},  # over 1: the neutral's share is negative
]


@pytest.fixture(scope="module")
def mix_bundle(tiny_mix_bundle):
    return tiny_mix_bundle


def _delta(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if a.dim() == 4:  # conv: B (out, r, 1, 1) after A (r, in, kh, kw)
        return torch.einsum("or,rikl->oikl", b[:, :, 0, 0], a)
    return b @ a


def reference_output(bundle, weights: dict[str, float], x: torch.Tensor) -> torch.Tensor:
    """The mix by explicit weight arithmetic on a plain generator (no LoRA layers)."""
    generator = copy.deepcopy(bundle.base_generator())
    terms = [(bundle.concept(n), w) for n, w in weights.items()] + [(bundle.neutral, 1.0 - sum(weights.values()))]
    modules = dict(generator.named_modules())
    with torch.no_grad():
        for layer in bundle.rank_pattern:
            for concept, w in terms:
                a, b = concept.lora[f"{layer}.lora_A.weight"], concept.lora[f"{layer}.lora_B.weight"]
                modules[layer].weight += w * _delta(a, b)
        n = bundle.neutral.tokens
        tokens = n + sum(w * (bundle.concept(c).tokens - n) for c, w in weights.items())
        return generator(x, tokens[None])


@pytest.fixture(scope="module")
def photo_input():
    from pocketgan.photos import load_rgb, sample_photo_paths
    from pocketgan.runtime.imaging import to_model_input

    x, _ = to_model_input(load_rgb(sample_photo_paths()[0]), 256)
    return x


def test_the_mix_slot_makes_room_for_two_concepts_and_the_neutral(mix_bundle, tiny_bundle):
    assert mix_bundle.rank_pattern == tiny_bundle.rank_pattern  # the adapters keep their rank
    for layer, r in mix_bundle.mix_total_ranks.items():
        assert r == 2 * tiny_bundle.rank_pattern[layer] + mix_bundle.neutral.ranks[layer]


@pytest.mark.parametrize("weights", MIXES, ids=lambda w: ",".join(f"{k}={v}" for k, v in w.items()))
def test_a_mix_is_exactly_the_weighted_sum_of_deltas_and_tokens(mix_bundle, photo_input, weights):
    x = torch.from_numpy(photo_input)
    with torch.no_grad():
        got = mix_bundle.model_for_mix(weights)(x)
    want = reference_output(mix_bundle, weights, x)
    assert float((got - want).abs().max()) < 2e-4


@pytest.mark.parametrize("weights", MIXES[:6], ids=lambda w: ",".join(f"{k}={v}" for k, v in w.items()))
def test_the_mix_model_of_executorch_and_core_ml_computes_the_same_mix(mix_bundle, photo_input, weights):
    """Every concept baked in, the weights an input (pocketgan.concepts.mixing)."""
    from pocketgan.concepts.mixing import mix_model, mix_weights

    model = mix_model(mix_bundle)
    x = torch.from_numpy(photo_input)
    with torch.no_grad():
        got = model(x, mix_weights(model.concept_names, weights))
    assert float((got - reference_output(mix_bundle, weights, x)).abs().max()) < 2e-4


def test_strength_one_is_the_concept_and_zero_the_neutral(mix_bundle, photo_input):
    from pocketgan.concepts.conditioned import concept_model

    x = torch.from_numpy(photo_input)
    with torch.no_grad():
        one = mix_bundle.model_for_mix({"gamma_3": 1.0})(x)
        plain = mix_bundle.model_for("gamma_3")(x)
        zero = mix_bundle.model_for_mix({"gamma_3": 0.0})(x)
        neutral = concept_model(mix_bundle.base_generator(), mix_bundle.neutral, mix_bundle.neutral.ranks)(x)
    assert float((one - plain).abs().max()) < 1e-5
    assert float((zero - neutral).abs().max()) < 1e-5
    assert float((one - zero).abs().max()) > 0.05  # the two ends differ: the test can fail


def test_three_concepts_are_reduced_to_the_graph_rank_with_the_error_reported(mix_bundle):
    from pocketgan.runtime.concept_mix import TOKENS, concept_mix, mix_tensors

    def tensors(c):
        return {k: v.numpy() for k, v in c.lora.items()} | {TOKENS: c.tokens[None].numpy()}

    names = ["alpha", "beta-2", "gamma_3"]
    concepts = {n: tensors(mix_bundle.concept(n)) for n in names}
    ranks = mix_bundle.mix_total_ranks
    two, error_two = mix_tensors(
        concepts, tensors(mix_bundle.neutral), concept_mix({"alpha": 0.5, "beta-2": 0.5}), ranks
    )
    assert error_two == 0.0
    three, error = mix_tensors(concepts, tensors(mix_bundle.neutral), concept_mix(dict.fromkeys(names, 0.3)), ranks)
    assert 0.0 < error < 1.0
    for name, value in three.items():
        assert value.shape == two[name].shape


@pytest.mark.parametrize(
    "weights, message",
    [
        ({"alpha": 1.6}, "from 0 to 1.5"),
        ({"alpha": -0.1}, "from 0 to 1.5"),
        ({"alpha": 1.0, "beta-2": 0.6}, "at most 1.5"),
        ({"alpha": float("nan")}, "must be a number"),
        ({"alpha": True}, "must be a number"),
        ({"alpha": "0.5"}, "must be a number"),
        ({}, "at least one concept"),
    ],
)
def test_bad_mixes_are_refused(weights, message):
    from pocketgan.runtime.concept_mix import MixError, concept_mix

    with pytest.raises(MixError, match=message):
        concept_mix(weights, ["alpha", "beta-2"])


def test_unknown_concept_in_a_mix():
    from pocketgan.runtime import UnknownConceptError
    from pocketgan.runtime.concept_mix import concept_mix

    with pytest.raises(UnknownConceptError, match="delta"):
        concept_mix({"delta": 0.5}, ["alpha"])


def test_parse_blend():
    from pocketgan.runtime.concept_mix import MixError, parse_blend

    assert parse_blend("cartoon=0.6, stylize=0.4") == {"cartoon": 0.6, "stylize": 0.4}
    for bad in ("cartoon", "cartoon=x", "=0.5", "cartoon=0.5,"):
        with pytest.raises(MixError):
            parse_blend(bad)


# --- the runtime on an ONNX export ---------------------------------------------------------


@pytest.fixture(scope="module")
def onnx_mix(mix_export):
    return mix_export / "onnx"


def test_the_export_gates_strengths_and_a_blend(onnx_mix, separate_export):
    from pocketgan.runtime import read_manifest

    manifest = read_manifest(onnx_mix)
    # the concepts' adapters are byte for byte those of the same bundle without a neutral
    plain = read_manifest(separate_export)
    for name, rel in manifest.onnx.adapters.items():
        assert (onnx_mix / rel).read_bytes() == (separate_export / plain.onnx.adapters[name]).read_bytes()
    assert set(manifest.onnx.concept_inputs) - set(plain.onnx.concept_inputs) == {
        f"{layer}.lora_{ab}.mix.weight" for layer in manifest.rank_pattern for ab in "AB"
    }
    assert manifest.onnx.neutral == "onnx/neutral.onnx_adapter"
    scores = manifest.onnx.parity.psnr_db["mix"]
    assert set(scores) == {"alpha@0", "alpha@0.5", "alpha=0.6,beta-2=0.4"}
    assert min(scores.values()) >= 35.0


@pytest.mark.parametrize("weights", MIXES[:6], ids=lambda w: ",".join(f"{k}={v}" for k, v in w.items()))
def test_runtime_mixes_match_pytorch(onnx_mix, mix_bundle, photo_input, weights):
    from pocketgan.export.parity import psnr
    from pocketgan.runtime import Runtime

    rt = Runtime(onnx_mix)
    if len(weights) == 1:
        ((name, strength),) = weights.items()
        got = rt.run_tensor(photo_input, concept=name, strength=strength)
    else:
        got = rt.run_tensor(photo_input, blend=weights)
    want = reference_output(mix_bundle, weights, torch.from_numpy(photo_input)).numpy()
    assert psnr(want, got) > 40.0


def test_set_concept_and_set_blend_are_the_active_mix(onnx_mix, photo_input):
    from pocketgan.runtime import Runtime

    rt = Runtime(onnx_mix)
    rt.set_concept("alpha", strength=0.5)
    assert rt.mix == {"alpha": 0.5} and rt.concept == "alpha"
    np.testing.assert_array_equal(rt.run_tensor(photo_input), rt.run_tensor(photo_input, concept="alpha", strength=0.5))
    rt.set_blend({"alpha": 0.3, "beta-2": 0.7})
    assert rt.concept == "beta-2"
    np.testing.assert_array_equal(
        rt.run_tensor(photo_input), rt.run_tensor(photo_input, blend={"alpha": 0.3, "beta-2": 0.7})
    )
    rt.set_concept("gamma_3")  # strength 1: the adapter as exported
    np.testing.assert_allclose(rt.run_tensor(photo_input), rt.run_tensor(photo_input, strength=1.0))
    half = rt.run_tensor(photo_input, strength=0.5)
    assert np.abs(half - rt.run_tensor(photo_input)).max() > 0.01


def test_strength_needs_the_separate_export_and_a_neutral(onnx_mix, separate_export, photo_input):
    from pocketgan.runtime import MixError, Runtime

    merged = Runtime(onnx_mix, concept_mode="merged")
    merged.run_tensor(photo_input, strength=1.0)  # the concept as exported still runs
    with pytest.raises(MixError, match="separate"):
        merged.set_concept("alpha", strength=0.5)
    without = Runtime(separate_export)
    with pytest.raises(MixError, match="neutral"):
        without.set_blend({"alpha": 0.5, "beta-2": 0.5})
    with pytest.raises(MixError, match="either blend or concept"):
        Runtime(onnx_mix).run_tensor(photo_input, concept="alpha", blend={"alpha": 1.0})


# --- ExecuTorch: the mix method -------------------------------------------------------------


def test_executorch_mix_method_matches_onnx(mix_export, photo_input):
    from pocketgan.export.parity import psnr
    from pocketgan.runtime import MixError, Runtime, read_manifest

    bundle = mix_export / "et"
    et = read_manifest(bundle).executorch
    assert et.mix_method == "_mix" and et.mix_concepts == ("alpha", "beta-2", "gamma_3")
    assert min(et.parity.psnr_db["mix"].values()) >= 35.0
    a, b = Runtime(bundle, backend="executorch"), Runtime(bundle)
    for weights in ({"alpha": 0.5}, {"alpha": 0.6, "beta-2": 0.4}, {"gamma_3": 0.0}, {"beta-2": 1.5}):
        assert psnr(b.run_tensor(photo_input, blend=weights), a.run_tensor(photo_input, blend=weights)) > 60.0
    with pytest.raises(MixError, match="from 0 to 1.5"):
        a.set_concept("alpha", strength=2.0)


def test_golden_vectors_of_strengths_and_a_blend(mix_export):
    """Written for every export of a bundle with a neutral; the Python runtime reproduces them."""
    from PIL import Image

    from pocketgan.export.parity import psnr
    from pocketgan.runtime import Runtime, read_manifest

    bundle = mix_export / "onnx"
    m = read_manifest(bundle)
    assert [dict(w) for w, _ in m.golden_mixes] == [{"alpha": 0.0}, {"alpha": 0.5}, {"alpha": 0.6, "beta-2": 0.4}]
    rt = Runtime(bundle)
    for weights, golden in m.golden_mixes:
        photo = np.asarray(Image.open(bundle / golden.input).convert("RGB"))
        want = np.asarray(Image.open(bundle / golden.output).convert("RGB"))
        got = rt.edit(photo, blend=dict(weights), resolution="model")
        assert psnr(got / 127.5 - 1, want / 127.5 - 1) > 45.0


# --- the strength table the Kotlin and Swift tests read --------------------------------------

STRENGTH_CASES = Path(__file__).resolve().parent / "fixtures" / "strength_cases.json"
_CURVE = [0.0, 0.3, 0.42, 0.5, 0.56, 0.62, 0.68, 0.75, 0.83, 0.91, 1.0]


def strength_cases() -> dict:
    from pocketgan.runtime.concept_mix import strength_weight

    strengths = [0.0, 0.05, 0.1, 0.25, 1 / 3, 0.5, 0.75, 0.99, 1.0, 1.2, 1.5]
    return {
        "cases": [
            {"curve": curve, "strength": s, "weight": strength_weight(curve, s)}
            for curve in (_CURVE, None)
            for s in strengths
        ]
    }


def test_strength_cases_fixture_agrees_with_the_runtime():
    """Regenerate after a deliberate change: python tests/test_strength_blend.py"""
    stored = json.loads(STRENGTH_CASES.read_text())
    want = strength_cases()
    assert len(stored["cases"]) == len(want["cases"])
    for got, case in zip(stored["cases"], want["cases"]):
        assert got["curve"] == case["curve"] and got["strength"] == pytest.approx(case["strength"])
        assert got["weight"] == pytest.approx(case["weight"], abs=1e-12)


if __name__ == "__main__":
    STRENGTH_CASES.write_text(json.dumps(strength_cases(), indent=1) + "\n")
    print(f"wrote {STRENGTH_CASES}")


def test_the_strength_term_tunes_only_the_concept(mix_bundle):
    """pocketgan.training.strength_training at toy scale: the concept's LoRA and tokens move,
    its ranks stay, the neutral is untouched."""
    from pocketgan.training.pairs import PairSet
    from pocketgan.training.strength_training import StrengthTrainingConfig, tune_strength

    rng = np.random.default_rng(0)
    photos = rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    pairs = PairSet(photos, 255 - photos)
    neutral_before = {k: v.clone() for k, v in mix_bundle.neutral.lora.items()}
    tuned = tune_strength(mix_bundle, "alpha", pairs, StrengthTrainingConfig(steps=2, crop=32), progress=False)
    before = mix_bundle.concept("alpha")
    assert tuned.ranks == before.ranks and tuned.training["strength_term"]["steps"] == 2
    assert any(not torch.equal(tuned.lora[k], before.lora[k]) for k in before.lora)
    assert not torch.equal(tuned.tokens, before.tokens)
    assert all(torch.equal(mix_bundle.neutral.lora[k], v) for k, v in neutral_before.items())
