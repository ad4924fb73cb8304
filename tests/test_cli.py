"""The ``pocketgan`` command line, called in-process (``main(argv)``)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import CONCEPT_NAMES, copy_bundle, flip_byte, psnr, read_manifest
from pocketgan.cli import main
from pocketgan.runtime import Runtime


def _run(capsys, *argv):
    rc = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


# --- info ---------------------------------------------------------------------------------


def test_info_verify(capsys, exported_bundle):
    rc, out, err = _run(capsys, "info", exported_bundle, "--verify")
    assert rc == 0, err
    assert str(exported_bundle) in out
    assert "e2gan-tiny" in out
    assert f"concepts    {len(CONCEPT_NAMES)}" in out
    for name in CONCEPT_NAMES:
        assert f"  {name} " in out
    assert "target      onnx: fp32, concepts both" in out
    assert "all checksums verified" in out


def test_info_json(capsys, exported_bundle):
    rc, out, _ = _run(capsys, "info", exported_bundle, "--json")
    assert rc == 0
    assert json.loads(out) == read_manifest(exported_bundle)


def test_info_of_a_source_bundle(capsys, source_bundle):
    rc, out, _ = _run(capsys, "info", source_bundle)
    assert rc == 0
    assert "target      none" in out and "pocketgan export" in out
    assert "checksums verified" not in out


def test_info_verify_detects_corruption(capsys, tmp_path, exported_bundle):
    bundle = copy_bundle(exported_bundle, tmp_path / "b")
    flip_byte(bundle / "concepts" / "gamma_3" / "adapter_model.safetensors")
    rc, _, _ = _run(capsys, "info", bundle)
    assert rc == 0, "without --verify only the manifest is read"
    rc, out, err = _run(capsys, "info", bundle, "--verify")
    assert rc == 2
    assert "pocketgan info: error:" in err and "concepts/gamma_3/adapter_model.safetensors" in err
    assert "corrupted" in err


@pytest.mark.parametrize("case", ["empty-dir", "missing-dir", "file"])
def test_info_of_a_non_bundle(capsys, tmp_path, case):
    path = {"empty-dir": tmp_path, "missing-dir": tmp_path / "nope", "file": tmp_path / "f.txt"}[case]
    if case == "file":
        path.write_text("hello")
    rc, out, err = _run(capsys, "info", path)
    assert rc == 2
    assert err.startswith("pocketgan info: error:")
    assert ("not a pocketgan bundle" in err) if case == "empty-dir" else ("not found" in err)
    assert out == ""


# --- edit ---------------------------------------------------------------------------------


def test_edit_one_concept_to_a_file(capsys, tmp_path, exported_bundle, photo_paths):
    photo = photo_paths[1]
    out = tmp_path / "edited.png"
    rc, _, err = _run(capsys, "edit", photo, "-c", "beta-2", "-o", out, "--bundle", exported_bundle, "--threads", 1)
    assert rc == 0, err
    with Image.open(out) as im, Image.open(photo) as src:
        assert im.format == "PNG"
        assert im.size == src.size
        assert im.mode == "RGB"
        want = Runtime(exported_bundle, threads=1).edit(src.convert("RGB"), concept="beta-2")
        assert np.array_equal(np.asarray(im), np.asarray(want))
    assert list(tmp_path.iterdir()) == [out]


def test_edit_all_concepts_to_a_directory(capsys, tmp_path, exported_bundle, photo_paths):
    photo = photo_paths[0]
    out = tmp_path / "edits"
    rc, _, err = _run(capsys, "edit", photo, "-c", "all", "-o", out, "--bundle", exported_bundle, "--threads", 1)
    assert rc == 0, err
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{photo.stem}-{c}.png" for c in CONCEPT_NAMES)
    images = {}
    with Image.open(photo) as src:
        size = src.size
    for c in CONCEPT_NAMES:
        with Image.open(out / f"{photo.stem}-{c}.png") as im:
            assert im.size == size
            images[c] = np.asarray(im).astype(int)
    assert np.abs(images["alpha"] - images["beta-2"]).mean() > 1.0, "each file is its own concept"


def test_edit_defaults_to_all_concepts(capsys, tmp_path, exported_bundle, photo_paths):
    rc, _, _ = _run(capsys, "edit", photo_paths[0], "-o", tmp_path / "d", "--bundle", exported_bundle)
    assert rc == 0
    assert len(list((tmp_path / "d").iterdir())) == len(CONCEPT_NAMES)


def test_edit_several_images(capsys, tmp_path, exported_bundle, photo_paths):
    rc, _, _ = _run(capsys, "edit", *photo_paths[:2], "-c", "alpha", "-o", tmp_path / "d", "--bundle", exported_bundle)
    assert rc == 0
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == sorted(f"{p.stem}-alpha.png" for p in photo_paths[:2])


def test_edit_to_an_existing_directory(capsys, tmp_path, exported_bundle, photo_paths):
    rc, _, _ = _run(capsys, "edit", photo_paths[0], "-c", "alpha", "-o", tmp_path, "--bundle", exported_bundle)
    assert rc == 0
    assert (tmp_path / f"{photo_paths[0].stem}-alpha.png").is_file()


def test_edit_rgba_png(capsys, tmp_path, exported_bundle):
    src = tmp_path / "rgba.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (45, 70, 4), dtype=np.uint8), "RGBA").save(src)
    out = tmp_path / "out.png"
    rc, _, err = _run(capsys, "edit", src, "-c", "gamma_3", "-o", out, "--bundle", exported_bundle)
    assert rc == 0, err
    with Image.open(out) as im:
        assert im.size == (70, 45) and im.mode == "RGB"


def _text_file(tmp_path):
    p = tmp_path / "notes.jpg"
    p.write_text("not an image")
    return p


@pytest.mark.parametrize(
    "case, message",
    [
        ("unknown-concept", "unknown concept 'nope'"),
        ("missing-image", "cannot read image"),
        ("not-an-image", "not an image format"),
        ("non-bundle-dir", "not a pocketgan bundle"),
        ("missing-bundle", "bundle directory not found"),
        ("source-bundle", "no ONNX export"),
        ("out-is-a-file", "is a file"),
    ],
)
def test_edit_errors(capsys, tmp_path, exported_bundle, source_bundle, photo_paths, case, message):
    image, concept, bundle, out = photo_paths[0], "alpha", exported_bundle, tmp_path / "out.png"
    if case == "unknown-concept":
        concept = "nope"
    elif case == "missing-image":
        image = tmp_path / "missing.jpg"
    elif case == "not-an-image":
        image = _text_file(tmp_path)
    elif case == "non-bundle-dir":
        bundle = tmp_path / "empty"
        bundle.mkdir()
    elif case == "missing-bundle":
        bundle = tmp_path / "nowhere"
    elif case == "source-bundle":
        bundle = source_bundle
    elif case == "out-is-a-file":
        concept = "all"
        out.write_text("x")
    rc, stdout, err = _run(capsys, "edit", image, "-c", concept, "-o", out, "--bundle", bundle)
    assert rc == 2
    assert err.startswith("pocketgan edit: error:"), err
    assert message in err
    assert "Traceback" not in err
    if case != "out-is-a-file":
        assert not out.exists(), "no output written on error"
    assert stdout == ""


def test_edit_to_a_new_folder(capsys, tmp_path, exported_bundle, photo_paths):
    """-o names a path that does not exist and has no suffix: a folder, made for the edits."""
    out = tmp_path / "new" / "edits"
    rc, _, err = _run(capsys, "edit", photo_paths[0], "-c", "alpha", "-o", out, "--bundle", exported_bundle)
    assert rc == 0, err
    assert [p.name for p in out.iterdir()] == [f"{photo_paths[0].stem}-alpha.png"]


@pytest.mark.parametrize("name", ["out.xyz", "out.txt"])
def test_edit_refuses_an_output_suffix_it_cannot_write(capsys, tmp_path, exported_bundle, photo_paths, name):
    rc, out, err = _run(
        capsys, "edit", photo_paths[0], "-c", "alpha", "-o", tmp_path / name, "--bundle", exported_bundle
    )
    assert rc == 2 and out == ""
    assert err.startswith("pocketgan edit: error:") and f"{name}: '{name[3:]}' is not an image format" in err
    assert list(tmp_path.iterdir()) == []


def test_edit_max_pixels(capsys, tmp_path, exported_bundle, photo_paths):
    with Image.open(photo_paths[0]) as im:
        pixels = im.width * im.height
    out = tmp_path / "o.png"
    rc, _, err = _run(
        capsys,
        "edit",
        photo_paths[0],
        "-c",
        "alpha",
        "-o",
        out,
        "--bundle",
        exported_bundle,
        "--max-pixels",
        pixels - 1,
    )
    assert rc == 2 and "more than max_pixels" in err and "Traceback" not in err and not out.exists()
    rc, _, err = _run(
        capsys, "edit", photo_paths[0], "-c", "alpha", "-o", out, "--bundle", exported_bundle, "--max-pixels", pixels
    )
    assert rc == 0, err


def _png_header_only(path, width: int, height: int) -> None:
    """A PNG that declares width x height RGB pixels and holds none (a decompression bomb's header)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


@pytest.mark.parametrize("side, message", [(20000, "decompression bomb"), (8000, "more than max_pixels")])
def test_edit_refuses_huge_photos_from_their_header(capsys, tmp_path, exported_bundle, side, message):
    """400 Mpx (Pillow's bomb limit) and 64 Mpx (the 50 Mpx default) are refused before decoding."""
    photo = tmp_path / "huge.png"
    _png_header_only(photo, side, side)
    out = tmp_path / "o.png"
    rc, _, err = _run(capsys, "edit", photo, "-c", "alpha", "-o", out, "--bundle", exported_bundle)
    assert rc == 2 and err.startswith("pocketgan edit: error:") and message in err, err
    assert "Traceback" not in err and not out.exists()


def test_edit_unknown_concept_lists_the_available_ones(capsys, tmp_path, exported_bundle, photo_paths):
    rc, _, err = _run(
        capsys, "edit", photo_paths[0], "-c", "nope", "-o", tmp_path / "o.png", "--bundle", exported_bundle
    )
    assert rc == 2
    assert all(name in err for name in CONCEPT_NAMES)


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["edit"],
        ["edit", "x.jpg"],
        ["info", "--bogus"],
        ["export", "--out", "x", "--concepts", "bogus"],
        ["export", "--out", "x", "--targets", "tflite"],
        ["frobnicate"],
    ],
)
def test_usage_errors_exit_2(capsys, argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "usage: pocketgan" in capsys.readouterr().err


def test_help(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("info", "costs", "export", "edit", "demo"):
        assert command in out


# --- export and costs ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_export(tmp_path_factory, source_bundle, photo_paths):
    """``pocketgan export`` at 64x64 with a custom parity photo folder (separate mode)."""
    root = tmp_path_factory.mktemp("cli-export")
    photos = root / "photos"
    photos.mkdir()
    for p in photo_paths[:2]:
        with Image.open(p) as im:
            im.convert("RGB").resize((80, 60)).save(photos / f"{p.stem}-small.png")
    out = root / "bundle-64"
    rc = main(
        [
            "export",
            str(source_bundle),
            "--out",
            str(out),
            "--image-size",
            "64",
            "--photos",
            str(photos),
            "--targets",
            "onnx",
        ]
    )
    return rc, out, sorted(p.name for p in photos.iterdir())


def test_export_command(cli_export, capsys):
    rc, out, photo_names = cli_export
    assert rc == 0
    m = read_manifest(out)
    assert m["io"]["input"]["shape"] == [1, 3, 64, 64]
    assert m["generator"]["size"] == "custom" and m["generator"]["config"]["image_size"] == 64
    target = m["targets"]["onnx"]
    assert target["concept_mode"] == "separate"
    assert target["parity"]["photos"] == photo_names
    assert all(v >= 35.0 for v in target["parity"]["psnr_db"]["separate"].values())


def test_exported_64_bundle_runs_and_matches_pytorch(cli_export):
    from pocketgan.bundle import load_bundle

    _, out, _ = cli_export
    rt = Runtime(out, threads=1)
    assert rt.input_size == 64
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 64, 64)).astype(np.float32)
    b = load_bundle(out)
    for name in CONCEPT_NAMES:
        with torch.no_grad():
            want = b.model_for(name)(torch.from_numpy(x)).numpy()
        assert psnr(rt.run_tensor(x, concept=name), want) >= 35.0
        assert rt.edit(np.zeros((30, 50, 3), np.uint8), concept=name).shape == (30, 50, 3)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--image-size", "100"], "multiple of 8"),
        (["--photos", "NOPHOTOS"], "photo folder not found"),
        (["--precision", "fp16"], "fp16 does not apply to onnx"),
        (["--targets", "executorch", "--precision", "palettize4"], "does not apply to executorch"),
        (["--for", "android", "--targets", "onnx"], "either a platform (android) or targets"),
    ],
)
def test_export_errors(capsys, tmp_path, source_bundle, extra, message):
    extra = [str(tmp_path / "nophotos") if a == "NOPHOTOS" else a for a in extra]
    out = tmp_path / "out"
    rc, _, err = _run(capsys, "export", source_bundle, "--out", out, *extra)
    assert rc == 2
    assert "pocketgan export: error:" in err and message in err
    assert not out.exists()


