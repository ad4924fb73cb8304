"""Every bad bundle gets one exact, typed error, from the runtime and from ``verify_bundle``
(issue 17, items 1-4): manifest values of the wrong type or range, unanchored patterns,
JSON bombs, adapters and models that disagree with the manifest (checksums rewritten to
match), and paths or symlinks that leave the bundle.

Each case mutates a copy of the embedded default bundle (ONNX, separate mode), so nothing
here needs torch and the whole table runs in seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from helpers import default_bundle_path
from pocketgan.runtime import Runtime, verify_bundle
from pocketgan.runtime.bundle_files import MAX_JSON_DEPTH, json_depth, parse_json
from pocketgan.runtime.errors import (
    AdapterMismatchError,
    ArtifactFormatError,
    ArtifactMissingError,
    BundleError,
    ContainmentError,
    InterfaceMismatchError,
    ManifestError,
    PocketganError,
)
from pocketgan.runtime.manifest import ecma_pattern, load_manifest

ADAPTER = "onnx/adapters/cartoon.onnx_adapter"
MODEL = "onnx/generator.onnx"


@pytest.fixture()
def bundle(tmp_path) -> Path:
    """A private copy of the default bundle (regular files only) beside an ``outside`` folder."""
    (tmp_path / "outside").mkdir()
    return Path(shutil.copytree(default_bundle_path(), tmp_path / "bundle"))


# --- mutation helpers ----------------------------------------------------------------------------


def _manifest(b: Path) -> dict:
    return json.loads((b / "manifest.json").read_text())


def _write_manifest(b: Path, m: dict) -> None:
    (b / "manifest.json").write_text(json.dumps(m, indent=1))


def _edit(fn):
    """A mutation that edits the manifest dict in place."""

    def mutate(b: Path) -> None:
        m = _manifest(b)
        fn(m)
        _write_manifest(b, m)

    mutate.__name__ = fn.__name__
    return mutate


def _text(old: str, new: str, count: int = 1):
    """A mutation that rewrites manifest.json's text (for what json.dumps cannot write)."""

    def mutate(b: Path) -> None:
        text = (b / "manifest.json").read_text()
        assert old in text, old
        (b / "manifest.json").write_text(text.replace(old, new, count))

    return mutate


def _rehash(b: Path, *relpaths: str) -> None:
    """Rewrite the manifest's checksums of ``relpaths`` to match their (changed) bytes."""
    m = _manifest(b)
    for rel in relpaths:
        data = (b / rel).read_bytes()
        m["artifacts"][rel] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    _write_manifest(b, m)


def _adapter_tensors(path: Path) -> dict[str, np.ndarray]:
    return {k: v.numpy().copy() for k, v in ort.AdapterFormat.read_adapter(str(path)).get_parameters().items()}


def _rewrite_adapter(change):
    """A mutation that rewrites the cartoon adapter's tensors with ``change`` and re-hashes it."""

    def mutate(b: Path) -> None:
        tensors = change(_adapter_tensors(b / ADAPTER))
        adapter = ort.AdapterFormat()
        adapter.set_parameters({k: ort.OrtValue.ortvalue_from_numpy(v) for k, v in tensors.items()})
        (b / ADAPTER).unlink()
        adapter.export_adapter(str(b / ADAPTER))
        _rehash(b, ADAPTER)

    mutate.__name__ = change.__name__
    return mutate


def _replace_bytes(relpath: str, make):
    def mutate(b: Path) -> None:
        data = make(b)
        (b / relpath).unlink()
        (b / relpath).write_bytes(data)
        _rehash(b, relpath)

    return mutate


def _rename_path(old: str, new: str):
    """Rename an artifact in the manifest (artifacts key and every reference), not on disk."""

    def mutate(b: Path) -> None:
        text = (b / "manifest.json").read_text()
        (b / "manifest.json").write_text(text.replace(json.dumps(old), json.dumps(new)))

    return mutate


