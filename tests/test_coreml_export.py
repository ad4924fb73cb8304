"""Core ML target: one multifunction .mlpackage (a function per concept) + iOS 17 fallback.

Core ML prediction exists only on macOS. On Linux these tests check what can be checked
without it: the packages' structure (function names, input/output names, shapes and
dtypes, spec versions, compressed weights), weight deduplication across functions, the
sizes of each precision, the manifest entry against the schema fragment in
``docs/coreml.md``, the backend's refusal, and its loader (checksums, package rebuilt
from verified bytes) with Core ML's loading replaced by ``skip_model_load``. The parity
gate's plumbing is exercised with a stand-in predictor; numerical tests of Core ML itself
are ``skipif`` not macOS.

The default run converts the tiny bundle (3 concepts) three times: fp16 with the iOS 17
fallback, fp32 and int8 (~90 s here). Merged mode, 4-bit palettization and the
TorchScript frontend are ``slow``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("coremltools")

from safetensors.torch import save as save_safetensors  # noqa: E402

from helpers import REPO_ROOT, backend_manifest, flip_byte  # noqa: E402

THRESHOLD_DB = 35.0
ON_MACOS = sys.platform == "darwin"
macos_only = pytest.mark.skipif(not ON_MACOS, reason="Core ML prediction runs only on macOS")
linux_only = pytest.mark.skipif(ON_MACOS, reason="checks the non-macOS behaviour")


def _photos():
    from pocketgan.photos import sample_photo_paths

    return sample_photo_paths()


def _staging(path: Path, bundle) -> Path:
    from pocketgan.bundle import BASE_WEIGHTS

    (path / "base").mkdir(parents=True, exist_ok=True)
    (path / BASE_WEIGHTS).write_bytes(save_safetensors({k: v.contiguous() for k, v in bundle.base_state.items()}))
    return path


def _export(tmp_path_factory, bundle, name: str, **kwargs):
    from pocketgan.export.coreml_target import write_coreml_target

    staging = _staging(tmp_path_factory.mktemp(f"coreml-{name}") / "bundle", bundle)
    kwargs.setdefault("concept_mode", "separate")
    entry = write_coreml_target(bundle, staging, photos=_photos(), threshold_db=None, **kwargs)  # the defaults
    return staging, entry


@pytest.fixture(scope="module")
def fp16(tmp_path_factory, tiny_bundle):
    """(staging, entry): separate mode, fp16, iOS 17 fallback (the defaults)."""
    return _export(tmp_path_factory, tiny_bundle, "fp16")


@pytest.fixture(scope="module")
def fp32(tmp_path_factory, tiny_bundle):
    return _export(tmp_path_factory, tiny_bundle, "fp32", precision="fp32", ios17_fallback=False)


@pytest.fixture(scope="module")
def int8(tmp_path_factory, tiny_bundle):
    return _export(tmp_path_factory, tiny_bundle, "int8", precision="int8", ios17_fallback=False)


def _manifest(bundle_dir: Path, bundle, entry: dict) -> dict:
    return backend_manifest(bundle_dir, bundle, "coreml", entry)


def _schema_fragment() -> dict:
    """The ``targets.coreml`` schema fragment documented in docs/coreml.md."""
    text = (REPO_ROOT / "docs" / "coreml.md").read_text("utf-8")
    match = re.search(r"<!-- schema: targets.coreml -->\s*```json\n(.*?)```", text, re.S)
    assert match, "docs/coreml.md lacks the targets.coreml schema fragment"
    return json.loads(match.group(1))


def _patched_schema() -> dict:
    """The bundle schema with ``targets.coreml`` added as docs/coreml.md says (unless it has it)."""
    import copy

    from pocketgan.runtime.manifest import manifest_schema

    schema = copy.deepcopy(manifest_schema())
    if "coreml" not in schema["properties"]["targets"]["properties"]:
        schema["$defs"]["coreml_target"] = _schema_fragment()
        schema["properties"]["targets"]["properties"]["coreml"] = {"$ref": "#/$defs/coreml_target"}
    return schema


# --- the export: entry and structure -----------------------------------------------------------


def test_entry_fields(fp16, tiny_bundle):
    from pocketgan.runtime.manifest import sha256_file

    staging, entry = fp16
    names = tiny_bundle.concept_names
    s = tiny_bundle.config.image_size
    assert entry["precision"] == "fp16" and entry["compute_precision"] == "float16"
    assert entry["concept_mode"] == "separate" and entry["minimum_deployment_target"] == "iOS18"
    assert entry["source_base_sha256"] == sha256_file(staging / "base/generator.safetensors")
    assert entry["package"] == "coreml/generator.mlpackage" and (staging / entry["package"]).is_dir()
    assert "merged_package" not in entry and "weight_compression" not in entry
    assert entry["functions"] == {n: n for n in names} and entry["default_function"] == names[0]
    assert entry["inputs"] == [{"name": "image", "shape": [1, 3, s, s], "dtype": "float32"}]
    assert entry["outputs"] == [{"name": "edited", "shape": [1, 3, s, s], "dtype": "float32"}]
    assert entry["converter"]["frontend"] == "torch.export"
    assert sorted(entry["parity"]["photos"]) == sorted(p.name for p in _photos())
    json.dumps(entry)  # JSON-serialisable as it is


def test_entry_follows_the_documented_schema(fp16, fp32, int8):
    import jsonschema

    schema = _patched_schema()
    validator = jsonschema.Draft202012Validator({"$defs": schema["$defs"], "$ref": "#/$defs/coreml_target"})
    for _, entry in (fp16, fp32, int8):
        validator.validate(entry)
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(dict(fp16[1], precision="int4"))


def test_only_core_ml_files_are_written(fp16):
    staging, entry = fp16
    top = sorted(p.name for p in (staging / "coreml").iterdir())
    assert top == ["generator.mlpackage", "ios17"]  # no single-function intermediates
    assert not list((staging / "coreml").rglob("executorch_debug_handle_mapping.json"))
    for pkg in [staging / entry["package"], *(staging / p for p in entry["ios17"]["packages"].values())]:
        files = sorted(p.relative_to(pkg).as_posix() for p in pkg.rglob("*") if p.is_file())
        assert files == [
            "Data/com.apple.CoreML/model.mlmodel",
            "Data/com.apple.CoreML/weights/weight.bin",
            "Manifest.json",
        ], (pkg, files)


def test_function_names_and_io(fp16, tiny_bundle):
    """Read back from the saved package: one function per concept, image -> edited, float32."""
    import coremltools as ct

    staging, entry = fp16
    names = tiny_bundle.concept_names
    s = tiny_bundle.config.image_size
    package = staging / entry["package"]
    spec = ct.utils.load_spec(str(package))
    assert spec.specificationVersion == 9  # iOS 18: multifunction
    assert [f.name for f in spec.description.functions] == list(names)
    assert spec.description.defaultFunctionName == names[0]
    assert sorted(spec.mlProgram.functions) == sorted(names)
    float32 = ct.proto.FeatureTypes_pb2.ArrayFeatureType.FLOAT32
    for fn in spec.description.functions:
        for features, name in ((fn.input, "image"), (fn.output, "edited")):
            assert [f.name for f in features] == [name]
            assert list(features[0].type.multiArrayType.shape) == [1, 3, s, s]
            assert features[0].type.multiArrayType.dataType == float32
    # coremltools (>= 8) selects a function by name; without a Mac only the spec loads
    for name in names:
        model = ct.models.MLModel(str(package), function_name=name, skip_model_load=True)
        assert model.function_name == name
        assert [i.name for i in model.get_spec().description.functions] == list(names)
    with pytest.raises(ValueError, match="not found"):
        ct.models.MLModel(str(package), function_name="nope", skip_model_load=True)


def test_check_structure_rejects_mismatches(fp16, tiny_bundle):
    from pocketgan.export.coreml_target import CoreMLStructureError, check_structure

    staging, entry = fp16
    package = staging / entry["package"]
    names = tiny_bundle.concept_names
    s = tiny_bundle.config.image_size
    info = check_structure(package, names, s, "iOS18", "fp16")
    assert set(info["functions"]) == set(names)
    with pytest.raises(CoreMLStructureError, match="functions"):
        check_structure(package, [*names, "extra"], s, "iOS18")
    with pytest.raises(CoreMLStructureError, match="functions"):
        check_structure(package, list(reversed(names)), s, "iOS18")
    with pytest.raises(CoreMLStructureError, match="expected input"):
        check_structure(package, names, 2 * s, "iOS18")
    with pytest.raises(CoreMLStructureError, match="specification version"):
        check_structure(package, names, s, "iOS17")
    with pytest.raises(CoreMLStructureError, match="no compressed"):
        check_structure(package, names, s, "iOS18", "int8")


def test_ios17_fallback_packages(fp16, tiny_bundle):
    from pocketgan.export.coreml_target import describe_package

    staging, entry = fp16
    s = tiny_bundle.config.image_size
    fallback = entry["ios17"]
    assert fallback["minimum_deployment_target"] == "iOS17" and fallback["concept_mode"] == "merged"
    assert fallback["packages"] == {n: f"coreml/ios17/{n}.mlpackage" for n in tiny_bundle.concept_names}
    for name, rel in fallback["packages"].items():
        info = describe_package(staging / rel)
        assert info["specification_version"] == 8, name  # iOS 17: no multifunction
        assert list(info["functions"]) == ["main"], name
        fn = info["functions"]["main"]
        assert fn["inputs"] == [{"name": "image", "shape": [1, 3, s, s], "dtype": "FLOAT32"}]
        assert fn["outputs"] == [{"name": "edited", "shape": [1, 3, s, s], "dtype": "FLOAT32"}]
        assert not any("lora" in op for op in fn["ops"])
    assert entry["sizes"]["ios17_packages"] == sum(
        p.stat().st_size for rel in fallback["packages"].values() for p in (staging / rel).rglob("*") if p.is_file()
    )


def test_concept_tokens_and_lora_differ_between_functions(fp16):
    """The functions are not one concept repeated: each carries its own constants."""
    import coremltools as ct

    staging, entry = fp16
    spec = ct.utils.load_spec(str(staging / entry["package"]))
    blobs = {}
    for name, fn in spec.mlProgram.functions.items():
        offsets = []
        for op in fn.block_specializations[fn.opset].operations:
            if op.type == "const" and op.attributes["val"].WhichOneof("value") == "blobFileValue":
                offsets.append(op.attributes["val"].blobFileValue.offset)
        blobs[name] = set(offsets)
    names = list(blobs)
    shared = set.intersection(*blobs.values())
    assert shared, "the base weights should be shared"
    for a in names:
        for b in names:
            if a != b:
                assert blobs[a] - blobs[b], f"{a} has no constants of its own"


# --- sizes ---------------------------------------------------------------------------------------


def test_weights_are_deduplicated(fp16, tiny_bundle):
    """K functions in one package cost far less than K single-function packages."""
    staging, entry = fp16
    sizes = entry["sizes"]
    k = len(tiny_bundle.concept_names)
    assert k >= 3
    from pocketgan.export.coreml_target import package_bytes, weight_bytes

    package = staging / entry["package"]
    assert sizes["package"] == package_bytes(package) and sizes["package_weights"] == weight_bytes(package)
    assert sizes["package"] < 1.5 * sizes["single_function_package"], sizes  # duplicated: ~k x
    assert sizes["package_weights"] < 1.2 * sizes["single_function_weights"], sizes
    base_fp16 = sum(t.numel() * 2 for t in tiny_bundle.base_state.values())
    assert sizes["package_weights"] < base_fp16 + 0.25 * base_fp16 * (k - 1)


def test_precision_sizes(fp16, fp32, int8, tiny_bundle):
    """Weight blobs: fp16 about half of fp32, int8 about a quarter. (The program text,
    ~45 KB per function with compacted names, is about the same in every precision: on the
    149 K-parameter tiny generator it keeps whole-package ratios higher, see docs/coreml.md.)"""
    s16, s32, s8 = fp16[1]["sizes"], fp32[1]["sizes"], int8[1]["sizes"]
    assert s16["package_weights"] <= 0.55 * s32["package_weights"], (s16, s32)
    assert s8["package_weights"] <= 0.3 * s32["package_weights"], (s8, s32)
    assert s16["package"] < 0.7 * s32["package"] and s8["package"] < 0.55 * s32["package"]
    assert s8["package"] < s16["package"] < s32["package"]
    base_fp32 = sum(t.numel() * 4 for t in tiny_bundle.base_state.values())
    assert 0.95 * base_fp32 < s32["single_function_weights"] < 1.1 * base_fp32
    # int8 is compressed the same way in every function, so it is still deduplicated
    assert s8["package_weights"] < 1.2 * s8["single_function_weights"], s8


def test_int8_weights_are_quantized(int8, tiny_bundle):
    from pocketgan.export.coreml_target import describe_package

    staging, entry = int8
    assert entry["precision"] == "int8" and entry["compute_precision"] == "float16"
    assert entry["weight_compression"]["dtype"] == "int8"
    assert entry["weight_compression"]["granularity"] == "per_channel"
    info = describe_package(staging / entry["package"])
    assert set(info["functions"]) == set(tiny_bundle.concept_names)
    for name, fn in info["functions"].items():
        assert "constexpr_blockwise_shift_scale" in fn["ops"], (name, fn["ops"])
    if not ON_MACOS:
        assert entry["parity"]["threshold_db"] == 30.0  # compressed weights: the 30 dB default


def test_bad_arguments(tiny_bundle, tmp_path):
    from pocketgan.export.coreml_target import write_coreml_target

    for kwargs, match in (
        ({"concept_mode": "fused"}, "concept_mode"),
        ({"concept_mode": "separate", "precision": "int4"}, "precision"),
        ({"concept_mode": "separate", "frontend": "onnx"}, "frontend"),
    ):
        with pytest.raises(ValueError, match=match):
            write_coreml_target(tiny_bundle, tmp_path, photos=_photos(), threshold_db=35.0, **kwargs)


def test_parity_threshold_rule():
    """Core ML's gate follows the one rule of every target (pocketgan.runtime.targets): a
    requested threshold is used as given, an explicit 35 dB on int8 included (it used to be
    lowered to 30 dB); by default 35 dB for fp32/fp16 and 30 dB for the compressed weights."""
    from pocketgan.runtime.targets import TARGET_SPECS, parity_threshold_db

    defaults = {p: parity_threshold_db(p) for p in TARGET_SPECS["coreml"].precisions}
    assert defaults == {"fp16": 35.0, "fp32": 35.0, "int8": 30.0, "palettize4": 30.0}
    assert parity_threshold_db("int8", 35.0) == parity_threshold_db("palettize4", 35.0) == 35.0
    assert parity_threshold_db("int8", 25.0) == 25.0 and parity_threshold_db("fp16", 40.0) == 40.0


# --- compact names: the program's internal names are short, the graph is unchanged -----------------

INTERFACE = {"image", "edited"}


@pytest.fixture(scope="module")
def compacted(tiny_bundle):
    """(before, after): one concept converted by ``convert_function`` (int8: casts, constexpr
    ops with blob-valued arguments), captured just before and after ``compact_names``."""
    from pocketgan.export import coreml_target as cm

    captured = {}
    real = cm.compact_names

    def capture(mlmodel):
        captured["before"] = mlmodel
        captured["after"] = real(mlmodel)
        return captured["after"]

    name = tiny_bundle.concept_names[1]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cm, "compact_names", capture)
        out = cm.convert_function(
            tiny_bundle.model_for(name, "separate"), tiny_bundle.example_inputs(), precision="int8", target="iOS18"
        )
    assert out is captured["after"]
    return captured["before"], captured["after"]


def _graph(function) -> tuple:
    """A MIL function (``MIL_pb2.Function``) without its internal names: every op (type,
    arguments as references to the producing op's position and output index or to a
    function input, non-name attributes, output types, nested blocks), in order. Raises
    KeyError on a reference to a name nothing defined."""
    where = {value.name: ("input", value.name) for value in function.inputs}

    def serial(message) -> bytes:
        return message.SerializeToString(deterministic=True)

    def block(b, path: tuple) -> tuple:
        for k, value in enumerate(b.inputs):
            where[value.name] = ("block input", path, k)
        ops = []
        for i, op in enumerate(b.operations):
            args = {
                param: [
                    where[x.name] if x.WhichOneof("binding") == "name" else ("value", serial(x.value))
                    for x in argument.arguments
                ]
                for param, argument in sorted(op.inputs.items())
            }
            nested = [block(n, (*path, i, k)) for k, n in enumerate(op.blocks)]
            attrs = {k: serial(v) for k, v in sorted(op.attributes.items()) if k != "name"}
            ops.append((op.type, args, attrs, sorted(op.attributes), [serial(o.type) for o in op.outputs], nested))
            for j, value in enumerate(op.outputs):
                where[value.name] = ("op", (*path, i), j)
        return tuple(ops), [where[n] for n in b.outputs], [serial(v.type) for v in b.inputs]

    return (
        [(v.name, serial(v.type)) for v in function.inputs],
        function.opset,
        {k: block(b, (k,)) for k, b in sorted(function.block_specializations.items())},
    )


def _names(program, ops: bool = True) -> set[str]:
    """Every variable name of an ML program, and with ``ops`` every op's ``name``."""
    names = set()

    def block(b):
        names.update(v.name for v in b.inputs)
        names.update(b.outputs)
        for op in b.operations:
            names.update(v.name for v in op.outputs)
            names.update(x.name for a in op.inputs.values() for x in a.arguments if x.WhichOneof("binding") == "name")
            if ops and "name" in op.attributes:
                names.update(op.attributes["name"].immediateValue.tensor.strings.values)
            for n in op.blocks:
                block(n)

    for function in program.functions.values():
        names.update(v.name for v in function.inputs)
        for b in function.block_specializations.values():
            block(b)
    return names