def test_export_needs_exactly_one_output(capsys, tmp_path, source_bundle):
    rc, _, err = _run(capsys, "export", source_bundle, tmp_path / "a", "--out", tmp_path / "b")
    assert rc == 2 and "two output directories" in err
    rc, _, err = _run(capsys, "export", source_bundle)
    assert rc == 2 and "name the output directory" in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_export_flags_come_from_export_config():
    """Every ExportConfig field is a flag of `pocketgan export`, with its metadata's help and
    the vocabulary of pocketgan.runtime.targets as its choices."""
    import argparse
    import dataclasses

    from pocketgan.cli import build_parser
    from pocketgan.export.api import ExportConfig
    from pocketgan.runtime import targets

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    export = sub.choices["export"]
    export.format_help()  # builds the deferred flags
    dests = export.get_default("config_fields")["ExportConfig"]
    by_dest = {a.dest: a for a in export._actions}
    by_dest |= {name: by_dest[dest] for name, dest in dests.items()}
    for f in dataclasses.fields(ExportConfig):
        assert f.name in by_dest, f"ExportConfig.{f.name} has no flag"
        if by_dest[f.name].option_strings:  # the positional BUNDLE says it in its own words
            assert f.metadata["help"].split(";")[0] in by_dest[f.name].help
    assert by_dest["targets"].choices == list(targets.TARGETS)
    assert by_dest["precision"].choices == list(targets.PRECISIONS)
    assert by_dest["platform"].choices == list(targets.PLATFORM_TARGETS)
    assert by_dest["executorch_layout"].choices == list(targets.EXECUTORCH_LAYOUTS)
    assert by_dest["concepts"].choices == list(targets.CONCEPT_MODES)
    assert set(by_dest["coreml_precision"].choices) == set(targets.TARGET_SPECS["coreml"].precisions)
    assert "--for" in by_dest["platform"].option_strings


