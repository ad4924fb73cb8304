"""ONNX export: parity with PyTorch on real photos, the parity gate, the graph contract."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

from helpers import CONCEPT_NAMES, copy_bundle, psnr, read_manifest, staging_leftovers, tree_digest
from pocketgan.bundle import load_bundle
from pocketgan.export import ExportConfig, ParityError, run_export
from pocketgan.export import psnr as export_psnr
from pocketgan.runtime import ArtifactMissingError, PocketganError, Runtime
from pocketgan.runtime.manifest import sha256_file
from pocketgan.runtime.targets import CONCEPT_MODES, TARGETS

MODES = ("separate", "merged")


@pytest.fixture(scope="module")
def manifest(exported_bundle):
    return read_manifest(exported_bundle)


@pytest.fixture(scope="module")
def onnx_target(manifest):
    return manifest["targets"]["onnx"]


@pytest.fixture(scope="module")
def base_proto(exported_bundle, onnx_target):
    return onnx.load(str(exported_bundle / onnx_target["model"]))


@pytest.fixture(scope="module")
def expected_concept_inputs(manifest):
    """Public input name -> shape, derived from the bundle's rank pattern and the generator."""
    from pocketgan.models import Generator, GeneratorConfig

    g = Generator(GeneratorConfig(**manifest["generator"]["config"]))
    modules = dict(g.named_modules())
    out = {}
    for layer, r in manifest["rank_pattern"].items():
        w = modules[layer].weight
        if w.dim() == 4:
            out[f"{layer}.lora_A.weight"] = [r, *w.shape[1:]]
            out[f"{layer}.lora_B.weight"] = [w.shape[0], r, 1, 1]
        else:
            out[f"{layer}.lora_A.weight"] = [r, w.shape[1]]
            out[f"{layer}.lora_B.weight"] = [w.shape[0], r]
    cfg = g.config
    out["concept_tokens"] = [1, cfg.token_count, cfg.token_dim]
    return out


# --- what the export wrote -------------------------------------------------------------------


def test_target_entry(exported_bundle, manifest, onnx_target, photo_paths):
    assert set(manifest["targets"]) == {"onnx"}
    assert onnx_target["concept_mode"] == "both"
    assert onnx_target["precision"] == "fp32"
    assert onnx_target["source_base_sha256"] == manifest["base"]["sha256"]
    assert set(onnx_target["adapters"]) == set(onnx_target["merged"]) == set(CONCEPT_NAMES)
    for rel in [onnx_target["model"], *onnx_target["adapters"].values(), *onnx_target["merged"].values()]:
        assert rel in manifest["artifacts"]
        assert sha256_file(exported_bundle / rel) == manifest["artifacts"][rel]["sha256"]
    parity = onnx_target["parity"]
    assert parity["metric"] == "psnr" and parity["threshold_db"] == 35.0
    assert parity["photos"] == [p.name for p in photo_paths]


def test_recorded_parity_meets_the_gate(onnx_target):
    scores = onnx_target["parity"]["psnr_db"]
    assert set(scores) == set(MODES)
    for mode in MODES:
        assert set(scores[mode]) == set(CONCEPT_NAMES)
        for name, db in scores[mode].items():
            assert db >= 35.0, f"{mode} {name}: {db} dB"


