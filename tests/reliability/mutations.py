"""Manifest and path mutations. Each mutator is ``f(src, rng) -> Case`` and decides from
what it changed, never from what the runtime does, whether the bundle stays valid."""

from __future__ import annotations

import json
import random

from .cases import EITHER, REJECT, Case, Source, dotted, get, put

_DEEP = (100_000, 5_000)


def _scope(src: Source, target: str | None) -> str:
    """REJECT when the defect is in what ``src``'s backend reads; EITHER for another target."""
    return REJECT if target is None or target == src.name else EITHER


def _int_fields(src: Source, m: dict, rng: random.Random, *, semantic: bool) -> list[tuple]:
    """Integer fields of the manifest; ``semantic``: only those whose value changes what the
    bundle means (shapes, sizes, ranks, format_version), so any wrong value is invalid."""
    c = rng.randrange(len(m["concepts"]))
    layer = rng.choice(sorted(m["concepts"][c]["ranks"]))
    fields = [("format_version",), ("concepts", c, "ranks", layer)]
    fields += [("io", io, "shape", i) for io in ("input", "output") for i in range(4)]
    fields += [("artifacts", rel, "bytes") for rel in src.used]
    if "upsampler" in m:  # the weights' shapes follow hidden; radius is bounded 1..64
        fields += [("upsampler", "hidden"), ("upsampler", "radius")]
    onnx = m["targets"].get("onnx")
    if onnx and "concept_inputs" in onnx:
        name = rng.choice(sorted(onnx["concept_inputs"]))
        fields += [("targets", "onnx", "concept_inputs", name, i) for i in range(len(onnx["concept_inputs"][name]))]
    if not semantic:
        fields += [("generator", "parameters"), ("generator", "macs"), ("concepts", c, "parameters")]
        fields += [("rank_pattern", layer)] + ([("targets", "onnx", "opset")] if onnx else [])
    return fields


def int_type(kind: str):
    """manifest.int_as_<kind>: an integer field holds a float, bool, string, null or list."""

    def mutate(src: Source, rng: random.Random) -> Case:
        case = Case(f"manifest.int_as_{kind}")
        m = case.m(src)
        path = rng.choice(_int_fields(src, m, rng, semantic=False))
        old = get(m, path)
        new = {"float": float(old), "bool": rng.random() < 0.5, "string": str(old), "null": None, "list": [old]}[kind]
        put(m, path, new)
        case.detail = f"{dotted(path)} = {json.dumps(new)} (was {old})"
        return case

    return mutate


def int_value(kind: str):
    """manifest.<kind>: an integer field gets a huge, negative/zero, 5,000-digit or non-finite value."""

    def mutate(src: Source, rng: random.Random) -> Case:
        case = Case(f"manifest.{kind}")
        m = case.m(src)
        path = rng.choice(_int_fields(src, m, rng, semantic=kind == "huge_int"))
        old = get(m, path)
        if kind == "huge_int":
            text = str(rng.choice([2**31, 2**53 + 1, 2**63, 2**64 + 1, 10**30]))
        elif kind == "negative_int":
            text = str(rng.choice([-1, 0, -old, -(2**63)]))
        elif kind == "long_int":
            text = rng.choice(["", "-"]) + "9" * 5000
        else:
            text = rng.choice(["NaN", "Infinity", "-Infinity", "1e400", "1E2", "2.5", "-0.0"])
        put(m, path, case.rawvalue(text))
        case.detail = f"{dotted(path)} = {text[:24]}{'...' if len(text) > 24 else ''} (was {old})"
        # a wrong concept_inputs size is the ONNX target's business (adapters must match it);
        # a wrong *type* anywhere makes the whole manifest malformed
        if kind == "huge_int" and path[:2] == ("targets", "onnx"):
            case.expect = _scope(src, "onnx")
        case.static = path[0] != "io" or kind != "huge_int"
        return case

    return mutate


