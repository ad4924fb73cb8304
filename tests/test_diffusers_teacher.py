"""Diffusion teachers on tiny, randomly initialised diffusers pipelines (no downloads).

The pipelines are real StableDiffusionInstructPix2PixPipeline / StableDiffusionImg2ImgPipeline
objects with a ~100k-parameter UNet, VAE and CLIP text encoder, and a byte-level CLIP
tokenizer written from a vocab.json + merges.txt, so every code path (tokenizing, VAE
encode/decode, seeded sampling, save_pretrained / from_pretrained) runs in well under a second.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from pocketgan.diffusion_editor.tokenizer import write_byte_tokenizer  # noqa: E402
from pocketgan.training.diffusers_teacher import DiffusersTeacher, TeacherLoadError  # noqa: E402
from pocketgan.training.teachers import ProceduralTeacher, Teacher, teacher_from_spec  # noqa: E402

TOKENS = 16  # tokenizer model_max_length == text encoder max_position_embeddings


def tiny_pipeline(kind: str, workdir: Path, seed: int = 0):
    """A randomly initialised, tiny diffusers pipeline of ``kind`` (CPU, float32)."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        EulerAncestralDiscreteScheduler,
        StableDiffusionImg2ImgPipeline,
        StableDiffusionInstructPix2PixPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    ip2p = kind == "instruct-pix2pix"
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=8 if ip2p else 4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(8, 16),
        norm_num_groups=4,
        attention_head_dim=4,
        cross_attention_dim=16,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(8, 16),
        norm_num_groups=4,
        layers_per_block=1,
        sample_size=32,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=1000,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=TOKENS,
            projection_dim=16,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    ).eval()
    tokenizer = CLIPTokenizer.from_pretrained(
        write_byte_tokenizer(workdir / f"tokenizer-{kind}"), model_max_length=TOKENS
    )
    scheduler = EulerAncestralDiscreteScheduler() if ip2p else DDIMScheduler()
    cls = StableDiffusionInstructPix2PixPipeline if ip2p else StableDiffusionImg2ImgPipeline
    pipe = cls(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def photos(count: int, size: int = 32, seed: int = 0) -> list[np.ndarray]:
    """Smooth-ish random RGB images: (size, size, 3) uint8."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (count, size // 4, size // 4, 3), dtype=np.uint8)
    return [np.kron(b, np.ones((4, 4, 1), dtype=np.uint8)) for b in base]


@pytest.fixture(scope="module")
def ip2p_pipe(tmp_path_factory):
    return tiny_pipeline("instruct-pix2pix", tmp_path_factory.mktemp("ip2p"))


@pytest.fixture(scope="module")
def img2img_pipe(tmp_path_factory):
    return tiny_pipeline("img2img", tmp_path_factory.mktemp("img2img"))


def test_tokenizer_handles_arbitrary_prompts(ip2p_pipe):
    ids = ip2p_pipe.tokenizer(
        "Make it a Cartoon! ünïcode 123 — ok", padding="max_length", truncation=True, max_length=TOKENS
    ).input_ids
    assert len(ids) == TOKENS and ids[0] == 0 and 1 in ids and max(ids) < 1000


@pytest.mark.parametrize("kind", ["instruct-pix2pix", "img2img"])
def test_edit_shape_dtype_and_seeded_determinism(kind, ip2p_pipe, img2img_pipe):
    pipe = ip2p_pipe if kind == "instruct-pix2pix" else img2img_pipe
    teacher = DiffusersTeacher(
        kind=kind, model="tiny/test", prompt="make it blue", steps=2, device="cpu", pipeline=pipe
    )
    assert isinstance(teacher, Teacher)
    assert teacher.source == f"diffusers:{kind}:tiny/test:make it blue"
    assert teacher.name == f"{kind}-make-it-blue" and teacher.description == "make it blue"
    assert teacher.device == "cpu" and teacher.dtype == "float32"
    images = photos(2, 32)
    first = teacher.edit(images, [1, 2])
    assert [o.shape for o in first] == [(32, 32, 3)] * 2 and all(o.dtype == np.uint8 for o in first)
    again = teacher.edit(images, [1, 2])
    assert all(np.array_equal(a, b) for a, b in zip(first, again)), "same images + seeds must give identical edits"
    other = teacher.edit(images, [3, 4])
    assert not np.array_equal(first[0], other[0]), "the seed must matter"
    # non-square sizes (multiples of 8) keep their size
    wide = teacher.edit([np.zeros((16, 40, 3), np.uint8)], [0])
    assert wide[0].shape == (16, 40, 3)


def test_batches_match_single_image_runs(ip2p_pipe, monkeypatch):
    images = photos(3, 32, seed=1)
    seeds = [10, 11, 12]
    batched = DiffusersTeacher(
        kind="instruct-pix2pix",
        model="tiny/test",
        prompt="sketch",
        steps=2,
        batch_size=2,
        device="cpu",
        pipeline=ip2p_pipe,
    )
    calls = []
    original = ip2p_pipe.__class__.__call__

    def counting(self, *args, **kwargs):
        calls.append(len(kwargs["prompt"]))
        assert len(kwargs["generator"]) == len(kwargs["prompt"]) == len(kwargs["image"])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(ip2p_pipe), "__call__", counting)
    out = batched.edit(images, seeds)
    monkeypatch.undo()
    assert calls == [2, 1] and len(out) == 3
    single = DiffusersTeacher(
        kind="instruct-pix2pix",
        model="tiny/test",
        prompt="sketch",
        steps=2,
        batch_size=1,
        device="cpu",
        pipeline=ip2p_pipe,
    )
    for img, seed, got in zip(images, seeds, out):
        want = single.edit([img], [seed])[0]
        # one generator per image: batching changes float rounding at most
        assert np.abs(want.astype(int) - got.astype(int)).max() <= 1


def test_save_pretrained_and_load_from_local_directory(ip2p_pipe, img2img_pipe, tmp_path):
    for kind, pipe in (("instruct-pix2pix", ip2p_pipe), ("img2img", img2img_pipe)):
        folder = tmp_path / kind
        pipe.save_pretrained(folder)
        images, seeds = photos(2, 32, seed=2), [5, 6]
        want = DiffusersTeacher(kind=kind, model="x/y", prompt="the edit", steps=2, device="cpu", pipeline=pipe).edit(
            images, seeds
        )
        teacher = teacher_from_spec(f"{kind}:{folder}", prompt="the edit", steps=2, batch_size=2, device="cpu")
        assert isinstance(teacher, DiffusersTeacher) and teacher.pipeline is None  # lazy
        got = teacher.edit(images, seeds)
        assert teacher.pipeline is not None and teacher.pipeline.safety_checker is None
        assert type(teacher.pipeline) is type(pipe)
        assert all(np.abs(a.astype(int) - b.astype(int)).max() <= 1 for a, b in zip(want, got))
        assert teacher.source == f"diffusers:{kind}:{folder}:the edit"


def test_pickled_weights_are_refused(img2img_pipe, tmp_path):
    """from_pretrained(use_safetensors=True): a pipeline saved as pickled .bin files is not loaded."""
    from pocketgan.runtime.errors import PocketganError

    folder = tmp_path / "pickled"
    img2img_pipe.save_pretrained(folder, safe_serialization=False)
    # the UNet and VAE are pickled (transformers writes the text encoder as safetensors regardless)
    assert sorted(p.parent.name for p in folder.glob("*/diffusion_pytorch_model.bin")) == ["unet", "vae"]
    assert not list(folder.glob("*/diffusion_pytorch_model.safetensors"))
    teacher = teacher_from_spec(f"img2img:{folder}", prompt="p", steps=2, device="cpu")
    with pytest.raises(TeacherLoadError, match=r"safetensors weights only.*safe_serialization=True") as caught:
        teacher.edit(photos(1, 32), [0])
    assert isinstance(caught.value, PocketganError) and isinstance(caught.value, OSError)
    assert teacher.pipeline is None


def test_uncached_hub_id_fails_clearly():
    teacher = DiffusersTeacher(
        kind="instruct-pix2pix", model="pocketgan-tests/no-such-model", prompt="p", local_files_only=True, device="cpu"
    )
    with pytest.raises(TeacherLoadError, match="offline.*hf download"):
        teacher.edit(photos(1, 32), [0])


def test_bad_sizes_and_arguments(ip2p_pipe):
    teacher = DiffusersTeacher(
        kind="instruct-pix2pix", model="tiny/test", prompt="p", steps=2, device="cpu", pipeline=ip2p_pipe
    )
    with pytest.raises(ValueError, match="multiples of 8"):
        teacher.edit([np.zeros((30, 32, 3), np.uint8)], [0])
    with pytest.raises(ValueError, match="uint8"):
        teacher.edit([np.zeros((32, 32, 3), np.float32)], [0])
    with pytest.raises(ValueError, match="seeds"):
        teacher.edit(photos(2, 32), [0])
    assert teacher.edit([], []) == []
    with pytest.raises(ValueError, match="kind"):
        DiffusersTeacher(kind="pix2pix", model="a/b", prompt="p")
    with pytest.raises(ValueError, match="prompt"):
        DiffusersTeacher(kind="img2img", model="a/b", prompt=" ")
    with pytest.raises(ValueError, match="img2img"):
        DiffusersTeacher(kind="instruct-pix2pix", model="a/b", prompt="p", strength=0.5)
    with pytest.raises(ValueError, match="InstructPix2Pix"):
        DiffusersTeacher(kind="img2img", model="a/b", prompt="p", image_guidance_scale=1.0)
    with pytest.raises(ValueError, match="no denoising"):
        DiffusersTeacher(kind="img2img", model="a/b", prompt="p", steps=2, strength=0.3)
    with pytest.raises(ValueError, match="batch_size"):
        DiffusersTeacher(kind="img2img", model="a/b", prompt="p", batch_size=0)
    with pytest.raises(TeacherLoadError, match="not a directory"):
        DiffusersTeacher(kind="img2img", model="./no/such/dir", prompt="p")


def test_teacher_from_spec():
    cartoon = teacher_from_spec("cartoon")
    assert isinstance(cartoon, ProceduralTeacher) and teacher_from_spec("procedural:cartoon") is cartoon
    assert isinstance(cartoon, Teacher) and cartoon.source == "procedural:opencv.cartoon"
    img = photos(1, 32)[0]
    assert np.array_equal(cartoon.edit([img], [123])[0], cartoon(img))
    for bad in ("nope", "procedural:nope", "foo:cartoon", "instruct-pix2pix", "instruct-pix2pix:"):
        with pytest.raises(ValueError, match="teacher|model"):
            teacher_from_spec(bad, prompt="p")
    with pytest.raises(ValueError, match="choose one of.*instruct-pix2pix:PATH_OR_HUB_ID"):
        teacher_from_spec("nope")
    with pytest.raises(ValueError, match="needs a prompt"):
        teacher_from_spec("instruct-pix2pix:timbrooks/instruct-pix2pix")
    with pytest.raises(ValueError, match="no prompt"):
        teacher_from_spec("cartoon", prompt="make it a cartoon")
    hub = teacher_from_spec("img2img:some-org/some-model", prompt="a watercolour", strength=0.5, device="cpu")
    assert isinstance(hub, DiffusersTeacher) and hub.kind == "img2img" and hub.strength == 0.5 and hub.pipeline is None
