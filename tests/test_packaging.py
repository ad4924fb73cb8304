"""Packaging: every subpackage is listed, and a regular (non-editable) install works."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from helpers import REPO_ROOT

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
# top-level source folder -> the package it installs as
ROOTS = {
    "pocketgan": "pocketgan",
    "export": "pocketgan.export",
    "runtime": "pocketgan.runtime",
    "web_demo": "pocketgan.web_demo",
}
COPY_IGNORE = shutil.ignore_patterns(
    ".venv",
    ".git",
    "*.egg-info",
    "build",
    "dist",
    "__pycache__",
    ".pytest_cache",
    ".benchmarks",
    "demo_out",
    "out",
    "node_modules",
    "*.pyc",
)


def _source_packages() -> set[str]:
    found = set()
    for folder, package in ROOTS.items():
        root = REPO_ROOT / folder
        for init in root.rglob("__init__.py"):
            if "__pycache__" in init.parts:
                continue
            rel = init.parent.relative_to(root).parts
            found.add(".".join((package, *rel)))
    return found


def test_every_subpackage_is_listed():
    listed = set(SETUPTOOLS["packages"])
    missing = _source_packages() - listed
    assert not missing, f"add to [tool.setuptools].packages: {sorted(missing)}"


def test_every_listed_package_exists():
    package_dir = SETUPTOOLS["package-dir"]
    for package in SETUPTOOLS["packages"]:
        # resolve through the longest package-dir prefix
        prefix = max((p for p in package_dir if package == p or package.startswith(p + ".")), key=len)
        suffix = package[len(prefix) :].lstrip(".")
        folder = REPO_ROOT / package_dir[prefix]
        if suffix:
            folder = folder.joinpath(*suffix.split("."))
        assert (folder / "__init__.py").is_file(), f"{package} -> {folder} has no __init__.py"


def test_package_dir_maps_export_and_runtime():
    assert SETUPTOOLS["package-dir"]["pocketgan.export"] == "export"
    assert SETUPTOOLS["package-dir"]["pocketgan.runtime"] == "runtime"
    data = SETUPTOOLS["package-data"]
    assert "manifest.schema.json" in data["pocketgan.runtime"]
    assert any(p.startswith("default_bundle/") for p in data["pocketgan"])
    assert any(p.startswith("assets/photos") for p in data["pocketgan"])


def test_runtime_dependencies_exclude_the_toolchain():
    deps = " ".join(PYPROJECT["project"]["dependencies"]).lower()
    for heavy in ("torch", "peft", "safetensors", "onnxscript", "executorch", "coremltools"):
        assert heavy not in deps, f"{heavy} must stay optional: the runtime does not need it"
    for needed in ("numpy", "pillow", "onnxruntime", "jsonschema"):
        assert needed in deps
    toolchain = " ".join(PYPROJECT["project"]["optional-dependencies"]["toolchain"]).lower()
    assert "torch" in toolchain and "peft" in toolchain
    assert PYPROJECT["project"]["scripts"]["pocketgan"] == "pocketgan.cli:main"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """``pip install --no-deps --target`` of a copy of the repository (a regular wheel build)."""
    root = tmp_path_factory.mktemp("install")
    copy = root / "src"
    shutil.copytree(REPO_ROOT, copy, ignore=COPY_IGNORE)
    target = root / "site"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--quiet",
            "--target",
            str(target),
            str(copy),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return target


def _probe(site: Path) -> dict:
    code = """
import json, sys
import pocketgan, pocketgan.runtime
runtime_pulled_torch = "torch" in sys.modules
import pocketgan.export, pocketgan.runtime.backends, pocketgan.bundle, pocketgan.concepts, pocketgan.models
from pocketgan.runtime.manifest import manifest_schema
from pocketgan.runtime.session import default_bundle_path
from pocketgan.photos import sample_photo_paths
print(json.dumps({
    "files": {m: sys.modules[m].__file__ for m in ("pocketgan", "pocketgan.runtime", "pocketgan.export",
                                                   "pocketgan.runtime.backends")},
    "runtime_pulled_torch": runtime_pulled_torch,
    "schema_title": manifest_schema()["title"],
    "photos": [str(p) for p in sample_photo_paths()],
    "default_bundle": str(default_bundle_path()),
}))
"""
    env = {**os.environ, "PYTHONPATH": str(site)}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, env=env, cwd=site)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_regular_install_imports_from_the_installed_tree(installed):
    info = _probe(installed)
    for module, file in info["files"].items():
        assert Path(file).resolve().is_relative_to(installed.resolve()), f"{module} imported from {file}"
    assert not info["runtime_pulled_torch"]
    assert info["schema_title"].startswith("pocketgan bundle manifest")
    assert (installed / "pocketgan" / "runtime" / "manifest.schema.json").is_file()
    shipped = sorted(p.name for p in (REPO_ROOT / "pocketgan" / "assets" / "photos").glob("*.jpg"))
    assert sorted(Path(p).name for p in info["photos"]) == shipped
    assert all(Path(p).resolve().is_relative_to(installed.resolve()) for p in info["photos"])


def test_regular_install_ships_the_default_bundle(installed):
    source = REPO_ROOT / "pocketgan" / "default_bundle"
    if not (source / "manifest.json").is_file():
        pytest.skip("pocketgan/default_bundle/manifest.json does not exist in this checkout yet")
    dest = installed / "pocketgan" / "default_bundle"
    assert (dest / "manifest.json").is_file()
    want = sorted(p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file())
    got = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert got == want, "every file of the default bundle (nested folders too) is installed"
    manifest = json.loads((dest / "manifest.json").read_text())
    assert set(manifest["artifacts"]) <= set(got)
