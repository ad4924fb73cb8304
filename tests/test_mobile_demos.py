"""The Android and iOS demo apps (android_demo/, ios_demo/), checked without their toolchains.

Neither Gradle + the Android SDK nor Xcode runs here. What does:

- every ``.kt``, ``.kts`` and ``.swift`` file parses with tree-sitter (tree-sitter-kotlin,
  tree-sitter-swift from PyPI) without an ERROR or MISSING node;
- neither app hard-codes a concept, method, function or tensor name: they come from the
  manifest (the app sources' string literals are compared with the names in the exported
  app bundles' manifests, ``tests/fixtures/app_manifests/``);
- ``tests/fixtures/letterbox_cases.json``, the letterbox table the Kotlin and Swift unit
  tests read, agrees with ``pocketgan.runtime.imaging`` (geometry of many photo sizes, and
  the exact bytes of the model input and the cropped-back output on small images);
- the Android app's plain-Kotlin core (``app/src/main/java/dev/pocketgan/demo/core``) is
  compiled with kotlinc and its JUnit tests (``app/src/test``) run on the JVM, with the
  real golden vectors of an exported bundle and the Python runtime's model outputs for
  them; the benchmark document they write is validated against pocketgan/bench/schema.json.
  The compiler is the npm package ``kotlin-compiler`` (the full kotlinc distribution),
  fetched into ``~/.cache/pocketgan`` on first use; JUnit 4 is Debian's ``junit4``
  (apt-get, when missing). Without npm or apt the test is skipped with the reason.

Regenerate the fixtures after a deliberate change of the pre-processing or the manifest:
``python tests/test_mobile_demos.py --write-fixtures [--android-bundle DIR --ios-bundle DIR]``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
ANDROID = REPO_ROOT / "android_demo"
IOS = REPO_ROOT / "ios_demo"
FIXTURES = TESTS_DIR / "fixtures"
LETTERBOX_CASES = FIXTURES / "letterbox_cases.json"
APP_MANIFESTS = FIXTURES / "app_manifests"

KOTLIN_CORE = ANDROID / "app/src/main/java/dev/pocketgan/demo/core"
KOTLIN_TESTS = ANDROID / "app/src/test/java/dev/pocketgan/demo/core"
KOTLIN_COMPILER_VERSION = "2.4.20"  # npm package `kotlin-compiler`: the kotlinc distribution
CACHE = Path(os.environ.get("POCKETGAN_TOOLCHAIN_CACHE", Path.home() / ".cache" / "pocketgan"))

# --- the letterbox table ---------------------------------------------------------------------

# (width, height, S): downscale both ways, upscale, square, slivers (edge padding), odd
# borders, halves that round to even, the golden strip (no resampling), phone camera frames.
GEOMETRY_SIZES = [
    (256, 96, 256),
    (640, 480, 256),
    (480, 640, 256),
    (1920, 1080, 256),
    (1080, 1920, 256),
    (4032, 3024, 256),
    (300, 300, 256),
    (256, 256, 256),
    (100, 50, 256),
    (10, 10, 256),
    (1, 1, 256),
    (2, 1, 256),
    (3, 1000, 256),
    (1000, 3, 256),
    (257, 256, 256),
    (255, 256, 256),
    (511, 255, 256),
    (333, 777, 256),
    (512, 3, 256),
    (512, 5, 256),
    (512, 7, 256),
    (3, 512, 256),
    (1280, 720, 512),
    (720, 1280, 512),
    (640, 480, 128),
    (97, 61, 64),
    (64, 24, 64),
    (33, 100, 64),
    (101, 64, 64),
    (64, 101, 64),
]
# small enough that the Kotlin and Swift tests letterbox them in a blink
PIXEL_SIZES = [
    (32, 12, 32),
    (40, 30, 32),
    (30, 40, 32),
    (100, 40, 32),
    (40, 100, 32),
    (64, 48, 32),
    (7, 5, 16),
    (5, 7, 16),
    (3, 50, 32),
    (50, 3, 32),
    (1, 1, 16),
    (17, 9, 64),
    (16, 16, 16),
    (32, 13, 32),
    (101, 64, 32),
]
PATTERN = "pixel(x, y, c) = (x * 37 + y * 91 + c * 53 + (x * y) % 29) % 256"


def pattern_image(width: int, height: int) -> np.ndarray:
    """The synthetic photo of PATTERN as (H, W, 3) uint8 (the Kotlin and Swift tests build the same)."""
    y, x = np.mgrid[0:height, 0:width]
    c = np.arange(3)[None, None, :]
    return ((x[..., None] * 37 + y[..., None] * 91 + c * 53 + (x * y)[..., None] % 29) % 256).astype(np.uint8)


def letterbox_cases() -> dict:
    from pocketgan.runtime.imaging import from_model_output, to_model_input

    geometry = []
    for w, h, s in GEOMETRY_SIZES:
        _, p = to_model_input(np.zeros((h, w, 3), np.uint8), s)
        borders = (p.top, s - p.inner_height - p.top, p.left, s - p.inner_width - p.left)
        mode = "reflect" if max(borders[:2]) < p.inner_height and max(borders[2:]) < p.inner_width else "edge"
        geometry.append(
            {
                "width": w,
                "height": h,
                "size": s,
                "inner_width": p.inner_width,
                "inner_height": p.inner_height,
                "top": p.top,
                "left": p.left,
                "mode": mode,
            }
        )
    pixels = []
    for w, h, s in PIXEL_SIZES:
        rgb = pattern_image(w, h)
        x, p = to_model_input(rgb, s)
        out = from_model_output(x, p)
        pixels.append(
            {
                "width": w,
                "height": h,
                "size": s,
                "input_sha256": hashlib.sha256(rgb.tobytes()).hexdigest(),
                "tensor_sha256": hashlib.sha256(x.astype("<f4").tobytes()).hexdigest(),
                "output_sha256": hashlib.sha256(out.tobytes()).hexdigest(),
            }
        )
    return {
        "description": "Letterbox cases every runtime must reproduce (pocketgan.runtime.imaging). geometry: "
        "(width, height, size) -> inner size, top/left border, numpy pad mode. pixels: the photo "
        "`pattern` (H x W x 3 uint8, row-major RGB) -> sha256 of its bytes (input), of the model "
        "input (1, 3, S, S) as little-endian float32 (tensor), and of the RGB bytes of the "
        "model input cropped back to the photo's size as if the model were the identity (output). "
        "Written by tests/test_mobile_demos.py --write-fixtures; read by the Android and iOS "
        "unit tests.",
        "pattern": PATTERN,
        "geometry": geometry,
        "pixels": pixels,
    }


def app_manifest_fixture(bundle: Path) -> dict:
    """An exported app bundle's manifest, trimmed to what the apps read (training records dropped)."""
    m = json.loads((bundle / "manifest.json").read_text())
    for c in m["concepts"]:
        c.pop("training", None)
    return m