def _milproto_load(spec, weights_dir):
    """The ML program loaded back into pymil (coremltools' milproto frontend): raises on a
    reference to an undefined name or a type that does not match its op."""
    from coremltools.converters.mil.frontend.milproto.load import load

    return load(spec, spec.specificationVersion, str(weights_dir))


def test_compact_names_keeps_the_graph(compacted):
    """Same ops in the same order, each argument read from the same producer and output,
    same constants (values and blob offsets), types, function inputs and outputs."""
    before, after = (m.get_spec() for m in compacted)
    assert after.description == before.description
    assert list(after.mlProgram.functions) == list(before.mlProgram.functions) == ["main"]
    old, new = before.mlProgram.functions["main"], after.mlProgram.functions["main"]
    assert _graph(new) == _graph(old)
    assert [v.name for v in new.inputs] == ["image"] and list(new.block_specializations[new.opset].outputs) == [
        "edited"
    ]
    assert len(_names(after.mlProgram, ops=False)) == len(_names(before.mlProgram, ops=False))  # one-to-one
    assert after.mlProgram.ByteSize() < 0.75 * before.mlProgram.ByteSize()


def test_compacted_program_loads_into_pymil(compacted):
    before, after = compacted
    spec = after.get_spec()
    prog = _milproto_load(spec, after.weights_dir)
    function = prog.functions["main"]
    assert [v.name for v in function.outputs] == ["edited"] and list(function.inputs) == ["image"]
    ops = [op.op_type for op in function.operations]
    assert ops == [
        op.op_type for op in _milproto_load(before.get_spec(), before.weights_dir).functions["main"].operations
    ]
    assert "constexpr_blockwise_shift_scale" in ops


