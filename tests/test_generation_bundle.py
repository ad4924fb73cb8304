"""Generation bundles: writer, exports (ONNX, ExecuTorch, Core ML), runtime, CLI, prompt hashing, noise.

One tiny random one-step generator (a real diffusers UNet2DConditionModel with cross-attention)
is written once with ONNX, then Core ML is added with ``run_generation_export``; every other
test reads that bundle or a copy of it. Everything is real: torch.onnx, ONNX Runtime,
ExecuTorch XNNPACK, coremltools (structure only off macOS).

Lowering the UNet to XNNPACK takes 40-60 s on 2 cores (55 delegated subgraphs between the
GroupNorms and attention masks that XNNPACK leaves to the portable kernels, about 1 s of
ExecuTorch passes each), so the tests of the real ExecuTorch export are ``slow``; the
ExecuTorch runtime's own checks run in the default set on a small program written in.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import flip_byte, psnr, read_manifest, staging_leftovers, tree_digest, write_manifest
from pocketgan.runtime import (
    BackendUnavailableError,
    ChecksumError,
    GenerationInputError,
    GenerationRuntime,
    InterfaceMismatchError,
    ManifestError,
    UnsupportedFormatError,
    open_bundle,
    read_generation_manifest,
    verify_generation_bundle,
)
from pocketgan.runtime.manifest import sha256_file
from pocketgan.runtime.prompt_hashing import TOKENS, fnv1a32, prompt_ids, prompt_states, words
from pocketgan.runtime.seeded_noise import seeded_noise, splitmix64

SIDE, WIDTH, BUCKETS = 16, 16, 64
GOLDEN = (("red apple", 3), ("", 0))
# (prompt, seed) pairs the backends must match PyTorch on, beyond the golden ones
CASES = [("red apple", 3), ("Grinning FACE!", 11), ("", 0), ("a word never trained on " * 3, 2**64 - 1)]
FLOAT_GATE_DB = 35.0


@pytest.fixture(scope="module")
def arch():
    from pocketgan.generation.teacher import GenerationArchitecture

    return GenerationArchitecture(
        image_size=SIDE, patch_size=2, channels=(16, 32), attention_blocks=1, heads=2, text_width=WIDTH, buckets=BUCKETS
    )


@pytest.fixture(scope="module")
def generator(arch):
    from pocketgan.generation.student import OneStepGenerator
    from pocketgan.generation.teacher import build_unet

    return OneStepGenerator(build_unet(arch, seed=0), arch, 0.0).eval()


@pytest.fixture(scope="module")
def table():
    return torch.randn(BUCKETS + 1, WIDTH, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, generator, table):
    """Written with ONNX, then Core ML added in place (both public APIs)."""
    from pocketgan.export.generation import run_generation_export
    from pocketgan.generation.bundle import write_generation_bundle

    path = tmp_path_factory.mktemp("generation") / "bundle"
    provenance = {"teacher": "random", "ode_steps": 0, "losses": {"mse": 0.5}}
    assert write_generation_bundle(path, generator, table, provenance, ("onnx",), GOLDEN) == path
    manifest = run_generation_export(path, ("coreml",))
    assert list(manifest["targets"]) == ["onnx", "coreml"]
    return path


@pytest.fixture(scope="module")
def et_bundle(tmp_path_factory, bundle):
    """A copy of ``bundle`` with the real ExecuTorch export added (slow: 40-60 s)."""
    from pocketgan.export.generation import run_generation_export

    path = shutil.copytree(bundle, tmp_path_factory.mktemp("generation-et") / "bundle")
    before = read_manifest(path)
    manifest = run_generation_export(path, ["executorch"])
    assert list(manifest["targets"]) == ["onnx", "executorch", "coreml"]
    for name in ("onnx", "coreml"):  # the exports it had were kept as they were
        assert manifest["targets"][name] == before["targets"][name]
    return path


@pytest.fixture(scope="module")
def one_input_pte():
    """A small valid XNNPACK program of the image shapes that takes no prompt input."""
    from pocketgan.export.executorch_target import export_executorch_program

    class OneInput(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)

        def forward(self, noise):
            return self.conv(noise)

    return export_executorch_program(OneInput(), (torch.zeros(1, 3, SIDE, SIDE),))[0]


def add_executorch_entry(bundle, pte: bytes) -> None:
    """Write ``pte`` in as the bundle's ExecuTorch export (entry and checksum)."""
    (bundle / "executorch").mkdir(exist_ok=True)
    (bundle / "executorch/generator.pte").write_bytes(pte)
    m = read_manifest(bundle)
    m["targets"] = {
        "onnx": m["targets"]["onnx"],
        "executorch": {
            "program": "executorch/generator.pte",
            "method": "forward",
            "precision": "fp32",
            "parity_threshold_db": 35.0,
            "parity_psnr_db": 99.0,
        },
        "coreml": m["targets"]["coreml"],
    }
    write_manifest(bundle, m)
    rehash(bundle, "executorch/generator.pte")


