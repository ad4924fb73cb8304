"""The emoji feature networks: Fréchet distance, the trained perceptual loss, the FD embedding.

Toy scale (tiny nets, a few steps, synthetic glyphs): the real nets are trained by the
commands in the generation docs, not here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pocketgan.generation.emoji import FONT, EmojiSet
from pocketgan.generation.features import (
    PerceptualConfig,
    TrainableVGG,
    load_perceptual_loss,
    train_perceptual_features,
)
from pocketgan.generation.frechet import (
    FDConfig,
    FDFeatures,
    fd_to_held_out,
    frechet_distance,
    frechet_from_moments,
    train_fd_classifier,
)
from pocketgan.generation.glyph_training import ClassifierTraining, GlyphAugment, augment_glyphs, to_unit
from pocketgan.generation.perceptual_calibration import DISTORTIONS, distort, fit_lin, make_2afc
from pocketgan.training.losses import EnsembledPerceptualLoss

TINY_TRAINING = ClassifierTraining(steps=3, batch=8, buckets=16)
TINY_PERCEPTUAL = PerceptualConfig(channels=(4, 8), training=TINY_TRAINING, triplets=40, calib_steps=10)
TINY_FD = FDConfig(widths=(4, 8, 8), training=TINY_TRAINING)


def synthetic_emoji(n: int = 16, held: int = 4) -> EmojiSet:
    """Coloured squares and discs on white, ``held`` of them flagged held-out."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:32, :32]
    images, prompts = [], []
    colours = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 60, 220)}
    for i in range(n):
        name, colour = list(colours.items())[i % 3]
        cy, cx, r = rng.integers(10, 22, size=2).tolist() + [int(rng.integers(5, 10))]
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r if i % 2 else (abs(yy - cy) < r) & (abs(xx - cx) < r)
        image = np.full((32, 32, 3), 255, np.uint8)
        image[mask] = colour
        images.append(image)
        prompts.append(f"{name} {'disc' if i % 2 else 'square'} {i}")
    return EmojiSet(np.stack(images), prompts, prompts, np.arange(n) >= n - held)


@pytest.fixture(scope="module")
def perceptual_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("perceptual") / "net"
    train_perceptual_features(out, steps=3, seed=0, config=TINY_PERCEPTUAL, emoji=synthetic_emoji(), progress=False)
    return out


@pytest.fixture(scope="module")
def fd_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fd") / "net"
    train_fd_classifier(out, steps=3, seed=1, config=TINY_FD, emoji=synthetic_emoji(), progress=False)
    return out


# --- Fréchet distance ---------------------------------------------------------------------


def test_frechet_of_identical_sets_is_zero():
    feats = np.random.default_rng(0).normal(size=(300, 16))
    assert frechet_distance(feats, feats) == pytest.approx(0, abs=1e-8)


def test_frechet_is_symmetric_and_a_mean_shift_adds_its_closed_form():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(400, 6)), rng.normal(size=(400, 6)) * 1.3
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-9)
    # shifting b by m leaves the covariances: FD grows by |m|^2 - 2 m.(mean_a - mean_b)
    base, gap = frechet_distance(a, b), a.mean(0) - b.mean(0)
    previous = base
    for t in (1.0, 2.0, 4.0):
        m = np.full(6, t)
        shifted = frechet_distance(a, b + m)
        assert shifted == pytest.approx(base + m @ m - 2 * m @ gap, rel=1e-9)
        assert shifted > previous
        previous = shifted


def test_frechet_of_gaussians_matches_the_closed_form():
    # diagonal covariances: FD = |mu_a - mu_b|^2 + sum (sqrt(var_a) - sqrt(var_b))^2
    var_a, var_b = np.array([1.0, 4.0, 0.25]), np.array([2.0, 1.0, 0.25])
    mu_a, mu_b = np.zeros(3), np.array([1.0, -2.0, 0.5])
    exact = ((mu_a - mu_b) ** 2).sum() + ((np.sqrt(var_a) - np.sqrt(var_b)) ** 2).sum()
    assert frechet_from_moments(mu_a, np.diag(var_a), mu_b, np.diag(var_b)) == pytest.approx(exact, rel=1e-10)
    rng = np.random.default_rng(2)
    a = rng.normal(mu_a, np.sqrt(var_a), size=(200_000, 3))
    b = rng.normal(mu_b, np.sqrt(var_b), size=(200_000, 3))
    assert frechet_distance(a, b) == pytest.approx(exact, rel=0.01)


