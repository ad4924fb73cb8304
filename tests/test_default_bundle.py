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
    for name in runtime.concepts:
        runtime.set_concept(name)
        edited = runtime.edit(photo)
        assert isinstance(edited, Image.Image) and edited.size == photo.size
        outputs[name] = np.asarray(edited).astype(int)
    names = list(outputs)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert np.abs(outputs[a] - outputs[b]).mean() > 1.0, f"{a} and {b} look the same"


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
