"""What a manifest means, checked after its JSON Schema holds (no torch here).

The schema says which keys exist and what type each value has; these checks say that the
values agree with each other and with what the runtime assumes: ``io`` is a
``(1, 3, S, S)`` float32 image in ``[-1, 1]`` in and the same shape out, every referenced
file has a checksum, ``concept_inputs`` are the LoRA tensors of ``rank_pattern``, every
concept has exactly one artifact/method/function per target and no two concepts share
one. Each failure is a :class:`ManifestError` naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping

from pocketgan.runtime.bundle_files import path_problem
from pocketgan.runtime.errors import ManifestError

MANIFEST_FILE = "manifest.json"
#: Largest model side S accepted in ``io`` (the default is 256).
MAX_IMAGE_SIDE = 8192
#: What every backend and the pre/post-processing assume of ``io.*.range``.
IO_RANGE = [-1.0, 1.0]
CONCEPT_TOKENS = "concept_tokens"
#: Largest number of elements in one concept input (a rank-64 LoRA of a 4096-wide layer is 256 Ki).
MAX_CONCEPT_INPUT_ELEMENTS = 1 << 26


def fail(message: str, field: str) -> ManifestError:
    return ManifestError(f"{MANIFEST_FILE}: {field}: {message}", file=MANIFEST_FILE, field=field)


def check_semantics(m: dict) -> None:
    """Every check below, in order; raises the first :class:`ManifestError`."""
    names = [c["name"] for c in m["concepts"]]
    if len(set(names)) != len(names):
        dups = sorted(n for n in set(names) if names.count(n) > 1)
        raise fail(f"duplicate concept names: {dups}", "concepts")
    _check_paths(m)
    _check_io(m)
    _check_base(m)
    _check_concepts(m)
    _check_upsampler(m)
    targets = m["targets"]
    if "onnx" in targets:
        _check_onnx(m, targets["onnx"], names)
    if "executorch" in targets:
        _check_executorch(m, targets["executorch"], names)
    if "coreml" in targets:
        _check_coreml(m, targets["coreml"], names)


def _check_paths(m: dict) -> None:
    """Artifact paths are plain relative paths (the schema's pattern says so too; this is
    the exact rule, with ``fullmatch`` semantics)."""
    for relpath in m["artifacts"]:
        problem = path_problem(relpath)
        if problem is not None:
            raise fail(f"path {relpath!r} {problem}", "artifacts")


def _check_io(m: dict) -> None:
    """``io.input`` is (1, 3, S, S) float32 RGB in [-1, 1]; ``io.output`` the same shape."""
    io = m["io"]
    shape = io["input"]["shape"]
    if shape[:2] != [1, 3] or shape[2] != shape[3]:
        raise fail(f"{shape} is not [1, 3, S, S] (one square RGB image)", "io.input.shape")
    if not 1 <= shape[2] <= MAX_IMAGE_SIDE:
        raise fail(f"side {shape[2]} is outside 1..{MAX_IMAGE_SIDE}", "io.input.shape")
    if io["output"]["shape"] != shape:
        raise fail(f"{io['output']['shape']} differs from io.input.shape {shape}", "io.output.shape")
    for kind in ("input", "output"):
        if [float(v) for v in io[kind]["range"]] != IO_RANGE:
            raise fail(
                f"{io[kind]['range']} is not {IO_RANGE} (the runtime maps pixels to [-1, 1])", f"io.{kind}.range"
            )
    if io["input"]["name"] == io["output"]["name"]:
        raise fail(f"input and output are both named {io['input']['name']!r}", "io.output.name")
    size = m["generator"]["config"].get("image_size")
    if size is not None and size != shape[2]:
        raise fail(f"{size!r} differs from io.input.shape's side {shape[2]}", "generator.config.image_size")


def _need(m: dict, path: str, field: str, what: str) -> None:
    if path not in m["artifacts"]:
        raise fail(f"{what} {path!r} is not listed in artifacts (no checksum)", field)


def _check_base(m: dict) -> None:
    app = m.get("contents", "full") == "app"
    if app:
        if "weights" in m["base"] or any("files" in c for c in m["concepts"]):
            raise fail("an app bundle (contents: app) lists no source weights, but this one does", "contents")
        if not m["targets"]:
            raise fail("an app bundle (contents: app) needs at least one export target", "targets")
        return
    if "weights" not in m["base"]:
        raise fail("missing (only an app bundle, contents: app, may omit it)", "base.weights")
    _need(m, m["base"]["weights"], "base.weights", "base weights")
    if m["artifacts"][m["base"]["weights"]]["sha256"] != m["base"]["sha256"]:
        raise fail("differs from the checksum of the base weights artifact", "base.sha256")


def _check_concepts(m: dict) -> None:
    app = m.get("contents", "full") == "app"
    pattern = m["rank_pattern"]
    for i, c in enumerate(m["concepts"]):
        where = f"concepts[{i}]"
        if not app and "files" not in c:
            raise fail(f"concept {c['name']!r} lists no files (only an app bundle may omit them)", where)
        for key, path in c.get("files", {}).items():
            _need(m, path, f"{where}.files.{key}", f"concept {c['name']!r} {key}")
        for key, path in c.get("golden", {}).items():
            _need(m, path, f"{where}.golden.{key}", f"concept {c['name']!r} golden {key}")
        if set(c["ranks"]) != set(pattern):
            raise fail(f"concept {c['name']!r} adapts different layers than the rank pattern", f"{where}.ranks")
        over = {k: r for k, r in c["ranks"].items() if r > pattern[k]}
        if over:
            raise fail(f"concept {c['name']!r} has ranks above the bundle's rank pattern: {over}", f"{where}.ranks")
    neutral = m.get("neutral")
    if neutral is not None and m["format_version"] < 2:
        raise fail("a neutral concept (strength and blending) needs format_version 2", "format_version")
    if neutral is not None:
        if not app and "files" not in neutral:
            raise fail("the neutral concept lists no files (only an app bundle may omit them)", "neutral")
        for key, path in neutral.get("files", {}).items():
            _need(m, path, f"neutral.files.{key}", f"neutral concept {key}")
        names = [c["name"] for c in m["concepts"]]
        for concept, curve in neutral.get("strength_curves", {}).items():
            where = f"neutral.strength_curves.{concept}"
            if concept not in names:
                raise fail(f"is the curve of no concept of the bundle ({names})", where)
            if curve[0] != 0 or curve[-1] != 1 or any(b < a for a, b in zip(curve, curve[1:])):
                raise fail("must rise from 0 to 1 (never falling)", where)
        for i, golden in enumerate(neutral.get("golden_mixes", [])):
            for key in ("input", "output"):
                _need(m, golden[key], f"neutral.golden_mixes[{i}].{key}", f"mix golden {key}")
            unknown = sorted(set(golden["weights"]) - set(names))
            if unknown or not golden["weights"]:
                raise fail(f"weights name no concept or unknown ones {unknown}", f"neutral.golden_mixes[{i}].weights")
        if set(neutral["ranks"]) != set(pattern):
            raise fail("the neutral concept adapts different layers than the rank pattern", "neutral.ranks")
        # the second LoRA holds one more concept and the neutral: a two-concept blend is exact
        want = {k: r + neutral["ranks"][k] for k, r in pattern.items()}
        if neutral["mix_ranks"] != want:
            raise fail(f"is not rank_pattern + the neutral's ranks ({want})", "neutral.mix_ranks")


def _check_upsampler(m: dict) -> None:
    """The full-resolution stage is all or nothing: with a top-level ``upsampler`` every concept
    names its weights file (listed in ``artifacts``), without one none does."""
    has = [("upsampler" in c) for c in m["concepts"]]
    if "upsampler" not in m:
        if any(has):
            raise fail("concepts name upsampler weights but the bundle has no top-level upsampler", "upsampler")
        return
    for i, c in enumerate(m["concepts"]):
        if "upsampler" not in c:
            raise fail(
                f"concept {c['name']!r} has no upsampler weights (the bundle has an upsampler)", f"concepts[{i}]"
            )
        _need(m, c["upsampler"], f"concepts[{i}].upsampler", f"concept {c['name']!r} upsampler")
    paths = [c["upsampler"] for c in m["concepts"]]
    if len(set(paths)) != len(paths):
        raise fail("two concepts share one upsampler file", "concepts")


def _same_concepts(names: list[str], mapping: Mapping, field: str, *, distinct: bool = True) -> None:
    """``mapping`` has one entry per concept, and (``distinct``) no two concepts share a value."""
    if set(mapping) != set(names):
        raise fail(f"covers {sorted(mapping)} but the bundle's concepts are {sorted(names)}", field)
    values = list(mapping.values())
    if distinct and len(set(values)) != len(values):
        shared = sorted({v for v in values if values.count(v) > 1})
        raise fail(f"concepts share {shared}: each concept needs its own", field)


def _mode_needs(target: dict, name: str, needs: dict[str, tuple[str, ...]]) -> None:
    mode = target["concept_mode"]
    for key in needs[mode]:
        if key not in target:
            raise fail(f"concept_mode is {mode!r} but there is no {key!r}", f"targets.{name}")


def _check_onnx(m: dict, onnx: dict, names: list[str]) -> None:
    _mode_needs(
        onnx,
        "onnx",
        {
            "separate": ("model", "adapters", "concept_inputs"),
            "merged": ("merged",),
            "both": ("model", "adapters", "concept_inputs", "merged"),
        },
    )
    if onnx["concept_mode"] in ("separate", "both"):
        _need(m, onnx["model"], "targets.onnx.model", "ONNX model")
        _same_concepts(names, onnx["adapters"], "targets.onnx.adapters")
        for concept, path in onnx["adapters"].items():
            _need(m, path, f"targets.onnx.adapters.{concept}", "ONNX adapter")
        if ("neutral" in onnx) != ("neutral" in m):
            raise fail(
                "a bundle with a neutral concept has a neutral adapter, and only such a bundle", "targets.onnx.neutral"
            )
        if "neutral" in onnx:
            _need(m, onnx["neutral"], "targets.onnx.neutral", "ONNX neutral adapter")
        _check_concept_inputs(m, onnx["concept_inputs"])
    if onnx["concept_mode"] in ("merged", "both"):
        _same_concepts(names, onnx["merged"], "targets.onnx.merged")
        for concept, path in onnx["merged"].items():
            _need(m, path, f"targets.onnx.merged.{concept}", "merged ONNX model")
    used = [
        onnx.get("model"),
        onnx.get("neutral"),
        *onnx.get("adapters", {}).values(),
        *onnx.get("merged", {}).values(),
    ]
    used = [p for p in used if p is not None]
    if len(set(used)) != len(used):
        raise fail("the same file serves as two of model / adapters / merged", "targets.onnx")


def _check_concept_inputs(m: dict, inputs: dict) -> None:
    """``concept_inputs`` are the concept tokens ``[1, T, D]`` and, for each layer of
    ``rank_pattern``, ``lora_A`` with the layer's rank first and ``lora_B`` with it second."""
    field = "targets.onnx.concept_inputs"
    pattern = m["rank_pattern"]
    mix_ranks = m["neutral"]["mix_ranks"] if "neutral" in m else {}
    expected = {CONCEPT_TOKENS} | {f"{layer}.lora_{ab}.weight" for layer in pattern for ab in "AB"}
    expected |= {f"{layer}.lora_{ab}.mix.weight" for layer in mix_ranks for ab in "AB"}
    if set(inputs) != expected:
        missing, extra = sorted(expected - set(inputs)), sorted(set(inputs) - expected)
        raise fail(
            f"are not the rank pattern's LoRA tensors + {CONCEPT_TOKENS}: missing {missing}, extra {extra}", field
        )
    for name, shape in inputs.items():
        if not 1 <= len(shape) <= 4 or _elements(shape) > MAX_CONCEPT_INPUT_ELEMENTS:
            raise fail(f"{name} has shape {shape} (1 to 4 dims, at most {MAX_CONCEPT_INPUT_ELEMENTS} elements)", field)
    tokens = inputs[CONCEPT_TOKENS]
    config = m["generator"]["config"]
    want = [1, config.get("token_count", tokens[1] if len(tokens) == 3 else 0), config.get("token_dim", tokens[-1])]
    if tokens != want:
        raise fail(f"{CONCEPT_TOKENS} has shape {tokens}, expected [1, token_count, token_dim] = {want}", field)
    for suffix, ranks in (("", pattern), (".mix", mix_ranks)):
        for layer, rank in ranks.items():
            a, b = inputs[f"{layer}.lora_A{suffix}.weight"], inputs[f"{layer}.lora_B{suffix}.weight"]
            if len(a) < 2 or len(a) != len(b) or a[0] != rank or b[1] != rank:
                raise fail(f"{layer}: lora_A{suffix} {a} / lora_B{suffix} {b} do not carry the rank {rank}", field)


