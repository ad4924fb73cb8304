"""One-step generation, training side (docs/one-step-generation.md), at toy scale.

The emoji set is replaced by a synthetic one (coloured shapes named by their colour and
shape) written where ``load_emoji`` reads its cache, so these tests run without the font;
``test_emoji_font_renders`` checks the real font when it is installed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from pocketgan.generation.emoji import EmojiSet, is_held_out, prompt_for, save_emoji  # noqa: E402
from pocketgan.generation.teacher import GenerationArchitecture  # noqa: E402

SIDE = 16
TINY = dict(image_size=SIDE, patch_size=2, channels=(16, 32), attention_blocks=1, heads=2, text_width=16, buckets=64)
COLOURS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 60, 220), "yellow": (240, 210, 40)}


def _synthetic_emoji() -> EmojiSet:
    yy, xx = np.mgrid[:SIDE, :SIDE]
    shapes = {
        "circle": (yy - 7.5) ** 2 + (xx - 7.5) ** 2 < 30,
        "square": (abs(yy - 7.5) < 5) & (abs(xx - 7.5) < 5),
        "bar": abs(yy - 7.5) < 2,
    }
    images, prompts = [], []
    for size in ("small", "big", "round", "flat"):
        for colour, rgb in COLOURS.items():
            for shape, mask in shapes.items():
                img = np.full((SIDE, SIDE, 3), 255, np.uint8)
                img[mask] = rgb
                images.append(img)
                prompts.append(f"{size} {colour} {shape}")
    held = np.array([is_held_out(p) for p in prompts])
    return EmojiSet(np.stack(images), prompts, list(prompts), held)


@pytest.fixture(scope="module")
def emoji_cache(tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("emoji")
    save_emoji(cache / f"emoji-{SIDE}.npz", _synthetic_emoji())
    return cache


def _teacher_config(out: Path, cache: Path, steps: int, **kw):
    from pocketgan.generation.teacher_training import GenerationTeacherConfig

    return GenerationTeacherConfig(
        out=out, steps=steps, batch_size=4, checkpoint_every=2, data=cache, progress=False, arch=TINY, **kw
    )


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory, emoji_cache) -> Path:
    from pocketgan.generation.teacher_training import train_generation_teacher

    out = tmp_path_factory.mktemp("gen-teacher")
    train_generation_teacher(_teacher_config(out, emoji_cache, steps=4))
    return out


def _pairs_config(out: Path, teacher: Path, cache: Path, count: int):
    from pocketgan.training.distill_data import DistillDataConfig

    return DistillDataConfig(
        out=out,
        teacher=f"generation:{teacher / 'pipeline'}",
        noise=count,
        emoji=cache,
        progress=False,
        teacher_options={"steps": 3, "batch_size": 5},
    )


@pytest.fixture(scope="module")
def pairs(tmp_path_factory, teacher_run, emoji_cache) -> Path:
    from pocketgan.training.distill_data import generate_pairs

    out = tmp_path_factory.mktemp("gen-pairs")
    generate_pairs(_pairs_config(out, teacher_run, emoji_cache, 24), rank=0, world_size=1)
    return out


# -- data and prompts ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sequence, prompt",
    [
        ("\U0001f34e", "red apple"),
        ("\U0001f44d\U0001f3fd", "thumbs up sign medium skin tone"),
        ("\U0001f1eb\U0001f1f7", "flag fr"),
        ("\U0001f469\u200d\U0001f4bb", "woman personal computer"),
        ("#\ufe0f\u20e3", "number sign keycap"),
    ],
)
def test_prompts_are_unicode_names(sequence, prompt):
    assert prompt_for(sequence) == prompt


def test_held_out_split_is_fixed_and_about_ten_percent():
    names = [f"prompt {i}" for i in range(5000)]
    share = np.mean([is_held_out(n) for n in names])
    assert 0.08 < share < 0.12
    assert [is_held_out(n) for n in names[:50]] == [is_held_out(n) for n in names[:50]]


def test_emoji_font_renders():
    from pocketgan.generation.emoji import FONT, FONT_SIZE, render

    if not FONT.is_file():
        pytest.skip(f"{FONT} missing: apt-get install fonts-noto-color-emoji")
    from PIL import ImageFont

    face = ImageFont.truetype(str(FONT), FONT_SIZE)
    apple = render("\U0001f34e", 32, face)
    assert apple.shape == (32, 32, 3) and apple.dtype == np.uint8
    red = apple[..., 0].astype(int) - apple[..., 1]
    assert (red > 100).mean() > 0.2  # a red apple on white
    assert render("ab", 32, face) is None or render("ab", 32, face).shape == (32, 32, 3)


# -- teacher ---------------------------------------------------------------------------------


def test_teacher_training_resumes_exactly(tmp_path, emoji_cache, teacher_run):
    from safetensors.torch import load_file

    from pocketgan.generation.teacher_training import train_generation_teacher

    out = tmp_path / "resumed"
    train_generation_teacher(_teacher_config(out, emoji_cache, steps=2))
    train_generation_teacher(_teacher_config(out, emoji_cache, steps=4))
    a = load_file(str(out / "checkpoint" / "state.safetensors"))
    b = load_file(str(teacher_run / "checkpoint" / "state.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_teacher_refuses_to_resume_other_settings(tmp_path, emoji_cache, teacher_run):
    from pocketgan.generation.teacher_training import train_generation_teacher

    with pytest.raises(ValueError, match="other settings.*lr"):
        train_generation_teacher(_teacher_config(teacher_run, emoji_cache, steps=4, lr=1e-3))


def test_teacher_samples_with_ddim(teacher_run):
    from pocketgan.generation.teacher import load_teacher

    teacher = load_teacher(teacher_run / "pipeline")
    noise = torch.randn(2, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(0))
    a = teacher.sample(["red circle", "blue bar"], noise, steps=3)
    assert a.shape == (2, 3, SIDE, SIDE) and a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, teacher.sample(["red circle", "blue bar"], noise, steps=3))  # eta 0: deterministic
    assert not torch.equal(a, teacher.sample(["red circle", "blue bar"], noise, steps=3, guidance=1.0))
    with pytest.raises(ValueError, match="noise must be"):
        teacher.sample(["red circle"], noise, steps=3)


def test_architecture_rejects_bad_settings():
    with pytest.raises(ValueError, match="multiple"):
        GenerationArchitecture(image_size=20, patch_size=2, channels=(16, 32, 64))
    with pytest.raises(ValueError, match="heads"):
        GenerationArchitecture(channels=(24, 40), heads=16)


# -- ODE pairs -------------------------------------------------------------------------------


def test_noise_pairs_store_the_seeded_noise_and_the_teachers_output(pairs, teacher_run):
    from pocketgan.generation.ode_pairs import load_noise_pairs
    from pocketgan.generation.teacher import load_teacher
    from pocketgan.runtime.seeded_noise import seeded_noise

    data = load_noise_pairs(pairs)
    assert data["noise"].shape == data["target"].shape == (24, 3, SIDE, SIDE)
    for row in (0, 17):
        assert np.array_equal(data["noise"][row], seeded_noise(data["seeds"][row], (1, 3, SIDE, SIDE))[0])
    teacher = load_teacher(teacher_run / "pipeline")
    again = teacher.sample([data["prompts"][17]], torch.from_numpy(data["noise"][17:18]), steps=3)
    np.testing.assert_allclose(again[0].numpy(), data["target"][17], atol=1e-5)
    assert len(set(data["prompts"])) > 10


def test_noise_pairs_resume_to_the_same_dataset(tmp_path, pairs, teacher_run, emoji_cache):
    from pocketgan.generation.ode_pairs import load_noise_pairs
    from pocketgan.training.distill_data import generate_pairs

    out = tmp_path / "resumed"
    first = generate_pairs(_pairs_config(out, teacher_run, emoji_cache, 10), rank=0, world_size=1)
    second = generate_pairs(_pairs_config(out, teacher_run, emoji_cache, 24), rank=0, world_size=1)
    assert (first["written"], second["written"], second["skipped"]) == (10, 14, 10)
    a, b = load_noise_pairs(out), load_noise_pairs(pairs)
    assert a["prompts"] == b["prompts"] and a["seeds"] == b["seeds"]
    np.testing.assert_allclose(a["target"], b["target"], atol=1e-6)


def test_noise_pairs_shard_over_ranks(tmp_path, pairs, teacher_run, emoji_cache):
    from pocketgan.generation.ode_pairs import load_noise_pairs
    from pocketgan.training.distill_data import generate_pairs

    out = tmp_path / "sharded"
    for rank in (0, 1):
        generate_pairs(_pairs_config(out, teacher_run, emoji_cache, 24), rank=rank, world_size=2)
    assert sorted(p.name for p in out.glob("index-rank*.jsonl")) == ["index-rank0.jsonl", "index-rank1.jsonl"]
    a, b = load_noise_pairs(out), load_noise_pairs(pairs)
    assert a["seeds"] == b["seeds"]
    np.testing.assert_allclose(a["target"], b["target"], atol=1e-6)


def test_noise_mode_rejects_bad_settings(tmp_path, teacher_run, emoji_cache):
    from pocketgan.training.distill_data import DistillDataConfig, generate_pairs

    with pytest.raises(ValueError, match="not both"):
        DistillDataConfig(out=tmp_path, teacher="cartoon", photos=tmp_path, noise=4)
    with pytest.raises(ValueError, match="neither"):
        DistillDataConfig(out=tmp_path, teacher="cartoon")
    config = DistillDataConfig(out=tmp_path / "x", teacher="cartoon", noise=4)
    with pytest.raises(ValueError, match="generation:PATH"):
        generate_pairs(config, rank=0, world_size=1)
    other = _pairs_config(tmp_path / "y", teacher_run, emoji_cache, 4)
    generate_pairs(other, rank=0, world_size=1)
    other.teacher_options = {"steps": 5, "batch_size": 5}
    with pytest.raises(ValueError, match="different configuration"):
        generate_pairs(other, rank=0, world_size=1)


# -- student ---------------------------------------------------------------------------------


def test_student_starts_as_the_teachers_one_step_sample(teacher_run):
    from pocketgan.generation.student import OneStepGenerator
    from pocketgan.generation.teacher import load_teacher

    teacher = load_teacher(teacher_run / "pipeline")
    student = OneStepGenerator.from_teacher(teacher).eval()
    noise = torch.randn(3, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(1))
    prompts = ["red circle", "green bar", ""]
    with torch.no_grad():
        one_step = student(noise, teacher.prompt_encoder.encode(prompts))
    ddim = teacher.sample(prompts, noise, steps=1, guidance=1.0)
    np.testing.assert_allclose(one_step.numpy(), ddim.numpy(), atol=1e-4)


def _student_config(out: Path, pairs: Path, teacher: Path, **kw):
    from pocketgan.generation.student_training import StudentTrainingConfig

    kw.setdefault("loss", {"l1": 0.0, "mse": 1.0})
    return StudentTrainingConfig(
        pairs=pairs, teacher=teacher / "pipeline", out=out, batch_size=4, checkpoint_every=5, progress=False, **kw
    )


def test_regression_moves_the_student_onto_the_teacher(tmp_path, pairs, teacher_run):
    from pocketgan.generation.student_training import train_generation_student

    summary = train_generation_student(_student_config(tmp_path / "s1", pairs, teacher_run, steps=30, lr=1e-3))
    history = json.loads((tmp_path / "s1" / "generator" / "generator.json").read_text())["history"]
    assert summary["steps"] == 30 and history[-1]["step"] == 30
    first = json.loads((tmp_path / "s1" / "checkpoint" / "state.json").read_text())["history"][0]
    assert history[-1]["mse"] < first["mse"]


@pytest.mark.parametrize(
    "loss",
    [
        {"l1": 0.0, "mse": 0.0, "perceptual": 1.0, "ensemble": True},
        {"l1": 0.0, "perceptual": 1.0, "gan": 0.1, "r1_gamma": 1.0, "r1_interval": 2, "mix_and_match": True},
    ],
    ids=["ensembled-perceptual", "gan-r1-mix"],
)
def test_student_stages_train_and_resume_exactly(tmp_path, pairs, teacher_run, loss):
    from safetensors.torch import load_file

    from pocketgan.generation.student_training import train_generation_student

    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train_generation_student(_student_config(straight, pairs, teacher_run, steps=6, loss=loss))
    train_generation_student(_student_config(resumed, pairs, teacher_run, steps=5, loss=loss))
    train_generation_student(_student_config(resumed, pairs, teacher_run, steps=6, loss=loss))
    a = load_file(str(straight / "checkpoint" / "state.safetensors"))
    b = load_file(str(resumed / "checkpoint" / "state.safetensors"))
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key
    if loss.get("gan"):
        assert any(k.startswith("disc/cond_in") for k in a)


def test_discriminator_is_the_teachers_encoder_and_ignores_noise_at_init(teacher_run):
    from pocketgan.generation.discriminator import UNetEncoderDiscriminator
    from pocketgan.generation.teacher import load_teacher
    from pocketgan.training.discriminator import discriminator_loss, r1_penalty

    teacher = load_teacher(teacher_run / "pipeline")
    disc = UNetEncoderDiscriminator(teacher.unet, teacher.arch)
    assert torch.equal(disc.down_blocks[0].resnets[0].conv1.weight, teacher.unet.down_blocks[0].resnets[0].conv1.weight)
    g = torch.Generator().manual_seed(0)
    image, noise = torch.rand(4, 3, SIDE, SIDE, generator=g) * 2 - 1, torch.randn(4, 3, SIDE, SIDE, generator=g)
    states = teacher.prompt_encoder.encode(["red circle", "blue bar", "green square", ""])
    logits = disc((noise, states), image)
    assert [tuple(t.shape[-2:]) for t in logits] == [(4, 4), (4, 4), (4, 4)]
    other = disc((torch.randn(4, 3, SIDE, SIDE, generator=g), states), image)
    assert all(torch.equal(a, b) for a, b in zip(logits, other))  # zero-initialised noise input
    loss, stats = discriminator_loss(disc, (noise, states), image, image.flip(0), True, g)
    assert torch.isfinite(loss) and not np.isnan(stats["d_mix"])
    assert r1_penalty(disc, (noise, states), image) > 0