def _symlink_out(relpath: str):
    """Move ``relpath`` (a file or folder) outside the bundle and leave a symlink to it."""

    def mutate(b: Path) -> None:
        target = b.parent / "outside" / Path(relpath).name
        shutil.move(b / relpath, target)
        os.symlink(target, b / relpath)

    return mutate


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# --- the table -----------------------------------------------------------------------------------


def _drop_tensor(t):
    t.pop("concept_tokens")
    return t


def _extra_tensor(t):
    t["stray.lora_A.weight"] = np.zeros((1, 4), np.float32)
    return t


def _wrong_shape(t):
    t["concept_tokens"] = np.zeros((1, 5, 64), np.float32)
    return t


def _wrong_dtype(t):
    return {k: v.astype(np.float16) for k, v in t.items()}


def _nan_value(t):
    t["concept_tokens"][0, 0, 0] = np.nan
    return t


def _no_tensors(t):
    return {}


def _concept_input_rank(m):
    m["targets"]["onnx"]["concept_inputs"]["ds.conv.lora_A.weight"][0] = 2


def _concept_input_missing(m):
    del m["targets"]["onnx"]["concept_inputs"]["us.conv.lora_B.weight"]


def _shared_adapter(m):
    adapters = m["targets"]["onnx"]["adapters"]
    adapters["stylize"] = adapters["cartoon"]


def _set(path: str, value):
    def fn(m):
        *parents, last = path.split(".")
        node = m
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        node[last] = value

    fn.__name__ = f"set_{path.replace('.', '_')}"
    return _edit(fn)


M, C, F, A, IM, MISSING = (
    ManifestError,
    ContainmentError,
    ArtifactFormatError,
    AdapterMismatchError,
    InterfaceMismatchError,
    ArtifactMissingError,
)