def reference(generator, table, prompt: str, seed: int) -> np.ndarray:
    """PyTorch's image of (prompt, seed): float32 (1, 3, S, S)."""
    noise = seeded_noise(seed, (1, 3, SIDE, SIDE))
    states = prompt_states(table.numpy(), prompt)
    with torch.no_grad():
        return generator(torch.from_numpy(noise), torch.from_numpy(states)).numpy()


def rehash(bundle, relpath: str) -> None:
    """Make the manifest's checksum of ``relpath`` match the file again (a 'consistent' tamper)."""
    m = read_manifest(bundle)
    m["artifacts"][relpath] = {"sha256": sha256_file(bundle / relpath), "bytes": (bundle / relpath).stat().st_size}
    write_manifest(bundle, m)


# --- the bundle ------------------------------------------------------------------------------


def test_bundle_files_and_manifest(bundle):
    m = read_manifest(bundle)
    assert (m["format"], m["kind"], m["format_version"]) == ("pocketgan-bundle", "generation", 1)
    files = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()}
    assert files - set(m["artifacts"]) == {"manifest.json"}, "every file but the manifest is listed"
    for f in files:  # nothing pickled: no pickle stream, no torch.save zip
        head = (bundle / f).read_bytes()[:4]
        assert not (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")), f
        assert head != b"PK\x03\x04", f
    assert {
        "generator/config.json",
        "generator/diffusion_pytorch_model.safetensors",
        "prompt_table.safetensors",
    } <= files
    assert m["provenance"] == {"teacher": "random", "ode_steps": 0, "losses": {"mse": 0.5}}
    assert [(g["prompt"], g["seed"]) for g in m["golden"]] == list(GOLDEN)
    io = m["io"]
    assert [(t["name"], t["shape"]) for t in io["inputs"]] == [
        ("noise", [1, 3, SIDE, SIDE]),
        ("prompt_states", [1, TOKENS, WIDTH]),
    ]
    assert (io["output"]["name"], io["output"]["shape"], io["output"]["range"]) == (
        "image",
        [1, 3, SIDE, SIDE],
        [-1, 1],
    )
    assert m["prompts"]["hash"] == "fnv1a32" and m["noise"]["algorithm"] == "splitmix64-box-muller"
    assert m["targets"]["onnx"]["parity_psnr_db"] >= FLOAT_GATE_DB
    assert (m["targets"]["onnx"]["opset"], m["targets"]["onnx"]["parity_threshold_db"]) == (18, FLOAT_GATE_DB)
    coreml = m["targets"]["coreml"]
    if sys.platform != "darwin":
        assert coreml["parity_psnr_db"] is None and "macOS" in coreml["parity_note"]
    assert verify_generation_bundle(bundle).image_size == SIDE


def test_round_trip(bundle, generator, table):
    from pocketgan.generation.bundle import load_generation_bundle

    loaded, loaded_table, manifest = load_generation_bundle(bundle)
    assert torch.equal(loaded_table, table)
    assert loaded.arch == generator.arch and loaded.timestep == generator.timestep
    noise, states = torch.randn(2, 3, SIDE, SIDE), torch.randn(2, TOKENS, WIDTH)
    with torch.no_grad():
        assert torch.equal(loaded(noise, states), generator(noise, states))
    assert manifest.raw["provenance"]["losses"] == {"mse": 0.5}


# --- the runtime on each backend ---------------------------------------------------------------


@pytest.mark.parametrize("backend", ["onnx", pytest.param("executorch", marks=pytest.mark.slow)])
def test_runtime_matches_pytorch(request, generator, table, backend):
    bundle = request.getfixturevalue("et_bundle" if backend == "executorch" else "bundle")
    rt = GenerationRuntime(bundle, backend=backend, threads=1)
    assert rt.backend == backend
    for prompt, seed in CASES:
        want = reference(generator, table, prompt, seed)
        got = rt.run_tensor(rt.noise(seed), rt.prompt_states(prompt))
        assert psnr(got, want) >= FLOAT_GATE_DB, (prompt, seed)
        np.testing.assert_allclose(got, want, atol=1e-4)
    assert min(rt.check_golden()) >= FLOAT_GATE_DB
    array = rt.generate_array("red apple", seed=3)
    assert array.dtype == np.uint8 and array.shape == (SIDE, SIDE, 3)
    image = rt.generate("red apple", seed=3)
    assert (image.mode, image.size) == ("RGB", (SIDE, SIDE)) and np.array_equal(np.asarray(image), array)
    assert rt.generate("red apple", seed=3, size=64).size == (64, 64)


def test_open_bundle_gives_a_generation_runtime(bundle):
    rt = open_bundle(bundle, threads=1)
    assert isinstance(rt, GenerationRuntime) and rt.backend == "onnx"


def test_editing_runtime_names_a_generation_bundle_for_what_it_is(bundle):
    from pocketgan.runtime import ManifestError, Runtime

    with pytest.raises(ManifestError, match="generation bundle"):
        Runtime(bundle)


def test_coreml_package_structure(bundle):
    from pocketgan.export.coreml_structure import describe_package

    info = describe_package(bundle / "coreml/generator.mlpackage")
    main = info["functions"]["main"]
    assert info["specification_version"] == 8  # iOS 17
    assert [(t["name"], t["shape"], t["dtype"]) for t in main["inputs"] + main["outputs"]] == [
        ("noise", [1, 3, SIDE, SIDE], "FLOAT32"),
        ("prompt_states", [1, TOKENS, WIDTH], "FLOAT32"),
        ("image", [1, 3, SIDE, SIDE], "FLOAT32"),
    ]
    if sys.platform == "darwin":
        assert min(GenerationRuntime(bundle, backend="coreml").check_golden()) >= 30.0  # fp16
    else:
        with pytest.raises(BackendUnavailableError, match="only on macOS"):
            GenerationRuntime(bundle, backend="coreml")


def test_empty_prompt_is_the_unconditional_generation(bundle):
    rt = GenerationRuntime(bundle, threads=1)
    assert not prompt_ids("", BUCKETS).any() and not prompt_ids("!!! ???", BUCKETS).any()
    np.testing.assert_array_equal(rt.prompt_states(""), np.broadcast_to(rt.table[0], (1, TOKENS, WIDTH)))
    assert np.array_equal(rt.generate_array("", 5), rt.generate_array("?!", 5))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda rt: rt.generate(123), "a prompt is a str"),
        (lambda rt: rt.generate(None), "a prompt is a str"),
        (lambda rt: rt.generate("x" * 5000), "more than 4096"),
        (lambda rt: rt.generate("apple", seed=-1), r"\[0, 2\^64\)"),
        (lambda rt: rt.generate("apple", seed=2**64), r"\[0, 2\^64\)"),
        (lambda rt: rt.generate("apple", seed=True), "got bool"),
        (lambda rt: rt.generate("apple", seed=1.5), "got float"),
        (lambda rt: rt.generate("apple", size=0), "size must be"),
        (lambda rt: rt.run_tensor(np.zeros((1, 3, SIDE, SIDE)), rt.prompt_states("a")), "noise must be float32"),
        (lambda rt: rt.run_tensor(rt.noise(0), np.zeros((1, 3, WIDTH), np.float32)), "prompt_states must be"),
    ],
    ids=["int", "none", "long", "negative", "too-big", "bool", "float", "size", "noise-dtype", "states-shape"],
)
def test_bad_input_is_a_clear_error(bundle, call, match):
    rt = GenerationRuntime(bundle, threads=1)
    with pytest.raises(GenerationInputError, match=match):
        call(rt)