def test_export_into_its_source_is_refused(capsys, source_bundle):
    before = read_manifest(source_bundle)
    rc, _, err = _run(capsys, "export", source_bundle, "--out", source_bundle)
    assert rc == 2 and "must differ" in err
    assert read_manifest(source_bundle) == before


def test_costs_command(capsys):
    rc, out, _ = _run(capsys, "costs", "--resolution", "64")
    assert rc == 0
    lines = out.strip().splitlines()
    assert "GMACs @ 64²" in lines[0]
    assert [line.split("|")[1].strip() for line in lines[2:]] == [
        "pocketgan-tiny",
        "pocketgan-small",
        "pocketgan-base",
        "pix2pix-resnet9 (ngf=64)",
    ]


def test_python_dash_m_entry_point(exported_bundle):
    r = subprocess.run(
        [sys.executable, "-m", "pocketgan", "info", str(exported_bundle), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["concepts"][0]["name"] == CONCEPT_NAMES[0]
    r = subprocess.run(
        [sys.executable, "-m", "pocketgan", "info", "/nonexistent/bundle"], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 2 and "pocketgan info: error:" in r.stderr


def test_demo_command(capsys, tmp_path, source_bundle, photo_paths):
    out = tmp_path / "demo"
    rc, _, err = _run(capsys, "demo", "--out", out, "--bundle", source_bundle, "--threads", 1)
    assert rc == 0, err
    edits = sorted(p.name for p in (out / "edits").iterdir())
    assert edits == sorted(f"{p.stem}-{c}.jpg" for p in photo_paths for c in CONCEPT_NAMES)
    for p in photo_paths:
        with Image.open(p) as src, Image.open(out / "edits" / f"{p.stem}-{CONCEPT_NAMES[0]}.jpg") as im:
            assert im.size == src.size
    summary = json.loads((out / "summary.json").read_text())
    assert summary["concepts"] == list(CONCEPT_NAMES)
    assert sorted(summary["edits"]) == edits
    assert all(v >= 35.0 for v in summary["parity_psnr_db"]["separate"].values())
    assert all(v > 0 for v in summary["latency_ms"].values())
    with Image.open(out / "contact_sheet.jpg") as sheet:
        assert sheet.width == 160 * (1 + len(CONCEPT_NAMES))
    table = (out / "latency.md").read_text()
    assert "set_concept" in table and "ONNX Runtime" in table
    assert Runtime(out / "bundle").concepts == CONCEPT_NAMES


# --- export --for PLATFORM: app bundles -----------------------------------------------------


def _app_export(tmp_path, source_bundle, platform):
    out = tmp_path / f"{platform}-app"
    rc = main(["export", "--for", platform, str(source_bundle), str(out), "--image-size", "64"])
    assert rc == 0
    return out


def _check_app_bundle(out, targets):
    from pocketgan.runtime.manifest import verify_bundle

    m = read_manifest(out)
    assert m["contents"] == "app" and set(m["targets"]) == set(targets)
    assert not (out / "base").exists() and not (out / "concepts").exists()
    assert all("files" not in c for c in m["concepts"]) and "weights" not in m["base"]
    assert not any(p.startswith(("base/", "concepts/")) for p in m["artifacts"])
    verify_bundle(out, m)  # every shipped file is checksummed
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} - {"manifest.json"}
    assert on_disk == set(m["artifacts"])  # nothing unlisted ships
    return m


def test_export_for_web_writes_an_app_bundle(capsys, tmp_path, source_bundle):
    from pocketgan.bundle import load_bundle
    from pocketgan.runtime import Runtime
    from pocketgan.runtime.errors import BundleError

    out = _app_export(tmp_path, source_bundle, "web")
    _check_app_bundle(out, ["onnx"])
    rt = Runtime(out, threads=1)
    x = np.zeros((40, 30, 3), np.uint8)
    assert {rt.edit(x, concept=c).shape for c in rt.concepts} == {(40, 30, 3)}
    with pytest.raises(BundleError, match="app bundle"):
        load_bundle(out)
    capsys.readouterr()
    assert main(["info", str(out), "--verify"]) == 0
    assert "app bundle" in capsys.readouterr().out


def test_export_app_bundle_is_smaller_than_the_full_one(tmp_path, source_bundle):
    full = tmp_path / "full"
    assert main(["export", str(source_bundle), "--out", str(full), "--image-size", "64"]) == 0
    app = tmp_path / "app"
    assert main(["export", str(source_bundle), "--out", str(app), "--image-size", "64", "--app"]) == 0
    size = lambda d: sum(a["bytes"] for a in read_manifest(d)["artifacts"].values())  # noqa: E731
    assert size(app) < size(full)
    assert read_manifest(app)["targets"]["onnx"]["parity"] == read_manifest(full)["targets"]["onnx"]["parity"]


def test_export_for_android(tmp_path, source_bundle):
    pytest.importorskip("executorch.runtime", reason="executorch is not installed")
    from pocketgan.runtime import Runtime

    out = _app_export(tmp_path, source_bundle, "android")
    m = _check_app_bundle(out, ["executorch", "onnx"])
    assert m["targets"]["executorch"]["program"].endswith(".pte")
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 64, 64)).astype(np.float32)
    et, ort = Runtime(out, backend="executorch", threads=1), Runtime(out, backend="onnx", threads=1)
    for name in et.concepts:
        assert psnr(et.run_tensor(x, concept=name), ort.run_tensor(x, concept=name)) >= 35.0