def _write_fixtures(android_bundle: Path | None, ios_bundle: Path | None) -> None:
    LETTERBOX_CASES.write_text(json.dumps(letterbox_cases(), indent=1) + "\n")
    APP_MANIFESTS.mkdir(parents=True, exist_ok=True)
    for name, bundle in (("android", android_bundle), ("ios", ios_bundle)):
        if bundle is not None:
            (APP_MANIFESTS / f"{name}.json").write_text(json.dumps(app_manifest_fixture(bundle), indent=1) + "\n")


def test_letterbox_table_matches_the_python_runtime():
    """The table the Kotlin and Swift unit tests read is what runtime/imaging.py does today."""
    stored = json.loads(LETTERBOX_CASES.read_text())
    assert stored == letterbox_cases(), (
        "tests/fixtures/letterbox_cases.json is stale: pocketgan.runtime.imaging changed. If on purpose, rerun "
        "`python tests/test_mobile_demos.py --write-fixtures` and check the Kotlin/Swift ports still agree"
    )
    modes = {g["mode"] for g in stored["geometry"]}
    assert modes == {"reflect", "edge"}
    # the golden strip needs no resampling: S wide, 3S/8 high
    golden = next(g for g in stored["geometry"] if (g["width"], g["height"], g["size"]) == (256, 96, 256))
    assert (golden["inner_width"], golden["inner_height"], golden["top"], golden["left"]) == (256, 96, 80, 0)


def test_app_manifest_fixtures_follow_the_schema():
    import jsonschema

    schema = json.loads((REPO_ROOT / "runtime/manifest.schema.json").read_text())
    for name, target in (("android", "executorch"), ("ios", "coreml")):
        m = json.loads((APP_MANIFESTS / f"{name}.json").read_text())
        jsonschema.validate(m, schema, cls=jsonschema.Draft202012Validator)
        assert m["contents"] == "app" and target in m["targets"], name
        assert all("golden" in c for c in m["concepts"]), name