# --- what a reader refuses -----------------------------------------------------------------------


@pytest.fixture
def copy(bundle, tmp_path):
    return shutil.copytree(bundle, tmp_path / "copy")


@pytest.mark.parametrize(
    "relpath, backend, open_with",
    [
        ("onnx/generator.onnx", "onnx", "runtime"),
        ("prompt_table.safetensors", "onnx", "runtime"),
        ("executorch/generator.pte", "executorch", "runtime"),
        ("golden/0.safetensors", "onnx", "verify"),
        ("coreml/generator.mlpackage/Data/com.apple.CoreML/model.mlmodel", "onnx", "verify"),
        ("generator/diffusion_pytorch_model.safetensors", "onnx", "load"),
    ],
)
def test_tampered_artifact_is_a_checksum_error(copy, one_input_pte, relpath, backend, open_with):
    from pocketgan.generation.bundle import load_generation_bundle

    add_executorch_entry(copy, one_input_pte)
    flip_byte(copy / relpath)
    with pytest.raises(ChecksumError, match="does not match its manifest checksum") as e:
        if open_with == "runtime":
            GenerationRuntime(copy, backend=backend)
        elif open_with == "verify":
            verify_generation_bundle(copy)
        else:
            load_generation_bundle(copy)
    assert e.value.file == relpath