def format_version(src: Source, rng: random.Random) -> Case:
    case = Case("manifest.format_version")
    value = rng.choice(["2.0", "9", '"1"', "1.0", "0", "true", "-1", "null", "[1]", "3", "1e0"])
    case.m(src)["format_version"] = case.rawvalue(value)
    case.detail = f"format_version = {value}"
    return case


def deep_nesting(src: Source, rng: random.Random) -> Case:
    """100,000 (or 5,000) nested arrays or objects somewhere a value may be free-form."""
    case = Case("manifest.deep_nesting")
    m = case.m(src)
    depth = rng.choice(_DEEP)
    text = "[" * depth + "]" * depth if rng.random() < 0.5 else '{"a":' * depth + "1" + "}" * depth
    where = rng.choice(
        [
            ("generator", "config", "ngf"),
            ("concepts", 0, "training"),
            ("concepts", 0, "description"),
            ("nested",),
            ("io", "input", "range"),
        ]
    )
    put(m, where, case.rawvalue(text))
    case.detail = f"{dotted(where)} nested {depth} deep ({text[:2]}...)"
    return case


def _rename_keys(tree, old: str, new: str) -> None:
    """Rename every dict key ``old`` under ``tree`` (concept-keyed maps of every target)."""
    if isinstance(tree, dict):
        for key in list(tree):
            _rename_keys(tree[key], old, new)
            if key == old:
                tree[new] = tree.pop(key)
    elif isinstance(tree, list):
        for item in tree:
            _rename_keys(item, old, new)


def repoint(m: dict, old: str, new: str) -> None:
    """Make every reference to artifact ``old`` (and its artifacts entry) say ``new``."""

    def walk(tree):
        if isinstance(tree, dict):
            for key, value in tree.items():
                tree[key] = new if value == old else walk(value)
        elif isinstance(tree, list):
            tree[:] = [new if v == old else walk(v) for v in tree]
        return tree

    for key in ("base", "concepts", "targets"):
        walk(m[key])
    if old in m["artifacts"]:
        m["artifacts"][new] = m["artifacts"].pop(old)


def trailing_newline(src: Source, rng: random.Random) -> Case:
    """A concept name, a path or a checksum with "\\n" appended (``$`` matches before it)."""
    case = Case("manifest.trailing_newline")
    m = case.m(src)
    what = rng.choice(["concept", "path", "sha256", "base_sha256"])
    if what == "concept":
        i = rng.randrange(len(m["concepts"]))
        old = m["concepts"][i]["name"]
        m["concepts"][i]["name"] = case.concept = old + "\n"
        _rename_keys(m["targets"], old, old + "\n")
        case.detail = f"concept name {old!r} -> {old + chr(10)!r} (and every map keyed by it)"
    elif what == "path":
        rel = rng.choice(src.used)
        repoint(m, rel, rel + "\n")
        case.copies[rel + "\n"] = rel
        case.detail = f"path {rel!r} -> {rel + chr(10)!r} (file present under that name, checksum agrees)"
    elif what == "sha256":
        rel = rng.choice(src.used)
        m["artifacts"][rel]["sha256"] += "\n"
        case.detail = f"artifacts[{rel!r}].sha256 + '\\n'"
    else:
        m["base"]["sha256"] += "\n"
        m["artifacts"][m["base"].get("weights", "base/generator.safetensors")]["sha256"] += "\n"
        case.detail = "base.sha256 and its artifact's sha256 + '\\n'"
    return case


_STRICT = [
    (),
    ("io",),
    ("io", "input"),
    ("io", "output"),
    ("base",),
    ("generator",),
    ("concepts", 0),
    ("concepts", 0, "files"),
    ("targets",),
    ("artifacts", None),
]


