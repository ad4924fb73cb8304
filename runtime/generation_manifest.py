"""Reading and checking a generation bundle's manifest.json (no torch here).

A generation bundle (``docs/bundle-format.md``, "Generation bundles") holds a one-step
text-to-image generator: ``format`` ``"pocketgan-bundle"`` like an editing bundle, told
apart by ``"kind": "generation"`` (an editing manifest has no ``kind``). Its JSON Schema is
``generation_manifest.schema.json``. Loading checks, in order, with the editing reader's
tools (:mod:`pocketgan.runtime.manifest`, :mod:`pocketgan.runtime.bundle_files`):

1. size, nesting, 64-bit integers, finite numbers, no duplicate keys (``parse_json``);
2. ``format``, ``kind``, and a ``format_version`` this runtime reads
   (:class:`UnsupportedFormatError` for a newer one);
3. the schema, read strictly (integers are JSON integers, ECMA ``$``);
4. what it means (:func:`check_generation_semantics`): the shapes agree with each other and
   with the architecture, every path the manifest names has a checksum.

Each failure is a typed :class:`~pocketgan.runtime.errors.BundleError` naming the file and
field. Artifacts are checksum-verified when read (:func:`read_artifact`);
:func:`verify_generation_bundle` checks all of them and what the exports declare.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import numpy as np

from pocketgan.runtime.bundle_files import parse_json, path_problem, read_artifact
from pocketgan.runtime.errors import ArtifactFormatError, ManifestError
from pocketgan.runtime.manifest import FORMAT_NAME, MANIFEST_NAME, _read_manifest_bytes, check_against_schema
from pocketgan.runtime.manifest_checks import MAX_IMAGE_SIDE, fail
from pocketgan.runtime.manifest_view import Artifact, Manifest, TensorSpec, freeze
from pocketgan.runtime.tensor_file import read_float32_safetensors

GENERATION_KIND = "generation"
#: what a manifest without ``kind`` is
EDITING_KIND = "editing"
GENERATION_FORMAT_VERSION = 1
SCHEMA_FILE = "generation_manifest.schema.json"
NOISE_ALGORITHM = "splitmix64-box-muller"
#: tensors of a golden file (float32 safetensors): what the runtime feeds and must get back
GOLDEN_TENSORS = ("noise", "prompt_states", "image")


@lru_cache(maxsize=1)
def generation_schema() -> dict:
    return json.loads(resources.files("pocketgan.runtime").joinpath(SCHEMA_FILE).read_text("utf-8"))


def manifest_kind(bundle_dir: Path | str) -> str:
    """``"generation"`` or ``"editing"`` (a manifest without ``kind``): which runtime opens
    the bundle. Raises what reading any manifest raises (missing directory or file, bad JSON)."""
    data = parse_json(_read_manifest_bytes(Path(bundle_dir)), file=MANIFEST_NAME)
    if not isinstance(data, dict):
        raise ManifestError("manifest must be a JSON object", file=MANIFEST_NAME)
    kind = data.get("kind", EDITING_KIND)
    if kind not in (EDITING_KIND, GENERATION_KIND):
        raise ManifestError(
            f"bundle kind {kind!r} is none this pocketgan knows ({EDITING_KIND}, {GENERATION_KIND}); "
            "upgrade pocketgan to open it",
            file=MANIFEST_NAME,
            field="kind",
        )
    return kind


def validate_generation_manifest(manifest: Any) -> dict:
    """Check a parsed generation manifest; return it unchanged or raise :class:`ManifestError`
    (:class:`UnsupportedFormatError` for a newer ``format_version``)."""
    if not isinstance(manifest, dict):
        raise ManifestError("manifest must be a JSON object", file=MANIFEST_NAME)
    if manifest.get("format") != FORMAT_NAME:
        raise ManifestError(
            f"not a pocketgan bundle manifest (format={manifest.get('format')!r})", file=MANIFEST_NAME, field="format"
        )
    if manifest.get("kind") != GENERATION_KIND:
        raise ManifestError(
            f"not a generation bundle (kind={manifest.get('kind')!r}): "
            "open an editing bundle with pocketgan.runtime.Runtime",
            file=MANIFEST_NAME,
            field="kind",
        )
    check_against_schema(manifest, generation_schema(), GENERATION_FORMAT_VERSION, "generation bundle")
    check_generation_semantics(manifest)
    return manifest


def _need(m: dict, path: str, field: str, what: str) -> None:
    if path not in m["artifacts"]:
        raise fail(f"{what} {path!r} is not listed in artifacts (no checksum)", field)


def _check_shapes(m: dict) -> None:
    """Noise and image (1, 3, S, S) with S the architecture's; states (1, tokens, width)."""
    arch, prompts, io = m["architecture"], m["prompts"], m["io"]
    side = arch["image_size"]
    if side > MAX_IMAGE_SIDE:
        raise fail(f"side {side} is outside 1..{MAX_IMAGE_SIDE}", "architecture.image_size")
    image = [1, 3, side, side]
    for field, key in (("buckets", "buckets"), ("width", "text_width")):
        if prompts[field] != arch[key]:
            raise fail(f"{prompts[field]} differs from architecture.{key} {arch[key]}", f"prompts.{field}")
    states = [1, prompts["tokens"], prompts["width"]]
    want = {"noise.shape": image, "io.inputs[0].shape": image, "io.inputs[1].shape": states, "io.output.shape": image}
    got = {
        "noise.shape": m["noise"]["shape"],
        "io.inputs[0].shape": io["inputs"][0]["shape"],
        "io.inputs[1].shape": io["inputs"][1]["shape"],
        "io.output.shape": io["output"]["shape"],
    }
    for field, shape in want.items():
        if got[field] != shape:
            raise fail(f"{got[field]} is not {shape} (architecture.image_size {side}, prompts tokens x width)", field)
    if [float(v) for v in io["output"].get("range", [-1.0, 1.0])] != [-1.0, 1.0]:
        raise fail("is not [-1, 1] (the runtime maps [-1, 1] to pixels)", "io.output.range")
    names = [t["name"] for t in io["inputs"]] + [io["output"]["name"]]
    if len(set(names)) != len(names):
        raise fail(f"tensor names {names} are not distinct", "io")


