"""The typed, read-only manifest view (issue 16, item 4): built only from a validated
manifest, frozen, and faithful to the dict it came from."""

from __future__ import annotations

import dataclasses
import json

import pytest

from helpers import default_bundle_path
from pocketgan.runtime import Manifest, ManifestError, Runtime, load_manifest, read_manifest
from pocketgan.runtime.manifest_view import (
    CoreMLTarget,
    ExecuTorchTarget,
    OnnxTarget,
    TensorSpec,
    as_manifest,
)


@pytest.fixture(scope="module")
def raw() -> dict:
    return load_manifest(default_bundle_path())


@pytest.fixture(scope="module")
def view() -> Manifest:
    return read_manifest(default_bundle_path())


def test_view_matches_the_dict(view, raw):
    assert view.format_version == raw["format_version"] == 2  # the default bundle has strength and blending
    assert view.neutral is not None and view.mix_ranks == raw["neutral"]["mix_ranks"]
    assert view.strength_curves["cartoon"] == tuple(raw["neutral"]["strength_curves"]["cartoon"])
    assert view.input == TensorSpec("image", "float32", (1, 3, 256, 256), "NCHW", "RGB", (-1.0, 1.0))
    assert view.output.name == raw["io"]["output"]["name"] and view.output.shape == view.input.shape
    assert view.input_size == 256
    assert view.concept_names == tuple(c["name"] for c in raw["concepts"])
    assert view.concept("cartoon").ranks == raw["concepts"][view.concept_names.index("cartoon")]["ranks"]
    assert view.base_sha256 == raw["base"]["sha256"] and view.base_weights == raw["base"]["weights"]
    assert not view.is_app
    assert view.generator.parameters == raw["generator"]["parameters"]
    assert set(view.artifacts) == set(raw["artifacts"])
    art = view.artifacts["onnx/generator.onnx"]
    assert (art.sha256, art.bytes) == (raw["artifacts"][art.path]["sha256"], raw["artifacts"][art.path]["bytes"])
    assert view.raw == raw


def test_onnx_target_is_typed(view, raw):
    onnx = view.onnx
    assert isinstance(onnx, OnnxTarget) and view.targets["onnx"] is onnx
    assert view.executorch is None and view.coreml is None
    assert onnx.runnable_modes == ("separate",)
    assert onnx.concept_input_dtype == "float32"
    assert onnx.model == raw["targets"]["onnx"]["model"]
    assert onnx.concept_inputs["concept_tokens"] == (1, 4, 64)
    assert dict(onnx.adapters) == raw["targets"]["onnx"]["adapters"]
    assert onnx.parity.threshold_db == 35.0 and onnx.parity.metric == "psnr"


def test_view_is_read_only(view):
    with pytest.raises(dataclasses.FrozenInstanceError):
        view.format_version = 2
    with pytest.raises(TypeError):
        view.onnx.adapters["cartoon"] = "elsewhere"
    with pytest.raises(TypeError):
        view.rank_pattern["ds.conv"] = 9
    with pytest.raises(TypeError):
        view.concepts[0].training["steps"] = 1
    copy = view.to_dict()
    copy["io"]["input"]["shape"][2] = 1
    assert view.raw["io"]["input"]["shape"][2] == 256, "to_dict is a deep copy"


def test_from_dict_validates(raw):
    assert Manifest.from_dict(raw).raw == raw
    bad = json.loads(json.dumps(raw))
    bad["format_version"] = 1.0
    with pytest.raises(ManifestError, match="format_version"):
        Manifest.from_dict(bad)
    assert as_manifest(bad).format_version == 1.0, "as_manifest trusts its caller (no validation)"


def test_view_is_independent_of_the_dict_it_came_from(raw):
    mine = json.loads(json.dumps(raw))
    view = Manifest.from_dict(mine)
    mine["io"]["input"]["name"] = "changed"
    assert view.input.name == "image" and view.raw["io"]["input"]["name"] == "image"


def test_runtime_exposes_the_view():
    rt = Runtime(threads=1)
    assert isinstance(rt.manifest, Manifest)
    assert rt.concepts == rt.manifest.concept_names and rt.input_size == rt.manifest.input_size


def test_executorch_and_coreml_targets_are_typed(raw):
    """Entries as the exporters write them (taken from a real all-targets export)."""
    et = {
        "precision": "fp32",
        "concept_mode": "separate",
        "source_base_sha256": raw["base"]["sha256"],
        "program": "executorch/generator.pte",
        "methods": {"cartoon": "cartoon"},
        "delegation": {"separate": {"backend": "XnnpackBackend", "delegated_subgraphs": 1}},
        "parity": {"metric": "psnr", "threshold_db": 35.0, "photos": ["a.jpg"], "psnr_db": {"separate": {}}},
    }
    io = {"name": "image", "shape": [1, 3, 256, 256], "dtype": "float32"}
    cm = {
        "precision": "fp16",
        "compute_precision": "float16",
        "concept_mode": "separate",
        "package": "coreml/generator.mlpackage",
        "functions": {"cartoon": "cartoon"},
        "default_function": "cartoon",
        "inputs": [io],
        "outputs": [dict(io, name="edited")],
        "ios17": {"minimum_deployment_target": "iOS17", "concept_mode": "merged", "packages": {"cartoon": "p"}},
        "parity_checked": False,
    }
    view = as_manifest(dict(raw, targets={"executorch": et, "coreml": cm}))
    assert isinstance(view.executorch, ExecuTorchTarget) and view.executorch.program == et["program"]
    assert view.executorch.methods["cartoon"] == "cartoon" and view.executorch.external_data is None
    assert view.executorch.delegation["separate"]["delegated_subgraphs"] == 1
    assert isinstance(view.coreml, CoreMLTarget) and view.coreml.ios17_packages == {"cartoon": "p"}
    assert view.coreml.inputs[0].shape == (1, 3, 256, 256) and view.coreml.outputs[0].name == "edited"
    assert view.coreml.runnable_modes == ("separate",)