def test_no_long_internal_names(compacted, fp16):
    """Only the interface keeps its names; everything else is ``v<n>``, in the converted
    function and in the saved packages (the merge into a multifunction package keeps them)."""
    import coremltools as ct

    staging, entry = fp16
    programs = [compacted[1].get_spec().mlProgram]
    for rel in [entry["package"], *entry["ios17"]["packages"].values()]:
        programs.append(ct.utils.load_spec(str(staging / rel)).mlProgram)
    for program in programs:
        internal = _names(program) - INTERFACE
        assert internal and all(re.fullmatch(r"v\d+", n) and len(n) <= 8 for n in internal), sorted(internal)[:20]


def test_compaction_shrinks_the_multifunction_package(compacted, tmp_path):
    """Merged into a multifunction package, the compacted program is much smaller; the
    weights are the same bytes."""
    from pocketgan.export.coreml_target import merge_functions, save_package

    data = {}
    for label, mlmodel in zip(("before", "after"), compacted):
        save_package(mlmodel, tmp_path / f"{label}.mlpackage")
        merged = tmp_path / f"merged-{label}.mlpackage"
        merge_functions({"one": tmp_path / f"{label}.mlpackage", "two": tmp_path / f"{label}.mlpackage"}, merged, "one")
        data[label] = {p.name: p.read_bytes() for p in (merged / "Data/com.apple.CoreML").rglob("*") if p.is_file()}
    assert data["after"]["weight.bin"] == data["before"]["weight.bin"]
    assert len(data["after"]["model.mlmodel"]) < 0.75 * len(data["before"]["model.mlmodel"])