def test_frechet_agrees_with_scipy_sqrtm_and_stays_real_on_singular_covariances():
    from scipy import linalg

    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(50, 8)) @ rng.normal(size=(8, 8)), rng.normal(size=(50, 8))
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    diff = a.mean(0) - b.mean(0)
    reference = diff @ diff + np.trace(cov_a + cov_b - 2 * linalg.sqrtm(cov_a @ cov_b).real)
    assert frechet_distance(a, b) == pytest.approx(reference, rel=1e-6)
    # fewer samples than dimensions: singular covariances, still a finite real >= 0
    few = frechet_distance(rng.normal(size=(5, 32)), rng.normal(size=(5, 32)))
    assert isinstance(few, float) and np.isfinite(few) and few >= 0


def test_frechet_rejects_bad_shapes():
    with pytest.raises(ValueError):
        frechet_distance(np.zeros((10, 3)), np.zeros((10, 4)))
    with pytest.raises(ValueError):
        frechet_distance(np.zeros((1, 3)), np.zeros((10, 3)))


# --- augmentation and distortions ---------------------------------------------------------


def test_augment_is_seeded_and_keeps_shape_and_range():
    x = to_unit(synthetic_emoji().images)
    views = [augment_glyphs(x, GlyphAugment(), torch.Generator().manual_seed(5)) for _ in range(2)]
    assert torch.equal(views[0], views[1]) and views[0].shape == x.shape
    assert views[0].min() >= -1 and views[0].max() <= 1 and not torch.equal(views[0], x)
    with pytest.raises(ValueError):
        GlyphAugment(scale=(1.2, 1.0))
    with pytest.raises(ValueError):
        PerceptualConfig(pool="median")


def test_distortions_grow_with_severity_and_2afc_answers_are_consistent():
    images = synthetic_emoji().images
    rng = np.random.default_rng(0)
    for kind in DISTORTIONS:
        mild, strong = (distort(images[1], kind, s, np.random.default_rng(7)) for s in (0.0, 1.0))
        assert mild.dtype == np.uint8 and mild.shape == images[1].shape
        error = [np.abs(d.astype(float) - images[1]).mean() for d in (mild, strong)]
        assert error[1] > error[0], kind
    triplets = make_2afc(images, 20, rng)
    assert triplets["d0"].shape == (20, 32, 32, 3) and triplets["d0_closer"].dtype == bool


def test_fit_lin_is_non_negative_and_learns_the_informative_channel():
    # channel 0 orders the pairs, channel 1 is noise: the fit must put its weight on channel 0
    rng = np.random.default_rng(0)
    v0, v1 = torch.rand(400, 2, dtype=torch.float32), torch.rand(400, 2, dtype=torch.float32)
    closer = v0[:, 0] < v1[:, 0]
    v0[:, 1], v1[:, 1] = torch.from_numpy(rng.random(400) * 3).float(), torch.from_numpy(rng.random(400) * 3).float()
    (w,) = fit_lin(v0, v1, closer, (2,), steps=200, l2=0.0)
    assert (w >= 0).all() and w.sum() == pytest.approx(1.0) and w[0] > 5 * w[1]
    (pulled,) = fit_lin(v0, v1, closer, (2,), steps=200, l2=10.0)  # a strong pull stays near uniform
    assert abs(float(pulled[0] - pulled[1])) < abs(float(w[0] - w[1]))


# --- the perceptual network ---------------------------------------------------------------


def test_batchnorm_folding_is_exact():
    torch.manual_seed(0)
    model = TrainableVGG((4, 8), 2, "max", buckets=4)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):  # non-trivial statistics to fold
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    model.eval()
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    folded = model.fold()(x)[-1].mean(dim=(2, 3))
    assert torch.allclose(folded, model.embed(x), atol=1e-5)