# --- tree-sitter --------------------------------------------------------------------------------


def _sources(*suffixes: str) -> list[Path]:
    found = []
    for root in (ANDROID, IOS, REPO_ROOT / "device_harness"):
        for p in sorted(root.rglob("*")):
            skipped = {"build", ".gradle", ".build", "DerivedData", ".swiftpm"}
            if p.suffix in suffixes and p.is_file() and not skipped.intersection(p.relative_to(root).parts):
                found.append(p)
    return found


KOTLIN_SOURCES = _sources(".kt", ".kts")
SWIFT_SOURCES = _sources(".swift")


def _language(path: Path):
    ts = pytest.importorskip(
        "tree_sitter", reason="pip install tree-sitter tree-sitter-kotlin tree-sitter-swift (the dev extra)"
    )
    if path.suffix == ".swift":
        grammar = pytest.importorskip("tree_sitter_swift", reason="pip install tree-sitter-swift (the dev extra)")
    else:
        grammar = pytest.importorskip("tree_sitter_kotlin", reason="pip install tree-sitter-kotlin (the dev extra)")
    return ts, ts.Language(grammar.language())


def _parse(path: Path):
    ts, language = _language(path)
    return ts.Parser(language).parse(path.read_bytes())


def _problems(tree) -> list[str]:
    out = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            row, col = node.start_point
            kind = "MISSING " + node.type if node.is_missing else "ERROR"
            out.append(f"{kind} at line {row + 1}, column {col + 1}: {node.text[:80]!r}")
        if node.has_error or node.is_error:
            stack.extend(node.children)
    return sorted(out)


def test_there_are_app_sources():
    names = {p.relative_to(REPO_ROOT).as_posix() for p in KOTLIN_SOURCES + SWIFT_SOURCES}
    for expected in (
        "android_demo/settings.gradle.kts",
        "android_demo/app/build.gradle.kts",
        "android_demo/app/src/main/java/dev/pocketgan/demo/MainActivity.kt",
        "android_demo/app/src/main/java/dev/pocketgan/demo/PocketganEngine.kt",
        "ios_demo/Package.swift",
        "ios_demo/App/CoreMLEngine.swift",
        "ios_demo/Sources/PocketganCore/Imaging.swift",
    ):
        assert expected in names


@pytest.mark.parametrize("path", KOTLIN_SOURCES + SWIFT_SOURCES, ids=lambda p: p.relative_to(REPO_ROOT).as_posix())
def test_source_parses_cleanly(path):
    tree = _parse(path)
    problems = _problems(tree)
    assert not problems, f"{path.relative_to(REPO_ROOT)} does not parse:\n" + "\n".join(problems)


def test_build_and_resource_files_are_well_formed():
    import xml.dom.minidom

    xml_files = sorted((ANDROID / "app/src/main").rglob("*.xml"))
    assert len(xml_files) >= 4
    for p in xml_files:
        xml.dom.minidom.parse(str(p))  # raises on malformed XML (e.g. "--" inside a comment)
    yaml = pytest.importorskip("yaml")
    project = yaml.safe_load((IOS / "project.yml").read_text())
    app = project["targets"]["PocketganDemo"]
    assert app["info"]["properties"]["NSCameraUsageDescription"]
    script = app["postCompileScripts"][0]["script"]
    assert "scripts/embed_bundle.sh" in script and (IOS / "scripts/embed_bundle.sh").stat().st_mode & 0o111
    for sh in (IOS / "scripts").glob("*.sh"):
        r = _run(["sh", "-n", str(sh)], timeout=60)
        assert r.returncode == 0, f"{sh.name}: {r.stderr}"
    props = (ANDROID / "gradle.properties").read_text()
    assert "executorchVersion=1.5.1" in props and "pocketganBundle=android_bundle" in props


# --- names come from the manifest ----------------------------------------------------------------


def _string_literals(path: Path) -> list[str]:
    """The text of every string literal in a Kotlin or Swift file (interpolations left out)."""
    tree = _parse(path)
    found = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.type in ("string_literal", "line_string_literal", "multi_line_string_literal"):
            parts = [
                c.text.decode()
                for c in node.children
                if c.type in ("string_content", "line_str_text", "multi_line_str_text", "string_fragment")
            ]
            found.append("".join(parts))
            continue
        stack.extend(node.children)
    return found