def test_compact_program_control_flow():
    """Nested blocks (cond, while_loop: block inputs defined twice under one name), names
    that look like the short ones (an input ``v1``, an op ``v0``): renamed one-to-one, the
    graph unchanged, and the program still loads."""
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb

    from pocketgan.export.coreml_target import compact_names

    @mb.program(
        input_specs=[mb.TensorSpec(shape=(1, 3, 4, 4)), mb.TensorSpec(shape=(1,))], opset_version=ct.target.iOS17
    )
    def prog(v1, flag):
        x = mb.mul(x=v1, y=2.0, name="a_rather_long_name_for_an_intermediate_value")
        pred = mb.greater(x=mb.reduce_sum(x=flag), y=0.0)
        y = mb.cond(pred=pred, _true_fn=lambda: mb.add(x=x, y=1.0, name="v0"), _false_fn=lambda: mb.sub(x=x, y=1.0))
        _, z = mb.while_loop(
            _cond=lambda i, acc: mb.less(x=i, y=3.0),
            _body=lambda i, acc: (mb.add(x=i, y=1.0), mb.mul(x=acc, y=y)),
            loop_vars=(mb.const(val=np.float32(0.0)), y),
        )
        return mb.relu(x=z, name="the_output")

    before = ct.convert(
        prog,
        convert_to="mlprogram",
        minimum_deployment_target=ct.target.iOS17,
        skip_model_load=True,
        pass_pipeline=ct.PassPipeline.EMPTY,
    )
    after = compact_names(before)
    old, new = before.get_spec(), after.get_spec()
    assert new.description == old.description
    assert "while_loop" in [
        op.type for op in new.mlProgram.functions["main"].block_specializations["CoreML7"].operations
    ]
    assert _graph(new.mlProgram.functions["main"]) == _graph(old.mlProgram.functions["main"])
    internal = _names(new.mlProgram) - {"v1", "flag", "the_output"}
    assert internal and all(re.fullmatch(r"v\d+", n) for n in internal), sorted(internal)
    assert len(_names(new.mlProgram, ops=False)) == len(_names(old.mlProgram, ops=False))
    _milproto_load(new, after.weights_dir)