def test_export_keeps_the_source_bundle(exported_bundle, source_bundle):
    src, out = load_bundle(source_bundle), load_bundle(exported_bundle)
    assert out.config == src.config and out.rank_pattern == src.rank_pattern
    assert out.concept_names == src.concept_names
    assert all(torch.equal(out.base_state[k], v) for k, v in src.base_state.items())
    for a, b in zip(src.concepts, out.concepts, strict=True):
        assert all(torch.equal(a.lora[k], b.lora[k]) for k in a.lora)
        assert torch.equal(a.tokens, b.tokens)
    src_manifest, out_manifest = read_manifest(source_bundle), read_manifest(exported_bundle)
    assert out_manifest["base"] == src_manifest["base"]
    for rel, entry in src_manifest["artifacts"].items():
        assert out_manifest["artifacts"][rel] == entry


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", CONCEPT_NAMES)
def test_runtime_matches_pytorch_on_real_photos(exported_bundle, model_inputs, mode, name):
    rt = Runtime(exported_bundle, threads=1, concept_mode=mode)
    model = load_bundle(exported_bundle).model_for(name, mode)
    for photo, x in model_inputs.items():
        with torch.no_grad():
            want = model(torch.from_numpy(x)).numpy()
        got = rt.run_tensor(x, concept=name)
        assert psnr(got, want) >= 35.0, f"{mode} {name} on {photo}"
        assert export_psnr(got, want) == pytest.approx(psnr(got, want))


def test_base_graph_without_adapter_is_the_bare_base(exported_bundle, onnx_target, model_inputs):
    b = load_bundle(exported_bundle)
    cfg = b.config
    session = ort.InferenceSession(str(exported_bundle / onnx_target["model"]), providers=["CPUExecutionProvider"])
    x = next(iter(model_inputs.values()))
    with torch.no_grad():
        want = b.base_generator()(torch.from_numpy(x), torch.zeros(cfg.token_count, cfg.token_dim)).numpy()
    assert psnr(session.run(["edited"], {"image": x})[0], want) >= 35.0


# --- the base graph's contract -------------------------------------------------------------


def test_base_graph_io(base_proto, manifest):
    inputs = {i.name for i in base_proto.graph.input}
    assert "image" in inputs
    assert [o.name for o in base_proto.graph.output] == ["edited"]
    image = next(i for i in base_proto.graph.input if i.name == "image")
    assert [d.dim_value for d in image.type.tensor_type.shape.dim] == manifest["io"]["input"]["shape"]


def test_concept_tensors_are_overridable_inputs(exported_bundle, onnx_target, base_proto, expected_concept_inputs):
    assert onnx_target["concept_inputs"] == expected_concept_inputs
    graph_inputs = {i.name for i in base_proto.graph.input}
    initializers = {i.name: list(i.dims) for i in base_proto.graph.initializer}
    for name, shape in expected_concept_inputs.items():
        assert name in graph_inputs, f"{name} is not a graph input"
        assert initializers.get(name) == shape, f"{name} has no default initializer of shape {shape}"
    session = ort.InferenceSession(str(exported_bundle / onnx_target["model"]), providers=["CPUExecutionProvider"])
    overridable = {i.name: i.shape for i in session.get_overridable_initializers()}
    for name, shape in expected_concept_inputs.items():
        assert overridable.get(name) == shape, name


@pytest.mark.parametrize(
    "kind",
    [
        "lora_A",
        "lora_B",
        "concept_tokens",
    ],
)
def test_concept_input_defaults_are_zero(base_proto, expected_concept_inputs, kind):
    initializers = {i.name: i for i in base_proto.graph.initializer}
    names = [n for n in expected_concept_inputs if kind in n]
    assert names
    nonzero = [n for n in names if np.any(numpy_helper.to_array(initializers[n]) != 0)]
    assert nonzero == [], f"non-zero defaults: {nonzero[:3]}"


@pytest.mark.parametrize("name", CONCEPT_NAMES)
def test_adapter_holds_the_concept_padded_to_the_pattern(exported_bundle, onnx_target, name):
    b = load_bundle(exported_bundle)
    c = b.concept(name)
    padded = c.padded(b.rank_pattern)
    params = ort.AdapterFormat.read_adapter(str(exported_bundle / onnx_target["adapters"][name])).get_parameters()
    assert set(params) == set(onnx_target["concept_inputs"]), "an adapter sets every concept input"
    for key, value in params.items():
        got = value.numpy()
        assert list(got.shape) == onnx_target["concept_inputs"][key]
        want = c.tokens.reshape(1, *c.tokens.shape) if key == "concept_tokens" else padded[key]
        assert np.array_equal(got, want.numpy()), key


