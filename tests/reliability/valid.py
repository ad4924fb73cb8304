"""Mutations that leave a bundle valid by construction: the runtime must open, edit and
verify them (``expect=accept``); most must also edit bit-identically to the source.

Why each is valid:

- ``valid.text``: descriptions, teacher names and the writer's version are free text
  that no runtime reads;
- ``valid.reordered``: JSON objects are unordered and whitespace is insignificant;
- ``valid.metadata_numbers``: parity scores, parameter/MAC counts, training statistics and
  delegation summaries describe the export; nothing runs from them;
- ``valid.metadata_key``: ``generator.config`` and ``concepts[].training`` are free-form
  objects in the format (the schema says ``"type": "object"`` and nothing more);
- ``valid.optional_removed``: ``training``, ``golden`` and ``concept_input_dtype``
  (absent means float32) are optional, and so is any concept as long as it is dropped
  everywhere at once;
- ``valid.explicit_dtype``: ``concept_input_dtype: "float32"`` states the default;
- ``valid.relabel``: permuting which adapter (ONNX) or method (ExecuTorch) a concept name
  maps to gives a consistent bundle whose concepts have other names; nothing in an
  adapter or method says which concept it was trained for.
"""

from __future__ import annotations

import random

from .cases import ACCEPT, Case, Source


def _accept(cls: str, detail: str = "", same: bool = True) -> Case:
    return Case(cls, detail=detail, expect=ACCEPT, same_output=same)


def text(src: Source, rng: random.Random) -> Case:
    case = _accept("valid.text")
    m = case.m(src)
    value = rng.choice(["", "\n", "naïve café ☕ — 🎨", "x" * 10_000, "line\nbreak\ttab", "\\u0000", "</script>"])
    c = rng.randrange(len(m["concepts"]))
    where = rng.choice(["description", "teacher", "pocketgan_version"])
    if where == "pocketgan_version":
        m["pocketgan_version"] = value
    else:
        m["concepts"][c][where] = value
    case.detail = f"{where} = {value[:20]!r}"
    return case


def _shuffled(tree, rng: random.Random):
    if isinstance(tree, dict):
        keys = list(tree)
        rng.shuffle(keys)
        return {k: _shuffled(tree[k], rng) for k in keys}
    if isinstance(tree, list):
        return [_shuffled(v, rng) for v in tree]
    return tree


def reordered(src: Source, rng: random.Random) -> Case:
    case = _accept("valid.reordered")
    case.manifest = _shuffled(src.fresh(), rng)
    case.indent = rng.choice([None, 0, 1, 4, "\t"])
    if rng.random() < 0.5:
        rng.shuffle(case.manifest["concepts"])  # changes the default concept; the edit names its own
    case.detail = f"every object's keys shuffled, indent={case.indent!r}"
    return case


def metadata_numbers(src: Source, rng: random.Random) -> Case:
    case = _accept("valid.metadata_numbers")
    m = case.m(src)
    target = m["targets"][src.name]
    c = m["concepts"][rng.randrange(len(m["concepts"]))]
    op = rng.choice(["psnr", "threshold", "parameters", "macs", "training", "delegation"])
    if op == "psnr":
        for scores in target["parity"]["psnr_db"].values():
            for name in scores:
                scores[name] = round(rng.uniform(0, 200), 2)
    elif op == "threshold":
        target["parity"]["threshold_db"] = rng.choice([0, 35.5, 99.0])
    elif op == "parameters":
        m["generator"]["parameters"] = c["parameters"] = rng.randrange(1, 10**9)
    elif op == "macs":
        m["generator"]["macs"] = rng.randrange(1, 10**12)
    elif op == "training" and "training" in c:
        c["training"]["steps"], c["training"]["final_l1"] = rng.randrange(1, 10**6), rng.random()
    elif "delegation" in target:
        for summary in target["delegation"].values():
            summary["delegated_ops"] = rng.randrange(1, 10**4)
    case.detail = op
    return case


def metadata_key(src: Source, rng: random.Random) -> Case:
    case = _accept("valid.metadata_key")
    m = case.m(src)
    key = rng.choice(["x", "notes", "__proto__", "format_version"])
    if rng.random() < 0.5:
        m["generator"]["config"][key] = rng.choice([1, "x", None, {"a": [1, 2]}])
        case.detail = f"generator.config[{key!r}] added"
    else:
        c = next((c for c in m["concepts"] if "training" in c), m["concepts"][0])
        c.setdefault("training", {})[key] = rng.choice([1, "x", None, {"a": [1, 2]}])
        case.detail = f"concepts[{c['name']}].training[{key!r}] added"
    return case


def _drop_concept(m: dict, name: str) -> None:
    m["concepts"] = [c for c in m["concepts"] if c["name"] != name]

    def walk(tree):
        if isinstance(tree, dict):
            tree.pop(name, None)
            for value in tree.values():
                walk(value)

    walk(m["targets"])
    # strength and blending: its curve and the golden mixes naming it go; a mix method/function
    # takes one weight per concept of the program, so without it the export has no mixing
    neutral = m.get("neutral")
    if neutral is not None:
        neutral.get("strength_curves", {}).pop(name, None)
        neutral["golden_mixes"] = [g for g in neutral.get("golden_mixes", []) if name not in g["weights"]]
        for target in m["targets"].values():
            target.pop("mix", None)


def optional_removed(src: Source, rng: random.Random) -> Case:
    case = _accept("valid.optional_removed")
    m = case.m(src)
    c = rng.randrange(len(m["concepts"]))
    op = rng.choice(["training", "golden", "dtype", "concept"])
    if op == "concept":
        name = rng.choice(src.concepts[1:])
        _drop_concept(m, name)  # its files stay in artifacts: listed, checksummed, unused
        case.detail = f"concept {name!r} removed from concepts and every target"
    elif op == "dtype":
        m["targets"].get("onnx", {}).pop("concept_input_dtype", None)
        case.detail = "targets.onnx.concept_input_dtype removed (absent: float32)"
    else:
        m["concepts"][c].pop(op, None)
        case.detail = f"concepts[{c}].{op} removed"
    return case


def explicit_dtype(src: Source, rng: random.Random) -> Case:
    case = _accept("valid.explicit_dtype")
    case.m(src)["targets"]["onnx"]["concept_input_dtype"] = "float32"
    case.detail = "targets.onnx.concept_input_dtype = 'float32'"
    return case


def relabel(src: Source, rng: random.Random) -> Case:
    case = _accept("valid.relabel", same=False)
    target = case.m(src)["targets"][src.name]
    mapping = target["adapters" if src.name == "onnx" else "methods"]
    names = sorted(mapping)
    values = [mapping[n] for n in names]
    rng.shuffle(values)
    mapping.update(zip(names, values))
    case.concept = names[0]
    case.detail = f"{'adapters' if src.name == 'onnx' else 'methods'} permuted: {names[0]} -> {mapping[names[0]]}"
    return case