# --- parity: recorded honestly on Linux, gate plumbing with a stand-in predictor -----------------


@linux_only
def test_no_parity_numbers_without_macos(fp16):
    _, entry = fp16
    assert entry["parity_checked"] is False
    assert entry["parity"]["psnr_db"] == {}
    assert entry["parity"]["threshold_db"] == THRESHOLD_DB
    assert "only on macOS" in entry["parity_note"]


def _stand_in_predictor(bundle, mode: str, offset: dict[str, float]):
    """Replaces Core ML prediction with PyTorch (+ an offset per function)."""

    def predict(path, function, inputs):
        name = function or Path(path).stem
        model = bundle.model_for(name, mode)
        with torch.no_grad():
            return [model(torch.from_numpy(x)).numpy() + offset.get(name, 0.0) for x in inputs]

    return predict


def test_parity_gate_failure_writes_nothing(tmp_path, tiny_bundle, monkeypatch):
    """Where Core ML can predict, a function far from PyTorch fails the export before any
    file is written (simulated here: prediction replaced, one concept offset by 0.2)."""
    from pocketgan.bundle import Bundle
    from pocketgan.export import coreml_target as cm
    from pocketgan.export.parity import ParityError

    bundle = Bundle.from_parts("tiny", tiny_bundle.base_generator(), tiny_bundle.concepts[:1])
    name = bundle.concept_names[0]
    monkeypatch.setattr(cm, "can_predict", lambda target: (True, ""))
    monkeypatch.setattr(cm, "predict", _stand_in_predictor(bundle, "separate", {name: 0.2}))
    staging = _staging(tmp_path / "b", bundle)
    with pytest.raises(ParityError, match="below the 35.0 dB gate"):
        cm.write_coreml_target(
            bundle, staging, concept_mode="separate", photos=_photos(), threshold_db=35.0, ios17_fallback=False
        )
    assert not (staging / "coreml").exists()