# id -> (mutation, error from Runtime(...), error from verify_bundle(...)); None: opens fine
CASES = {
    # manifest values of the wrong type or range (item 1 and 2)
    "format_version_float": (_set("format_version", 2.0), M, M),
    "format_version_one_point_zero": (_set("format_version", 1.0), M, M),
    "format_version_bool": (_set("format_version", True), M, M),
    "float_shape": (_set("io.input.shape", [1, 3, 256.0, 256.0]), M, M),
    "absurd_output_shape": (_set("io.output.shape", [1, 3, 100000, 100000]), M, M),
    "output_shape_differs": (_set("io.output.shape", [1, 3, 128, 128]), M, M),
    "input_not_square": (_set("io.input.shape", [1, 3, 256, 128]), M, M),
    "input_range_changed": (_set("io.input.range", [0, 1]), M, M),
    "output_range_changed": (_set("io.output.range", [-1, 2]), M, M),
    "io_names_equal": (_set("io.output.name", "image"), M, M),
    "image_size_disagrees": (_set("generator.config.image_size", 128), M, M),
    "huge_integer": (_text('"parameters": 594236', '"parameters": 1' + "0" * 5000), M, M),
    "integer_over_int64": (_text('"parameters": 594236', '"parameters": 99999999999999999999'), M, M),
    "number_overflows": (_text('"threshold_db": 35.0', '"threshold_db": 1e999'), M, M),
    "nan": (_text('"threshold_db": 35.0', '"threshold_db": NaN'), M, M),
    "duplicate_key": (
        _text('"format": "pocketgan-bundle",', '"format": "pocketgan-bundle", "format": "pocketgan-bundle",'),
        M,
        M,
    ),
    "deep_nesting": (_text('"steps": 800', '"steps": ' + _nested(100_000)), M, M),
    "nesting_just_too_deep": (_text('"steps": 800', '"steps": ' + _nested(MAX_JSON_DEPTH)), M, M),
    "manifest_over_4mib": (
        _text('"format": "pocketgan-bundle",', '"format": "pocketgan-bundle",' + " " * (5 << 20)),
        M,
        M,
    ),
    # patterns anchored at the very end (no "$ before a trailing newline")
    "concept_name_newline": (_text('"name": "cartoon"', '"name": "cartoon\\n"'), M, M),
    "adapter_key_newline": (_text('"cartoon": "onnx/', '"cartoon\\n": "onnx/'), M, M),
    "path_newline": (_rename_path(MODEL, MODEL + "\n"), M, M),
    "path_backslash": (_rename_path(MODEL, MODEL.replace("/", "\\")), M, M),
    "path_dot_segment": (_rename_path(MODEL, "onnx/./generator.onnx"), M, M),
    "path_dotdot": (_rename_path(MODEL, "onnx/../onnx/generator.onnx"), M, M),
    "path_absolute": (_rename_path(MODEL, "/etc/passwd"), M, M),
    "path_double_slash": (_rename_path(MODEL, "onnx//generator.onnx"), M, M),
    # concept inputs and adapters (item 3)
    "concept_inputs_off_pattern": (_edit(_concept_input_rank), M, M),
    "concept_inputs_missing_one": (_edit(_concept_input_missing), M, M),
    "two_concepts_one_adapter": (_edit(_shared_adapter), M, M),
    "model_is_an_adapter": (_set("targets.onnx.model", ADAPTER), M, M),
    "model_is_a_png": (_set("targets.onnx.model", "golden/input.png"), F, F),
    "model_truncated_rehashed": (_replace_bytes(MODEL, lambda b: (b / MODEL).read_bytes()[:100_000]), F, F),
    "dtype_says_float16": (_set("targets.onnx.concept_input_dtype", "float16"), IM, IM),
    "adapter_empty_file": (_replace_bytes(ADAPTER, lambda b: b""), F, F),
    "adapter_garbage": (_replace_bytes(ADAPTER, lambda b: bytes(range(256)) * 8), F, F),
    "adapter_is_a_model": (_replace_bytes(ADAPTER, lambda b: (b / MODEL).read_bytes()), F, F),
    "adapter_no_tensors": (_rewrite_adapter(_no_tensors), A, A),
    "adapter_missing_tensor": (_rewrite_adapter(_drop_tensor), A, A),
    "adapter_extra_tensor": (_rewrite_adapter(_extra_tensor), A, A),
    "adapter_wrong_shape": (_rewrite_adapter(_wrong_shape), A, A),
    "adapter_wrong_dtype": (_rewrite_adapter(_wrong_dtype), A, A),
    "adapter_nan": (_rewrite_adapter(_nan_value), A, A),
    # containment (item 4)
    "symlinked_adapter_leaves": (_symlink_out(ADAPTER), C, C),
    "symlinked_folder_leaves": (_symlink_out("onnx"), C, C),
    "symlinked_manifest_leaves": (_symlink_out("manifest.json"), C, C),
    "symlinked_golden_leaves": (_symlink_out("golden/input.png"), None, C),
    "folder_instead_of_file": (
        lambda b: ((b / "golden/input.png").unlink(), (b / "golden/input.png").mkdir()),
        None,
        MISSING,
    ),
    "fifo_instead_of_file": (
        lambda b: ((b / "golden/input.png").unlink(), os.mkfifo(b / "golden/input.png")),
        None,
        MISSING,
    ),
}


def _raised(fn) -> BaseException | None:
    try:
        fn()
    except BaseException as e:  # noqa: BLE001 - the exact type is what is asserted
        return e
    return None


@pytest.mark.parametrize("case", list(CASES))
def test_invalid_bundle_gets_its_exact_typed_error(bundle, case):
    mutate, runtime_error, verify_error = CASES[case]
    mutate(bundle)
    for what, fn, want in (
        ("Runtime", lambda: Runtime(bundle, threads=1), runtime_error),
        ("verify_bundle", lambda: verify_bundle(bundle), verify_error),
    ):
        got = _raised(fn)
        if want is None:
            assert got is None, f"{what} refused a bundle it may open: {got!r}"
            continue
        assert type(got) is want, f"{what}: expected {want.__name__}, got {got!r}"
        assert isinstance(got, BundleError) and str(got)
        assert got.file is not None or got.field is not None, f"{what}: {got!r} names no file or field"