def _set(path: str, value):
    """A mutation setting the manifest value at dotted ``path`` (list indices as numbers)."""

    def mutate(m: dict) -> None:
        *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        for p in parents:
            m = m[p]
        if value is KeyError:
            del m[last]
        else:
            m[last] = value

    return mutate


@pytest.mark.parametrize(
    "mutate, error, field",
    [
        (_set("kind", KeyError), ManifestError, "kind"),
        (_set("kind", "video"), ManifestError, "kind"),
        (_set("format", "other"), ManifestError, "format"),
        (_set("format_version", 2), UnsupportedFormatError, "format_version"),
        (_set("format_version", 1.0), ManifestError, "format_version"),
        (_set("surprise", 1), ManifestError, "(top level)"),
        (_set("prompts.hash", "md5"), ManifestError, "prompts.hash"),
        (_set("prompts.width", WIDTH + 1), ManifestError, "prompts.width"),
        (_set("io.inputs.1.shape", [1, TOKENS + 1, WIDTH]), ManifestError, "io.inputs[1].shape"),
        (_set("io.output.name", "noise"), ManifestError, "io"),
        (_set("noise.algorithm", "mt19937"), ManifestError, "noise.algorithm"),
        (_set("generator.timestep", 5), ManifestError, "generator.timestep"),
        (_set("targets.onnx.model", "onnx/other.onnx"), ManifestError, "targets.onnx.model"),
        (_set("targets.onnx.parity_psnr_db", None), ManifestError, "targets.onnx"),
        (_set("targets.tflite", {}), ManifestError, "targets"),
        (_set("golden.0.seed", -1), ManifestError, "golden[0].seed"),
        (_set("prompts.table", "../table.safetensors"), ManifestError, "prompts.table"),
    ],
    ids=lambda v: None if callable(v) or isinstance(v, type) else str(v),
)
def test_schema_and_meaning_violations_are_manifest_errors(copy, mutate, error, field):
    m = read_manifest(copy)
    mutate(m)
    write_manifest(copy, m)
    with pytest.raises(error) as e:
        GenerationRuntime(copy)
    assert e.value.field == field and "manifest.json" in (e.value.file or "")


def test_duplicate_keys_and_bad_json_are_manifest_errors(copy):
    text = (copy / "manifest.json").read_text()
    (copy / "manifest.json").write_text(text.replace('"kind": "generation",', '"kind": "generation", "kind": "x",'))
    with pytest.raises(ManifestError, match="appears twice"):
        read_generation_manifest(copy)
    (copy / "manifest.json").write_text(text[:-10])
    with pytest.raises(ManifestError, match="not valid JSON"):
        open_bundle(copy)


def test_manifest_io_unlike_the_onnx_model_is_an_interface_mismatch(copy):
    m = read_manifest(copy)
    m["io"]["inputs"][0]["name"] = "latents"
    write_manifest(copy, m)
    with pytest.raises(InterfaceMismatchError, match="latents") as e:
        GenerationRuntime(copy)
    assert e.value.field == "io.inputs"