@pytest.mark.slow
def test_parity_gate_records_scores(tmp_path, tiny_bundle, monkeypatch):
    from pocketgan.bundle import Bundle
    from pocketgan.export import coreml_target as cm

    bundle = Bundle.from_parts("tiny", tiny_bundle.base_generator(), tiny_bundle.concepts[:2])
    names = bundle.concept_names
    monkeypatch.setattr(cm, "can_predict", lambda target: (True, ""))
    monkeypatch.setattr(cm, "predict", _stand_in_predictor(bundle, "separate", {names[1]: 1e-3}))
    entry = cm.write_coreml_target(
        bundle,
        _staging(tmp_path / "b", bundle),
        concept_mode="separate",
        photos=_photos(),
        threshold_db=35.0,
        ios17_fallback=False,
    )
    assert entry["parity_checked"] is True and "parity_note" not in entry
    scores = entry["parity"]["psnr_db"]["separate"]
    assert scores[names[0]] == 999.0 and 60 < scores[names[1]] < 70  # offset 1e-3 on a [-1, 1] range: 66 dB


# --- the backend ---------------------------------------------------------------------------------


@linux_only
def test_backend_refuses_off_macos(fp16, tiny_bundle):
    from pocketgan.runtime.backends.coreml import CoreMLBackend
    from pocketgan.runtime.errors import BackendUnavailableError

    staging, entry = fp16
    with pytest.raises(BackendUnavailableError, match="Core ML runs only on macOS.*backend='onnx'"):
        CoreMLBackend(staging, _manifest(staging, tiny_bundle, entry), threads=None, concept_mode="auto")


@linux_only
def test_create_backend_refuses_off_macos(fp16, tiny_bundle):
    """Once ``create_backend`` knows "coreml", opening a bundle says why it cannot run here."""
    from pocketgan.runtime.backends import create_backend
    from pocketgan.runtime.errors import BackendUnavailableError

    staging, entry = fp16
    with pytest.raises(BackendUnavailableError) as info:
        create_backend("coreml", staging, _manifest(staging, tiny_bundle, entry), threads=None, concept_mode="auto")
    if "unknown backend" in str(info.value):
        pytest.skip("create_backend does not know 'coreml' yet")
    assert "only on macOS" in str(info.value)


@pytest.fixture()
def fake_mac(monkeypatch):
    """Run the backend's macOS code path on Linux: Core ML loading replaced by reading the
    spec (``skip_model_load``), so everything but ``predict`` works. Yields the loads made."""
    import coremltools as ct

    from pocketgan.runtime.backends import coreml as backend_module

    loads = []

    def load_function(package, function):
        loads.append((Path(package), function))
        kwargs = {"function_name": function} if function else {}
        return ct.models.MLModel(str(package), skip_model_load=True, **kwargs)

    monkeypatch.setattr(backend_module, "platform_supported", lambda: True)
    monkeypatch.setattr(backend_module, "macos_major", lambda: 15)
    monkeypatch.setattr(backend_module, "load_function", load_function)
    return backend_module, loads


