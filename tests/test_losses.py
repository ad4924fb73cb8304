"""Perceptual (E-LPIPS-style) and GAN losses: augmentation, features, discriminator, R1."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from pocketgan.training.discriminator import (
    ConditionalDiscriminator,
    discriminator_loss,
    generator_adversarial_loss,
    lazy_r1_due,
    r1_penalty,
    random_derangement,
)
from pocketgan.training.losses import DifferentiableAugment, EnsembledPerceptualLoss, PerceptualFeatures


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def rand_images(n: int = 2, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=gen(seed)) * 2 - 1


@pytest.fixture(scope="module")
def astronaut() -> torch.Tensor:
    from skimage import data

    photo = torch.from_numpy(data.astronaut()).permute(2, 0, 1)[None].float() / 127.5 - 1
    return F.interpolate(photo, size=(64, 64), mode="bilinear", antialias=True, align_corners=False)


@pytest.fixture(scope="module")
def features() -> PerceptualFeatures:
    return PerceptualFeatures.random(seed=0)


# ---------------------------------------------------------------- augmentation

AUGMENTS = {
    "default": DifferentiableAugment(),
    "always-down": DifferentiableAugment(downscale_p=1.0),
    "geometry-only": DifferentiableAugment(color_scale=(1.0, 1.0), color_shift=0.0, downscale_p=0.0),
}


@pytest.mark.parametrize("name", AUGMENTS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_augment_same_params_on_all_tensors(name, seed):
    aug = AUGMENTS[name]
    x, y = rand_images(4, seed=10), rand_images(4, seed=11)
    a, b = aug(x, x, generator=gen(seed))
    assert torch.equal(a, b)
    # The transformation is affine with per-sample parameters shared by all tensors:
    # T(x) - T(y) == T(x - y) - T(0) when both calls draw the same parameters.
    tx, ty = aug(x, y, generator=gen(seed))
    td, t0 = aug(x - y, torch.zeros_like(x), generator=gen(seed))
    torch.testing.assert_close(tx - ty, td - t0, atol=1e-5, rtol=1e-5)
    # A constant offset stays a spatially constant offset (scaled per channel by [0.8, 1.2]).
    c = torch.tensor([0.3, -0.2, 0.1]).view(1, 3, 1, 1)
    p, q = aug(x, x + c, generator=gen(seed))
    diff = q - p
    torch.testing.assert_close(diff, diff[..., :1, :1].expand_as(diff), atol=1e-5, rtol=0)
    ratio = diff[..., 0, 0] / c.view(1, 3)
    assert bool(((ratio > 0.8 - 1e-5) & (ratio < 1.2 + 1e-5)).all())
    # Three tensors at once get the same transformation too.
    u, v, w = aug(x, x, x, generator=gen(seed))
    assert torch.equal(u, v) and torch.equal(v, w)


def test_augment_deterministic_and_seed_dependent():
    aug, x = DifferentiableAugment(downscale_p=0.0), rand_images(4)
    first = aug(x, generator=gen(3))[0]
    assert torch.equal(first, aug(x, generator=gen(3))[0])
    assert not torch.equal(first, aug(x, generator=gen(4))[0])
    g = gen(3)
    assert not torch.equal(aug(x, generator=g)[0], aug(x, generator=g)[0])  # the generator advances
    # The global RNG is neither used nor advanced.
    state = torch.get_rng_state()
    aug(x, generator=gen(5))
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize(("downscale_p", "size", "expected"), [(0.0, 32, 32), (1.0, 32, 16), (1.0, 64, 32)])
def test_augment_shapes_and_gradients(downscale_p, size, expected):
    aug = DifferentiableAugment(downscale_p=downscale_p)
    x = rand_images(3, size).requires_grad_(True)
    y = rand_images(3, size, seed=1).requires_grad_(True)
    a, b = aug(x, y, generator=gen(0))
    assert a.shape == b.shape == (3, 3, expected, expected)
    (a.square().sum() + 2 * b.sum()).backward()
    assert x.grad is not None and y.grad is not None
    assert x.grad.abs().sum() > 0 and y.grad.abs().sum() > 0


def test_augment_argument_errors():
    aug, x = DifferentiableAugment(), rand_images(2)
    with pytest.raises(ValueError, match="one shape"):
        aug(x, rand_images(2, 16), generator=gen(0))
    with pytest.raises(TypeError, match="Generator"):
        aug(x, generator=None)


# ---------------------------------------------------------------- perceptual loss


@pytest.mark.parametrize("ensemble", [False, True])
def test_perceptual_zero_for_identical_and_monotonic_in_noise(astronaut, features, ensemble):
    loss = EnsembledPerceptualLoss(features, ensemble=ensemble)
    assert float(loss(astronaut, astronaut.clone(), gen(0))) == pytest.approx(0.0, abs=1e-6)
    noise = torch.randn(astronaut.shape, generator=gen(1))
    values = [float(loss((astronaut + s * noise).clamp(-1, 1), astronaut, gen(0))) for s in (0.02, 0.05, 0.1, 0.2, 0.4)]
    assert values[0] > 0
    assert values == sorted(values) and len(set(values)) == len(values), values


def test_perceptual_gradients_to_pred_only_and_frozen(astronaut, features):
    loss = EnsembledPerceptualLoss(features)
    pred = (astronaut + 0.1 * torch.randn(astronaut.shape, generator=gen(2))).requires_grad_(True)
    target = astronaut.clone().requires_grad_(True)
    value = loss(pred, target, gen(0))
    assert value.ndim == 0
    value.backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0 and torch.isfinite(pred.grad).all()
    assert target.grad is None
    assert all(not p.requires_grad and p.grad is None for p in features.parameters())
    assert not loss.features.training
    loss.train()
    assert not loss.features.training


def test_perceptual_ensemble_needs_generator(features):
    x = rand_images(1)
    with pytest.raises(ValueError, match="Generator"):
        EnsembledPerceptualLoss(features, ensemble=True)(x, x)
    assert float(EnsembledPerceptualLoss(features, ensemble=False)(x, x)) == 0.0  # no generator needed


def test_perceptual_lpips_weights(features, astronaut):
    pred = (astronaut + 0.1 * torch.randn(astronaut.shape, generator=gen(3))).clamp(-1, 1)
    uniform = EnsembledPerceptualLoss(features, ensemble=False)
    # LPIPS's own key names and (1, C, 1, 1) shapes are accepted; 2x weights -> 2x loss.
    doubled = {f"lin{s}.model.1.weight": torch.full((1, c, 1, 1), 2.0 / c) for s, c in enumerate(features.channels)}
    weighted = EnsembledPerceptualLoss(features, ensemble=False, lpips_weights=doubled)
    assert float(weighted(pred, astronaut)) == pytest.approx(2 * float(uniform(pred, astronaut)), rel=1e-5)
    bad = {f"lin{s}": -torch.ones(c) for s, c in enumerate(features.channels)}
    with pytest.raises(ValueError, match="non-negative"):
        EnsembledPerceptualLoss(features, lpips_weights=bad)
    with pytest.raises(ValueError, match="stages"):
        EnsembledPerceptualLoss(features, lpips_weights={"lin0": torch.ones(features.channels[0])})


def test_features_shapes_seeded_and_frozen():
    a, b = PerceptualFeatures.random(seed=0), PerceptualFeatures.random(seed=0)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    c = PerceptualFeatures.random(seed=1)
    assert not torch.equal(a.state_dict()["stages.0.0.weight"], c.state_dict()["stages.0.0.weight"])
    feats = a(rand_images(2, 32))
    assert [tuple(f.shape) for f in feats] == [
        (2, 32, 32, 32),
        (2, 64, 16, 16),
        (2, 96, 8, 8),
        (2, 128, 4, 4),
        (2, 160, 2, 2),
    ]
    assert all(not p.requires_grad for p in a.parameters()) and not a.training


def test_features_safetensors_round_trip_and_errors(tmp_path, features):
    from safetensors.torch import save_file

    path = tmp_path / "features.safetensors"
    save_file(features.state_dict(), str(path))
    loaded = PerceptualFeatures.from_safetensors(path)
    x = rand_images(2, 32)
    for f, g in zip(features(x), loaded(x)):
        assert torch.equal(f, g)
    assert all(not p.requires_grad for p in loaded.parameters()) and not loaded.training

    tensors = dict(features.state_dict())
    tensors["stages.9.0.weight"] = tensors.pop("stages.0.0.weight")
    save_file(tensors, str(tmp_path / "renamed.safetensors"))
    with pytest.raises(
        ValueError, match=r"missing keys \['stages.0.0.weight'\].*unexpected keys \['stages.9.0.weight'\]"
    ):
        PerceptualFeatures.from_safetensors(tmp_path / "renamed.safetensors")
    with pytest.raises(ValueError, match="shape mismatches"):
        PerceptualFeatures.from_safetensors(path, channels=(32, 64, 96, 128, 256))
    with pytest.raises(FileNotFoundError):
        PerceptualFeatures.from_safetensors(tmp_path / "absent.safetensors")


# ---------------------------------------------------------------- discriminator


@pytest.mark.parametrize(("scales", "size"), [(1, 16), (2, 32), (3, 32), (3, 64)])
def test_discriminator_shapes(scales, size):
    disc = ConditionalDiscriminator(channels=8, scales=scales)
    out = disc(rand_images(2, size), rand_images(2, size, seed=1))
    assert len(out) == scales
    assert [tuple(o.shape) for o in out] == [(2, 1, size >> (scales - k), size >> (scales - k)) for k in range(scales)]
    with pytest.raises(ValueError, match="multiples"):
        disc(rand_images(2, size + 1), rand_images(2, size + 1))


def test_discriminator_seeded_without_global_rng():
    state = torch.get_rng_state()
    a, b = ConditionalDiscriminator(8, 2, seed=0), ConditionalDiscriminator(8, 2, seed=0)
    assert torch.equal(state, torch.get_rng_state())
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    c = ConditionalDiscriminator(8, 2, seed=1)
    assert not torch.equal(a.stem.weight, c.stem.weight)


def test_discriminator_condition_zero_init_then_learned():
    disc = ConditionalDiscriminator(channels=8, scales=2)
    image, cond_a, cond_b = rand_images(2, 16), rand_images(2, 16, seed=1), rand_images(2, 16, seed=2)
    for a, b in zip(disc(cond_a, image), disc(cond_b, image)):
        assert torch.equal(a, b)
    opt = torch.optim.Adam(disc.parameters(), lr=1e-3)
    loss, _ = discriminator_loss(disc, cond_a, image, rand_images(2, 16, seed=3), True, gen(0))
    loss.backward()
    opt.step()
    assert any(not torch.allclose(a, b) for a, b in zip(disc(cond_a, image), disc(cond_b, image)))


class RecordingDisc(torch.nn.Module):
    """Logits = 0; records every (condition tag, image tag) row it sees."""

    def __init__(self):
        super().__init__()
        self.rows: list[tuple[int, int]] = []

    def forward(self, condition, image):
        self.rows += [(int(c), int(i)) for c, i in zip(condition[:, 0, 0, 0], image[:, 0, 0, 0])]
        return [image[:, :1] * 0.0, image[:, :1, ::2, ::2] * 0.0]


@pytest.mark.parametrize("n", [1, 2, 3, 4])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_mix_and_match_pairs_every_real_with_another_condition(n, seed):
    tags = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, 8, 8)
    condition, real, fake = tags.clone(), tags + 100, tags + 200  # image tag: 100 + i real, 200 + i fake
    disc = RecordingDisc()
    loss, stats = discriminator_loss(disc, condition, real, fake, True, gen(seed))
    assert set(stats) == {"d_real", "d_fake", "d_mix"} and torch.isfinite(loss)
    real_rows = [(c, i - 100) for c, i in disc.rows if 100 <= i < 200]
    assert sorted(r for r in real_rows if r[0] == r[1]) == [(i, i) for i in range(n)]  # the true pairs
    wrong = [r for r in real_rows if r[0] != r[1]]
    if n == 1:
        assert wrong == [] and stats["d_mix"] != stats["d_mix"]  # skipped: NaN, no error
    else:
        assert sorted(i for _, i in wrong) == list(range(n))  # every real image once with a wrong condition
        assert sorted(c for c, _ in wrong) == list(range(n))  # a permutation of the conditions
    assert sorted((c, i - 200) for c, i in disc.rows if i >= 200) == [(i, i) for i in range(n)]
    disc.rows.clear()
    discriminator_loss(disc, condition, real, fake, False, gen(seed))
    assert all(c == i % 100 for c, i in disc.rows)


@pytest.mark.parametrize("n", [2, 3, 4, 7])
def test_random_derangement(n):
    g = gen(0)
    seen = set()
    for _ in range(20):
        perm = random_derangement(n, g)
        assert sorted(perm.tolist()) == list(range(n)) and bool((perm != torch.arange(n)).all())
        seen.add(tuple(perm.tolist()))
    assert len(seen) > 1 or n == 2
    assert torch.equal(random_derangement(n, gen(5)), random_derangement(n, gen(5)))
    with pytest.raises(ValueError):
        random_derangement(1, g)


def test_r1_penalty_single_sample_and_differentiable():
    disc = ConditionalDiscriminator(channels=8, scales=2)
    condition, real = rand_images(3, 16), rand_images(3, 16, seed=1)
    penalty = r1_penalty(disc, condition, real)
    assert penalty.ndim == 0 and float(penalty.detach()) > 0
    penalty.backward()
    grads = [p.grad for p in disc.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)
    changed_real, changed_cond = real.clone(), condition.clone()
    changed_real[1:] = rand_images(2, 16, seed=7)
    changed_cond[1:] = rand_images(2, 16, seed=8)
    torch.testing.assert_close(r1_penalty(disc, changed_cond, changed_real), penalty.detach(), rtol=1e-6, atol=0)
    changed_real[0] = rand_images(1, 16, seed=9)[0]
    assert not torch.allclose(r1_penalty(disc, changed_cond, changed_real), penalty.detach())


@pytest.mark.parametrize(
    ("step", "interval", "due"),
    [(0, 16, True), (1, 16, False), (15, 16, False), (16, 16, True), (32, 16, True), (3, 1, True), (4, 4, True)],
)
def test_lazy_r1_due(step, interval, due):
    assert lazy_r1_due(step, interval) is due


def test_discriminator_learns_real_vs_fake():
    disc = ConditionalDiscriminator(channels=8, scales=2)
    opt = torch.optim.Adam(disc.parameters(), lr=2e-3, betas=(0.5, 0.99))
    condition = rand_images(4, 16)
    real = F.avg_pool2d(condition, 3, stride=1, padding=1)  # smooth "edits" of the photo
    fake = rand_images(4, 16, seed=5)  # noise
    g, losses = gen(0), []
    for _ in range(8):
        loss, stats = discriminator_loss(disc, condition, real, fake, True, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0] - 0.1, losses
    assert stats["d_real"] > stats["d_fake"]
    # The generator loss is differentiable w.r.t. the fake.
    fake = fake.clone().requires_grad_(True)
    g_loss = generator_adversarial_loss(disc, condition, fake)
    g_loss.backward()
    assert g_loss.ndim == 0 and fake.grad is not None and fake.grad.abs().sum() > 0
