"""Golden vectors: every export writes, per concept, a small input photo and the expected
edit, listed and checksummed in the manifest (``concepts[].golden``); the web, Android and
iOS tests check their own pipelines against them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import CONCEPT_NAMES, copy_bundle, psnr, read_manifest, write_manifest
from pocketgan.runtime import Runtime
from pocketgan.runtime.errors import ManifestError
from pocketgan.runtime.imaging import from_model_output, to_model_input
from pocketgan.runtime.manifest import load_manifest, verify_bundle

SIZE = 256  # the tiny fixture bundle's input side


@pytest.fixture(scope="module")
def manifest(separate_export):
    return read_manifest(separate_export)


def _rgb(path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.mode == "RGB" and im.format == "PNG"
        assert not {"icc_profile", "gamma", "srgb"} & set(im.info), (
            "no colour chunks: every decoder reads the same bytes"
        )
        return np.asarray(im).copy()


def test_every_concept_has_golden_vectors_listed_and_checksummed(separate_export, manifest):
    goldens = {c["name"]: c["golden"] for c in manifest["concepts"]}
    assert list(goldens) == list(CONCEPT_NAMES)
    assert len({g["input"] for g in goldens.values()}) == 1, "one shared input photo"
    assert len({g["output"] for g in goldens.values()}) == len(CONCEPT_NAMES)
    for g in goldens.values():
        assert g["input"] in manifest["artifacts"] and g["output"] in manifest["artifacts"]
    verify_bundle(separate_export, load_manifest(separate_export))  # schema + checksums


def test_golden_files_are_small(manifest):
    goldens = [c["golden"] for c in manifest["concepts"]]
    sizes = {g["output"]: manifest["artifacts"][g["output"]]["bytes"] for g in goldens}
    sizes[goldens[0]["input"]] = manifest["artifacts"][goldens[0]["input"]]["bytes"]
    assert max(sizes.values()) < 96 * 1024, sizes


def test_golden_input_letterboxes_without_resampling(separate_export, manifest):
    photo = _rgb(separate_export / manifest["concepts"][0]["golden"]["input"])
    h, w = photo.shape[:2]
    assert w == SIZE and SIZE / 3 < h < SIZE
    x, placement = to_model_input(photo, SIZE)
    assert (placement.inner_height, placement.inner_width) == (h, w)
    # the model input is the photo itself between two reflected borders: exact on every platform
    inner = x[0, :, placement.top : placement.top + h].transpose(1, 2, 0)
    np.testing.assert_array_equal(np.rint((inner + 1) * 127.5).astype(np.uint8), photo)
    top = x[0, :, : placement.top].transpose(1, 2, 0)
    np.testing.assert_array_equal(top, inner[1 : placement.top + 1][::-1])


@pytest.mark.parametrize("name", CONCEPT_NAMES)
def test_golden_output_is_the_pytorch_edit(separate_export, manifest, tiny_bundle, name):
    golden = next(c["golden"] for c in manifest["concepts"] if c["name"] == name)
    photo = _rgb(separate_export / golden["input"])
    expected = _rgb(separate_export / golden["output"])
    x, placement = to_model_input(photo, SIZE)
    with torch.no_grad():
        y = tiny_bundle.model_for(name, "separate")(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(from_model_output(y, placement), expected)


@pytest.mark.parametrize("name", CONCEPT_NAMES)
def test_runtime_passes_the_golden_vectors(separate_export, manifest, name):
    golden = next(c["golden"] for c in manifest["concepts"] if c["name"] == name)
    photo, expected = _rgb(separate_export / golden["input"]), _rgb(separate_export / golden["output"])
    got = Runtime(separate_export, threads=1).edit(photo, concept=name)
    assert psnr(got, expected, peak=255.0) >= manifest["targets"]["onnx"]["parity"]["threshold_db"]


def test_app_bundles_keep_the_golden_vectors(tmp_path, source_bundle):
    from pocketgan.export import ExportConfig, run_export

    out = tmp_path / "web"
    m = run_export(ExportConfig(out=out, bundle=source_bundle, platform="web", image_size=64))
    assert m["contents"] == "app"
    for c in m["concepts"]:
        for rel in c["golden"].values():
            assert (out / rel).is_file() and rel in m["artifacts"]
    assert _rgb(out / m["concepts"][0]["golden"]["input"]).shape == (24, 64, 3)


def test_source_bundles_have_no_golden_vectors(source_bundle):
    assert all("golden" not in c for c in read_manifest(source_bundle)["concepts"])


def test_manifest_rejects_an_unlisted_golden_file(tmp_path, separate_export):
    bundle = copy_bundle(separate_export, tmp_path / "b")
    m = read_manifest(bundle)
    m["concepts"][0]["golden"]["output"] = "golden/missing.png"
    write_manifest(bundle, m)
    with pytest.raises(ManifestError, match="golden output"):
        load_manifest(bundle)


def test_manifest_rejects_a_malformed_golden_entry(tmp_path, separate_export):
    bundle = copy_bundle(separate_export, tmp_path / "b")
    m = read_manifest(bundle)
    del m["concepts"][0]["golden"]["input"]
    write_manifest(bundle, m)
    with pytest.raises(ManifestError, match="schema"):
        load_manifest(bundle)
