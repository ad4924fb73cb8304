"""What a fuzz case is, and how it is laid out on disk next to the bundle it mutates.

A :class:`Case` is built by a mutator (``mutations.py``, ``content.py``) from a
:class:`Source` bundle and says, by construction, what the runtime must do with it:

- ``expect``: ``reject`` (the mutation breaks the bundle's meaning: ``open_bundle`` on the
  source's backend plus one ``edit`` must raise a ``PocketganError``), ``accept`` (the
  mutation is harmless by construction: it must open, edit and verify), or ``either``
  (the mutator cannot decide, e.g. a random bit flip in weight data, or the defect is in a
  target this backend never reads: any typed outcome is fine, an untyped one is not);
- ``static``: the defect is visible without loading a model or program (manifest,
  paths, checksums, adapter tensors), so ``verify_bundle`` must reject it too.

Layout: sources live in ``WORK/sources/<backend>`` and cases in ``WORK/cases/<id>``, so a
mutation can point at ``../../sources/<backend>/<file>``: a real, checksum-identical file
outside the case's bundle. Untouched files are hardlinked from the source; every file a
case changes is unlinked first and written anew, so nothing writes through a link.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

REJECT, ACCEPT, EITHER = "reject", "accept", "either"
SOURCES_DIR, CASES_DIR = "sources", "cases"


class Source:
    """A bundle cases are made from; ``name`` is also the backend it is opened with."""

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = Path(path)
        self.text = (self.path / "manifest.json").read_text("utf-8")
        manifest = json.loads(self.text)
        self.concepts: list[str] = [c["name"] for c in manifest["concepts"]]
        self.artifacts: list[str] = sorted(manifest["artifacts"])
        self.used: list[str] = target_files(manifest, name)
        self.files: list[str] = sorted(
            str(p.relative_to(self.path)) for p in self.path.rglob("*") if p.is_file() and not p.is_symlink()
        )

    def fresh(self) -> dict:
        """A new, mutable copy of the manifest."""
        return json.loads(self.text)

    def outside(self, rel: str) -> str:
        """``rel`` of this source, seen from a case directory: outside that bundle."""
        return f"../../{SOURCES_DIR}/{self.name}/{rel}"


def upsampler_files(manifest: dict) -> list[str]:
    """The concepts' full-resolution stage weights, which every backend reads at open."""
    return [c["upsampler"] for c in manifest["concepts"] if "upsampler" in c]


def target_files(manifest: dict, target: str) -> list[str]:
    """The artifacts a backend reads when it opens ``targets[target]`` (separate mode)."""
    t = manifest["targets"].get(target, {})
    if target == "onnx":
        files = [t["model"], *t["adapters"].values()] if "model" in t else []
    else:
        files = [t[k] for k in ("program", "merged_program") if k in t]
        ext = t.get("external_data")
        files += [ext["data"], *ext["programs"].values()] if ext else []
    return files + upsampler_files(manifest)


@dataclass
class Case:
    """One mutation of a source bundle (see the module docstring for the fields' meaning)."""

    cls: str
    detail: str = ""
    expect: str = REJECT
    static: bool = True
    concept: str | None = None  # the concept to edit; default: the source's first
    same_output: bool = False  # accepted: the edit must be bit-identical to the source's
    manifest: dict | None = None  # the new manifest; None: the source's text unchanged
    indent: int | str | None = 2
    raw: dict[str, str] = field(default_factory=dict)  # placeholder -> raw JSON text
    text: str | bytes | None = None  # the whole manifest.json, overriding ``manifest``
    files: dict[str, bytes] = field(default_factory=dict)  # relpath -> new content
    copies: dict[str, str] = field(default_factory=dict)  # new relpath -> source relpath (hardlinked)
    links: dict[str, str] = field(default_factory=dict)  # relpath -> symlink target
    remove: list[str] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)  # replaced by an empty directory
    fifos: list[str] = field(default_factory=list)  # replaced by a named pipe (reading blocks)

    def m(self, src: Source) -> dict:
        """The case's manifest, copied from the source on first use."""
        if self.manifest is None:
            self.manifest = src.fresh()
        return self.manifest

    def put(self, src: Source, rel: str, data: bytes, *, rehash: bool) -> None:
        """Replace ``rel``'s bytes; ``rehash`` also rewrites its manifest sha256 and size."""
        self.files[rel] = data
        if rehash:
            self.m(src)["artifacts"][rel] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}

    def rawvalue(self, text: str) -> str:
        """A placeholder that renders as ``text`` verbatim (JSON Python cannot write)."""
        key = f"@@RAW{len(self.raw)}@@"
        self.raw[key] = text
        return key

    def render(self, src: Source) -> bytes:
        if self.text is not None:
            return self.text if isinstance(self.text, bytes) else self.text.encode("utf-8")
        if self.manifest is None:
            return src.text.encode("utf-8")
        text = json.dumps(self.manifest, indent=self.indent, ensure_ascii=False)
        for key, value in self.raw.items():
            text = text.replace(json.dumps(key), value)
        return text.encode("utf-8")

    def summary(self) -> dict:
        return {"cls": self.cls, "detail": self.detail, "expect": self.expect, "static": self.static}


def _clear(path: Path) -> None:
    if path.is_symlink() or path.is_file() or (path.exists() and not path.is_dir()):
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # another file system: a copy is as good, only slower
        shutil.copyfile(src, dst)


def materialize(src: Source, case: Case, dst: Path) -> Path:
    """Write ``case`` as a bundle directory ``dst`` (hardlinking what it leaves alone)."""
    dst.mkdir(parents=True)
    for rel in src.files:
        if rel != "manifest.json":
            _link_or_copy(src.path / rel, dst / rel)
    for rel in case.remove:
        _clear(dst / rel)
    for new, old in case.copies.items():
        _clear(dst / new)
        _link_or_copy(src.path / old, dst / new)
    for rel, data in case.files.items():
        _clear(dst / rel)
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        (dst / rel).write_bytes(data)
    for rel, target in case.links.items():
        _clear(dst / rel)
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, dst / rel)
    for rel in case.dirs:
        _clear(dst / rel)
        (dst / rel).mkdir(parents=True)
    manifest = dst / "manifest.json"
    if "manifest.json" not in case.links and "manifest.json" not in case.dirs and "manifest.json" not in case.remove:
        manifest.write_bytes(case.render(src))
    for rel in case.fifos:
        _clear(dst / rel)
        os.mkfifo(dst / rel)
    return dst


def get(tree, path: tuple):
    for key in path:
        tree = tree[key]
    return tree


def put(tree, path: tuple, value) -> None:
    get(tree, path[:-1])[path[-1]] = value


def dotted(path: tuple) -> str:
    return ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in path).replace(".[", "[")