def test_swapped_onnx_model_is_an_interface_mismatch(copy):
    import onnx
    from onnx import TensorProto, helper

    # a valid model of the right image shapes but one input only, its checksum rewritten
    x = helper.make_tensor_value_info("noise", TensorProto.FLOAT, [1, 3, SIDE, SIDE])
    y = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, SIDE, SIDE])
    graph = helper.make_graph([helper.make_node("Identity", ["noise"], ["image"])], "swapped", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), copy / "onnx/generator.onnx")
    rehash(copy, "onnx/generator.onnx")
    with pytest.raises(InterfaceMismatchError, match="the model's inputs are"):
        GenerationRuntime(copy)


def test_executorch_program_unlike_the_manifest_is_an_interface_mismatch(copy, one_input_pte):
    add_executorch_entry(copy, one_input_pte)
    with pytest.raises(InterfaceMismatchError, match="takes/returns") as e:
        GenerationRuntime(copy, backend="executorch")
    assert e.value.file == "executorch/generator.pte"
    m = read_manifest(copy)
    m["targets"]["executorch"]["method"] = "generate"
    write_manifest(copy, m)
    with pytest.raises(InterfaceMismatchError, match="has no method 'generate'"):
        GenerationRuntime(copy, backend="executorch")


def test_missing_target_says_how_to_export_it(copy):
    from pocketgan.runtime import TargetNotFoundError

    with pytest.raises(TargetNotFoundError, match="pocketgan export .* --targets executorch"):
        GenerationRuntime(copy, backend="executorch")


# --- atomicity and the writer's checks -------------------------------------------------------------


def test_failing_parity_gate_leaves_the_old_bundle(copy):
    from pocketgan.export import ParityError
    from pocketgan.export.generation import run_generation_export

    before = tree_digest(copy)
    with pytest.raises(ParityError, match="below the 1000.0 dB gate; nothing was written"):
        run_generation_export(copy, ["onnx"], threshold_db=1000.0)
    assert tree_digest(copy) == before
    assert staging_leftovers(copy.parent) == []


@pytest.mark.parametrize(
    "change, match",
    [
        ({"prompt_table": torch.zeros(3, WIDTH)}, "prompt table must be"),
        ({"prompt_table": torch.full((BUCKETS + 1, WIDTH), math.nan)}, "non-finite"),
        ({"provenance": {"loss": math.inf}}, "Out of range float"),
        ({"golden": ()}, "at least one golden"),
        ({"golden": (("apple", -1),)}, "a golden case is"),
        ({"targets": ("tflite",)}, "unknown export target"),
        ({"coreml_precision": "int8"}, "Core ML precision"),
    ],
    ids=["table-shape", "table-nan", "provenance", "no-golden", "bad-seed", "target", "coreml-int8"],
)
def test_writer_refuses_bad_arguments_before_writing(tmp_path, generator, table, change, match):
    from pocketgan.generation.bundle import write_generation_bundle

    kwargs = {"prompt_table": table, "provenance": {}, "targets": ("coreml",), "golden": GOLDEN} | change
    with pytest.raises(ValueError, match=match):
        write_generation_bundle(tmp_path / "out", generator, **kwargs)
    assert not (tmp_path / "out").exists() and staging_leftovers(tmp_path) == []


# --- prompt hashing ------------------------------------------------------------------------------


def test_fnv1a32_reference_vectors():
    # the FNV reference test vectors (Fowler/Noll/Vo, "FNV-1a" 32-bit)
    assert fnv1a32(b"") == 0x811C9DC5
    assert fnv1a32(b"a") == 0xE40C292C
    assert fnv1a32(b"foobar") == 0xBF9CF968


@pytest.mark.parametrize(
    "a, b",
    [("red apple", "RED   Apple!"), ("red apple", "red, apple."), ("woman's t-shirt", "Woman's T-Shirt")],
)
def test_same_words_same_rows(a, b):
    assert np.array_equal(prompt_ids(a, BUCKETS), prompt_ids(b, BUCKETS))


