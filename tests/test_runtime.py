"""The runtime: open an exported bundle, hot-swap concepts, edit images, typed errors.

Nothing here needs torch (only the session fixtures that build the bundles do), and the
first tests prove that importing and using the runtime never imports it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import numpy as np
import pytest
from PIL import Image

from helpers import CONCEPT_NAMES, copy_bundle, flip_byte, psnr, read_manifest, write_manifest
from pocketgan.runtime import (
    FORMAT_VERSION,
    ArtifactMissingError,
    BackendUnavailableError,
    BundleError,
    ChecksumError,
    InvalidImageError,
    ManifestError,
    PocketganError,
    Runtime,
    TargetNotFoundError,
    UnknownConceptError,
    UnsupportedFormatError,
    load_manifest,
    open_bundle,
    verify_bundle,
)

TOOLCHAIN_MODULES = ("torch", "peft", "safetensors", "onnxscript", "transformers")


@pytest.fixture(scope="module")
def rt(exported_bundle):
    return Runtime(exported_bundle, threads=1)


@pytest.fixture(scope="module")
def rt_merged(exported_bundle):
    return Runtime(exported_bundle, threads=1, concept_mode="merged")


@pytest.fixture(scope="module")
def photo(photo_paths):
    with Image.open(photo_paths[0]) as im:
        return im.convert("RGB")


@pytest.fixture(scope="module")
def photo_array(photo):
    return np.asarray(photo).copy()


# --- no torch ---------------------------------------------------------------------------


def _run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_import_runtime_does_not_import_torch():
    r = _run_python(
        "import sys, json\n"
        "import pocketgan.runtime\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in %r)))" % (TOOLCHAIN_MODULES,)
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1]) == []


def test_using_runtime_and_cli_does_not_import_torch(exported_bundle, photo_paths, tmp_path):
    out = tmp_path / "edit.png"
    code = f"""
import sys, json
import numpy as np
from pocketgan.runtime import Runtime
rt = Runtime({str(exported_bundle)!r}, threads=1)
for mode in ("separate", "merged"):
    r = Runtime({str(exported_bundle)!r}, threads=1, concept_mode=mode)
    for c in r.concepts:
        assert r.edit(np.zeros((40, 60, 3), np.uint8), concept=c).shape == (40, 60, 3)