def test_adapters_are_much_smaller_than_the_base(manifest, onnx_target):
    sizes = {rel: a["bytes"] for rel, a in manifest["artifacts"].items()}
    base_model, base_weights = sizes[onnx_target["model"]], sizes[manifest["base"]["weights"]]
    for name, rel in onnx_target["adapters"].items():
        assert sizes[rel] < 0.05 * base_weights, f"{name}: {sizes[rel]} B vs base weights {base_weights} B"
        assert sizes[rel] < 0.05 * base_model


@pytest.mark.parametrize("name", CONCEPT_NAMES)
def test_merged_models_have_no_concept_inputs(exported_bundle, onnx_target, name):
    session = ort.InferenceSession(
        str(exported_bundle / onnx_target["merged"][name]), providers=["CPUExecutionProvider"]
    )
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert [o.name for o in session.get_outputs()] == ["edited"]
    assert not [i.name for i in session.get_overridable_initializers() if ".lora_" in i.name]


# --- gate and configuration ------------------------------------------------------------------


def test_parity_gate_leaves_the_existing_output_untouched(tmp_path, source_bundle, separate_export):
    out = copy_bundle(separate_export, tmp_path / "out")
    before = tree_digest(out)
    with pytest.raises(ParityError, match="below the 1000.0 dB gate") as info:
        run_export(
            ExportConfig(
                out=out, bundle=source_bundle, targets=("onnx",), concepts="separate", parity_threshold_db=1000
            )
        )
    assert isinstance(info.value, PocketganError)
    assert tree_digest(out) == before
    assert staging_leftovers(tmp_path) == []


def test_failed_export_to_a_new_dir_writes_nothing(tmp_path, source_bundle):
    out = tmp_path / "new"
    with pytest.raises(ArtifactMissingError):
        run_export(ExportConfig(out=out, bundle=tmp_path / "no-such-bundle"))
    assert not out.exists() and staging_leftovers(tmp_path) == []