def test_prompt_rows():
    ids = prompt_ids("red apple", BUCKETS)
    assert ids.dtype == np.int64 and ids.shape == (TOKENS,)
    assert list(ids[:2]) == [1 + fnv1a32(b"red") % BUCKETS, 1 + fnv1a32(b"apple") % BUCKETS]
    assert not ids[2:].any(), "padding is row 0"
    assert not np.array_equal(ids, prompt_ids("apple red", BUCKETS)), "word order is kept"
    unknown = prompt_ids("zyxqvw-never-seen 12345", BUCKETS)
    assert all(1 <= i <= BUCKETS for i in unknown[:2]) and not unknown[2:].any()
    assert words("Café au-lait, s'il vous plaît") == ["caf", "au-lait", "s'il", "vous", "pla", "t"]


def test_prompt_truncated_at_tokens_words():
    many = " ".join(f"w{i}" for i in range(TOKENS + 5))
    first = " ".join(f"w{i}" for i in range(TOKENS))
    assert np.array_equal(prompt_ids(many, BUCKETS), prompt_ids(first, BUCKETS))
    assert prompt_ids(many, BUCKETS).all()


def test_prompt_states_are_table_rows_with_c_strides():
    table = np.arange((BUCKETS + 1) * WIDTH, dtype=np.float32).reshape(BUCKETS + 1, WIDTH)
    states = prompt_states(table, "red apple")
    assert states.shape == (1, TOKENS, WIDTH) and states.dtype == np.float32
    np.testing.assert_array_equal(states[0], table[prompt_ids("red apple", BUCKETS)])
    assert 0 not in states.strides  # ExecuTorch refuses a 0 stride


def test_training_and_runtime_hash_with_the_same_code():
    from pocketgan.generation import prompt_encoder

    assert prompt_encoder.prompt_ids is prompt_ids and prompt_encoder.fnv1a32 is fnv1a32
    assert prompt_encoder.TOKENS == TOKENS


# --- seeded noise --------------------------------------------------------------------------------

# The first outputs of the reference SplitMix64 (Vigna's splitmix64.c, compiled with gcc):
# x += 0x9e3779b97f4a7c15; z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9; z = (z ^ (z >> 27)) *
# 0x94d049bb133111eb; return z ^ (z >> 31).
SPLITMIX64 = {
    0: [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F, 0xF88BB8A8724C81EC],
    3: [0x1D0B14E4DB018FED, 0xB3466F8A7B81A989, 0x9CEBE8A6D050DD01, 0x12A764FB66ABC9CF],
    2**64 - 1: [0xE4D971771B652C20, 0xE99FF867DBF682C9, 0x382FF84CB27281E9, 0x6D1DB36CCBA982D2],
}


@pytest.mark.parametrize("seed", list(SPLITMIX64))
def test_splitmix64_matches_the_reference(seed):
    assert [int(v) for v in splitmix64(seed, 4)] == SPLITMIX64[seed]


def test_noise_box_muller_from_the_reference_stream():
    x = SPLITMIX64[0]
    u = [((v >> 11) + 0.5) / 2.0**53 for v in x]
    r = [math.sqrt(-2.0 * math.log(u[0])), math.sqrt(-2.0 * math.log(u[2]))]
    want = [r[0] * math.cos(2 * math.pi * u[1]), r[0] * math.sin(2 * math.pi * u[1])]
    want += [r[1] * math.cos(2 * math.pi * u[3]), r[1] * math.sin(2 * math.pi * u[3])]
    np.testing.assert_allclose(seeded_noise(0, (4,)), np.float32(want), rtol=1e-6)
    np.testing.assert_array_equal(seeded_noise(0, (3,)), seeded_noise(0, (4,))[:3])  # an odd count


def test_noise_is_deterministic_and_standard_normal():
    a = seeded_noise(7, (1, 3, 64, 64))
    assert a.dtype == np.float32 and a.shape == (1, 3, 64, 64)
    assert np.array_equal(a, seeded_noise(7, (1, 3, 64, 64)))
    assert not np.array_equal(a, seeded_noise(8, (1, 3, 64, 64)))
    big = seeded_noise(1, (200_000,))
    assert abs(big.mean()) < 0.01 and abs(big.std() - 1) < 0.01
    assert abs(np.mean(np.abs(big) > 1.96) - 0.05) < 0.003  # the tails of a normal
    for bad in (-1, 2**64):
        with pytest.raises(ValueError, match="seed must be"):
            seeded_noise(bad, (4,))