def test_backend_loader_on_a_simulated_mac(fake_mac, fp16, tiny_bundle, tmp_path):
    backend_module, loads = fake_mac
    staging, entry = fp16
    bundle_dir = shutil.copytree(staging, tmp_path / "bundle")
    manifest = _manifest(bundle_dir, tiny_bundle, entry)
    (bundle_dir / entry["package"] / "unlisted.txt").write_text("not in the manifest")
    backend = backend_module.CoreMLBackend(bundle_dir, manifest, threads=2, concept_mode="auto")
    assert backend.name == "coreml" and backend.concept_mode == "separate"
    assert [f for _, f in loads] == list(tiny_bundle.concept_names)
    package = loads[0][0]
    assert package.name == "generator.mlpackage" and not package.is_relative_to(bundle_dir)  # a verified copy
    assert sorted(p.relative_to(package).as_posix() for p in package.rglob("*") if p.is_file()) == [
        "Data/com.apple.CoreML/model.mlmodel",
        "Data/com.apple.CoreML/weights/weight.bin",
        "Manifest.json",
    ]
    for name in tiny_bundle.concept_names:
        backend.activate(name)
    from pocketgan.runtime.errors import BundleError

    with pytest.raises(BundleError, match="no Core ML function"):
        backend.activate("nope")


def test_backend_uses_ios17_packages_before_macos_15(fake_mac, fp16, tiny_bundle, monkeypatch):
    backend_module, loads = fake_mac
    staging, entry = fp16
    monkeypatch.setattr(backend_module, "macos_major", lambda: 14)
    backend_module.CoreMLBackend(staging, _manifest(staging, tiny_bundle, entry), threads=None, concept_mode="auto")
    assert [(p.name, f) for p, f in loads] == [(f"{n}.mlpackage", None) for n in tiny_bundle.concept_names]
    from pocketgan.runtime.errors import BackendUnavailableError

    no_fallback = {k: v for k, v in entry.items() if k != "ios17"}
    with pytest.raises(BackendUnavailableError, match="macOS 15"):
        backend_module.CoreMLBackend(
            staging, _manifest(staging, tiny_bundle, no_fallback), threads=None, concept_mode="auto"
        )


def test_backend_rejects_corrupted_package(fake_mac, fp16, tiny_bundle, tmp_path):
    from pocketgan.runtime.errors import ChecksumError

    backend_module, _ = fake_mac
    staging, entry = fp16
    manifest = _manifest(staging, tiny_bundle, entry)
    bundle_dir = shutil.copytree(staging, tmp_path / "bundle")
    flip_byte(bundle_dir / entry["package"] / "Data/com.apple.CoreML/weights/weight.bin")
    with pytest.raises(ChecksumError, match="weight.bin"):
        backend_module.CoreMLBackend(bundle_dir, manifest, threads=None, concept_mode="auto")


def test_backend_reports_missing_target_and_mode(fake_mac, fp16, tiny_bundle):
    from pocketgan.runtime.errors import TargetNotFoundError

    backend_module, _ = fake_mac
    staging, entry = fp16
    manifest = _manifest(staging, tiny_bundle, entry)
    with pytest.raises(TargetNotFoundError, match="merged"):
        backend_module.CoreMLBackend(staging, manifest, threads=None, concept_mode="merged")
    del manifest["targets"]["coreml"]
    with pytest.raises(TargetNotFoundError, match="--targets coreml"):
        backend_module.CoreMLBackend(staging, manifest, threads=None, concept_mode="auto")


