"""Full-resolution edits (issue 12): resolution-aware teachers, the guided upsampling stage in
the runtime (numpy) and in training (torch), its weights in bundles, and Runtime.edit's modes."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.numpy import save as save_numpy

from pocketgan.runtime import ArtifactFormatError, ManifestError, open_bundle, verify_bundle
from pocketgan.runtime.tensor_file import read_float32_safetensors
from pocketgan.runtime.upsampling import GuidedUpsampling, guided_upsample, tensor_shapes

# ------------------------------------------------------------------ resolution-aware teachers


def _photo(side: int = 256) -> np.ndarray:
    from pocketgan.photos import load_rgb, sample_photo_paths

    image = Image.fromarray(load_rgb(sample_photo_paths()[0]))
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    return np.asarray(image)


@pytest.mark.parametrize(
    "name, reference",
    [
        ("detail_enhance", lambda cv2, bgr, s: cv2.detailEnhance(bgr, sigma_s=10 * s, sigma_r=0.15)),
        ("stylize", lambda cv2, bgr, s: cv2.stylization(bgr, sigma_s=40 * s, sigma_r=0.45)),
        ("color_pencil", lambda cv2, bgr, s: cv2.pencilSketch(bgr, sigma_s=40 * s, sigma_r=0.08, shade_factor=0.05)[1]),
    ],
)
def test_procedural_teachers_scale_their_pixel_parameters_with_the_long_side(name, reference):
    import cv2

    from pocketgan.training.teachers import PROCEDURAL_TEACHERS

    teacher = PROCEDURAL_TEACHERS[name]
    for side, scale in ((256, 1.0), (128, 0.5)):
        rgb = _photo(side)
        assert max(rgb.shape[:2]) == side
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        expected = cv2.cvtColor(reference(cv2, bgr, scale), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(teacher(rgb), expected)
    # an explicit scale wins over the image's own size (a crop edited at its photo's scale)
    rgb = _photo(128)
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    np.testing.assert_array_equal(teacher(rgb, scale=3.0), cv2.cvtColor(reference(cv2, bgr, 3.0), cv2.COLOR_BGR2RGB))


def test_cartoon_at_the_reference_size_is_the_fixed_parameter_effect():
    import cv2

    from pocketgan.training.teachers import PROCEDURAL_TEACHERS

    rgb = _photo(256)
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    color = bgr
    for _ in range(2):
        color = cv2.bilateralFilter(color, 7, 60, 7)
    color = (np.floor(color.astype(np.float32) / 256 * 6) * (256 / 6) + 128 / 6).astype(np.uint8)
    edges = cv2.adaptiveThreshold(
        cv2.medianBlur(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), 5),
        255,
        cv2.ADAPTIVE_THRESH_MEAN_C,
        cv2.THRESH_BINARY,
        9,
        4,
    )
    expected = cv2.cvtColor(cv2.bitwise_and(color, color, mask=edges), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(PROCEDURAL_TEACHERS["cartoon"](rgb), expected)
    big = PROCEDURAL_TEACHERS["cartoon"](np.asarray(Image.fromarray(rgb).resize((rgb.shape[1] * 5, rgb.shape[0] * 5))))
    assert big.shape == (rgb.shape[0] * 5, rgb.shape[1] * 5, 3)  # past BILATERAL_MAX_SCALE: shrunk smoothing


def test_teachers_refuse_a_nonpositive_scale():
    from pocketgan.training.teachers import PROCEDURAL_TEACHERS

    with pytest.raises(ValueError, match="scale"):
        PROCEDURAL_TEACHERS["smooth"](_photo(64), scale=0.0)


# ------------------------------------------------------------------ the stage: torch == numpy


def _random_stage(hidden: int = 16, seed: int = 0):
    from pocketgan.models.guided_upsampler import GuidedUpsampler, GuidedUpsamplerConfig

    torch.manual_seed(seed)
    stage = GuidedUpsampler(GuidedUpsamplerConfig(radius=2, hidden=hidden))
    for p in stage.mlp[2].parameters():
        torch.nn.init.normal_(p, std=0.3)
    return stage


def test_runtime_stage_matches_the_torch_stage_it_was_trained_as():
    stage = _random_stage()
    rng = np.random.default_rng(0)
    low_photo, low_edit = rng.random((2, 3, 37, 53), dtype=np.float32)
    settings = GuidedUpsampling.from_tensors(2, 16, {k: v.numpy() for k, v in stage.tensors().items()}, "x")
    with torch.no_grad():
        expected = stage.coefficients(torch.from_numpy(low_photo)[None], torch.from_numpy(low_edit)[None])[0].numpy()
    np.testing.assert_allclose(settings.coefficients(low_photo, low_edit), expected, atol=2e-5)
    photo = (rng.random((301, 419, 3)) * 255).astype(np.uint8)
    with torch.no_grad():
        full = stage(
            torch.from_numpy(low_photo)[None],
            torch.from_numpy(low_edit)[None],
            torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 255,
            0,
            0,
            301,
            419,
        )[0]
    expected = np.clip(full.permute(1, 2, 0).numpy() * 255 + 0.5, 0, 255).astype(np.uint8)
    got = guided_upsample(photo, low_photo, low_edit, settings)
    assert np.abs(got.astype(int) - expected).max() <= 1  # float rounding at .5 only


def test_full_resolution_pass_is_the_same_strip_by_strip(monkeypatch):
    from pocketgan.runtime import upsampling

    rng = np.random.default_rng(1)
    low_photo, low_edit = rng.random((2, 3, 20, 30), dtype=np.float32)
    photo = (rng.random((203, 311, 3)) * 255).astype(np.uint8)
    whole = guided_upsample(photo, low_photo, low_edit, GuidedUpsampling())
    monkeypatch.setattr(upsampling, "_STRIP_PIXELS", 311 * 7)  # 7-row strips
    strips = guided_upsample(Image.fromarray(photo), low_photo, low_edit, GuidedUpsampling())
    assert np.abs(strips.astype(int) - whole).max() <= 1
    assert (strips != whole).mean() < 1e-3


@pytest.mark.parametrize("radius, eps", [(0, 1e-3), (2, 0.0), (2, 1.0), (True, 1e-3), (2, "x")])
def test_guided_upsampling_settings_are_validated(radius, eps):
    with pytest.raises(ValueError):
        GuidedUpsampling(radius, eps)


# ------------------------------------------------------------------ the weights file


def test_tensor_file_reads_what_safetensors_writes_and_refuses_the_rest():
    tensors = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(4, np.float32)}
    data = save_numpy(tensors, metadata={"k": "v"})
    got = read_float32_safetensors(data, "f.safetensors")
    assert set(got) == {"a", "b"} and np.array_equal(got["a"], tensors["a"])
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_len])
    body = data[8 + header_len :]

    def rebuilt(h: dict, b: bytes = body) -> bytes:
        raw = json.dumps(h).encode()
        return len(raw).to_bytes(8, "little") + raw + b

    bad = {
        "truncated": data[:-3],
        "short": data[:5],
        "header too long": (10**9).to_bytes(8, "little") + data[8:],
        "not json": (4).to_bytes(8, "little") + b"{{{{",
        "a list": rebuilt([]),
        "f16": rebuilt({**header, "a": {**header["a"], "dtype": "F16"}}),
        "float shape": rebuilt({**header, "a": {**header["a"], "shape": [2.0, 3]}}),
        "overlap": rebuilt({**header, "b": {**header["b"], "data_offsets": header["a"]["data_offsets"][:1] * 2}}),
        "gap": rebuilt(header, body + b"\0\0\0\0"),
        "nan": rebuilt(header, np.full(6, np.nan, np.float32).tobytes() + body[24:])
        if header["a"]["data_offsets"] == [0, 24]
        else rebuilt(header, body[:16] + np.full(4, np.nan, np.float32).tobytes()),
    }
    for why, blob in bad.items():
        with pytest.raises(ArtifactFormatError) as info:
            read_float32_safetensors(blob, "f.safetensors")
        assert info.value.file == "f.safetensors", why


def test_stage_weights_must_have_the_manifest_shapes():
    good = {k: np.zeros(s, np.float32) for k, s in tensor_shapes(8).items()} | {"log_eps": np.array([-7.0], np.float32)}
    assert GuidedUpsampling.from_tensors(2, 8, good, "u").mlp is not None
    for broken in (
        {**good, "mlp.0.weight": np.zeros((8, 11), np.float32)},
        {k: v for k, v in good.items() if k != "log_eps"},
        {**good, "extra": np.zeros(1, np.float32)},
    ):
        with pytest.raises(ArtifactFormatError):
            GuidedUpsampling.from_tensors(2, 8, broken, "u")
    with pytest.raises(ArtifactFormatError, match="eps"):
        GuidedUpsampling.from_tensors(2, 8, {**good, "log_eps": np.array([5.0], np.float32)}, "u")


# ------------------------------------------------------------------ bundles with the stage


@pytest.fixture(scope="module")
def upsampled_source(tmp_path_factory, tiny_bundle):
    """The tiny bundle with a (random) full-resolution stage per concept."""
    import copy

    from pocketgan.bundle import save_bundle
    from pocketgan.models.guided_upsampler import GuidedUpsamplerConfig

    bundle = copy.deepcopy(tiny_bundle)
    bundle.upsampler = GuidedUpsamplerConfig(radius=2, hidden=8)
    for i, concept in enumerate(bundle.concepts[1:]):  # the first keeps none: it gets the plain filter
        concept.upsampler = _random_stage(hidden=8, seed=i).tensors()
    path = tmp_path_factory.mktemp("upsampled") / "src"
    save_bundle(bundle, path)
    return path


@pytest.fixture(scope="module")
def upsampled_export(tmp_path_factory, upsampled_source):
    from pocketgan.export import ExportConfig, run_export

    out = tmp_path_factory.mktemp("upsampled-export") / "app"
    run_export(ExportConfig(out=out, bundle=upsampled_source, targets=("onnx",), concepts="separate", app=True))
    return out


def test_bundle_stage_round_trips_through_save_load_and_an_app_export(upsampled_source, upsampled_export):
    from pocketgan.bundle import load_bundle

    bundle = load_bundle(upsampled_source)
    assert bundle.upsampler is not None and bundle.upsampler.hidden == 8
    first, second = bundle.concepts[0], bundle.concepts[1]
    assert torch.count_nonzero(first.upsampler["mlp.2.weight"]) == 0  # untrained: the plain guided filter
    assert torch.count_nonzero(second.upsampler["mlp.2.weight"]) > 0
    manifest = json.loads((upsampled_export / "manifest.json").read_text())
    assert manifest["contents"] == "app" and manifest["upsampler"] == {
        "kind": "guided-filter-mlp",
        "radius": 2,
        "hidden": 8,
    }
    for concept in manifest["concepts"]:
        assert (upsampled_export / concept["upsampler"]).is_file()
    verify_bundle(upsampled_export)
    runtime = open_bundle(upsampled_export)
    settings = runtime.upsampling[second.name]
    np.testing.assert_array_equal(settings.mlp[2][0], second.upsampler["mlp.2.weight"].numpy())


def _copy_with(tmp_path, bundle, edit_manifest):
    from pocketgan.runtime.manifest import sha256_file

    dest = tmp_path / "b"
    shutil.copytree(bundle, dest)
    manifest = json.loads((dest / "manifest.json").read_text())
    edit_manifest(manifest, dest)
    for rel, record in manifest["artifacts"].items():
        record["sha256"], record["bytes"] = sha256_file(dest / rel), (dest / rel).stat().st_size
    (dest / "manifest.json").write_text(json.dumps(manifest))
    return dest


def test_stage_manifest_is_all_or_nothing(tmp_path, upsampled_export):
    def drop_top(m, _):
        del m["upsampler"]

    def drop_one(m, _):
        del m["concepts"][0]["upsampler"]

    def share(m, _):
        m["concepts"][1]["upsampler"] = m["concepts"][0]["upsampler"]

    for i, edit in enumerate((drop_top, drop_one, share)):
        bundle = _copy_with(tmp_path / str(i), upsampled_export, edit)
        with pytest.raises(ManifestError):
            open_bundle(bundle)


def test_stage_weights_of_another_shape_are_refused_on_open_and_verify(tmp_path, upsampled_export):
    def rewrite(m, dest):
        path = dest / m["concepts"][1]["upsampler"]
        tensors = {k: np.zeros(s, np.float32) for k, s in tensor_shapes(4).items()} | {
            "log_eps": np.full(1, -7, np.float32)
        }
        path.write_bytes(save_numpy(tensors))

    bundle = _copy_with(tmp_path, upsampled_export, rewrite)
    for check in (open_bundle, verify_bundle):
        with pytest.raises(ArtifactFormatError) as info:
            check(bundle)
        assert info.value.file.startswith("upsampler/")


# ------------------------------------------------------------------ Runtime.edit's resolutions


def test_edit_resolutions_give_the_promised_sizes(upsampled_export):
    runtime = open_bundle(upsampled_export)
    photo = _photo(512)  # larger than the model's 256: a real upsampling
    h, w = photo.shape[:2]
    assert runtime.edit(photo).shape == (h, w, 3)
    assert runtime.edit(photo, resolution="upscale").shape == (h, w, 3)
    model = runtime.edit(photo, resolution="model")
    assert max(model.shape[:2]) == runtime.input_size and model.shape[2] == 3
    pil = runtime.edit(Image.fromarray(photo), resolution="full")
    assert isinstance(pil, Image.Image) and pil.size == (w, h)
    # a photo smaller than the model's input: "full" is the photo's size, "model" the model's
    small = _photo(200)
    assert runtime.edit(small).shape == small.shape
    assert max(runtime.edit(small, resolution="model").shape[:2]) == runtime.input_size
    # exactly the model's size: nothing to resample, every mode gives the model's own output
    exact = _photo(256)
    assert np.array_equal(runtime.edit(exact), runtime.edit(exact, resolution="model"))
    with pytest.raises(ValueError, match="resolution"):
        runtime.edit(photo, resolution="4k")


def test_full_resolution_keeps_detail_the_upscale_path_loses():
    """On a real 512 px photo, the shipped detail_enhance concept at full resolution is closer to
    its teacher at 512 px, and sharper, than the bicubic upscale of its 256 px edit."""
    from pocketgan.full_resolution.quality import laplacian_variance, scores
    from pocketgan.training.teachers import PROCEDURAL_TEACHERS

    runtime = open_bundle()
    photo = _photo(512)
    teacher = PROCEDURAL_TEACHERS["detail_enhance"](photo)
    full = runtime.edit(photo, concept="detail_enhance")
    upscale = runtime.edit(photo, concept="detail_enhance", resolution="upscale")
    assert scores(full, teacher)[0] > scores(upscale, teacher)[0]
    assert laplacian_variance(full) > 1.5 * laplacian_variance(upscale)


# ------------------------------------------------------------------ training


def test_training_the_stage_lowers_its_error_against_the_teacher(separate_export):
    from pocketgan.full_resolution.train import UpsamplerTrainingConfig, _prepare, train_concept_upsampler
    from pocketgan.training.teachers import PROCEDURAL_TEACHERS

    runtime = open_bundle(separate_export)
    concept = runtime.concepts[0]
    examples = [_prepare(runtime, concept, PROCEDURAL_TEACHERS["detail_enhance"], _photo(384))]
    config = UpsamplerTrainingConfig(steps=60, crop=96, lr=1e-2)
    losses = []
    stage, stats = train_concept_upsampler(examples, config, lambda step, l1: losses.append(l1))
    assert len(losses) == 60 and stats["final_l1"] == pytest.approx(losses[-1], abs=1e-5)
    e = examples[0]
    h, w = e.photo.shape[-2:]
    with torch.no_grad():
        from pocketgan.models.guided_upsampler import GuidedUpsampler, GuidedUpsamplerConfig

        before = GuidedUpsampler(GuidedUpsamplerConfig())(e.low_photo, e.low_edit, e.photo, 0, 0, h, w)
        after = stage(e.low_photo, e.low_edit, e.photo, 0, 0, h, w)
    assert (after - e.teacher).abs().mean() < 0.9 * (before - e.teacher).abs().mean()