def check_generation_semantics(m: dict) -> None:
    """What the schema cannot say; raises the first :class:`ManifestError`."""
    for relpath in m["artifacts"]:
        problem = path_problem(relpath)
        if problem is not None:
            raise fail(f"path {relpath!r} {problem}", "artifacts")
    _check_shapes(m)
    gen, arch = m["generator"], m["architecture"]
    if gen["timestep"] != arch["train_timesteps"] - 1:
        raise fail(
            f"{gen['timestep']} is not architecture.train_timesteps - 1 = {arch['train_timesteps'] - 1} "
            "(the one-step generator runs at the last timestep)",
            "generator.timestep",
        )
    for key in ("config", "weights"):
        if not gen[key].startswith(gen["dir"] + "/"):
            raise fail(f"{gen[key]!r} is not inside generator.dir {gen['dir']!r}", f"generator.{key}")
        _need(m, gen[key], f"generator.{key}", f"generator {key}")
    _need(m, m["prompts"]["table"], "prompts.table", "prompt table")
    files = [g["file"] for g in m["golden"]]
    if len(set(files)) != len(files):
        raise fail("two golden cases share a file", "golden")
    for i, path in enumerate(files):
        _need(m, path, f"golden[{i}].file", "golden file")
    for name, target in m["targets"].items():
        key = {"onnx": "model", "executorch": "program", "coreml": "package"}[name]
        path = target[key] + ("/Manifest.json" if name == "coreml" else "")
        _need(m, path, f"targets.{name}.{key}", f"{name} {key}")
        if target["parity_psnr_db"] is None and not target.get("parity_note"):
            raise fail("parity_psnr_db is null without a parity_note saying why", f"targets.{name}")


@dataclass(frozen=True)
class GoldenCase:
    """``golden[i]``: a prompt, a seed and the float32 safetensors file of what they give."""

    prompt: str
    seed: int
    file: str