def test_separate_export_has_no_merged_models(separate_export):
    m = read_manifest(separate_export)
    target = m["targets"]["onnx"]
    assert target["concept_mode"] == "separate"
    assert "merged" not in target and set(target["parity"]["psnr_db"]) == {"separate"}
    assert not (separate_export / "onnx" / "merged").exists()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"targets": ("tflite",)}, "unknown export target"),
        ({"targets": ("onnx", "tflite")}, "unknown export target"),
        ({"targets": ()}, "at least one export target"),
        ({"concepts": "all"}, "--concepts must be one of"),
        ({"concepts": "Separate"}, "--concepts must be one of"),
        ({"image_size": 100}, "multiple of 8"),
        ({"image_size": 0}, "multiple of 8"),
        ({"image_size": -8}, "multiple of 8"),
    ],
)
def test_export_config_validation(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ExportConfig(out=tmp_path / "out", **kwargs)


@pytest.mark.parametrize("spelling", ["same", "dot", "relative"])
def test_export_config_rejects_out_equal_to_bundle(tmp_path, monkeypatch, spelling):
    src = tmp_path / "b"
    src.mkdir()
    monkeypatch.chdir(tmp_path)
    out = {"same": src, "dot": src / ".", "relative": "b"}[spelling]
    with pytest.raises(ValueError, match="must differ"):
        ExportConfig(out=out, bundle=src)


def test_export_config_defaults(tmp_path):
    cfg = ExportConfig(out=str(tmp_path / "o"), targets=["onnx"])
    assert cfg.out == tmp_path / "o" and cfg.targets == ("onnx",)
    assert cfg.concepts == "separate" and cfg.parity_threshold_db is None and cfg.image_size is None
    assert "onnx" in TARGETS and set(CONCEPT_MODES) == {"separate", "merged", "both"}
    assert cfg.executorch_layout == "program"


@pytest.mark.parametrize(
    "targets, precision, coreml_precision, want",
    [
        (("onnx", "executorch", "coreml"), None, None, {"onnx": "fp32", "executorch": "fp32", "coreml": "fp16"}),
        (("onnx", "executorch", "coreml"), "int8", None, {"onnx": "int8", "executorch": "int8", "coreml": "int8"}),
        (("onnx", "coreml"), "fp32", None, {"onnx": "fp32", "coreml": "fp32"}),
        (("onnx", "coreml"), "int8", "palettize4", {"onnx": "int8", "coreml": "palettize4"}),
        (("coreml",), "fp16", None, {"coreml": "fp16"}),
    ],
)
def test_export_config_precision_per_target(tmp_path, targets, precision, coreml_precision, want):
    cfg = ExportConfig(out=tmp_path, targets=targets, precision=precision, coreml_precision=coreml_precision)
    assert {t: cfg.precision_for(t) for t in targets} == want


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(targets=("onnx",), precision="fp16"), "fp16 does not apply to onnx"),
        (dict(targets=("executorch",), precision="palettize4"), "does not apply to executorch"),
        (dict(targets=("onnx",), precision="int4"), "--precision must be one of"),
        (dict(targets=("coreml",), coreml_precision="int4"), "coreml precision must be one of"),
        (dict(targets=("executorch",), executorch_layout="zip"), "layout must be one of"),
    ],
)
def test_export_config_rejects_bad_precision_and_layout(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ExportConfig(out=tmp_path, **kwargs)


def test_export_config_metadata_names_the_vocabulary():
    """Fields that take a name from the vocabulary carry it as ``choices`` (a CLI builds
    its flags from them); importing the export API does not import torch."""
    import dataclasses
    import subprocess
    import sys

    from pocketgan.runtime import targets as vocab

    choices = {f.name: f.metadata.get("choices") for f in dataclasses.fields(ExportConfig)}
    assert choices["targets"] == vocab.TARGETS and choices["concepts"] == vocab.CONCEPT_MODES
    assert choices["precision"] == vocab.PRECISIONS and choices["executorch_layout"] == vocab.EXECUTORCH_LAYOUTS
    assert choices["platform"] == tuple(vocab.PLATFORM_TARGETS)
    assert set(choices["coreml_precision"]) == set(vocab.TARGET_SPECS["coreml"].precisions)
    assert all(f.metadata.get("help") for f in dataclasses.fields(ExportConfig))
    code = "import sys, pocketgan.export; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- the exporter skeleton (pocketgan.export.target) --------------------------------------------


class _IdentityTarget:
    """A minimal target: writes ``<name>/out.bin``, gates ``inputs + offset`` against an
    identity model (offset 0: 999 dB; 0.5: far below any gate)."""

    name = "coreml"  # any TARGET_SPECS row: the skeleton checks precisions against it
    parity_may_be_skipped = True

    def __init__(self, offset: float = 0.0, skip: str | None = None) -> None:
        self.offset, self.skip, self.work = offset, skip, None

    def check(self, concept_mode, precision):
        if precision == "palettize4":
            raise ValueError("no palettize4 here")

    def build(self, job, work):
        self.work = work
        (work / self.name / "out.bin").write_bytes(b"artifact")
        if self.skip:
            job.gate.skip(self.skip)
        else:
            got = [x + self.offset for x in job.gate.inputs]
            job.gate.check("separate", job.names[0], "identity", torch.nn.Identity(), got)
        return job.entry_head(extra=1)


@pytest.fixture
def skeleton_staging(tmp_path, tiny_bundle):
    (tmp_path / "base").mkdir()
    (tmp_path / "base/generator.safetensors").write_bytes(b"base")
    return tmp_path


def test_skeleton_writes_after_the_gate_and_composes_the_entry(skeleton_staging, tiny_bundle, photo_paths):
    from pocketgan.export.target import export_target

    target = _IdentityTarget()
    entry = export_target(
        target, tiny_bundle, skeleton_staging, concept_mode="separate", photos=photo_paths[:2], precision="int8"
    )
    assert (skeleton_staging / "coreml/out.bin").read_bytes() == b"artifact"
    assert not target.work.exists()  # the work directory is gone, nothing else left in staging
    assert sorted(p.name for p in skeleton_staging.iterdir()) == ["base", "coreml"]
    assert list(entry) == ["precision", "extra", "concept_mode", "source_base_sha256", "parity", "parity_checked"]
    assert entry["source_base_sha256"] == sha256_file(skeleton_staging / "base/generator.safetensors")
    assert entry["parity"] == {
        "metric": "psnr",
        "threshold_db": 30.0,
        "photos": [p.name for p in photo_paths[:2]],
        "psnr_db": {"separate": {tiny_bundle.concept_names[0]: 999.0}},
    }
    assert entry["parity_checked"] is True


def test_skeleton_writes_nothing_when_a_check_fails(skeleton_staging, tiny_bundle, photo_paths):
    from pocketgan.export.target import export_target

    with pytest.raises(ParityError, match="identity: .* below the 35.0 dB gate"):
        export_target(
            _IdentityTarget(offset=0.5), tiny_bundle, skeleton_staging, concept_mode="separate", photos=photo_paths[:1]
        )  # Core ML's default precision, fp16: 35 dB
    assert sorted(p.name for p in skeleton_staging.iterdir()) == ["base"]


@pytest.mark.parametrize(
    "precision, requested, gate",
    [("fp16", None, 35.0), ("int8", None, 30.0), ("int8", 35.0, 35.0), ("fp32", 20.0, 20.0)],
)
def test_skeleton_gate_is_parity_threshold_db(skeleton_staging, tiny_bundle, photo_paths, precision, requested, gate):
    """One rule for every target: a requested threshold is used as given (an explicit 35 dB
    on int8 Core ML is 35, not lowered to 30); None is 35 dB float, 30 dB int8/palettize4."""
    from pocketgan.export.target import export_target

    entry = export_target(
        _IdentityTarget(),
        tiny_bundle,
        skeleton_staging,
        concept_mode="separate",
        photos=photo_paths[:1],
        precision=precision,
        threshold_db=requested,
    )
    assert entry["parity"]["threshold_db"] == gate


def test_skeleton_records_skipped_parity(skeleton_staging, tiny_bundle, photo_paths):
    from pocketgan.export.target import export_target

    entry = export_target(
        _IdentityTarget(skip="cannot run here"),
        tiny_bundle,
        skeleton_staging,
        concept_mode="separate",
        photos=photo_paths[:1],
    )
    assert entry["parity"]["psnr_db"] == {} and entry["parity_checked"] is False
    assert entry["parity_note"] == "cannot run here"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(concept_mode="fused"), "concept_mode must be one of"),
        (dict(concept_mode="separate", precision="int4"), "Core ML precision must be one of"),
        (dict(concept_mode="separate", precision="palettize4"), "no palettize4 here"),
    ],
)
def test_skeleton_validates_before_any_work(skeleton_staging, tiny_bundle, photo_paths, kwargs, match):
    from pocketgan.export.target import export_target

    with pytest.raises(ValueError, match=match):
        export_target(_IdentityTarget(), tiny_bundle, skeleton_staging, photos=photo_paths[:1], **kwargs)
    assert sorted(p.name for p in skeleton_staging.iterdir()) == ["base"]


@pytest.mark.parametrize("name", TARGETS)
def test_every_target_has_an_exporter(name):
    """``load_target`` finds each vocabulary row's class in ``pocketgan.export.<name>_target``."""
    from pocketgan.export.target import load_target

    cls = load_target(name)
    assert cls.name == name and isinstance(cls.parity_may_be_skipped, bool)
    assert callable(cls.from_config) and callable(cls.build) and callable(cls.check)
    with pytest.raises(ValueError, match="unknown export target"):
        load_target("tflite")