# --- the command line ----------------------------------------------------------------------------


def test_cli_generate_writes_a_png(bundle, tmp_path, capsys):
    from pocketgan.cli import main

    out = tmp_path / "apple.png"
    assert main(["generate", "red apple", "--seed", "3", "-o", str(out), "--bundle", str(bundle)]) == 0
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (SIDE, SIDE)
        want = GenerationRuntime(bundle).generate_array("red apple", 3)
        assert np.array_equal(np.asarray(image.convert("RGB")), want)
    grid = tmp_path / "grid.png"
    argv = ["generate", "red apple", "--seeds", "0-3", "--size", "32", "-o", str(grid), "--bundle", str(bundle)]
    assert main(argv) == 0
    with Image.open(grid) as image:
        assert image.size == (2 * 32 + 2, 2 * 32 + 2)
    assert "seeds 0-3 (4 images)" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--seeds", "5-1"], "rising range"),
        (["--seeds", "a"], "write seeds as"),
        (["--seed", "-2"], r"\[0, 2\^64\)"),
        (["--seed", "1", "--seeds", "0-3"], "either --seed or --seeds"),
        (["-o", "out.txt"], "name an image file"),
        (["--backend", "coreml"], "only on macOS" if sys.platform != "darwin" else None),
    ],
)
def test_cli_generate_errors_are_one_line(bundle, tmp_path, capsys, argv, message):
    from pocketgan.cli import main

    if message is None:
        pytest.skip("Core ML runs on this platform")
    base = ["generate", "apple", "--bundle", str(bundle), "-o", str(tmp_path / "x.png")]
    assert main(base + argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pocketgan generate: error:") and len(err.splitlines()) == 1
    assert re.search(message, err)


def test_cli_generate_without_the_default_bundle(tmp_path, capsys):
    from pocketgan.cli import main
    from pocketgan.runtime import default_generation_bundle_path

    if default_generation_bundle_path().is_dir():
        pytest.skip("the default generation bundle exists")
    assert main(["generate", "red apple", "-o", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "no default generation bundle" in err and "--bundle DIR" in err and len(err.strip().splitlines()) == 1


def test_cli_info_and_export_of_a_generation_bundle(bundle, tmp_path, capsys):
    from pocketgan.cli import main

    assert main(["info", str(bundle), "--verify"]) == 0
    out = capsys.readouterr().out
    assert "(generation)" in out and "onnx: fp32, worst parity" in out and "all checksums verified" in out
    assert main(["info", str(bundle), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kind"] == "generation"
    # pocketgan export dispatches to the generation exporter; a failing gate writes nothing
    new = tmp_path / "new"
    argv = ["export", str(bundle), "--targets", "onnx", "--out", str(new), "--parity-threshold", "1000"]
    assert main(argv) == 2
    assert "below the 1000.0 dB gate" in capsys.readouterr().err
    assert not new.exists() and staging_leftovers(tmp_path) == []
    assert main(["export", str(bundle), "--targets", "onnx", "--concepts", "merged"]) == 2
    assert "--concepts do(es) not apply to a generation bundle" in capsys.readouterr().err


def test_shipped_generation_bundle_runs_its_golden_cases():
    from pocketgan.runtime.generation import default_generation_bundle_path

    if not (default_generation_bundle_path() / "manifest.json").is_file():
        pytest.skip("this checkout ships no default generation bundle")
    rt = GenerationRuntime(threads=1)  # verifies the schema, every checksum and the model's io
    assert min(rt.check_golden()) >= 35.0
    image = rt.generate("red apple", seed=3)
    assert image.size == (rt.image_size, rt.image_size)
    # a trained generator: different seeds and prompts give different pictures
    a, b = rt.generate_array("red apple", seed=0), rt.generate_array("red apple", seed=1)
    c = rt.generate_array("blue heart", seed=0)
    assert np.abs(a.astype(int) - b).mean() > 1 and np.abs(a.astype(int) - c).mean() > 1