def test_export_for_ios(tmp_path, source_bundle):
    pytest.importorskip("coremltools", reason="coremltools is not installed")
    pytest.importorskip("executorch.runtime", reason="executorch is not installed")

    out = _app_export(tmp_path, source_bundle, "ios")
    m = _check_app_bundle(out, ["coreml", "executorch"])
    coreml = m["targets"]["coreml"]
    assert coreml["precision"] == "fp16"
    assert (out / coreml["package"]).is_dir()


# --- quiet start-up: a fresh process prints only the command's own output -------------------


def _fresh(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_info_starts_quietly_and_without_torch():
    r = _fresh(
        "import sys\nfrom pocketgan.cli import main\nrc = main(['info'])\n"
        "print('torch imported:', 'torch' in sys.modules)\nsys.exit(rc)"
    )
    assert r.returncode == 0 and r.stderr == ""
    assert "(embedded default)" in r.stdout and r.stdout.rstrip().endswith("torch imported: False")


def test_edit_prints_only_its_progress_lines(tmp_path, exported_bundle, photo_paths):
    argv = ["edit", str(photo_paths[0]), "-c", "all", "-o", str(tmp_path / "d"), "--bundle", str(exported_bundle)]
    r = _fresh(
        f"import sys\nfrom pocketgan.cli import main\nrc = main({argv!r})\n"
        "print('torch imported:', 'torch' in sys.modules)\nsys.exit(rc)"
    )
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == len(CONCEPT_NAMES)
    assert all(
        re.fullmatch(rf"\[ *\d+\.\ds\] {re.escape(str(photo_paths[0]))} --[\w-]+--> .+\.png", line) for line in lines
    ), lines
    assert r.stdout.strip() == "torch imported: False"


def test_executorch_start_up_noise_is_filtered_and_nothing_else():
    """torchao's and torch's import-time log lines and ExecuTorch's C++ threadpool lines are
    dropped; other stderr output in the same window is kept."""
    pytest.importorskip("executorch.runtime", reason="executorch is not installed")
    r = _fresh(
        "import os, logging\n"
        "from pocketgan._quiet import native_stderr_filtered, quiet_library_logs\n"
        "quiet_library_logs()\n"
        "import torch\nfrom executorch.runtime import Runtime\n"
        "from executorch.extension.pybindings import portable_lib\n"
        "with native_stderr_filtered():\n"
        "    portable_lib._unsafe_reset_threadpool(1)\n"
        "    os.write(2, b'[threadpool.cpp:1] something else\\n')\n"
        "logging.getLogger('torchao').warning('another torchao warning')\n"
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr == "[threadpool.cpp:1] something else\nanother torchao warning\n"


@pytest.mark.slow
def test_coreml_conversion_is_quiet_and_reports_through_pocketgan_progress():
    """No import-time log lines, no deprecation warnings, no tqdm bars: the bars' titles go to
    the progress callback."""
    pytest.importorskip("coremltools", reason="coremltools is not installed")
    r = _fresh(
        "from pocketgan._quiet import coreml_progress, quiet_library_logs, quiet_library_warnings\n"
        "quiet_library_logs()\nquiet_library_warnings()\n"
        "import torch, coremltools as ct\n"
        "m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()\n"
        "ep = torch.export.export(m, (torch.zeros(1, 3, 8, 8),)).run_decompositions({})\n"
        "seen = []\n"
        "with coreml_progress(seen.append):\n"
        "    ct.convert(ep, convert_to='mlprogram', minimum_deployment_target=ct.target.iOS17,\n"
        "               skip_model_load=True)\n"
        "print(seen)"
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert "Core ML: Converting PyTorch Frontend ==> MIL Ops" in r.stdout