def test_the_unmutated_copy_is_valid(bundle):
    """The control: the same copy opens, edits and verifies (so every case above can fail)."""
    rt = Runtime(bundle, threads=1)
    assert rt.edit(np.zeros((24, 40, 3), np.uint8)).shape == (24, 40, 3)
    assert verify_bundle(bundle) == load_manifest(bundle)


def test_symlinks_inside_the_bundle_are_followed(bundle):
    """A symlink that stays inside the bundle is fine: only leaving it is refused."""
    real = bundle / "onnx" / "adapters" / "cartoon.real"
    shutil.move(bundle / ADAPTER, real)
    os.symlink("cartoon.real", bundle / ADAPTER)
    verify_bundle(bundle)
    Runtime(bundle, threads=1).edit(np.zeros((8, 8, 3), np.uint8), concept="cartoon")


def test_adapters_are_loaded_from_the_verified_bytes(bundle):
    """Swapping an adapter's file after it was verified changes nothing: the runtime loads
    a private copy of the bytes it checked, never the bundle's file a second time."""
    rt = Runtime(bundle, threads=1)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 256, 256)).astype(np.float32)
    want = rt.run_tensor(x, concept="cartoon")
    shutil.copy(bundle / "onnx/adapters/stylize.onnx_adapter", bundle / ADAPTER)
    np.testing.assert_array_equal(rt.run_tensor(x, concept="cartoon"), want)


def test_info_verify_exits_nonzero_without_a_traceback(bundle, capsys):
    from pocketgan.cli import main

    CASES["deep_nesting"][0](bundle)
    assert main(["info", str(bundle), "--verify"]) == 2
    err = capsys.readouterr().err
    assert "nests" in err and "Traceback" not in err


def test_merged_model_with_concept_inputs_is_refused(tmp_path, exported_bundle):
    """A merged entry that holds the base graph (concept inputs at zero: the base model's
    picture) is refused when the session opens."""
    b = Path(shutil.copytree(exported_bundle, tmp_path / "b"))
    merged = "onnx/merged/alpha.onnx"
    shutil.copy(b / MODEL, b / merged)
    _rehash(b, merged)
    for fn in (lambda: Runtime(b, concept_mode="merged", threads=1), lambda: verify_bundle(b)):
        got = _raised(fn)
        assert type(got) is InterfaceMismatchError and got.file == merged, got


# --- the bounded JSON reader ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, depth",
    [
        ("", 0),
        ("1", 0),
        ("[]", 1),
        ('{"a": [1, {"b": []}]}', 4),
        ('["[[[[", "]]"]', 1),
        ('["\\"[[[", "x"]', 1),
        ('["\\\\", [[]]]', 3),
        ('["\\\\\\"[", []]', 2),
        ('{"k\\\\": "v"}', 1),
    ],
)
def test_json_depth_ignores_brackets_in_strings(text, depth):
    assert json_depth(text.encode()) == depth
    if text:
        json.loads(text)  # each case is valid JSON


def test_parse_json_bounds():
    assert parse_json(b'{"a": [1, 2.5, -3]}', file="x.json") == {"a": [1, 2.5, -3]}
    for bad in (b"[" * 70 + b"]" * 70, b'{"a": 1, "a": 2}', b"[Infinity]", b"[1e400]", b"[" + b"9" * 30 + b"]"):
        with pytest.raises(ManifestError) as info:
            parse_json(bad, file="x.json")
        assert info.value.file == "x.json" and isinstance(info.value, PocketganError)


@pytest.mark.parametrize(
    "pattern, text, ok",
    [
        ("^[a-z]+$", "abc", True),
        ("^[a-z]+$", "abc\n", False),
        ("^(a|$)", "", True),
        (r"^a\$$", "a$", True),
    ],
)
def test_ecma_pattern_anchors_at_the_very_end(pattern, text, ok):
    import re

    assert bool(re.search(ecma_pattern(pattern), text)) is ok


# --- Core ML and ExecuTorch structure checks that need neither library ---------------------------