def unknown_key(src: Source, rng: random.Random) -> Case:
    """An unknown key where the format defines every key (the schema says additionalProperties: false)."""
    case = Case("manifest.unknown_key")
    m = case.m(src)
    where = rng.choice(_STRICT + [("targets", src.name)] + ([("upsampler",)] if "upsampler" in m else []))
    if where == ("artifacts", None):
        where = ("artifacts", rng.choice(src.used))
    key = rng.choice(["x", "extra", "__proto__", "format_version ", "Format", "model", "sha256_"])
    if key in get(m, where):
        key += "_"
    get(m, where)[key] = rng.choice([1, "x", None, {}, []])
    case.detail = f"{dotted(where) or '<top>'}[{key!r}] added"
    return case


_REQUIRED = [
    ("format",),
    ("format_version",),
    ("pocketgan_version",),
    ("generator",),
    ("io",),
    ("io", "input"),
    ("io", "output", "shape"),
    ("io", "input", "range"),
    ("base",),
    ("base", "sha256"),
    ("rank_pattern",),
    ("concepts",),
    ("concepts", 0, "name"),
    ("concepts", 0, "ranks"),
    ("targets",),
    ("artifacts",),
]


def missing_key(src: Source, rng: random.Random) -> Case:
    """A required key, or an entry another part of the manifest refers to, is deleted."""
    case = Case("manifest.missing_key")
    m = case.m(src)
    t = src.name
    options = _REQUIRED + [("targets", t), ("targets", t, "concept_mode"), ("artifacts", rng.choice(src.used))]
    if "upsampler" in m:  # the stage is all or nothing
        options += [("upsampler",), ("concepts", rng.randrange(len(m["concepts"])), "upsampler")]
    if t == "onnx":
        options += [
            ("targets", t, "model"),
            ("targets", t, "adapters"),
            ("targets", t, "concept_inputs"),
            ("targets", t, "adapters", rng.choice(src.concepts)),
        ]
    else:
        options += [("targets", t, "program"), ("targets", t, "methods"), ("targets", t, "methods", src.concepts[0])]
    path = rng.choice(options)
    del get(m, path[:-1])[path[-1]]
    case.detail = f"{dotted(path)} deleted"
    if path == ("targets", t):  # a bundle without this export is valid; opening it on this backend is not
        case.static = False
    return case


def concept_inputs(src: Source, rng: random.Random) -> Case:
    """targets.onnx.concept_inputs no longer describes the adapters (or the model's inputs)."""
    case = Case("manifest.concept_inputs", expect=_scope(src, "onnx"))
    inputs = case.m(src)["targets"]["onnx"]["concept_inputs"]
    name = rng.choice(sorted(inputs))
    op = rng.choice(["dim", "rank", "add", "drop", "rename"])
    if op == "dim":
        i = rng.randrange(len(inputs[name]))
        inputs[name][i] += rng.choice([1, 7, 100])
    elif op == "rank":
        inputs[name] = inputs[name] + [1] if rng.random() < 0.5 else inputs[name][1:]
    elif op == "add":
        inputs["extra.lora_A.weight"] = [1, 8]
    elif op == "drop":
        del inputs[name]
    else:
        inputs[name + "_"] = inputs.pop(name)
    case.detail = f"concept_inputs {op} ({name})"
    return case


def concept_dtype(src: Source, rng: random.Random) -> Case:
    """concept_input_dtype: float16 while the adapters hold float32; or not a known type."""
    case = Case("manifest.concept_input_dtype", expect=_scope(src, "onnx"))
    value = rng.choice(["float16", "float16", "int8", "bfloat16", "", "FLOAT32"])
    case.m(src)["targets"]["onnx"]["concept_input_dtype"] = value
    if value != "float16":
        case.expect = REJECT  # not in the format's enum: the manifest itself is malformed
    case.detail = f"targets.onnx.concept_input_dtype = {value!r} (adapters hold float32)"
    return case