def _names_in_manifests() -> set[str]:
    names: set[str] = set()
    for f in sorted(APP_MANIFESTS.glob("*.json")):
        m = json.loads(f.read_text())
        names.update(c["name"] for c in m["concepts"])
        names.update(m["io"][k]["name"] for k in ("input", "output"))
        et = m["targets"].get("executorch", {})
        names.update(et.get("methods", {}).values())
        cm = m["targets"].get("coreml", {})
        names.update(cm.get("functions", {}).values())
        names.update(t["name"] for t in cm.get("inputs", []) + cm.get("outputs", []))
    from helpers import CONCEPT_NAMES

    names.update(CONCEPT_NAMES)
    return names


def _app_sources() -> list[Path]:
    """Sources that run in the apps (unit tests and the device harness's XCTest may name a
    fixture's or the peer's tensors)."""
    return [
        p
        for p in KOTLIN_SOURCES + SWIFT_SOURCES
        if not any(
            part in {"test", "androidTest", "Tests", "AppTests", "device_harness"}
            for part in p.relative_to(REPO_ROOT).parts
        )
    ]


def test_apps_take_concept_method_function_and_tensor_names_from_the_manifest():
    names = _names_in_manifests()
    assert {"image", "edited"} <= names and len(names) > 6
    offenders = []
    for path in _app_sources():
        for literal in _string_literals(path):
            if literal in names:
                offenders.append(f'{path.relative_to(REPO_ROOT)}: "{literal}"')
    assert not offenders, "hard-coded names that the manifest defines:\n" + "\n".join(offenders)

    def literals(paths):
        return {s for p in paths for s in _string_literals(p)}

    kotlin = literals(p for p in _app_sources() if p.suffix == ".kt")
    swift = literals(p for p in _app_sources() if p.suffix == ".swift")
    # the keys they read instead (docs/bundle-format.md)
    common = {"io", "input", "output", "name", "shape", "concepts", "artifacts", "sha256", "bytes", "golden"}
    common |= {"targets", "format_version", "threshold_db"}
    assert common | {"executorch", "program", "merged_program", "methods"} <= kotlin
    assert common | {"coreml", "package", "functions", "default_function", "inputs", "outputs"} <= swift
    assert {"ios17", "packages"} <= swift


def test_apps_use_the_platform_apis_the_issue_names():
    kt = "\n".join(p.read_text() for p in _app_sources() if p.suffix == ".kt")
    swift = "\n".join(p.read_text() for p in _app_sources() if p.suffix == ".swift")
    for needle in ("Module.load(", ".loadMethod(", ".execute(", "ImageAnalysis", "ProcessCameraProvider", "Chip("):
        assert needle in kt, needle
    for needle in ("MLModelConfiguration()", ".functionName", "AVCaptureSession", "#available(iOS 18", "ios17"):
        assert needle in swift, needle
    # the core is plain Kotlin / Swift: no Android, UI or Core ML imports
    for p in KOTLIN_CORE.glob("*.kt"):
        imports = re.findall(r"^import\s+(\S+)", p.read_text(), re.M)
        assert all(i.startswith(("java.", "kotlin.")) for i in imports), (p.name, imports)
    for p in (IOS / "Sources/PocketganCore").glob("*.swift"):
        imports = re.findall(r"^\s*import\s+(\S+)", p.read_text(), re.M)
        assert set(imports) <= {"Foundation", "CoreGraphics", "CryptoKit"}, (p.name, imports)
    build = (ANDROID / "app/build.gradle.kts").read_text()
    artifact = r"org\.pytorch:executorch-android:(\$\{?executorchVersion|1\.5\.1)"
    assert re.search(artifact, build) and '"1.5.1"' in build


def test_ios_hashes_with_cryptokit():
    """SHA-256 on iOS is CryptoKit's (issue 16): no hand-written rounds, no type of our own named
    SHA256, and every Swift file that names SHA256 imports CryptoKit (Swift does not re-export it)."""
    core = (IOS / "Sources/PocketganCore/SHA256.swift").read_text()
    assert re.search(r"^extension SHA256\b", core, re.M) and "hash(data: data)" in core
    users = []
    for p in SWIFT_SOURCES:
        text = p.read_text()
        rel = p.relative_to(REPO_ROOT).as_posix()
        # FIPS 180-4's first round constant and initial hash word: a hand-rolled SHA-256 has them
        assert not re.search(r"0x428a2f98|0x6a09e667", text, re.I), f"{rel}: a hand-written SHA-256"
        assert not re.search(r"\b(struct|class|enum|actor)\s+SHA256\b", text), f"{rel}: declares its own SHA256"
        if re.search(r"\bSHA256\b", text):
            users.append(rel)
            assert re.search(r"^\s*import\s+CryptoKit\b", text, re.M), f"{rel} uses SHA256 without importing CryptoKit"
    assert {"ios_demo/Sources/PocketganCore/Bundle.swift", "ios_demo/App/CoreMLEngine.swift"} <= set(users), users