PACKAGE = "coreml/generator.mlpackage"
PACKAGE_INDEX = {
    "fileFormatVersion": "1.0.0",
    "itemInfoEntries": {
        "model-id": {"author": "com.apple.CoreML", "name": "model.mlmodel", "path": "com.apple.CoreML/model.mlmodel"},
        "weights-id": {"author": "com.apple.CoreML", "name": "weights", "path": "com.apple.CoreML/weights"},
    },
    "rootModelIdentifier": "model-id",
}


def _add_targets(b: Path, index: dict, program: bytes) -> None:
    """Give the bundle a Core ML entry (a package with the given Manifest.json; Core ML
    itself cannot read it, which verify_bundle does not need) and an ExecuTorch entry."""
    m = _manifest(b)
    files = {
        f"{PACKAGE}/Manifest.json": json.dumps(index).encode(),
        f"{PACKAGE}/Data/com.apple.CoreML/model.mlmodel": b"spec",
        f"{PACKAGE}/Data/com.apple.CoreML/weights/weight.bin": b"weights",
        "executorch/generator.pte": program,
    }
    for rel, data in files.items():
        (b / rel).parent.mkdir(parents=True, exist_ok=True)
        (b / rel).write_bytes(data)
    names = [c["name"] for c in m["concepts"]]
    io = {"name": "image", "shape": [1, 3, 256, 256], "dtype": "float32"}
    common = {"concept_mode": "separate", "source_base_sha256": m["base"]["sha256"]}
    parity = dict(m["targets"]["onnx"]["parity"], psnr_db={})
    m["targets"]["coreml"] = dict(
        common, precision="fp16", compute_precision="float16", minimum_deployment_target="iOS18", package=PACKAGE,
        functions={n: n for n in names}, default_function=names[0], inputs=[io], outputs=[dict(io, name="edited")],
        sizes={}, parity=parity, parity_checked=False,
    )  # fmt: skip
    m["targets"]["executorch"] = dict(
        common, precision="fp32", program="executorch/generator.pte", methods={n: n for n in names},
        delegation={}, parity=parity,
    )  # fmt: skip
    _write_manifest(b, m)
    _rehash(b, *files)


def _index(**change) -> dict:
    index = json.loads(json.dumps(PACKAGE_INDEX))
    for key, value in change.items():
        if key == "item_path":
            index["itemInfoEntries"]["weights-id"]["path"] = value
        else:
            index[key] = value
    return index


PTE = b"\x3c\x00\x00\x00ET12" + bytes(64)


@pytest.mark.parametrize(
    "index, program, error",
    [
        (PACKAGE_INDEX, PTE, None),
        (_index(item_path="../../../onnx"), PTE, ArtifactFormatError),
        (_index(item_path="com.apple.CoreML/other"), PTE, ArtifactFormatError),
        (_index(item_path="com.apple.CoreML/weights\n"), PTE, ArtifactFormatError),
        (_index(rootModelIdentifier="weights-id"), PTE, ArtifactFormatError),
        (_index(rootModelIdentifier=None), PTE, ArtifactFormatError),
        (_index(itemInfoEntries=[]), PTE, ArtifactFormatError),
        (json.loads(_nested(80)), PTE, ArtifactFormatError),
        (PACKAGE_INDEX, b"\x08\x07ONNX protobuf", ArtifactFormatError),
    ],
    ids=["valid", "item-leaves", "item-unlisted", "item-newline", "root-is-a-folder", "no-root", "no-items",
         "deep-index", "program-not-pte"],
)  # fmt: skip
def test_package_and_program_structure(bundle, index, program, error):
    _add_targets(bundle, index, program)
    got = _raised(lambda: verify_bundle(bundle))
    if error is None:
        assert got is None, got
    else:
        assert type(got) is error, got
        assert got.file in (f"{PACKAGE}/Manifest.json", "executorch/generator.pte"), got