@dataclass(frozen=True)
class GenerationManifest:
    """A generation bundle's manifest.json, validated; ``raw`` is the dict (treat as read-only).

    Attributes:
        image_size: S, the generated image's side.
        inputs: ``io.inputs``: the noise (1, 3, S, S) and the prompt states (1, tokens, width),
            in the order every backend takes them.
        output: ``io.output``: the image, float32 (1, 3, S, S) in [-1, 1].
        targets: export name -> its manifest entry (read-only).
    """

    raw: dict
    format_version: int
    image_size: int
    inputs: tuple[TensorSpec, TensorSpec]
    output: TensorSpec
    table: str
    table_tensor: str
    buckets: int
    tokens: int
    width: int
    targets: Mapping[str, Mapping[str, Any]]
    golden: tuple[GoldenCase, ...]
    artifacts: Mapping[str, Artifact]

    @classmethod
    def from_dict(cls, data: Any, *, validate: bool = True) -> GenerationManifest:
        raw = validate_generation_manifest(data) if validate else data
        p, io = raw["prompts"], raw["io"]
        return cls(
            raw=raw,
            format_version=raw["format_version"],
            image_size=raw["architecture"]["image_size"],
            inputs=tuple(TensorSpec.from_dict(t) for t in io["inputs"]),
            output=TensorSpec.from_dict(io["output"]),
            table=p["table"],
            table_tensor=p["tensor"],
            buckets=p["buckets"],
            tokens=p["tokens"],
            width=p["width"],
            targets=freeze(raw["targets"]),
            golden=tuple(GoldenCase(g["prompt"], g["seed"], g["file"]) for g in raw["golden"]),
            artifacts=MappingProxyType({k: Artifact.from_entry(k, v) for k, v in raw["artifacts"].items()}),
        )

    @property
    def noise_shape(self) -> tuple[int, ...]:
        return tuple(self.raw["noise"]["shape"])

    def artifacts_view(self) -> Manifest:
        """The artifacts (and ``io``) as the editing backends' helpers read them (a partial
        :class:`~pocketgan.runtime.manifest_view.Manifest` built from this validated one)."""
        io = {"input": self.raw["io"]["inputs"][0], "output": self.raw["io"]["output"]}
        return Manifest.from_dict({"io": io, "artifacts": self.raw["artifacts"]}, validate=False)


def read_generation_manifest(bundle_dir: Path | str) -> GenerationManifest:
    """Parse and validate ``bundle_dir/manifest.json`` of a generation bundle."""
    data = parse_json(_read_manifest_bytes(Path(bundle_dir)), file=MANIFEST_NAME)
    return GenerationManifest.from_dict(data)


def load_prompt_table(bundle_dir: Path, manifest: GenerationManifest) -> np.ndarray:
    """float32 (buckets + 1, width): the prompt table, checksum-verified and its shape checked."""
    tensors = read_float32_safetensors(read_artifact(bundle_dir, manifest, manifest.table), manifest.table)
    table = tensors.get(manifest.table_tensor)
    want = (manifest.buckets + 1, manifest.width)
    if table is None or table.shape != want:
        got = "no such tensor" if table is None else f"shape {list(table.shape)}"
        raise ArtifactFormatError(
            f"{manifest.table}: tensor {manifest.table_tensor!r} must be float32 {list(want)} "
            f"(prompts.buckets + 1, prompts.width), found {got}",
            file=manifest.table,
        )
    return table


def load_golden(bundle_dir: Path, manifest: GenerationManifest, case: GoldenCase) -> dict[str, np.ndarray]:
    """``{"noise", "prompt_states", "image"}`` of one golden case, shapes checked."""
    tensors = read_float32_safetensors(read_artifact(bundle_dir, manifest, case.file), case.file)
    shapes = dict(zip(GOLDEN_TENSORS, (manifest.inputs[0].shape, manifest.inputs[1].shape, manifest.output.shape)))
    got = {name: tuple(t.shape) for name, t in tensors.items()}
    if got != shapes:
        raise ArtifactFormatError(f"{case.file}: golden tensors {got}, expected {shapes}", file=case.file)
    return tensors


def verify_generation_bundle(bundle_dir: Path | str) -> GenerationManifest:
    """Check a whole generation bundle without running a model; return its manifest.

    Every listed artifact matches its checksum; the table and the golden files hold what the
    manifest says; the ONNX model's inputs and outputs match ``io`` (ONNX Runtime opens it,
    unoptimised); the ExecuTorch program carries the ``.pte`` identifier; the Core ML
    package's ``Manifest.json`` structure holds. Every failure is a ``BundleError``.
    """
    from pocketgan.runtime.backends.coreml import check_package
    from pocketgan.runtime.backends.executorch import check_pte_identifier
    from pocketgan.runtime.generation_backends import load_onnx_session

    bundle_dir = Path(bundle_dir)
    manifest = read_generation_manifest(bundle_dir)
    for relpath in manifest.artifacts:
        read_artifact(bundle_dir, manifest, relpath)
    load_prompt_table(bundle_dir, manifest)
    for case in manifest.golden:
        load_golden(bundle_dir, manifest, case)
    targets = manifest.targets
    if "onnx" in targets:
        load_onnx_session(bundle_dir, manifest, threads=1, optimize=False)
    if "executorch" in targets:
        relpath = targets["executorch"]["program"]
        check_pte_identifier(read_artifact(bundle_dir, manifest, relpath), relpath)
    if "coreml" in targets:
        check_package(bundle_dir, manifest.artifacts_view(), targets["coreml"]["package"])
    return manifest
