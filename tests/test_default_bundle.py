"""The default bundle embedded in the package (pocketgan/default_bundle).

It ships in the repository (trained by ``python -m pocketgan.training.default_bundle``,
exported with ``pocketgan export``); a checkout without it fails here.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from helpers import default_bundle_path, has_default_bundle, psnr, read_manifest


def test_the_default_bundle_ships():
    assert has_default_bundle(), "pocketgan/default_bundle/manifest.json is missing"


@pytest.fixture(scope="module")
def bundle_dir():
    return default_bundle_path()


@pytest.fixture(scope="module")
def manifest(bundle_dir):
    return read_manifest(bundle_dir)


@pytest.fixture(scope="module")
def runtime():
    from pocketgan.runtime import Runtime

    return Runtime(threads=1)


def test_verify_bundle_passes(bundle_dir, manifest):
    from pocketgan.runtime import verify_bundle

    assert verify_bundle(bundle_dir) == manifest


def test_has_at_least_three_concepts(manifest):
    names = [c["name"] for c in manifest["concepts"]]
    assert len(names) >= 3 and len(set(names)) == len(names)
    assert all(c["description"] for c in manifest["concepts"]), "apps show the descriptions"


def test_has_an_onnx_separate_target(manifest):
    onnx = manifest["targets"].get("onnx")
    assert onnx is not None, "the default bundle is exported"
    assert onnx["concept_mode"] in ("separate", "both")
    assert set(onnx["adapters"]) == {c["name"] for c in manifest["concepts"]}
    assert onnx["source_base_sha256"] == manifest["base"]["sha256"]
    for mode, scores in onnx["parity"]["psnr_db"].items():
        assert all(v >= 35.0 for v in scores.values()), mode


def test_adapters_are_at_most_one_percent_of_the_base(manifest):
    artifacts = manifest["artifacts"]
    base_bytes = artifacts[manifest["base"]["weights"]]["bytes"]
    for name, rel in manifest["targets"]["onnx"]["adapters"].items():
        share = artifacts[rel]["bytes"] / base_bytes
        assert share <= 0.01, f"{name}: adapter is {100 * share:.2f}% of the base weights"


def test_runtime_opens_the_default_and_edits_with_every_concept(runtime, bundle_dir, manifest, photo_paths):
    assert runtime.path == bundle_dir
    assert list(runtime.concepts) == [c["name"] for c in manifest["concepts"]]
    with Image.open(photo_paths[0]) as im:
        photo = im.convert("RGB")
    outputs = {}
    # colorize and restore expect a gray / a damaged photo: the next test gives them one
    for name in [c["name"] for c in manifest["concepts"] if c["name"] not in DIFFUSION_CONCEPTS]:
        runtime.set_concept(name)
        edited = runtime.edit(photo)
        assert isinstance(edited, Image.Image) and edited.size == photo.size
        outputs[name] = np.asarray(edited).astype(int)
    names = list(outputs)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert np.abs(outputs[a] - outputs[b]).mean() > 1.0, f"{a} and {b} look the same"


DIFFUSION_CONCEPTS = ("colorize", "restore")  # distilled from the diffusion editor (docs/diffusion-teacher.md)


def test_distilled_diffusion_concepts_edit_held_out_photos(runtime, manifest, photo_paths):
    """On the shipped photos (held out of every training set): colorize puts colour into a
    gray photo, and restore changes a damaged photo while staying within 1.5 dB of it
    against the clean photo. (Neither beats its trivial baseline on PSNR yet, nor does the
    teacher: docs/diffusion-teacher.md.)"""
    from pocketgan.diffusion_editor.report import colourfulness
    from pocketgan.diffusion_editor.tasks import apply_transform, grayscale, transform_seed
    from pocketgan.training.distill_plan import crop_photo

    teachers = {c["name"]: c["teacher"] for c in manifest["concepts"]}
    assert all(teachers[n].startswith("diffusers:instruct-pix2pix:") for n in DIFFUSION_CONCEPTS)
    restore_gain, restore_change, colour = [], [], []
    for path in photo_paths:
        with Image.open(path) as im:
            clean = crop_photo(np.asarray(im.convert("RGB")), 256, 0, 0, path.stem)
        damaged = apply_transform("degrade", clean, transform_seed(path.stem, 0))
        restored = runtime.edit(damaged, concept="restore", resolution="model")
        restore_gain.append(psnr(restored, clean, 255) - psnr(damaged, clean, 255))
        restore_change.append(np.abs(restored.astype(int) - damaged).mean())
        colour.append(colourfulness(runtime.edit(grayscale(clean), concept="colorize", resolution="model")))
    assert np.mean(restore_change) > 1.0, restore_change  # not the identity
    assert np.mean(restore_gain) > -1.5, restore_gain
    assert np.mean(colour) > 5, colour  # a gray photo scores 0


def test_shipped_onnx_matches_the_shipped_weights(manifest, photo_paths):
    """Guards against stale artifacts: ONNX re-exported from other weights than the safetensors."""
    import torch

    from pocketgan.bundle import load_bundle
    from pocketgan.photos import load_rgb
    from pocketgan.runtime import Runtime
    from pocketgan.runtime.imaging import to_model_input

    b = load_bundle()
    modes = {"separate": ("separate",), "merged": ("merged",), "both": ("separate", "merged")}[
        manifest["targets"]["onnx"]["concept_mode"]
    ]
    size = manifest["io"]["input"]["shape"][2]
    model_inputs = {p.name: to_model_input(load_rgb(p), size)[0] for p in photo_paths}
    for mode in modes:
        rt = Runtime(threads=1, concept_mode=mode)
        for name in b.concept_names:
            model = b.model_for(name, mode)
            for photo, x in model_inputs.items():
                with torch.no_grad():
                    want = model(torch.from_numpy(x)).numpy()
                assert psnr(rt.run_tensor(x, concept=name), want) >= 35.0, f"{mode} {name} on {photo}"


def test_every_stage_of_the_shipped_base_is_alive():
    """No stage of the trained base died and the concept tokens change the output (the
    first shipped base failed this: its dead up1 cut the transformer off)."""
    import torch

    from pocketgan.bundle import load_bundle
    from pocketgan.models.diagnostics import check_alive
    from pocketgan.photos import load_rgb, sample_photo_paths
    from pocketgan.runtime.imaging import to_model_input

    bundle = load_bundle()
    images = torch.cat([torch.from_numpy(to_model_input(load_rgb(p), 256)[0]) for p in sample_photo_paths()])
    tokens = {c.name: c.tokens for c in bundle.concepts}
    report = check_alive(bundle.base_generator(), images, tokens)  # raises if dead
    assert report["min_token_influence"] > 1e-3