def test_package_folder_symlinked_out_of_the_bundle(bundle):
    _add_targets(bundle, PACKAGE_INDEX, PTE)
    _symlink_out(PACKAGE)(bundle)
    assert type(_raised(lambda: verify_bundle(bundle))) is ContainmentError


# --- ExecuTorch: what loading a program checks (needs an export: slow) ---------------------------


@pytest.fixture(scope="module")
def et_export(tmp_path_factory, source_bundle) -> Path:
    pytest.importorskip("executorch.runtime")
    from pocketgan.export import ExportConfig, run_export

    out = tmp_path_factory.mktemp("export-et") / "tiny-et"
    run_export(ExportConfig(out=out, bundle=source_bundle, targets=("executorch",), concepts="separate"))
    return out


def _et_method_renamed(b: Path) -> None:
    m = _manifest(b)
    m["targets"]["executorch"]["methods"]["alpha"] = "no_such_method"
    _write_manifest(b, m)


def _et_io_resized(b: Path) -> None:
    m = _manifest(b)
    for kind in ("input", "output"):
        m["io"][kind]["shape"] = [1, 3, 128, 128]
    m["generator"]["config"]["image_size"] = 128
    _write_manifest(b, m)


PROGRAM = "executorch/generator.pte"
ET_CASES = {
    "control": (lambda b: None, None, None),
    "method_missing": (_et_method_renamed, IM, None),
    "io_differs_from_program": (_et_io_resized, IM, None),
    "program_is_a_png": (_replace_bytes(PROGRAM, lambda b: (b / "golden/input.png").read_bytes()), F, F),
    "program_truncated": (_replace_bytes(PROGRAM, lambda b: (b / PROGRAM).read_bytes()[:4096]), F, None),
    "program_symlinked_out": (_symlink_out(PROGRAM), C, C),
    # 'ET12' -> 'ET1\xb2': ExecuTorch would decode it into an error message and abort
    "identifier_not_ascii": (_replace_bytes(PROGRAM, lambda b: _flip((b / PROGRAM).read_bytes(), 7, 7)), F, F),
}


def _flip(data: bytes, offset: int, bit: int) -> bytes:
    out = bytearray(data)
    out[offset] ^= 1 << bit
    return bytes(out)


@pytest.mark.slow
@pytest.mark.parametrize("case", list(ET_CASES))
def test_executorch_program_checks(tmp_path, et_export, case):
    """verify_bundle checks a program's identifier; opening it checks its methods (None:
    accepted by that step, as documented)."""
    mutate, runtime_error, verify_error = ET_CASES[case]
    b = Path(shutil.copytree(et_export, tmp_path / "bundle"))
    (tmp_path / "outside").mkdir()
    mutate(b)
    got = _raised(lambda: Runtime(b, backend="executorch", threads=1))
    assert (type(got) if got else None) is runtime_error, got
    got = _raised(lambda: verify_bundle(b))
    assert (type(got) if got else None) is verify_error, got


@pytest.fixture(scope="module")
def default_et_export(tmp_path_factory) -> Path:
    pytest.importorskip("executorch.runtime")
    from pocketgan.export import ExportConfig, run_export

    out = tmp_path_factory.mktemp("export-default-et") / "default-et"
    run_export(ExportConfig(out=out, targets=("executorch",), concepts="separate"))
    return out


@pytest.mark.slow
def test_a_program_that_aborts_executorch_is_a_typed_error(tmp_path, default_et_export):
    """One bit of the default bundle's XNNPACK payload (checksum rewritten) makes ExecuTorch's
    native loader abort the process (XNNCompiler.cpp); the backend's probe process takes the
    abort and this process gets an ArtifactFormatError. The export is byte-reproducible, so the
    offset is stable; found by the fuzzer (tests/reliability)."""
    b = Path(shutil.copytree(default_et_export, tmp_path / "bundle"))
    _replace_bytes(PROGRAM, lambda b: _flip((b / PROGRAM).read_bytes(), 22192, 6))(b)
    got = _raised(lambda: Runtime(b, backend="executorch", threads=1))
    assert type(got) is F and "crashed" in str(got), got
