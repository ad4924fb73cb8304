"""The diffusion editor teacher at toy scale: train-teacher -> distill-data -> train-concept.

Everything is real: a diffusers StableDiffusionInstructPix2PixPipeline (a tiny UNet, CLIP text
encoder and byte-level tokenizer) trained for a few steps on real photos, saved with
save_pretrained, loaded back by DiffusersTeacher as a hub checkpoint would be, sampled with
DDIM, distilled into pairs and into a LoRA concept.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")

from pocketgan.diffusion_editor.pipeline import EditorArchitecture  # noqa: E402
from pocketgan.diffusion_editor.pixel_space import PixelSpaceAutoencoder  # noqa: E402
from pocketgan.diffusion_editor.tasks import apply_transform, degrade, grayscale, transform_seed  # noqa: E402
from pocketgan.diffusion_editor.train import TeacherTrainingConfig, train_teacher  # noqa: E402

TINY = EditorArchitecture(
    patch_size=2, channels=(16, 32), layers_per_block=1, attention_blocks=1, head_dim=16, text_width=16, text_layers=1
)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory) -> Path:
    """Three real photos (scikit-image), shrunk to 96 px."""
    import skimage.data
    from PIL import Image

    folder = tmp_path_factory.mktemp("photos")
    for name in ("coffee", "chelsea", "rocket"):
        im = Image.fromarray(getattr(skimage.data, name)())
        im.thumbnail((96, 96))
        im.save(folder / f"{name}.png")
    return folder


def _config(out: Path, photos: Path, steps: int, **kw) -> TeacherTrainingConfig:
    return TeacherTrainingConfig(
        out=out,
        steps=steps,
        batch_size=2,
        crop=32,
        view=48,
        checkpoint_every=2,
        photos=photos,
        progress=False,
        arch=TINY,
        warmup=1,
        **kw,
    )


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory, photo_dir) -> Path:
    out = tmp_path_factory.mktemp("teacher") / "run"
    train_teacher(_config(out, photo_dir, steps=4))
    return out


# -- pieces ------------------------------------------------------------------------------


@pytest.mark.parametrize("patch", [1, 2, 4])
def test_pixel_space_autoencoder_is_lossless(patch):
    vae = PixelSpaceAutoencoder.for_patch(patch)
    x = torch.rand(2, 3, 16, 24) * 2 - 1
    z = vae.encode(x).latents
    assert z.shape == (2, 3 * patch * patch, 16 // patch, 24 // patch)
    assert torch.equal(vae.decode(z).sample, x)
    assert 2 ** (len(vae.config.block_out_channels) - 1) == patch  # what pipelines read as vae_scale_factor


@pytest.mark.parametrize(
    "kwargs",
    [
        {"patch_size": 3},
        {"channels": (16,)},
        {"channels": (16, 30)},
        {"attention_blocks": 3, "channels": (16, 32)},
        {"head_dim": 40},
        {"prediction_type": "flow"},
        {"prediction_type": "v_prediction"},  # residual needs sample
        {"text_width": 12},
    ],
)
def test_architecture_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError):
        EditorArchitecture(**kwargs)


@pytest.mark.parametrize(
    "kwargs", [{"steps": 0}, {"crop": 30}, {"view": 16}, {"ema_decay": 1.0}, {"drop": 0.5}, {"lr": 0.0}]
)
def test_training_config_rejects_bad_settings(tmp_path, kwargs):
    base = {"out": tmp_path, "arch": TINY, "crop": 32, "view": 48}
    with pytest.raises(ValueError):
        TeacherTrainingConfig(**{**base, **kwargs})


def test_tasks_make_gray_and_seeded_degraded_inputs():
    import skimage.data

    photo = skimage.data.astronaut()[:128, :128]
    gray = grayscale(photo)
    assert gray.shape == photo.shape and gray.dtype == np.uint8
    assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 1], gray[..., 2])
    a = apply_transform("degrade", photo, transform_seed("k", 0))
    b = apply_transform("degrade", photo, transform_seed("k", 0))
    c = apply_transform("degrade", photo, transform_seed("k", 1))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert 18 < _psnr(a, photo) < 40  # visibly degraded, still the same photo
    assert degrade(photo, np.random.default_rng(3)).shape == photo.shape
    with pytest.raises(ValueError):
        apply_transform("sepia", photo, 0)


# -- train-teacher -------------------------------------------------------------------------


def test_train_teacher_saves_a_pipeline_diffusers_teacher_loads(teacher_run):
    from pocketgan.training.diffusers_teacher import DiffusersTeacher

    pipeline = teacher_run / "pipeline"
    index = json.loads((pipeline / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionInstructPix2PixPipeline"
    assert index["vae"] == ["pocketgan.diffusion_editor.pixel_space", "PixelSpaceAutoencoder"]
    assert not list(pipeline.rglob("*.bin")) and list(pipeline.rglob("*.safetensors"))
    teacher = DiffusersTeacher(kind="instruct-pix2pix", model=str(pipeline), prompt="colorize the photo", steps=3)
    photo = grayscale(np.asarray(np.random.default_rng(0).integers(0, 256, (32, 48, 3)), dtype=np.uint8))
    first, again, other = teacher.edit([photo, photo, photo], [5, 5, 6])
    assert first.shape == photo.shape and first.dtype == np.uint8
    assert np.array_equal(first, again) and not np.array_equal(first, other)


def test_train_teacher_resumes_exactly(tmp_path, photo_dir, teacher_run):
    """2 steps, stop, resume to 4 == 4 steps in one go (the draws come from (seed, step))."""
    from safetensors.torch import load_file

    out = tmp_path / "resumed"
    train_teacher(_config(out, photo_dir, steps=2))
    summary = train_teacher(_config(out, photo_dir, steps=4))
    assert summary["steps"] == 4
    whole = load_file(str(teacher_run / "checkpoint" / "state.safetensors"))
    resumed = load_file(str(out / "checkpoint" / "state.safetensors"))
    assert whole.keys() == resumed.keys()
    for key in whole:
        if key.startswith(("unet/", "ema/")):
            assert torch.allclose(whole[key], resumed[key], atol=1e-6), key


def test_train_teacher_refuses_to_resume_other_settings(tmp_path, photo_dir):
    out = tmp_path / "run"
    train_teacher(_config(out, photo_dir, steps=1))
    with pytest.raises(ValueError, match="other settings"):
        train_teacher(_config(out, photo_dir, steps=2, lr=1e-3))


# -- distill-data and train-concept ----------------------------------------------------------


@pytest.fixture(scope="module")
def colorize_data(tmp_path_factory, teacher_run, photo_dir) -> Path:
    from pocketgan.training.distill_data import DistillDataConfig, generate_pairs

    out = tmp_path_factory.mktemp("data") / "colorize"
    config = DistillDataConfig(
        photos=photo_dir,
        out=out,
        teacher=f"instruct-pix2pix:{teacher_run / 'pipeline'}",
        prompt="colorize the photo",
        size=32,
        crops_per_photo=2,
        input_transform="grayscale",
        progress=False,
        teacher_options={"steps": 2, "guidance_scale": 1.0, "image_guidance_scale": 1.0},
    )
    generate_pairs(config, rank=0, world_size=1)
    return out


def test_distill_data_transforms_inputs_and_records_steps(colorize_data):
    from PIL import Image

    from pocketgan.training.distill_data import load_pairs, read_dataset_config, read_index

    record = read_dataset_config(colorize_data)
    assert record["input_transform"] == "grayscale" and record["teacher_settings"]["steps"] == 2
    entries = read_index(colorize_data)
    assert len(entries) == 6
    pairs = load_pairs(colorize_data)
    assert np.array_equal(pairs.inputs[..., 0], pairs.inputs[..., 2])  # the teacher saw gray inputs
    original = np.asarray(Image.open(colorize_data / entries[0]["original"]).convert("RGB"))
    assert np.array_equal(grayscale(original), pairs.inputs[0])


def test_train_concept_distils_the_teacher(tmp_path, source_bundle, colorize_data):
    from pocketgan.bundle import load_bundle
    from pocketgan.training.commands import ConceptRecipe, run_train_concept
    from pocketgan.training.trainer import LossConfig, TrainConfig

    out = tmp_path / "with-colorize"
    train = TrainConfig(steps=2, batch_size=2, crop=32, progress=False)
    record = run_train_concept(
        source_bundle, colorize_data, "colorize", out, ConceptRecipe(rank=2), train, LossConfig()
    )
    bundle = load_bundle(out)
    assert "colorize" in bundle.concept_names
    assert record["steps"] == 2
    assert bundle.concept("colorize").teacher.startswith("diffusers:instruct-pix2pix:")


def test_report_helpers_score_colour_and_draw_grids():
    import skimage.data

    from pocketgan.diffusion_editor.report import colourfulness, grid, nlm

    photo = skimage.data.astronaut()[:64, :64]
    assert colourfulness(grayscale(photo)) == pytest.approx(0.0, abs=1e-9)
    assert colourfulness(photo) > 20
    noisy = apply_transform("degrade", photo, 7)
    assert _psnr(nlm(noisy, 6), photo) > _psnr(noisy, photo) - 3  # a denoiser, not a wrecker
    sheet = grid({"input": [photo] * 2, "output": [photo] * 2}, rows=2, tile=32)
    assert sheet.size == (64, 18 + 64)