def test_runtime_import_stays_torch_and_coreml_free():
    code = (
        "import sys, pocketgan.runtime, pocketgan.runtime.backends.coreml\n"
        "bad = [m for m in ('torch', 'coremltools') if m in sys.modules]\n"
        "assert not bad, f'imported eagerly: {bad}'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_save_bundle_lists_every_package_file(tmp_path, fp16, tiny_bundle, monkeypatch):
    """As a save_bundle writer: every file inside the packages gets a checksum, and the
    manifest validates against the schema with the documented targets.coreml fragment."""
    from pocketgan.bundle import save_bundle
    from pocketgan.runtime import manifest as manifest_module
    from pocketgan.runtime.manifest import sha256_file

    staging, entry = fp16
    schema = _patched_schema()
    monkeypatch.setattr(manifest_module, "manifest_schema", lambda: schema)

    def writer(dest: Path) -> dict:  # reuse the fixture's packages instead of converting again
        shutil.copytree(staging / "coreml", dest / "coreml")
        return dict(entry, source_base_sha256=sha256_file(dest / "base/generator.safetensors"))

    manifest = save_bundle(tiny_bundle, tmp_path / "out", {"coreml": writer})
    listed = {p for p in manifest["artifacts"] if p.startswith("coreml/")}
    on_disk = {p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out/coreml").rglob("*") if p.is_file()}
    assert listed == on_disk
    assert f"{entry['package']}/Data/com.apple.CoreML/weights/weight.bin" in listed
    assert manifest["targets"]["coreml"]["package"] == "coreml/generator.mlpackage"


# --- macOS: Core ML itself -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def inputs(tiny_bundle):
    from pocketgan.export.parity import parity_inputs

    return parity_inputs(_photos(), tiny_bundle.config.image_size)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean(((a.astype(np.float64) - b.astype(np.float64)) / 2.0) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


@macos_only
def test_parity_recorded_on_macos(fp16, int8):
    from pocketgan.export.coreml_target import can_predict

    if not can_predict("iOS18")[0]:
        pytest.skip(can_predict("iOS18")[1])
    for _, entry in (fp16, int8):
        assert entry["parity_checked"] is True
        gate = entry["parity"]["threshold_db"]
        for scores in entry["parity"]["psnr_db"].values():
            assert all(db >= gate for db in scores.values()), scores
    assert set(fp16[1]["parity"]["psnr_db"]) == {"separate", "ios17"}


@macos_only
def test_every_function_matches_pytorch_on_macos(fp16, tiny_bundle, inputs):
    import coremltools as ct

    from pocketgan.export.coreml_target import can_predict

    if not can_predict("iOS18")[0]:
        pytest.skip(can_predict("iOS18")[1])
    staging, entry = fp16
    outs = {}
    for name in tiny_bundle.concept_names:
        model = ct.models.MLModel(
            str(staging / entry["package"]), function_name=name, compute_units=ct.ComputeUnit.CPU_ONLY
        )
        reference = tiny_bundle.model_for(name, "separate")
        for x in inputs:
            got = model.predict({"image": x})["edited"]
            with torch.no_grad():
                want = reference(torch.from_numpy(x)).numpy()
            assert _psnr(want, got) >= THRESHOLD_DB, name
        outs[name] = got
    a, b = (outs[n] for n in tiny_bundle.concept_names[:2])
    assert np.abs(a - b).max() > 1e-3, "different functions must give different outputs"


@macos_only
def test_backend_runs_every_concept_on_macos(fp16, tiny_bundle, inputs):
    from pocketgan.runtime.backends.coreml import CoreMLBackend

    staging, entry = fp16
    backend = CoreMLBackend(staging, _manifest(staging, tiny_bundle, entry), threads=None, concept_mode="auto")
    for name in tiny_bundle.concept_names:
        backend.activate(name)
        y = backend.run(inputs[0], name)
        assert y.dtype == np.float32 and y.shape == inputs[0].shape
        with torch.no_grad():
            want = tiny_bundle.model_for(name, "separate")(torch.from_numpy(inputs[0])).numpy()
        assert _psnr(want, y) >= 30.0  # compute_units=ALL may run fp16 on the GPU / Neural Engine


# --- slow: more conversions ---------------------------------------------------------------------


@pytest.mark.slow
def test_merged_package(tmp_path_factory, tiny_bundle, fp16):
    from pocketgan.export.coreml_target import check_structure

    staging, entry = _export(tmp_path_factory, tiny_bundle, "merged", concept_mode="merged", ios17_fallback=False)
    assert entry["merged_package"] == "coreml/merged.mlpackage" and "package" not in entry
    check_structure(
        staging / entry["merged_package"], tiny_bundle.concept_names, tiny_bundle.config.image_size, "iOS18"
    )
    sizes = entry["sizes"]
    # merged functions share only the layers LoRA does not adapt: bigger than the separate package
    assert sizes["merged_package_weights"] > fp16[1]["sizes"]["package_weights"]
    assert sizes["merged_package_weights"] < len(tiny_bundle.concept_names) * sizes["merged_single_function_weights"]


@pytest.mark.slow
def test_both_modes(tmp_path_factory, tiny_bundle):
    staging, entry = _export(tmp_path_factory, tiny_bundle, "both", concept_mode="both", ios17_fallback=False)
    assert (staging / entry["package"]).is_dir() and (staging / entry["merged_package"]).is_dir()


@pytest.mark.slow
def test_palettize4(tmp_path_factory, tiny_bundle, int8):
    from pocketgan.export.coreml_target import describe_package

    staging, entry = _export(tmp_path_factory, tiny_bundle, "pal4", precision="palettize4", ios17_fallback=True)
    sizes = entry["sizes"]
    assert sizes["package_weights"] < 0.75 * int8[1]["sizes"]["package_weights"]
    assert sizes["package_weights"] < 1.3 * sizes["single_function_weights"]  # still deduplicated
    for fn in describe_package(staging / entry["package"])["functions"].values():
        assert "constexpr_lut_to_dense" in fn["ops"]
    for rel in entry["ios17"]["packages"].values():  # iOS 17: the iOS 16 palettization op
        assert "constexpr_lut_to_dense" in describe_package(staging / rel)["functions"]["main"]["ops"]


@pytest.mark.slow
def test_torchscript_frontend(tmp_path_factory, tiny_bundle, fp16):
    staging, entry = _export(tmp_path_factory, tiny_bundle, "trace", frontend="trace", ios17_fallback=False)
    assert entry["converter"]["frontend"] == "torchscript"
    # same program either way: identical weight blobs
    assert entry["sizes"]["package_weights"] == fp16[1]["sizes"]["package_weights"]