def io_shape(src: Source, rng: random.Random) -> Case:
    case = Case("manifest.io_shape", static=False)
    which = rng.choice(["input", "output"])
    shape = rng.choice(
        [
            [1, 3, 128, 128],
            [1, 3, 512, 512],
            [2, 3, 256, 256],
            [1, 4, 256, 256],
            [1, 3, 256, 128],
            [1, 3, 1, 1],
            [1, 3, 256, 1_000_000],
            [1, 3, 65536, 65536],
            [1, 1, 256, 256],
        ]
    )
    case.m(src)["io"][which]["shape"] = shape
    case.detail = f"io.{which}.shape = {shape}"
    return case


def io_range(src: Source, rng: random.Random) -> Case:
    """io.*.range: the runtime maps pixels to [-1, 1] and back, so any other range is a lie."""
    case = Case("manifest.io_range")
    which = rng.choice(["input", "output"])
    value = rng.choice([[0.0, 1.0], [-1.0, 2.0], [1.0, -1.0], [-1.0, -1.0], [0, 255], [-2.0, 2.0], [-1.0, 1.5]])
    case.m(src)["io"][which]["range"] = value
    case.detail = f"io.{which}.range = {value}"
    return case


def io_other(src: Source, rng: random.Random) -> Case:
    case = Case("manifest.io_other")
    which = rng.choice(["input", "output"])
    key, value = rng.choice(
        [
            ("name", "img"),
            ("name", "edited" if which == "input" else "image"),
            ("name", ""),
            ("dtype", "float16"),
            ("dtype", "uint8"),
            ("layout", "NHWC"),
            ("color", "BGR"),
        ]
    )
    case.m(src)["io"][which][key] = value
    if key == "name":  # only a model knows its tensor names, and ExecuTorch inputs have none
        case.static, case.expect = False, _scope(src, "onnx")
    case.detail = f"io.{which}.{key} = {value!r}"
    return case


def references(src: Source, rng: random.Random) -> Case:
    """Cross-references that disagree: checksums, concept lists, method names."""
    case = Case("manifest.references")
    m = case.m(src)
    op = rng.choice(["base_sha", "dup_concept", "concept_gone", "concept_added", "method_missing"])
    if op == "base_sha":
        m["base"]["sha256"] = "%064x" % rng.getrandbits(256)
    elif op == "dup_concept":
        m["concepts"].append(json.loads(json.dumps(m["concepts"][rng.randrange(len(m["concepts"]))])))
    elif op == "concept_gone":
        m["concepts"].pop(rng.randrange(1, len(m["concepts"])))
    elif op == "concept_added":
        m["concepts"].append(dict(m["concepts"][0], name="brand_new"))
    elif src.name == "executorch":
        m["targets"]["executorch"]["methods"][src.concepts[0]] = "no_such_method"
        case.static = False  # only the program knows its method names
    else:
        m["targets"]["onnx"]["adapters"][src.concepts[0]] = "onnx/adapters/no_such.onnx_adapter"
    case.detail = op
    return case


def manifest_bytes(src: Source, rng: random.Random) -> Case:
    """manifest.json is not a JSON object in UTF-8: garbage, truncated, UTF-16, empty, a list."""
    case = Case("manifest.bytes")
    op = rng.choice(["garbage", "truncated", "utf16", "empty", "list", "bom", "nul"])
    text = src.text
    case.text = {
        "garbage": bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 4096))),
        "truncated": text[: rng.randrange(len(text))].encode("utf-8"),
        "utf16": text.encode("utf-16"),
        "empty": b"",
        "list": b"[" + text.encode("utf-8") + b"]",
        "bom": b"\xef\xbb\xbf" + text.encode("utf-8")[:-3] + b"\x00",
        "nul": text.encode("utf-8").replace(b'"format"', b'"for\x00mat"', 1),
    }[op]
    case.detail = op
    return case


def manifest_oversize(src: Source, rng: random.Random) -> Case:
    """A valid manifest padded with 64 MiB of whitespace: a size bound may refuse it (typed)."""
    case = Case("manifest.oversize", expect=EITHER, static=False)
    case.text = src.text.encode("utf-8") + b" " * (64 << 20)
    case.detail = "64 MiB of trailing whitespace"
    return case