from pocketgan.cli import main
assert main(["info", {str(exported_bundle)!r}, "--verify"]) == 0
edit = ["edit", {str(photo_paths[0])!r}, "-c", "alpha", "-o", {str(out)!r}]
assert main(edit + ["--bundle", {str(exported_bundle)!r}]) == 0
print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {TOOLCHAIN_MODULES!r})))
"""
    r = _run_python(code)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1]) == []
    assert out.is_file()


# --- opening and concepts ---------------------------------------------------------------


def test_concepts_are_listed(rt, exported_bundle):
    assert rt.concepts == CONCEPT_NAMES
    assert rt.concept == CONCEPT_NAMES[0]
    assert rt.backend == "onnx"
    assert rt.concept_mode == "separate", "auto prefers hot-swappable adapters"
    assert rt.input_size == 256
    assert rt.path == exported_bundle
    assert "alpha" in repr(rt)


def test_open_bundle_and_initial_concept(exported_bundle):
    r = open_bundle(exported_bundle, concept="gamma_3", threads=1)
    assert isinstance(r, Runtime) and r.concept == "gamma_3"


def test_set_concept_switches_output(rt, photo_array):
    outputs = {}
    for name in CONCEPT_NAMES:
        rt.set_concept(name)
        assert rt.concept == name
        outputs[name] = rt.edit(photo_array)
    for i, a in enumerate(CONCEPT_NAMES):
        for b in CONCEPT_NAMES[i + 1 :]:
            diff = np.abs(outputs[a].astype(int) - outputs[b].astype(int)).mean()
            assert diff > 1.0, f"{a} and {b} give (almost) the same image"
    # switching back reproduces the first result exactly
    rt.set_concept(CONCEPT_NAMES[0])
    assert np.array_equal(rt.edit(photo_array), outputs[CONCEPT_NAMES[0]])


def test_edit_with_concept_is_per_call(rt, photo_array):
    rt.set_concept("alpha")
    per_call = rt.edit(photo_array, concept="beta-2")
    assert rt.concept == "alpha", "edit(concept=) does not change the active concept"
    rt.set_concept("beta-2")
    assert np.array_equal(rt.edit(photo_array), per_call)
    rt.set_concept("alpha")


@pytest.mark.parametrize("name", ["nope", "Alpha", "", "alpha ", "all"])
def test_unknown_concept(rt, photo_array, exported_bundle, name):
    rt.set_concept("beta-2")
    with pytest.raises(UnknownConceptError, match="unknown concept") as info:
        rt.set_concept(name)
    assert "alpha" in str(info.value), "the message lists the available concepts"
    assert rt.concept == "beta-2", "a failed set_concept keeps the active concept"
    with pytest.raises(UnknownConceptError):
        rt.edit(photo_array, concept=name)
    with pytest.raises(UnknownConceptError):
        rt.run_tensor(np.zeros((1, 3, 256, 256), np.float32), concept=name)
    if name:
        with pytest.raises(UnknownConceptError):
            Runtime(exported_bundle, concept=name)
    assert isinstance(info.value, KeyError) and isinstance(info.value, PocketganError)
    rt.set_concept("alpha")


def test_unknown_backend(exported_bundle):
    with pytest.raises(BackendUnavailableError, match="unknown backend"):
        Runtime(exported_bundle, backend="tflite")


# --- images -------------------------------------------------------------------------------


def _rng_image(h, w, channels=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, channels), dtype=np.uint8)


@pytest.mark.parametrize(
    "make, size",
    [
        (lambda: Image.fromarray(_rng_image(37, 91)), (91, 37)),
        (lambda: Image.fromarray(_rng_image(91, 37)), (37, 91)),
        (lambda: Image.fromarray(_rng_image(37, 91, 4), "RGBA"), (91, 37)),
        (lambda: Image.fromarray(_rng_image(50, 64)[..., 0], "L"), (64, 50)),
        (lambda: Image.fromarray(_rng_image(50, 64)).convert("P"), (64, 50)),
        (lambda: Image.fromarray(_rng_image(300, 256)), (256, 300)),
    ],
    ids=["pil-rgb-37x91", "pil-rgb-91x37", "pil-rgba", "pil-l", "pil-p", "pil-rgb-300x256"],
)
def test_edit_pil(rt, make, size):
    image = make()
    out = rt.edit(image)
    assert isinstance(out, Image.Image)
    assert out.mode == "RGB"
    assert out.size == size


@pytest.mark.parametrize(
    "shape",
    [(37, 91), (91, 37), (256, 256), (1, 300), (300, 1), (1, 1), (513, 700)],
)
def test_edit_array(rt, shape):
    image = _rng_image(*shape)
    out = rt.edit(image)
    assert isinstance(out, np.ndarray)
    assert out.dtype == np.uint8 and out.shape == (*shape, 3)


def test_edit_accepts_non_contiguous_arrays(rt):
    image = _rng_image(64, 80)
    flipped = image[:, ::-1]
    assert not flipped.flags.c_contiguous
    assert np.array_equal(rt.edit(flipped), rt.edit(np.ascontiguousarray(flipped)))


def test_pil_and_array_give_the_same_edit(rt, photo, photo_array):
    assert np.array_equal(np.asarray(rt.edit(photo)), rt.edit(photo_array))


def test_rgba_is_edited_as_its_rgb(rt):
    rgba = _rng_image(40, 56, 4)
    from_rgba = rt.edit(Image.fromarray(rgba, "RGBA"))
    from_rgb = rt.edit(Image.fromarray(np.ascontiguousarray(rgba[..., :3]), "RGB"))
    assert np.array_equal(np.asarray(from_rgba), np.asarray(from_rgb))


def test_edit_of_a_square_model_sized_image_matches_run_tensor(rt, photo_array):
    from pocketgan.runtime.imaging import to_model_input

    square = np.asarray(Image.fromarray(photo_array).resize((256, 256)))
    x, _ = to_model_input(square, 256)
    y = rt.run_tensor(x, concept="gamma_3")
    want = np.clip(np.rint((y[0].transpose(1, 2, 0) + 1.0) * 127.5), 0, 255).astype(np.uint8)
    assert np.array_equal(rt.edit(square, concept="gamma_3"), want)


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((32, 32, 3), np.float32),
        np.zeros((32, 32, 3), np.int64),
        np.zeros((32, 32), np.uint8),
        np.zeros((32, 32, 4), np.uint8),
        np.zeros((32, 32, 1), np.uint8),
        np.zeros((1, 32, 32, 3), np.uint8),
        np.zeros((0, 10, 3), np.uint8),
        np.zeros((10, 0, 3), np.uint8),
        [[[0, 0, 0]]],
        None,
        "photo.jpg",
        b"\x89PNG",
    ],
    ids=[
        "float",
        "int64",
        "gray-2d",
        "rgba-array",
        "1-channel",
        "batched",
        "empty-0xN",
        "empty-Nx0",
        "list",
        "none",
        "str",
        "bytes",
    ],
)
def test_bad_images_raise_invalid_image(rt, image):
    with pytest.raises(InvalidImageError) as info:
        rt.edit(image)
    assert isinstance(info.value, ValueError)
    assert str(info.value)


def test_empty_pil_image_is_invalid(rt):
    with pytest.raises(InvalidImageError, match="empty"):
        rt.edit(Image.new("RGB", (0, 5)))


@pytest.mark.parametrize(
    "x",
    [
        np.zeros((1, 3, 128, 128), np.float32),
        np.zeros((1, 3, 256, 256), np.float64),
        np.zeros((3, 256, 256), np.float32),
        np.zeros((2, 3, 256, 256), np.float32),
        [0.0],
    ],
    ids=["wrong-size", "float64", "unbatched", "batch-2", "list"],
)
def test_run_tensor_rejects_bad_input(rt, x):
    with pytest.raises(InvalidImageError, match="run_tensor expects"):
        rt.run_tensor(x)


# --- bundle errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "relpath, mode",
    [
        ("onnx/generator.onnx", "separate"),
        ("onnx/adapters/beta-2.onnx_adapter", "separate"),
        ("onnx/merged/gamma_3.onnx", "merged"),
    ],
)
@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_corrupted_artifact_is_a_checksum_error(tmp_path, exported_bundle, relpath, mode, damage):
    bundle = copy_bundle(exported_bundle, tmp_path / "b")
    if damage == "flip":
        flip_byte(bundle / relpath)
    else:
        data = (bundle / relpath).read_bytes()
        (bundle / relpath).write_bytes(data[:-10])
    with pytest.raises(ChecksumError, match=relpath.replace(".", r"\.")):
        Runtime(bundle, concept_mode=mode)
    with pytest.raises(ChecksumError):
        verify_bundle(bundle)


def test_corrupted_concept_source_fails_verification(tmp_path, exported_bundle):
    bundle = copy_bundle(exported_bundle, tmp_path / "b")
    flip_byte(bundle / "concepts" / "alpha" / "concept_embedding.safetensors")
    with pytest.raises(ChecksumError, match="concept_embedding"):
        verify_bundle(bundle)


@pytest.mark.parametrize(
    "relpath, mode",
    [
        ("onnx/generator.onnx", "separate"),
        ("onnx/adapters/alpha.onnx_adapter", "separate"),
        ("onnx/merged/beta-2.onnx", "merged"),
    ],
)
def test_missing_artifact(tmp_path, exported_bundle, relpath, mode):
    bundle = copy_bundle(exported_bundle, tmp_path / "b")
    (bundle / relpath).unlink()
    with pytest.raises(ArtifactMissingError, match=relpath) as info:
        Runtime(bundle, concept_mode=mode)
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, BundleError)


@pytest.mark.parametrize("version", [FORMAT_VERSION + 1, 99])
def test_newer_format_version_is_unsupported(tmp_path, exported_bundle, version):
    bundle = copy_bundle(exported_bundle, tmp_path / "b")
    m = read_manifest(bundle)
    m["format_version"] = version
    write_manifest(bundle, m)
    with pytest.raises(UnsupportedFormatError, match=f"format_version {version}.*upgrade"):
        Runtime(bundle)


@pytest.mark.parametrize(
    "data",
    [b"{not json", b"", b'{"format": "pocketgan-bundle"', b"\xff\xfe{}"],
    ids=["broken", "empty", "truncated", "not-utf8"],
)
def test_invalid_json_manifest(tmp_path, data):
    (tmp_path / "manifest.json").write_bytes(data)
    with pytest.raises(ManifestError, match="not valid JSON"):
        load_manifest(tmp_path)
    with pytest.raises(ManifestError):
        Runtime(tmp_path)


def test_not_a_bundle(tmp_path):
    with pytest.raises(ManifestError, match="not a pocketgan bundle"):
        Runtime(tmp_path)
    with pytest.raises(ArtifactMissingError, match="not found"):
        Runtime(tmp_path / "missing")


def _first_layer(m):
    return sorted(m["rank_pattern"])[0]


def _set(path, value):
    def mutate(m):
        *parents, last = path
        node = m
        for key in parents:
            node = node[key]
        node[last] = value

    return mutate


def _delete(*path):
    def mutate(m):
        *parents, last = path
        node = m
        for key in parents:
            node = node[key]
        del node[last]

    return mutate


def _rank_above_pattern(m):
    layer = _first_layer(m)
    m["concepts"][0]["ranks"][layer] = m["rank_pattern"][layer] + 1


def _duplicate_name(m):
    m["concepts"][1]["name"] = m["concepts"][0]["name"]


def _unlisted_concept_file(m):
    del m["artifacts"][m["concepts"][0]["files"]["embedding"]]


def _base_sha_mismatch(m):
    m["base"]["sha256"] = "0" * 64


def _dotdot_artifact(m):
    m["artifacts"]["../outside.bin"] = {"sha256": "0" * 64, "bytes": 1}


def _dotdot_concept_file(m):
    m["concepts"][0]["files"]["adapter_weights"] = "concepts/../../etc/passwd"


def _absolute_path(m):
    m["base"]["weights"] = "/etc/passwd"


def _ranks_other_layers(m):
    del m["concepts"][0]["ranks"][_first_layer(m)]


def _adapter_missing_concept(m):
    del m["targets"]["onnx"]["adapters"]["gamma_3"]


def _merged_missing_concept(m):
    del m["targets"]["onnx"]["merged"]["alpha"]


@pytest.mark.parametrize(
    "mutate",
    [
        _delete("rank_pattern"),
        _delete("io"),
        _delete("concepts", 0, "files"),
        _delete("targets", "onnx", "parity"),
        _delete("targets", "onnx", "adapters"),
        _set(("format",), "some-other-format"),
        _set(("format_version",), "1"),
        _set(("format_version",), 0),
        _set(("extra",), 1),
        _set(("base", "sha256"), "not-a-sha"),
        _set(("base", "sha256"), "A" * 64),
        _base_sha_mismatch,
        _dotdot_artifact,
        _dotdot_concept_file,
        _absolute_path,
        _rank_above_pattern,
        _duplicate_name,
        _ranks_other_layers,
        _unlisted_concept_file,
        _set(("concepts", 0, "name"), "Bad Name"),
        _set(("rank_pattern",), {}),
        _set(("io", "input", "dtype"), "float16"),
        _set(("io", "input", "shape"), [1, 3, 256]),
        _set(("targets", "tflite"), {}),
        _set(("targets", "onnx", "concept_mode"), "fused"),
        _adapter_missing_concept,
        _merged_missing_concept,
    ],
    ids=lambda f: getattr(f, "__name__", "x"),
)
def test_schema_and_reference_violations_are_manifest_errors(tmp_path, exported_bundle, mutate):
    m = read_manifest(exported_bundle)
    mutate(m)
    write_manifest(tmp_path, m)
    with pytest.raises(ManifestError):
        load_manifest(tmp_path)


def test_manifest_must_be_an_object(tmp_path):
    (tmp_path / "manifest.json").write_text("[]")
    with pytest.raises(ManifestError, match="JSON object"):
        load_manifest(tmp_path)


def test_manifest_error_reaches_runtime(tmp_path, exported_bundle):
    bundle = copy_bundle(exported_bundle, tmp_path / "b")
    m = read_manifest(bundle)
    _duplicate_name(m)
    write_manifest(bundle, m)
    with pytest.raises(ManifestError, match="duplicate concept names"):
        Runtime(bundle)


def test_bundle_without_targets(source_bundle):
    with pytest.raises(TargetNotFoundError, match="pocketgan export"):
        Runtime(source_bundle)


def test_missing_concept_mode(separate_export):
    with pytest.raises(TargetNotFoundError, match="merged"):
        Runtime(separate_export, concept_mode="merged")
    assert Runtime(separate_export, threads=1).concept_mode == "separate"


# --- merged vs separate ---------------------------------------------------------------------


def test_merged_and_separate_agree(rt, rt_merged, model_inputs, photo_array):
    assert rt_merged.concept_mode == "merged" and rt.concept_mode == "separate"
    for name in CONCEPT_NAMES:
        for x in model_inputs.values():
            a = rt.run_tensor(x, concept=name)
            b = rt_merged.run_tensor(x, concept=name)
            assert a.shape == b.shape == x.shape
            assert psnr(a, b) > 35.0, name
        assert psnr(rt.edit(photo_array, concept=name), rt_merged.edit(photo_array, concept=name), peak=255) > 35.0


def test_merged_set_concept_switches(rt_merged, photo_array):
    outs = []
    for name in CONCEPT_NAMES:
        rt_merged.set_concept(name)
        outs.append(rt_merged.edit(photo_array))
    assert not np.array_equal(outs[0], outs[1]) and not np.array_equal(outs[1], outs[2])


def test_output_range(rt, model_inputs):
    for x in model_inputs.values():
        y = rt.run_tensor(x)
        assert y.dtype == np.float32 and np.isfinite(y).all()
        assert y.min() >= -1.0 and y.max() <= 1.0


# --- threads ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["separate", "merged"])
def test_concurrent_edits_and_swaps(exported_bundle, photo_array, mode):
    rt = Runtime(exported_bundle, threads=1, concept_mode=mode)
    image = np.asarray(Image.fromarray(photo_array).resize((120, 96)))
    want = {name: rt.edit(image, concept=name) for name in CONCEPT_NAMES}
    workers = [CONCEPT_NAMES[i % len(CONCEPT_NAMES)] for i in range(4)]
    rounds = 6
    barrier = threading.Barrier(len(workers) + 1)
    results: dict[int, list[np.ndarray]] = {i: [] for i in range(len(workers))}
    errors: list[BaseException] = []
    stop = threading.Event()

    def edit(i: int, name: str) -> None:
        try:
            barrier.wait()
            for _ in range(rounds):
                results[i].append(rt.edit(image, concept=name))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    def swap() -> None:
        try:
            barrier.wait()
            k = 0
            while not stop.is_set():
                rt.set_concept(CONCEPT_NAMES[k % len(CONCEPT_NAMES)])
                k += 1
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=edit, args=(i, n)) for i, n in enumerate(workers)]
    swapper = threading.Thread(target=swap)
    for t in [*threads, swapper]:
        t.start()
    for t in threads:
        t.join(timeout=120)
    stop.set()
    swapper.join(timeout=30)
    assert not errors, errors
    for i, name in enumerate(workers):
        assert len(results[i]) == rounds
        for got in results[i]:
            assert np.array_equal(got, want[name]), f"thread {i} ({name}) got another concept's output"
    assert rt.concept in CONCEPT_NAMES
