"""Path mutations: absolute paths, ``..``, symlinks out of (and within) the bundle, the
wrong kind of file, missing files, named pipes.

Files outside the case's bundle are the source bundle's own, checksum-identical files
(``../../sources/<backend>/...``): only containment can refuse them.
"""

from __future__ import annotations

import random

from .cases import EITHER, REJECT, Case, Source
from .mutations import repoint

_TARGET_DIRS = {"onnx": "onnx", "executorch": "executorch"}


def _open_expect(src: Source, rels) -> str:
    """Opening must fail when the backend reads one of ``rels``; otherwise it need not."""
    return REJECT if any(r in src.used or r == "manifest.json" for r in rels) else EITHER


def absolute(src: Source, rng: random.Random) -> Case:
    rel = rng.choice(src.used)
    case = Case("path.absolute")
    new = str((src.path / rel).resolve())
    repoint(case.m(src), rel, new)
    case.detail = f"{rel} -> {new} (the source's identical file)"
    return case


def dotdot(src: Source, rng: random.Random) -> Case:
    rel = rng.choice(src.used)
    case = Case("path.dotdot")
    if rng.random() < 0.75:
        new = src.outside(rel)
    else:  # stays inside the bundle: harmless, but the format forbids ".." (either outcome is fine)
        top, rest = rel.split("/", 1)
        new, case.expect, case.static = f"{top}/../{top}/{rest}", EITHER, False
    repoint(case.m(src), rel, new)
    case.detail = f"{rel} -> {new}"
    return case


def symlink_out(src: Source, rng: random.Random) -> Case:
    """A listed file (or the manifest, or a whole directory) is a symlink to the source's
    identical copy outside the bundle."""
    case = Case("path.symlink_out")
    op = rng.choice(["used", "used", "any", "dir", "manifest"])
    if op == "dir":
        rel = rng.choice([_TARGET_DIRS[src.name], "concepts", "golden", "base"])
        rels = [a for a in src.artifacts if a.startswith(rel + "/")]
    else:
        rel = {
            "used": lambda: rng.choice(src.used),
            "any": lambda: rng.choice(src.artifacts),
            "manifest": lambda: "manifest.json",
        }[op]()
        rels = [rel]
    absolute_link = rng.random() < 0.5
    case.links[rel] = str((src.path / rel).resolve()) if absolute_link else "../" * rel.count("/") + src.outside(rel)
    case.expect = _open_expect(src, rels)
    case.detail = f"{rel} -> {case.links[rel]}"
    return case


def symlink_in(src: Source, rng: random.Random) -> Case:
    """A listed file is a symlink to an identical file inside the bundle: containment holds,
    so refusing it is as fine as following it."""
    case = Case("path.symlink_in", expect=EITHER, static=False)
    rel = rng.choice(src.used + src.artifacts)
    name = rel.rsplit("/", 1)[-1]
    case.copies[rel + ".real"] = rel
    case.links[rel] = name + ".real"
    case.detail = f"{rel} -> {name}.real (same directory, same bytes)"
    return case


def wrong_kind(src: Source, rng: random.Random) -> Case:
    """A reference points at a listed file of another kind: the model at an adapter, an
    adapter at the model, the ExecuTorch program at the ONNX model, either at a PNG."""
    case = Case("path.wrong_kind")
    m = case.m(src)
    onnx = m["targets"]["onnx"]
    adapter = rng.choice(sorted(onnx["adapters"]))
    picture = rng.choice([a for a in src.artifacts if a.endswith(".png")])
    options = [
        ("onnx", ("model",), onnx["adapters"][adapter]),
        ("onnx", ("model",), picture),
        ("onnx", ("adapters", adapter), onnx["model"]),
        ("onnx", ("adapters", adapter), picture),
    ]
    if "executorch" in m["targets"]:
        options += [("executorch", ("program",), onnx["model"]), ("executorch", ("program",), picture)]
    if "upsampler" in m:  # a concept's stage weights: every backend reads them, verify_bundle too
        c = rng.randrange(len(m["concepts"]))
        for new in (onnx["adapters"][adapter], onnx["model"], picture):
            options.append((None, ("concepts", c, "upsampler"), new))
    target, key, new = rng.choice(options)
    if target is None:
        m["concepts"][key[1]]["upsampler"] = new
        case.expect, case.static = REJECT, True
        case.detail = f"concepts[{key[1]}].upsampler -> {new}"
        return case
    holder = m["targets"][target]
    for k in key[:-1]:
        holder = holder[k]
    holder[key[-1]] = new
    case.expect = REJECT if target == src.name else EITHER
    case.static = key[0] == "adapters"  # an adapter is checked without a session; models need loading
    case.detail = f"targets.{target}.{'.'.join(key)} -> {new}"
    return case


def missing(src: Source, rng: random.Random) -> Case:
    case = Case("path.missing")
    rel = rng.choice(src.used + src.artifacts + ["manifest.json"])
    case.remove.append(rel)
    case.expect = _open_expect(src, [rel])
    case.detail = f"{rel} deleted"
    return case


def not_a_file(src: Source, rng: random.Random) -> Case:
    """A listed file (or manifest.json) is a directory or a named pipe (reading one blocks)."""
    case = Case("path.not_a_file")
    rel = rng.choice(src.used + src.artifacts + ["manifest.json"])
    kind = rng.choice(["dir", "fifo"])
    (case.dirs if kind == "dir" else case.fifos).append(rel)
    case.expect = _open_expect(src, [rel])
    case.detail = f"{rel} is a {kind}"
    return case


def unlisted(src: Source, rng: random.Random) -> Case:
    """A reference names a file that is present but has no checksum in artifacts."""
    case = Case("path.unlisted")
    m = case.m(src)
    rel = rng.choice(src.used)
    new = rel.rsplit(".", 1)[0] + "-copy." + rel.rsplit(".", 1)[1]
    repoint(m, rel, new)
    del m["artifacts"][new]
    case.copies[new] = rel
    case.detail = f"{rel} -> {new} (present, not in artifacts)"
    return case


def noncanonical(src: Source, rng: random.Random) -> Case:
    """``a/./b``, ``a//b``, ``./a/b``: the same file under another spelling (either outcome)."""
    case = Case("path.noncanonical", expect=EITHER, static=False)
    rel = rng.choice(src.used)
    top, rest = rel.split("/", 1)
    new = rng.choice([f"{top}/./{rest}", f"{top}//{rest}", f"./{rel}"])
    repoint(case.m(src), rel, new)
    case.detail = f"{rel} -> {new}"
    return case
