"""The web demo (web_demo/, `pocketgan serve-demo`): its JavaScript against the Python
runtime, its server, and the page itself in real headless Chromium.

The browser test installs what it needs: Debian's ``chromium`` (apt-get, when
/usr/bin/chromium is missing) and the npm packages of web_demo/package-lock.json
(``npm ci`` into web_demo/node_modules, kept between runs). It exports the tiny bundle
with ``--for web``, serves it, opens a photo in the page, clicks every concept and
compares the pixels with :class:`pocketgan.runtime.Runtime` (>= 35 dB PSNR), checks the
golden vectors, films Chromium's fake webcam and saves a screenshot (also into
``$POCKETGAN_SCREENSHOT_DIR`` when set).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import CONCEPT_NAMES, REPO_ROOT, flip_byte, has_default_bundle, psnr, read_manifest

WEB_DEMO = REPO_ROOT / "web_demo"
CHROMIUM = Path("/usr/bin/chromium")
PSNR_DB = 35.0
SCREENSHOT_ENV = "POCKETGAN_SCREENSHOT_DIR"
LOCK_STAMP = ".pocketgan-package-lock.sha256"


# --- tools ----------------------------------------------------------------------------------


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("the web demo's tests need Node.js 18+ (node and npm on PATH)")
    return node


def _run(cmd: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)


def _ensure_chromium() -> None:
    if CHROMIUM.exists():
        return
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        why = "apt-get is not available" if apt is None else "not root"
        pytest.skip(
            f"the browser test needs Debian's chromium at {CHROMIUM}; cannot install it ({why}): "
            "apt-get install chromium"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    steps = ([apt, "update", "-qq"], [apt, "install", "-y", "-qq", "chromium"])
    for step in steps:
        r = _run(step, timeout=900, env=env)
        if r.returncode != 0:
            pytest.skip(
                f"apt-get could not install chromium ({' '.join(step[1:])} exited {r.returncode}): "
                f"{(r.stderr or r.stdout)[-400:]}"
            )
    assert CHROMIUM.exists(), "apt-get installed chromium but /usr/bin/chromium is missing"


def _ensure_node_modules() -> None:
    """``npm ci`` from the committed lockfile, once per lockfile version."""
    _node()
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("the browser test needs npm (Node.js 18+)")
    lock = hashlib.sha256((WEB_DEMO / "package-lock.json").read_bytes()).hexdigest()
    stamp = WEB_DEMO / "node_modules" / LOCK_STAMP
    if stamp.is_file() and stamp.read_text().strip() == lock:
        return
    r = _run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], timeout=600, cwd=WEB_DEMO)
    if r.returncode != 0:
        pytest.fail(f"npm ci in {WEB_DEMO} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    stamp.write_text(lock + "\n")


@pytest.fixture(scope="module")
def browser_tools() -> None:
    _ensure_chromium()
    _ensure_node_modules()


# --- bundles and servers ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def web_bundle(tmp_path_factory, source_bundle) -> Path:
    """The tiny bundle as `pocketgan export --for web` writes it (ONNX app bundle + golden vectors)."""
    from pocketgan.export import ExportConfig, run_export

    out = tmp_path_factory.mktemp("web") / "web_bundle"
    run_export(ExportConfig(out=out, bundle=source_bundle, platform="web"))
    return out


@pytest.fixture(scope="module")
def test_photo(tmp_path_factory) -> Path:
    """A real photo of another size than the model's (letterboxing resamples both ways), as PNG
    so the browser and Pillow decode the same pixels."""
    from pocketgan.photos import sample_photo_paths

    path = tmp_path_factory.mktemp("photo") / "chelsea-320x240.png"
    src = next(p for p in sample_photo_paths() if p.stem == "chelsea")
    with Image.open(src) as im:
        im.convert("RGB").resize((320, 240), Image.Resampling.LANCZOS).save(path)
    return path


def _start(bundle: Path, **kwargs):
    from pocketgan.web_demo_server import make_server, serve_in_thread

    server = make_server(bundle, "127.0.0.1", 0, **kwargs)
    serve_in_thread(server)
    return server


@pytest.fixture
def fake_ort(tmp_path) -> Path:
    dist = tmp_path / "ort-dist"
    dist.mkdir()
    (dist / "ort.wasm.min.mjs").write_text("export const fake = 1;\n")
    (dist / "ort-wasm-simd-threaded.wasm").write_bytes(b"\0asm\1\0\0\0")
    return dist


def _get(url: str) -> tuple[int, dict, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), b""


# --- the server -----------------------------------------------------------------------------


def test_server_serves_the_page_the_bundle_and_onnxruntime_web(separate_export, fake_ort):
    server = _start(separate_export, ort=fake_ort)
    try:
        url = server.url
        status, headers, body = _get(url)
        assert status == 200 and headers["Content-Type"].startswith("text/html") and b"app.js" in body
        assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
        assert headers["Cross-Origin-Embedder-Policy"] == "require-corp"
        for path, mime in [
            ("app.js", "text/javascript"),
            ("pocketgan.js", "text/javascript"),
            ("lib/imaging.js", "text/javascript"),
            ("style.css", "text/css"),
            ("ort/ort.wasm.min.mjs", "text/javascript"),
            ("ort/ort-wasm-simd-threaded.wasm", "application/wasm"),
            ("bundle/manifest.json", "application/json"),
        ]:
            status, headers, _ = _get(url + path)
            assert status == 200 and headers["Content-Type"].startswith(mime), (
                path,
                status,
                headers.get("Content-Type"),
            )
        m = read_manifest(separate_export)
        for rel in [
            m["targets"]["onnx"]["model"],
            *m["targets"]["onnx"]["adapters"].values(),
            m["concepts"][0]["golden"]["output"],
        ]:
            status, _, body = _get(url + "bundle/" + rel)
            assert status == 200 and len(body) == m["artifacts"][rel]["bytes"], rel
    finally:
        server.shutdown()
        server.server_close()


def test_server_serves_nothing_else(separate_export, fake_ort, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(separate_export, bundle)
    (bundle / "notes.txt").write_text("not in the manifest")
    server = _start(bundle, ort=fake_ort)
    try:
        for path in [
            "bundle/notes.txt",
            "bundle/../manifest.json",
            "bundle/%2e%2e/manifest.json",
            "package.json",
            "package-lock.json",
            "test/drive.mjs",
            "node_modules/onnxruntime-web/package.json",
            "__init__.py",
            "README.md",
            "..%2f..%2fpyproject.toml",
            "ort/../../pyproject.toml",
            ".gitignore",
        ]:
            status, _, _ = _get(server.url + path)
            assert status == 404, path
    finally:
        server.shutdown()
        server.server_close()


def test_server_refuses_bundles_the_page_cannot_run(source_bundle, tmp_path, separate_export):
    from pocketgan.runtime.errors import BundleError, ChecksumError, PocketganError
    from pocketgan.web_demo_server import make_server

    with pytest.raises(BundleError, match="--for web"):
        make_server(source_bundle, port=0)  # no ONNX export
    with pytest.raises(PocketganError, match="npm ci"):
        make_server(separate_export, port=0, ort=tmp_path / "nowhere")
    broken = tmp_path / "broken"
    shutil.copytree(separate_export, broken)
    flip_byte(broken / read_manifest(broken)["targets"]["onnx"]["model"])
    with pytest.raises(ChecksumError):
        make_server(broken, port=0)


def test_serve_demo_command_line(capsys):
    from pocketgan.cli.serve import add_serve_demo_command, cmd_serve_demo

    parser = argparse.ArgumentParser(prog="pocketgan")
    add_serve_demo_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve-demo", "some/bundle", "--port", "9000", "--host", "0.0.0.0"])
    assert (args.bundle, args.port, args.host, args.func) == (Path("some/bundle"), 9000, "0.0.0.0", cmd_serve_demo)
    args = parser.parse_args(["serve-demo"])
    assert (args.bundle, args.port, args.host) == (None, 8000, "127.0.0.1")


def test_page_files_ship_with_the_package():
    """pyproject maps web_demo/ to pocketgan.web_demo and its package data covers every file the
    page loads (so `pocketgan serve-demo` works from a wheel), and nothing of test/ or node_modules/."""
    import fnmatch
    import tomllib

    setuptools = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["package-dir"].get("pocketgan.web_demo") == "web_demo", (
        'add to [tool.setuptools] package-dir: "pocketgan.web_demo" = "web_demo"'
    )
    assert "pocketgan.web_demo" in setuptools["packages"], 'add "pocketgan.web_demo" to [tool.setuptools] packages'
    globs = setuptools["package-data"].get("pocketgan.web_demo", [])
    page = [
        p.relative_to(WEB_DEMO).as_posix()
        for p in WEB_DEMO.rglob("*")
        if p.is_file()
        and p.suffix in (".html", ".js", ".css")
        and p.relative_to(WEB_DEMO).parts[0] not in ("node_modules", "test")
    ]
    assert {"index.html", "app.js", "pocketgan.js", "style.css", "lib/imaging.js"} <= set(page)
    shipped = lambda rel: any(fnmatch.fnmatch(rel, g) and rel.count("/") == g.count("/") for g in globs)  # noqa: E731
    missing = [rel for rel in page + ["package.json", "package-lock.json"] if not shipped(rel)]
    assert not missing, f"[tool.setuptools.package-data] pocketgan.web_demo does not ship {missing}"
    assert not shipped("test/drive.mjs") and not shipped("node_modules/onnxruntime-web/package.json")


# --- the JavaScript, in Node, against the Python runtime ----------------------------------------


def test_js_imaging_is_bit_exact_with_the_python_runtime(tmp_path):
    """lib/imaging.js (letterbox, Pillow's bicubic, [-1, 1] NCHW, crop back) == pocketgan.runtime.imaging."""
    from pocketgan.photos import load_rgb, sample_photo_paths
    from pocketgan.runtime.imaging import from_model_output, to_model_input

    node = _node()
    rng = np.random.default_rng(6)
    photo = load_rgb(sample_photo_paths()[0])
    shapes = [
        (320, 240, 256),
        (240, 320, 256),
        (513, 511, 256),
        (256, 96, 256),
        (64, 64, 64),
        (1, 1, 64),
        (1000, 37, 64),
        (37, 1000, 64),
        (2, 50, 64),
        (17, 800, 128),
        (300, 300, 128),
    ]
    shapes += [
        (int(rng.integers(1, 700)), int(rng.integers(1, 700)), int(rng.choice([64, 128, 256]))) for _ in range(10)
    ]
    cases = []
    for i, (w, h, size) in enumerate(shapes):
        if i % 2:
            img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        else:
            img = np.asarray(Image.fromarray(photo).resize((w, h), Image.Resampling.LANCZOS))
        y = np.clip(rng.normal(0, 0.6, (1, 3, size, size)), -1.2, 1.2).astype(np.float32)
        y.ravel()[:64] = (np.arange(64, dtype=np.float32) + 0.5) / 127.5 - 1.0  # ties: rint goes to even
        (tmp_path / f"c{i}.rgb").write_bytes(img.tobytes())
        (tmp_path / f"c{i}.out.f32").write_bytes(y.tobytes())
        cases.append({"name": f"c{i}", "width": w, "height": h, "size": size, "img": img, "y": y})
    (tmp_path / "cases.json").write_text(
        json.dumps([{k: c[k] for k in ("name", "width", "height", "size")} for c in cases])
    )
    r = _run([node, str(WEB_DEMO / "test" / "imaging_check.mjs"), str(tmp_path)], timeout=120)
    assert r.returncode == 0, r.stderr
    for c in cases:
        x, placement = to_model_input(c["img"], c["size"])
        js_x = np.frombuffer((tmp_path / f"{c['name']}.in.f32").read_bytes(), np.float32).reshape(x.shape)
        np.testing.assert_array_equal(js_x, x, err_msg=f"model input of {c['width']}x{c['height']} -> {c['size']}")
        out = from_model_output(c["y"], placement)
        js_out = np.frombuffer((tmp_path / f"{c['name']}.post.rgb").read_bytes(), np.uint8).reshape(out.shape)
        np.testing.assert_array_equal(js_out, out, err_msg=f"output of {c['width']}x{c['height']} <- {c['size']}")


def test_js_reads_adapters_and_feeds_concepts_like_onnxruntime(tmp_path, separate_export, model_inputs):
    """lib/onnx_adapter.js reads each .onnx_adapter exactly; the graph lib/onnx_model.js
    rewrites, fed those tensors as plain inputs, computes what ORT's adapter API does."""
    import onnxruntime as ort

    from pocketgan.runtime.backends.onnx import session_options

    node = _node()
    r = _run([node, str(WEB_DEMO / "test" / "readers_check.mjs"), str(separate_export), str(tmp_path)], timeout=120)
    assert r.returncode == 0, r.stderr
    m = read_manifest(separate_export)
    onnx = m["targets"]["onnx"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert sorted(summary["removed"]) == sorted(onnx["concept_inputs"])
    assert set(onnx["concept_inputs"]) <= set(summary["inputs"])
    stripped = ort.InferenceSession(
        str(tmp_path / "stripped.onnx"), session_options(1), providers=["CPUExecutionProvider"]
    )
    assert not stripped.get_overridable_initializers()
    assert {i.name for i in stripped.get_inputs()} == {m["io"]["input"]["name"], *onnx["concept_inputs"]}
    reference = ort.InferenceSession(
        str(separate_export / onnx["model"]), session_options(1), providers=["CPUExecutionProvider"]
    )
    x = next(iter(model_inputs.values()))
    for concept, rel in onnx["adapters"].items():
        tensors = json.loads((tmp_path / f"{concept}.json").read_text())
        assert {k: v["dims"] for k, v in tensors.items()} == onnx["concept_inputs"]
        feeds = {k: np.asarray(v["data"], np.float32).reshape(v["dims"]) for k, v in tensors.items()}
        adapter = ort.LoraAdapter()
        adapter.Load(str(separate_export / rel))
        options = ort.RunOptions()
        options.add_active_adapter(adapter)
        want = reference.run(None, {"image": x}, options)[0]
        got = stripped.run(None, {"image": x, **feeds})[0]
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_js_runtime_refuses_bad_bundles(separate_export):
    """openBundle (pocketgan.js) with a stand-in for onnxruntime-web: checksums, format version,
    missing targets and tensor names fail with typed errors, like the Python runtime."""
    r = _run([_node(), str(WEB_DEMO / "test" / "runtime_check.mjs"), str(separate_export)], timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    ok = out.pop("ok")
    assert ok["ok"] and ok["concepts"] == list(CONCEPT_NAMES) and ok["size"] == 256, ok
    assert ok["edited"] == [40, 30, 200], "an identity model gives the photo back, any size"
    assert ok["feeds"] == 1 + len(read_manifest(separate_export)["targets"]["onnx"]["concept_inputs"])
    assert ok["unknownConcept"] == "UnknownConceptError"
    assert {case: result.get("error") for case, result in out.items()} == {
        "flipped_byte": "ChecksumError",
        "truncated": "ChecksumError",
        "newer_format": "UnsupportedFormatError",
        "merged_only": "TargetNotFoundError",
        "no_onnx": "TargetNotFoundError",
        "unlisted": "ManifestError",
        "missing_input": "BundleError",
    }
    assert "upgrade" in out["newer_format"]["message"] and "--for web" in out["no_onnx"]["message"]


# --- the page, in Chromium ----------------------------------------------------------------------


def _drive(
    bundle: Path | None, photo: Path, out: Path, screenshot: Path, *, webcam: bool, concept: str | None = None
) -> dict:
    """Serve ``bundle`` (None: the embedded one), drive the page in Chromium, stop serving."""
    server = _start(bundle)
    try:
        return _drive_url(server.url, photo, out, screenshot, webcam=webcam, concept=concept)
    finally:
        server.shutdown()
        server.server_close()


def _drive_url(url: str, photo: Path, out: Path, screenshot: Path, *, webcam: bool, concept: str | None = None) -> dict:
    cmd = [
        _node(),
        str(WEB_DEMO / "test" / "drive.mjs"),
        "--url",
        url,
        "--photo",
        str(photo),
        "--out",
        str(out),
        "--screenshot",
        str(screenshot),
        "--chromium",
        str(CHROMIUM),
    ]
    if webcam:
        cmd.append("--webcam")
    if concept:
        cmd += ["--screenshot-concept", concept]
    r = _run(cmd, timeout=240, cwd=WEB_DEMO)
    results_file = out / "results.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    assert r.returncode == 0, (
        f"the page failed in Chromium:\n{r.stderr[-3000:]}\n{json.dumps(results, indent=1)[:3000]}"
    )
    assert not results["errors"], results["errors"]
    # a headless Chromium without a GPU warns "No available adapters." once; nothing else
    assert not [m for m in results["console"] if "No available adapters" not in m], results["console"]
    return results


def _page_vs_runtime(bundle: Path, photo: Path, out: Path, results: dict) -> dict[str, float]:
    from pocketgan.runtime import Runtime

    rt = Runtime(bundle, threads=1)
    rgb = np.asarray(Image.open(photo).convert("RGB"))
    scores = {}
    for concept in rt.concepts:
        # the web runtime still upscales the model's edit bicubically (docs/full-resolution.md, "Not done yet")
        want = rt.edit(rgb, concept=concept, resolution="upscale")
        got = np.frombuffer((out / f"{concept}.rgb").read_bytes(), np.uint8).reshape(want.shape)
        scores[concept] = psnr(got, want, peak=255.0)
    return scores


def _keep_screenshot(screenshot: Path, name: str, report: dict) -> None:
    target = os.environ.get(SCREENSHOT_ENV)
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, Path(target) / name)
        (Path(target) / f"{Path(name).stem}.json").write_text(json.dumps(report, indent=2))


def _check_screenshot(screenshot: Path) -> None:
    with Image.open(screenshot) as shot:
        assert shot.width >= 1000 and shot.height >= 500
        assert np.asarray(shot.convert("L")).std() > 20, "the screenshot shows more than a blank page"


def test_web_demo_in_chromium(browser_tools, web_bundle, test_photo, tmp_path):
    out, screenshot = tmp_path / "page", tmp_path / "web_demo.png"
    results = _drive(web_bundle, test_photo, out, screenshot, webcam=True)

    m = read_manifest(web_bundle)
    names = [c["name"] for c in m["concepts"]]
    assert results["concepts"] == results["buttons"] == names == list(CONCEPT_NAMES)
    assert (results["inputName"], results["outputName"]) == (m["io"]["input"]["name"], m["io"]["output"]["name"])
    assert results["backend"] == "wasm" and results["crossOriginIsolated"] is True
    for edit in results["edits"].values():
        assert (edit["width"], edit["height"]) == (320, 240) and edit["pressed"] == "true"
        assert edit["timings"]["total"] > 0

    # every concept, edited in the page, against the Python runtime
    scores = _page_vs_runtime(web_bundle, test_photo, out, results)
    assert all(db >= PSNR_DB for db in scores.values()), scores

    # the golden vectors: the page's own verdict, and the pixels it produced
    golden = {g["concept"]: g for g in results["golden"]}
    assert set(golden) == set(names) and results["goldenTableRows"] == len(names)
    for c in m["concepts"]:
        g = golden[c["name"]]
        assert g["passed"] and g["psnr"] >= PSNR_DB, g
        expected = np.asarray(Image.open(web_bundle / c["golden"]["output"]).convert("RGB"))
        got = np.frombuffer((out / f"golden-{c['name']}.rgb").read_bytes(), np.uint8).reshape(expected.shape)
        assert psnr(got, expected, peak=255.0) >= PSNR_DB

    assert results["strength"] is None  # no neutral concept: no slider
    assert results["sample"].startswith("before: sample (256×96)")
    assert results["dropped"].startswith("before: dropped.png (320×240)")
    assert results["webcam"]["frames"] >= 3 and "fps" in results["webcam"]["timing"]
    assert "webcam (" in results["webcam"]["caption"]
    assert results["screenshot"]["concept"] == names[-1] and "frame" in results["screenshot"]["timing"]
    _check_screenshot(screenshot)
    report = {
        "bundle": "tiny, pocketgan export --for web",
        "psnr_db_vs_python_runtime": scores,
        "golden_psnr_db": {k: v["psnr"] for k, v in golden.items()},
        "timings_ms": {k: v["timings"] for k, v in results["edits"].items()},
        "steps_ms": results["steps"],
    }
    print(json.dumps(report, indent=1))
    _keep_screenshot(screenshot, "web_demo_tiny.png", report)


def test_web_demo_runs_an_int8_bundle(browser_tools, source_bundle, test_photo, tmp_path):
    """`pocketgan export --for web --precision int8`: the int8 graph takes float16 concept
    tensors; the page feeds the adapters' halves as they are and edits like the runtime."""
    from pocketgan.export import ExportConfig, run_export

    bundle = tmp_path / "web_int8"
    run_export(ExportConfig(out=bundle, bundle=source_bundle, platform="web", precision="int8"))
    onnx = read_manifest(bundle)["targets"]["onnx"]
    assert onnx["precision"] == "int8" and onnx["concept_input_dtype"] == "float16"
    out, screenshot = tmp_path / "page", tmp_path / "web_demo_int8.png"
    results = _drive(bundle, test_photo, out, screenshot, webcam=False)
    assert results["concepts"] == list(CONCEPT_NAMES)
    scores = _page_vs_runtime(bundle, test_photo, out, results)
    assert all(db >= PSNR_DB for db in scores.values()), scores
    assert all(g["passed"] for g in results["golden"]), results["golden"]
    print(json.dumps({"bundle": "tiny, --for web --precision int8", "psnr_db_vs_python_runtime": scores}, indent=1))


@pytest.mark.skipif(not has_default_bundle(), reason="the embedded default bundle is not built")
def test_web_demo_runs_the_default_bundle(browser_tools, test_photo, tmp_path):
    """`pocketgan serve-demo` without a bundle: the shipped concepts, edited in the page."""
    from pocketgan.runtime.session import default_bundle_path

    bundle = default_bundle_path()
    names = [c["name"] for c in read_manifest(bundle)["concepts"]]
    out, screenshot = tmp_path / "page", tmp_path / "web_demo_default.png"
    concept = "cartoon" if "cartoon" in names else names[0]
    results = _drive(None, test_photo, out, screenshot, webcam=False, concept=concept)  # None: serve-demo's default
    assert results["concepts"] == results["buttons"] == names
    if results["golden"] is not None:  # bundles exported since golden vectors exist
        assert all(g["passed"] for g in results["golden"]), results["golden"]
    scores = _page_vs_runtime(bundle, test_photo, out, results)
    assert all(db >= PSNR_DB for db in scores.values()), scores
    if read_manifest(bundle).get("neutral") is not None:
        # the strength slider, dragged to 0.5 in the page, against the Python runtime; and the
        # golden vectors of the strengths and the blend, checked by the page
        from pocketgan.runtime import Runtime

        strength = results["strength"]
        assert strength is not None and strength["shown"] == "0.5", strength
        want = Runtime(bundle, threads=1).edit(
            np.asarray(Image.open(test_photo).convert("RGB")),
            concept=strength["concept"],
            strength=0.5,
            resolution="upscale",
        )
        got = np.frombuffer((out / "strength-0.5.rgb").read_bytes(), np.uint8).reshape(want.shape)
        scores["strength 0.5"] = psnr(got, want, peak=255.0)
        assert scores["strength 0.5"] >= PSNR_DB, scores
        mixes = [g for g in results["golden"] if "=" in g["concept"]]
        assert len(mixes) == len(read_manifest(bundle)["neutral"]["golden_mixes"]) == 3, results["golden"]
    _check_screenshot(screenshot)
    report = {
        "bundle": "embedded default",
        "psnr_db_vs_python_runtime": scores,
        "timings_ms": {k: v["timings"] for k, v in results["edits"].items()},
        "steps_ms": results["steps"],
    }
    print(json.dumps(report, indent=1))
    _keep_screenshot(screenshot, "web_demo_default.png", report)
