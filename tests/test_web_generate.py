"""The web demo's Generate tab (web_demo/lib/generation.js, app.js): generation bundles in
the browser, against the Python reference runtime (:class:`pocketgan.runtime.GenerationRuntime`).

A tiny random one-step generator is written once as a generation bundle (ONNX only, like
tests/test_generation_bundle.py). Then:

- in Node: the JS prompt hashing and seeded noise against Python's for many prompts (the
  empty one, Unicode, more than 12 words) and seeds (up to 2^64 - 1); bad bundles give typed
  errors;
- the server: the bundle at ``/generation/``, nothing else of it, checksums at start;
- in headless Chromium (Debian's ``chromium``, driven by ``playwright-core``): the page is
  served with the bundle, a user clicks the Generate tab, types prompts and seeds and clicks
  Generate; the canvas pixels equal the Python runtime's within 2 levels; the page's golden
  check recomputes the stored noise and prompt states; a bad seed, a missing bundle and an
  editing bundle given as the generation bundle show their messages. A screenshot is saved
  (into ``$POCKETGAN_SCREENSHOT_DIR`` too when set).

Tools as tests/test_web_demo.py gets them (Debian's chromium, ``npm ci`` from the lockfile);
skipped, with the reason, where they cannot be had.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import REPO_ROOT, flip_byte, has_default_bundle, read_manifest, write_manifest

WEB_DEMO = REPO_ROOT / "web_demo"
CHECK = WEB_DEMO / "test" / "generate_check.mjs"
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT_ENV = "POCKETGAN_SCREENSHOT_DIR"
SIDE, WIDTH, BUCKETS = 16, 16, 64
# the last seed is above 2^53: JSON.parse alone would round it, the page must not
GOLDEN = (("red apple", 3), ("", 0), ("Grinning FACE!", 2**63 - 1))
# what a user types in the page: (prompt, seed as typed)
PAGE_CASES = [
    ("red apple", "3"),
    ("Grinning FACE! İstanbul café 😀", "18446744073709551615"),
    ("", "0"),
    (" ".join(f"word{i}" for i in range(15)), "12345678901234567890"),
]
# uint8 levels the page may differ from ONNX Runtime (onnxruntime-web's own float rounding)
PIXEL_TOLERANCE = 2


# --- tools ----------------------------------------------------------------------------------


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("the web demo's tests need Node.js 18+ (node on PATH)")
    return node


def _run(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=WEB_DEMO)


@pytest.fixture(scope="module")
def browser_tools() -> None:
    # the same tools as the editing page's tests: Debian's chromium, `npm ci` from the lockfile
    from test_web_demo import _ensure_chromium, _ensure_node_modules

    _ensure_chromium()
    _ensure_node_modules()


@pytest.fixture
def fake_ort(tmp_path) -> Path:
    dist = tmp_path / "ort-dist"
    dist.mkdir()
    (dist / "ort.wasm.min.mjs").write_text("export const fake = 1;\n")
    return dist


# --- the bundle -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def generation_bundle(tmp_path_factory) -> Path:
    """A tiny random one-step generator (a real diffusers UNet with cross-attention), ONNX only."""
    from pocketgan.generation.bundle import write_generation_bundle
    from pocketgan.generation.student import OneStepGenerator
    from pocketgan.generation.teacher import GenerationArchitecture, build_unet

    arch = GenerationArchitecture(
        image_size=SIDE, patch_size=2, channels=(16, 32), attention_blocks=1, heads=2, text_width=WIDTH, buckets=BUCKETS
    )
    generator = OneStepGenerator(build_unet(arch, seed=0), arch, 0.0).eval()
    table = torch.randn(BUCKETS + 1, WIDTH, generator=torch.Generator().manual_seed(1))
    path = tmp_path_factory.mktemp("web-generation") / "bundle"
    return write_generation_bundle(path, generator, table, {"teacher": "random"}, ("onnx",), GOLDEN)


def _start(bundle: Path | None, **kwargs):
    from pocketgan.web_demo_server import make_server, serve_in_thread

    server = make_server(bundle, "127.0.0.1", 0, **kwargs)
    serve_in_thread(server)
    return server


def _stop(server) -> None:
    server.shutdown()
    server.server_close()


def _get(url: str) -> tuple[int, dict, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), b""


# --- the server -----------------------------------------------------------------------------


@pytest.mark.skipif(not has_default_bundle(), reason="the embedded default bundle is not built")
def test_server_serves_a_generation_bundle_and_nothing_else_of_it(generation_bundle, fake_ort, tmp_path):
    from pocketgan.runtime.session import default_bundle_path

    bundle = tmp_path / "bundle"
    shutil.copytree(generation_bundle, bundle)
    (bundle / "notes.txt").write_text("not in the manifest")
    # `pocketgan serve-demo GENERATION_BUNDLE`: the generation bundle for the Generate tab,
    # the embedded editing bundle for the Edit tab
    server = _start(bundle, ort=fake_ort)
    try:
        assert server.generation == bundle.resolve() and server.bundle == default_bundle_path().resolve()
        status, headers, body = _get(server.url + "generation/manifest.json")
        assert status == 200 and headers["Content-Type"] == "application/json"
        assert headers["Cross-Origin-Embedder-Policy"] == "require-corp"
        m = json.loads(body)
        assert m["kind"] == "generation"
        for rel, entry in m["artifacts"].items():
            status, _, body = _get(server.url + "generation/" + rel)
            assert status == 200 and len(body) == entry["bytes"], rel
        assert _get(server.url + "bundle/manifest.json")[0] == 200
        for path in ["generation/notes.txt", "generation/.manifest.json", "generation/%2e%2e/%2e%2e/etc/passwd"]:
            assert _get(server.url + path)[0] == 404, path
    finally:
        _stop(server)
    plain = _start(None, ort=fake_ort)  # no generation bundle: the page says so
    try:
        assert plain.generation is None and _get(plain.url + "generation/manifest.json")[0] == 404
    finally:
        _stop(plain)


def test_server_refuses_generation_bundles_the_page_cannot_run(generation_bundle, fake_ort, tmp_path):
    from pocketgan.runtime.errors import BundleError, ChecksumError
    from pocketgan.web_demo_server import make_server

    broken = shutil.copytree(generation_bundle, tmp_path / "broken")
    flip_byte(broken / read_manifest(broken)["targets"]["onnx"]["model"])
    with pytest.raises(ChecksumError):
        make_server(generation=broken, port=0, ort=fake_ort)
    no_onnx = shutil.copytree(generation_bundle, tmp_path / "no-onnx")
    m = read_manifest(no_onnx)
    del m["artifacts"][m["targets"].pop("onnx")["model"]]
    write_manifest(no_onnx, m)
    with pytest.raises(BundleError, match="--targets onnx"):
        make_server(generation=no_onnx, port=0, ort=fake_ort)


# --- the JavaScript, in Node, against the Python runtime ----------------------------------------


def test_js_prompt_hashing_and_seeded_noise_equal_python(tmp_path):
    """lib/generation.js: words, row ids (two bucket counts), SplitMix64 and the float32 noise of
    pocketgan.runtime.prompt_hashing / seeded_noise, and the seeds and prompts it refuses."""
    from pocketgan.runtime.prompt_hashing import prompt_ids, words
    from pocketgan.runtime.seeded_noise import seeded_noise, splitmix64

    prompts = [
        "",
        "red apple",
        "RED   Apple!",
        "Red-Apple! woman's t-shirt",
        "Café au-lait, s'il vous plaît",
        "Grinning FACE 😀 with ÉMOJI",
        "İstanbul \u212aelvin ǅungla ß straße",  # Unicode lower-casing that lands on ASCII (İ -> i̇, Kelvin -> k)
        "中文 prompt 日本語",
        "!!! ... ---",
        " ".join(f"w{i}" for i in range(20)),  # more than 12 words
        "a" * 300,
    ]
    seeds = [0, 1, 3, 2**32 + 7, 2**53 + 1, 2**63 - 1, 12345678901234567890, 2**64 - 1]
    bucket_counts = [BUCKETS, 2**24]
    count = 3 * 48 * 48 + 1  # odd: the last pair's second value is dropped
    cases = {"buckets": bucket_counts, "tokens": 12, "count": count, "prompts": prompts}
    (tmp_path / "cases.json").write_text(json.dumps(cases | {"seeds": [str(s) for s in seeds]}))
    r = _run([_node(), str(CHECK), "lib", str(tmp_path)], timeout=120)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)

    hashing = json.loads((tmp_path / "hashing.json").read_text())
    for prompt, js in zip(prompts, hashing):
        assert js["words"] == words(prompt), prompt
        for buckets, ids in zip(bucket_counts, js["ids"]):
            assert ids == prompt_ids(prompt, buckets).tolist(), (prompt, buckets)
    assert hashing[0]["ids"][0] == [0] * 12, "the empty prompt is all padding"

    streams = json.loads((tmp_path / "splitmix64.json").read_text())
    worst, inexact = 0.0, 0
    for i, seed in enumerate(seeds):
        assert streams[str(seed)] == [str(int(v)) for v in splitmix64(seed, 4)], seed
        js = np.frombuffer((tmp_path / f"noise-{i}.f32").read_bytes(), np.float32)
        want = seeded_noise(seed, (count,))
        # float64 log/cos/sin of V8 and numpy may differ in the last bit; float32 almost always absorbs it
        worst = max(worst, float(np.abs(js - want).max()))
        inexact += int((js.view(np.uint32) != want.view(np.uint32)).sum())
    assert worst < 1e-6, f"JS noise differs from Python's by up to {worst}"
    print(json.dumps({"noise_values": count * len(seeds), "not_bit_equal": inexact, "max_abs_diff": worst}))

    assert summary["seedOutcomes"] == {
        "-1n": "GenerationInputError",
        "2^64 (bigint)": "GenerationInputError",
        "2^64 (string)": "GenerationInputError",
        "abc": "GenerationInputError",
        "1.5": "GenerationInputError",
        "2^60 (number)": "GenerationInputError",  # not exact as a JS number: a BigInt or a string is
        "empty": "GenerationInputError",
        "-3 (string)": "GenerationInputError",
        "2^53 - 1 (number)": str(2**53 - 1),
        " 42 (string)": "42",
    }
    assert summary["promptOutcomes"] == {
        "4097 letters": "GenerationInputError",
        "4096 emoji (8192 UTF-16 units)": "0",  # Python counts code points: allowed
        "a number": "GenerationInputError",
    }


def test_js_refuses_bad_generation_bundles(generation_bundle):
    """openGenerationBundle with a stand-in for onnxruntime-web: typed errors naming the field."""
    r = _run([_node(), str(CHECK), "errors", str(generation_bundle)], timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out.pop("ok") == {"ok": True, "size": SIDE, "tokens": 12}
    assert {case: result.get("error") for case, result in out.items()} == {
        "missing": "NoGenerationBundleError",
        "not_json": "ManifestError",
        "editing_bundle": "ManifestError",
        "newer_format": "UnsupportedFormatError",
        "other_hash": "ManifestError",
        "other_noise": "ManifestError",
        "wrong_shape": "ManifestError",
        "same_names": "ManifestError",
        "no_onnx": "TargetNotFoundError",
        "unlisted_table": "ManifestError",
        "flipped_model": "ChecksumError",
        "flipped_table": "ChecksumError",
        "other_inputs": "BundleError",
    }
    messages = {case: result["message"] for case, result in out.items()}
    assert "upgrade" in messages["newer_format"] and "--targets onnx" in messages["no_onnx"]
    assert "prompts.hash" in messages["other_hash"] and "noise.algorithm" in messages["other_noise"]
    assert "io.inputs[1].shape" in messages["wrong_shape"] and "Edit tab" in messages["editing_bundle"]
    assert "latents" in messages["other_inputs"] and "prompts.table" in messages["unlisted_table"]


# --- the page, in Chromium ----------------------------------------------------------------------


@pytest.mark.skipif(not has_default_bundle(), reason="the page is served with the embedded editing bundle")
def test_generate_tab_in_chromium(browser_tools, generation_bundle, tmp_path):
    from pocketgan.runtime import GenerationRuntime

    out, screenshot = tmp_path / "page", tmp_path / "web_generate.png"
    server = _start(generation_bundle)  # as `pocketgan serve-demo GENERATION_BUNDLE`
    plain = _start(None)  # serves no generation bundle
    try:
        cmd = [_node(), str(CHECK), "page", "--url", server.url, "--out", str(out), "--screenshot", str(screenshot)]
        cmd += ["--cases", json.dumps([{"prompt": p, "seed": s} for p, s in PAGE_CASES])]
        cmd += ["--missing-url", plain.url + "#generate", "--bad-url", server.url + "?generation=bundle/#generate"]
        cmd += ["--chromium", str(CHROMIUM)]
        r = _run(cmd, timeout=240)
    finally:
        _stop(server)
        _stop(plain)
    results_file = out / "results.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    assert r.returncode == 0, f"the page failed:\n{r.stderr[-3000:]}\n{json.dumps(results, indent=1)[:3000]}"
    assert not results["errors"], results["errors"]
    # a headless Chromium without a GPU warns "No available adapters." once; nothing else
    assert not [m for m in results["console"] if "No available adapters" not in m], results["console"]

    # the tabs: Edit first, Generate after the click
    assert results["tabsBefore"] == {"edit": True, "generate": False}
    assert results["tabsAfter"] == {"edit": False, "generate": True}
    m = read_manifest(generation_bundle)
    assert results["names"] == [*(t["name"] for t in m["io"]["inputs"]), m["io"]["output"]["name"]]
    assert results["backend"] == "wasm" and results["crossOriginIsolated"] is True
    assert results["status"].startswith(f"ready: {SIDE}×{SIDE} generator")
    assert results["prefilled"] == [GOLDEN[0][0], str(GOLDEN[0][1])]

    # every prompt and seed typed in the page, against the Python runtime
    rt = GenerationRuntime(generation_bundle, threads=1)
    diffs = {}
    for i, ((prompt, seed), shown) in enumerate(zip(PAGE_CASES, results["generated"])):
        assert (shown["width"], shown["height"], shown["seed"]) == (SIDE, SIDE, seed)
        assert shown["cssWidth"] == 256, "shown enlarged, a whole factor"
        assert shown["timing"].startswith("one pass: model ") and shown["timings"]["model"] > 0
        assert shown["caption"].startswith(json.dumps(prompt, ensure_ascii=False))
        want = rt.generate_array(prompt, int(seed))
        got = np.frombuffer((out / f"gen-{i}.rgb").read_bytes(), np.uint8).reshape(want.shape)
        diff = np.abs(got.astype(int) - want.astype(int))
        diffs[f"{prompt[:20]!r} seed {seed}"] = {"max": int(diff.max()), "values_off": int((diff > 0).sum())}
        assert diff.max() <= PIXEL_TOLERANCE, diffs
    pictures = [(out / f"gen-{i}.rgb").read_bytes() for i in range(len(PAGE_CASES))]
    assert len(set(pictures)) == len(pictures), "another prompt and seed, another picture"

    # the golden cases, checked by the page: its noise and prompt states are the stored ones
    golden = results["golden"]
    assert results["goldenTableRows"] == len(GOLDEN) == len(golden)
    assert [(g["prompt"], g["seed"]) for g in golden] == [(p, str(s)) for p, s in GOLDEN]
    for g in golden:
        assert g["noiseMaxDiff"] < 1e-6 and g["statesEqual"] and g["passed"], g
        assert g["psnr"] >= g["thresholdDb"] == m["targets"]["onnx"]["parity_threshold_db"], g

    # errors a user sees on the page
    assert results["badSeed"]["generations"] == 0
    assert results["badSeed"]["status"].startswith("GenerationInputError: a seed is an integer in [0, 2^64)")
    assert results["afterBadSeed"]["error"] is False and results["afterBadSeed"]["status"].startswith("ready:")
    missing, bad = results["missing"], results["bad"]
    assert missing["error"] and missing["visible"] and missing["runDisabled"]
    assert missing["status"].startswith("NoGenerationBundleError: no generation bundle at ")
    assert "pocketgan serve-demo GENERATION_BUNDLE" in missing["status"]
    assert bad["error"] and bad["runDisabled"]
    assert bad["status"].startswith("ManifestError: ") and "is not a generation bundle" in bad["status"]

    with Image.open(screenshot) as shot:
        assert shot.width >= 1000 and shot.height >= 500
        assert np.asarray(shot.convert("L")).std() > 20, "the screenshot shows more than a blank page"
    report = {"pixels_vs_python_runtime": diffs, "golden": golden, "steps_ms": results["steps"]}
    report["timings_ms"] = [g["timings"] for g in results["generated"]]
    print(json.dumps(report, indent=1, ensure_ascii=False))
    target = os.environ.get(SCREENSHOT_ENV)
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, Path(target) / "web_generate.png")
        (Path(target) / "web_generate.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