def _elements(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _check_executorch(m: dict, et: dict, names: list[str]) -> None:
    mode = et["concept_mode"]
    if mode in ("separate", "both") and "program" not in et and "external_data" not in et:
        raise fail(f"concept_mode is {mode!r} but there is no 'program' or 'external_data'", "targets.executorch")
    _mode_needs(et, "executorch", {"separate": (), "merged": ("merged_program",), "both": ("merged_program",)})
    for key in ("program", "merged_program"):
        if key in et:
            _need(m, et[key], f"targets.executorch.{key}", f"ExecuTorch {key}")
    if "program" in et or "merged_program" in et:
        if "methods" not in et:
            raise fail("has a program but no 'methods'", "targets.executorch")
        _same_concepts(names, et["methods"], "targets.executorch.methods")
    if et.get("program") is not None and et.get("program") == et.get("merged_program"):
        raise fail("program and merged_program are the same file", "targets.executorch")
    _check_mix(m, et, "executorch", names, separate="program", entry="method", per_concept="methods")
    ext = et.get("external_data")
    if ext is not None:
        _need(m, ext["data"], "targets.executorch.external_data.data", "ExecuTorch base data")
        _same_concepts(names, ext["programs"], "targets.executorch.external_data.programs")
        for concept, path in ext["programs"].items():
            _need(m, path, f"targets.executorch.external_data.programs.{concept}", "ExecuTorch concept program")


def _check_mix(m: dict, target: dict, name: str, names: list[str], *, separate: str, entry: str, per_concept: str):
    """``targets.<name>.mix`` (strength and blending): only with the separate artifact and a
    neutral concept, weights for exactly the bundle's concepts in order, its own method/function."""
    mix = target.get("mix")
    if mix is None:
        return
    field = f"targets.{name}.mix"
    if separate not in target or "neutral" not in m:
        raise fail(f"a mix {entry} needs the separate {separate} and a neutral concept", field)
    if list(mix["concepts"]) != names:
        raise fail(f"weights concepts {mix['concepts']} are not the bundle's {names}", field)
    if mix[entry] in target[per_concept].values():
        raise fail(f"the mix {entry} is also a concept's {entry}", field)


def _check_coreml(m: dict, cm: dict, names: list[str]) -> None:
    _mode_needs(
        cm,
        "coreml",
        {"separate": ("package",), "merged": ("merged_package",), "both": ("package", "merged_package")},
    )
    for key in ("package", "merged_package"):
        if key in cm:
            _need_package(m, cm[key], f"targets.coreml.{key}", f"Core ML {key}")
    _same_concepts(names, cm["functions"], "targets.coreml.functions")
    if cm["default_function"] not in cm["functions"].values():
        raise fail(f"{cm['default_function']!r} is not one of its functions", "targets.coreml.default_function")
    _check_mix(m, cm, "coreml", names, separate="package", entry="function", per_concept="functions")
    if "ios17" in cm:
        _same_concepts(names, cm["ios17"]["packages"], "targets.coreml.ios17.packages")
        for concept, path in cm["ios17"]["packages"].items():
            _need_package(m, path, f"targets.coreml.ios17.packages.{concept}", "Core ML iOS 17 package")
    io = m["io"]
    for kind in ("input", "output"):
        want = [{"name": io[kind]["name"], "shape": io[kind]["shape"], "dtype": "float32"}]
        if cm[f"{kind}s"] != want:
            raise fail(f"{cm[f'{kind}s']} differs from io.{kind} {want}", f"targets.coreml.{kind}s")


def _need_package(m: dict, path: str, field: str, what: str) -> None:
    if f"{path}/Manifest.json" not in m["artifacts"]:
        raise fail(f"{what} {path!r}: its Manifest.json is not listed in artifacts (no checksum)", field)