# --- the Kotlin core, compiled and unit-tested ------------------------------------------------------


def _run(cmd: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)


def _kotlinc() -> Path:
    """kotlinc from the npm package ``kotlin-compiler`` (downloaded once into the cache)."""
    home = CACHE / f"kotlin-compiler-{KOTLIN_COMPILER_VERSION}"
    kotlinc = home / "package/bin/kotlinc-jvm"
    if kotlinc.exists():
        return kotlinc
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("compiling the Kotlin core needs npm (to fetch the `kotlin-compiler` package)")
    home.mkdir(parents=True, exist_ok=True)
    r = _run(
        [
            npm,
            "pack",
            f"kotlin-compiler@{KOTLIN_COMPILER_VERSION}",
            "--pack-destination",
            str(home),
            "--loglevel=error",
        ],
        timeout=900,
    )
    tgz = home / f"kotlin-compiler-{KOTLIN_COMPILER_VERSION}.tgz"
    if r.returncode != 0 or not tgz.exists():
        pytest.skip(f"npm pack kotlin-compiler@{KOTLIN_COMPILER_VERSION} failed: {r.stderr[-500:]}")
    staging = home / "staging"
    shutil.rmtree(staging, ignore_errors=True)
    with tarfile.open(tgz) as tar:
        tar.extractall(staging, filter="tar")
    for script in (staging / "package/bin").iterdir():
        script.chmod(0o755)
    os.replace(staging / "package", home / "package")
    shutil.rmtree(staging, ignore_errors=True)
    tgz.unlink()
    return kotlinc