def test_trained_features_load_into_the_ensembled_loss(perceptual_dir):
    assert sorted(p.name for p in perceptual_dir.iterdir()) == [
        "features.safetensors",
        "lin.safetensors",
        "perceptual.json",
    ]
    loss = load_perceptual_loss(perceptual_dir, ensemble=True)
    assert isinstance(loss, EnsembledPerceptualLoss) and loss.features.channels == (4, 8)
    weights = loss.lin_weights()
    assert all(bool((w >= 0).all()) for w in weights)
    assert sum(float(w.sum()) for w in weights) == pytest.approx(len(weights), rel=1e-5)
    pred = (torch.rand(2, 3, 32, 32) * 2 - 1).requires_grad_(True)
    value = loss(pred, torch.rand(2, 3, 32, 32) * 2 - 1, generator=torch.Generator().manual_seed(0))
    value.backward()
    assert torch.isfinite(value) and value > 0 and pred.grad.abs().sum() > 0
    plain = load_perceptual_loss(perceptual_dir, ensemble=False)
    same = torch.rand(1, 3, 32, 32) * 2 - 1
    assert float(plain(same, same)) == pytest.approx(0, abs=1e-8)


def test_perceptual_training_is_deterministic_for_a_seed(perceptual_dir, tmp_path):
    from safetensors.torch import load_file

    emoji = synthetic_emoji()
    train_perceptual_features(tmp_path / "again", 3, 0, config=TINY_PERCEPTUAL, emoji=emoji, progress=False)
    train_perceptual_features(tmp_path / "other", 3, 7, config=TINY_PERCEPTUAL, emoji=emoji, progress=False)
    for name in ("features.safetensors", "lin.safetensors"):
        first, again = load_file(perceptual_dir / name), load_file(tmp_path / "again" / name)
        assert all(torch.equal(first[k], again[k]) for k in first), name
    other = load_file(tmp_path / "other" / "features.safetensors")
    assert not torch.equal(
        other["stages.0.0.weight"], load_file(perceptual_dir / "features.safetensors")["stages.0.0.weight"]
    )


def test_a_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="perceptual.json"):
        load_perceptual_loss(tmp_path)
    with pytest.raises(FileNotFoundError, match="fd.json"):
        FDFeatures.load(tmp_path)


# --- the Fréchet embedding ----------------------------------------------------------------


def test_fd_training_is_deterministic_for_a_seed(fd_dir, tmp_path):
    emoji = synthetic_emoji()
    train_fd_classifier(tmp_path / "again", steps=3, seed=1, config=TINY_FD, emoji=emoji, progress=False)
    assert np.array_equal(
        FDFeatures.load(fd_dir).embed(emoji.images), FDFeatures.load(tmp_path / "again").embed(emoji.images)
    )


def test_fd_features_round_trip_and_embed(fd_dir):
    assert sorted(p.name for p in fd_dir.iterdir()) == ["fd.json", "fd.safetensors"]
    emoji = synthetic_emoji()
    features = FDFeatures.load(fd_dir)
    embedded = features.embed(emoji.images)
    assert embedded.dtype == np.float64 and embedded.shape == (len(emoji), 8)
    assert np.array_equal(embedded, FDFeatures.load(fd_dir).embed(emoji.images))
    held = emoji.split(held_out=True).images
    assert fd_to_held_out(held, features, emoji) == pytest.approx(0, abs=1e-8)
    assert fd_to_held_out(emoji.split(held_out=False).images, features, emoji) > 0


@pytest.mark.skipif(not FONT.is_file(), reason=f"{FONT} is missing (Debian's fonts-noto-color-emoji)")
def test_real_glyphs_distort_measure_and_embed(perceptual_dir, fd_dir):
    from PIL import ImageFont

    from pocketgan.generation.emoji import FONT_SIZE, render

    face = ImageFont.truetype(str(FONT), FONT_SIZE)
    glyphs = np.stack([render(chr(cp), 32, face) for cp in (0x1F600, 0x1F34E, 0x1F436, 0x1F680)])
    loss = load_perceptual_loss(perceptual_dir, ensemble=False)
    distances = []
    for severity in (0.0, 1.0):
        blurred = np.stack([distort(g, "blur", severity, np.random.default_rng(0)) for g in glyphs])
        distances.append(float(loss(to_unit(blurred), to_unit(glyphs))))
    assert 0 < distances[0] < distances[1]
    features = FDFeatures.load(fd_dir)
    assert features.embed(glyphs).shape == (4, 8)