def _junit_jars() -> list[Path]:
    """JUnit 4 and Hamcrest from Debian's junit4 package (apt-get install when missing)."""

    def find():
        junit = Path("/usr/share/java/junit4.jar")
        hamcrest = next(
            (
                p
                for p in (Path("/usr/share/java/hamcrest-core.jar"), Path("/usr/share/java/hamcrest.jar"))
                if p.exists()
            ),
            None,
        )
        return [junit, hamcrest] if junit.exists() and hamcrest else None

    jars = find()
    if jars:
        return jars
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        pytest.skip("the Kotlin unit tests need JUnit 4 (/usr/share/java/junit4.jar): apt-get install junit4")
    for step in ([apt, "update", "-q"], [apt, "install", "-y", "-q", "junit4"]):
        r = _run(step, timeout=900, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if r.returncode != 0:
            pytest.skip(f"apt-get could not install junit4 ({' '.join(step[1:])} exited {r.returncode})")
    jars = find()
    assert jars, "apt-get installed junit4 but /usr/share/java/junit4.jar is missing"
    return jars


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        pytest.skip("compiling the Kotlin core needs a JDK (java 17+ on PATH)")
    r = _run([java, "-version"], timeout=60)
    m = re.search(r'version "(\d+)', r.stderr + r.stdout)
    if not m or int(m.group(1)) < 17:
        pytest.skip(f"the Kotlin core is compiled for JVM 17; found {(r.stderr or r.stdout).splitlines()[:1]}")
    return java


@pytest.fixture(scope="module")
def kotlin_core(tmp_path_factory) -> dict:
    """The core + its unit tests compiled with kotlinc (cached by the sources' hash)."""
    java = _java()
    jars = _junit_jars()
    kotlinc = _kotlinc()
    sources = sorted(KOTLIN_CORE.glob("*.kt")) + sorted(KOTLIN_TESTS.glob("*.kt"))
    digest = hashlib.sha256(KOTLIN_COMPILER_VERSION.encode())
    for p in sources:
        digest.update(p.relative_to(REPO_ROOT).as_posix().encode() + b"\0" + p.read_bytes())
    out = CACHE / "kotlin-core-classes" / digest.hexdigest()[:16]
    if not (out / "ok").exists():
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        r = _run(
            [str(kotlinc), "-jvm-target", "17", "-nowarn", "-cp", os.pathsep.join(map(str, jars)), "-d", str(out)]
            + [str(p) for p in sources],
            timeout=900,
        )
        if r.returncode != 0:
            shutil.rmtree(out, ignore_errors=True)
            pytest.fail(f"kotlinc failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
        (out / "ok").write_text("")
    stdlib = kotlinc.parent.parent / "lib/kotlin-stdlib.jar"
    classes = sorted(
        {m.group(1) for p in KOTLIN_TESTS.glob("*.kt") for m in re.finditer(r"^class (\w+Test)\b", p.read_text(), re.M)}
    )
    return {"java": java, "classpath": os.pathsep.join(map(str, [out, stdlib, *jars])), "tests": classes}


@pytest.fixture(scope="module")
def golden_bundle(mix_export) -> Path:
    """A tiny bundle with a neutral concept exported for ExecuTorch (+ ONNX, which the Python
    runtime below runs): golden vectors of every concept, of strengths and of a blend."""
    return mix_export / "et"


@pytest.fixture(scope="module")
def golden_outputs(tmp_path_factory, golden_bundle) -> Path:
    """The Python runtime's model output for every golden input, as raw float32 files:
    ``<concept>.f32`` and ``mix-<i>.f32`` (``neutral.golden_mixes[i]``)."""
    from PIL import Image

    from pocketgan.runtime import open_bundle
    from pocketgan.runtime.imaging import to_model_input

    out = tmp_path_factory.mktemp("golden_outputs")
    rt = open_bundle(golden_bundle)
    manifest = json.loads((golden_bundle / "manifest.json").read_text())
    for c in manifest["concepts"]:
        rgb = np.asarray(Image.open(golden_bundle / c["golden"]["input"]).convert("RGB"))
        x, _ = to_model_input(rgb, rt.input_size)
        (out / "golden_input.f32").write_bytes(x.astype("<f4").tobytes())
        (out / f"{c['name']}.f32").write_bytes(rt.run_tensor(x, concept=c["name"]).astype("<f4").tobytes())
    for i, g in enumerate(manifest["neutral"]["golden_mixes"]):
        rgb = np.asarray(Image.open(golden_bundle / g["input"]).convert("RGB"))
        x, _ = to_model_input(rgb, rt.input_size)
        (out / f"mix-{i}.f32").write_bytes(rt.run_tensor(x, blend=g["weights"]).astype("<f4").tobytes())
    return out


def test_kotlin_core_unit_tests_pass(kotlin_core, golden_bundle, golden_outputs, tmp_path):
    bench_sample = tmp_path / "bench-sample.json"
    props = {
        "pocketgan.fixtures": FIXTURES,
        "pocketgan.goldenBundle": golden_bundle,
        "pocketgan.goldenOutputs": golden_outputs,
        "pocketgan.benchSampleOut": bench_sample,
    }
    cmd = [
        kotlin_core["java"],
        "-cp",
        kotlin_core["classpath"],
        *[f"-D{k}={v}" for k, v in props.items()],
        "org.junit.runner.JUnitCore",
        *[f"dev.pocketgan.demo.core.{c}" for c in kotlin_core["tests"]],
    ]
    r = _run(cmd, timeout=600)
    print(r.stdout[-3000:])
    assert r.returncode == 0 and "OK (" in r.stdout, f"JUnit failed:\n{r.stdout[-6000:]}\n{r.stderr[-3000:]}"
    ran = int(re.search(r"OK \((\d+) tests?\)", r.stdout).group(1))
    assert ran >= 20, r.stdout[-2000:]
    # what the benchmark mode writes is a valid results document
    from pocketgan.bench.results import validate

    doc = json.loads(bench_sample.read_text())
    validate(doc)
    assert doc["source"] == "android" and doc["records"][0]["backend"] == "executorch"


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="rewrite the mobile demos' fixtures")
    ap.add_argument("--write-fixtures", action="store_true", required=True)
    ap.add_argument("--android-bundle", type=Path, help="an app bundle from `pocketgan export --for android`")
    ap.add_argument("--ios-bundle", type=Path, help="an app bundle from `pocketgan export --for ios`")
    args = ap.parse_args()
    sys.path.insert(0, str(TESTS_DIR))
    _write_fixtures(args.android_bundle, args.ios_bundle)
    print(f"wrote {LETTERBOX_CASES}" + (f" and {APP_MANIFESTS}/" if args.android_bundle or args.ios_bundle else ""))
