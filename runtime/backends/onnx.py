"""ONNX Runtime backend.

Separate mode: one session for the base graph, whose concept tensors (LoRA A/B and the
concept tokens) are graph inputs with zero defaults; each concept is an ``.onnx_adapter``
that ``RunOptions.add_active_adapter`` applies per run, so a swap is a pointer change.
Merged mode: one session per concept with the LoRA folded into the weights.

What is checked when a session opens (and by ``verify_bundle``, through
:func:`verify_onnx_export`):

- each model is built from the verified bytes (``InferenceSession(bytes)``); a file that is
  not a model is :class:`ArtifactFormatError`;
- its inputs are exactly ``io.input`` (name, float32, shape), its outputs exactly
  ``io.output``, and its overridable initializers exactly ``concept_inputs`` (names,
  shapes, ``concept_input_dtype``) in separate mode and none in merged mode
  (:class:`InterfaceMismatchError`);
- each adapter, copied from its verified bytes into a private directory (ONNX Runtime's
  Python ``LoraAdapter`` loads only from a path), holds exactly ``concept_inputs``:
  every name, shape and dtype, finite values (:class:`AdapterMismatchError`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from pocketgan.runtime.backends import checked_output, library_reason, resolve_target
from pocketgan.runtime.bundle_files import PrivateCopies, read_artifact
from pocketgan.runtime.errors import (
    AdapterMismatchError,
    ArtifactFormatError,
    BackendUnavailableError,
    BundleError,
    InterfaceMismatchError,
)
from pocketgan.runtime.manifest_view import Manifest, OnnxTarget, as_manifest

#: concept_input_dtype -> ONNX Runtime's type string
ORT_TYPES = {"float32": "tensor(float)", "float16": "tensor(float16)"}
_FLOAT = ORT_TYPES["float32"]


def _ort():
    try:
        import onnxruntime
    except ImportError as e:  # pragma: no cover - onnxruntime is a core dependency
        raise BackendUnavailableError("the onnx backend needs onnxruntime: pip install onnxruntime") from e
    return onnxruntime


def session_options(threads: int | None, *, optimize: bool = True):
    ort = _ort()
    so = ort.SessionOptions()
    level = ort.GraphOptimizationLevel
    so.graph_optimization_level = level.ORT_ENABLE_ALL if optimize else level.ORT_DISABLE_ALL
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    so.log_severity_level = 3
    # A model whose declared shapes disagree with what its graph computes is refused at
    # load, not merged leniently (ORT's default), so its metadata can be trusted below.
    so.add_session_config_entry("session.strict_shape_type_inference", "1")
    # ORT's worker threads spin for a while after each run by default; an edit runs host code
    # (the full-resolution pass) right after the model, and on a 2-core phone or laptop those
    # spinning threads take the cores it needs (measured: the fit 2.5x, the next run 1.6x slower).
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return so


def open_session(data: bytes, relpath: str, options):
    """An InferenceSession built from ``data`` (the verified bytes of ``relpath``)."""
    try:
        return _ort().InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as e:  # InvalidProtobuf, InvalidGraph, Fail, ... from onnxruntime
        raise ArtifactFormatError(
            f"{relpath}: ONNX Runtime cannot load it as a model ({library_reason(e)})", file=relpath
        ) from None


def check_session(session, manifest: Manifest, relpath: str, target: OnnxTarget | None) -> None:
    """The model's real interface against the manifest.

    ``target`` given: a separate-mode base graph, whose overridable initializers must be
    exactly ``target.concept_inputs``; ``None``: a merged model, which must have none.
    """

    def described(args) -> list:
        return [(a.name, list(a.shape), a.type) for a in args]

    for kind, args, spec in (
        ("input", session.get_inputs(), manifest.input),
        ("output", session.get_outputs(), manifest.output),
    ):
        got, want = described(args), [(spec.name, list(spec.shape), _FLOAT)]
        if got != want:
            raise InterfaceMismatchError(
                f"{relpath}: the model's {kind}s are {got}, the manifest's io.{kind} says {want}",
                file=relpath,
                field=f"io.{kind}",
            )
    got = {a.name: (list(a.shape), a.type) for a in session.get_overridable_initializers()}
    want = {}
    if target is not None:
        dtype = ORT_TYPES[target.concept_input_dtype]
        want = {name: (list(shape), dtype) for name, shape in target.concept_inputs.items()}
    if got != want:
        raise InterfaceMismatchError(
            f"{relpath}: the model's concept inputs differ from targets.onnx.concept_inputs ({_difference(got, want)})",
            file=relpath,
            field="targets.onnx.concept_inputs" if target is not None else "targets.onnx.merged",
        )


def _difference(got: Mapping, want: Mapping) -> str:
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    changed = sorted(k for k in set(got) & set(want) if got[k] != want[k])
    parts = [f"missing {missing[:3]}" if missing else "", f"extra {extra[:3]}" if extra else ""]
    parts += [f"{k}: {got[k]} instead of {want[k]}" for k in changed[:3]]
    return "; ".join(p for p in parts if p)


def load_model(bundle_dir: Path, manifest: Manifest, relpath: str, options, target: OnnxTarget | None):
    """Read ``relpath`` (contained, checksum verified), build its session, check its interface."""
    session = open_session(read_artifact(bundle_dir, manifest, relpath), relpath, options)
    check_session(session, manifest, relpath, target)
    return session


def check_adapter(path: Path, relpath: str, target: OnnxTarget) -> None:
    """The adapter at ``path`` (a private copy of ``relpath``) holds exactly ``concept_inputs``."""
    try:
        params = _ort().AdapterFormat.read_adapter(str(path)).get_parameters()
        got = {name: (list(v.shape()), v.data_type()) for name, v in params.items()}
        finite = {name: bool(np.isfinite(v.numpy()).all()) for name, v in params.items()}
    except Exception as e:  # RuntimeError (not a FlatBuffer), UnicodeDecodeError (names), ...
        raise ArtifactFormatError(
            f"{relpath}: not an ONNX Runtime adapter ({library_reason(e)})", file=relpath
        ) from None
    dtype = ORT_TYPES[target.concept_input_dtype]
    want = {name: (list(shape), dtype) for name, shape in target.concept_inputs.items()}
    if got != want:
        raise AdapterMismatchError(
            f"{relpath}: its tensors differ from targets.onnx.concept_inputs in {target.concept_input_dtype} "
            f"({_difference(got, want) if got else 'it holds no tensors'})",
            file=relpath,
            field="targets.onnx.concept_inputs",
        )
    bad = sorted(name for name, ok in finite.items() if not ok)
    if bad:
        raise AdapterMismatchError(f"{relpath}: non-finite values in {bad[:3]}", file=relpath, field="targets.onnx")


def load_adapters(bundle_dir: Path, manifest: Manifest, target: OnnxTarget) -> dict:
    """concept -> (RunOptions with its adapter active, the adapter), every adapter checked."""
    ort = _ort()
    copies = PrivateCopies("pocketgan-onnx-")
    try:
        out = {}
        for concept, relpath in target.adapters.items():
            path = copies.write(relpath, read_artifact(bundle_dir, manifest, relpath))
            check_adapter(path, relpath, target)
            adapter = ort.LoraAdapter()
            try:
                adapter.Load(str(path))
            except Exception as e:
                raise ArtifactFormatError(
                    f"{relpath}: ONNX Runtime cannot load it ({library_reason(e)})", file=relpath
                ) from None
            ro = ort.RunOptions()
            ro.add_active_adapter(adapter)
            out[concept] = (ro, adapter)  # keep the adapter alive with its options
        return out
    finally:
        copies.close()  # loaded adapters keep their (memory-mapped) data; the copies can go


class OnnxBackend:
    name = "onnx"

    def __init__(
        self, bundle_dir: Path, manifest: Manifest | Mapping, *, threads: int | None, concept_mode: str = "auto"
    ) -> None:
        _ort()
        manifest = as_manifest(manifest)
        target, concept_mode = resolve_target(bundle_dir, manifest, "onnx", concept_mode)
        self.concept_mode = concept_mode
        self._input_name = manifest.input.name
        self._output = manifest.output
        options = session_options(threads)
        if concept_mode == "separate":
            self._model = target.model
            self._session = load_model(bundle_dir, manifest, target.model, options, target)
            self._run_options = load_adapters(bundle_dir, manifest, target)
        else:
            self._merged = dict(target.merged)
            self._sessions = {c: load_model(bundle_dir, manifest, p, options, None) for c, p in target.merged.items()}

    def activate(self, concept: str) -> None:
        table = self._run_options if self.concept_mode == "separate" else self._sessions
        if concept not in table:
            raise BundleError(f"concept {concept!r} has no ONNX artifact in this bundle")

    def run(self, x: np.ndarray, concept: str) -> np.ndarray:
        feeds = {self._input_name: x}
        relpath = self._model if self.concept_mode == "separate" else self._merged[concept]
        try:
            if self.concept_mode == "separate":
                run_options, _ = self._run_options[concept]
                y = self._session.run(None, feeds, run_options)[0]
            else:
                y = self._sessions[concept].run(None, feeds)[0]
        except Exception as e:  # onnxruntime Fail / InvalidArgument: the bundle's model, not the caller
            raise ArtifactFormatError(
                f"{relpath}: ONNX Runtime failed running concept {concept!r} ({library_reason(e)})", file=relpath
            ) from None
        return checked_output(y, self._output, relpath, concept)


def verify_onnx_export(bundle_dir: Path, manifest: Manifest) -> None:
    """Every model and adapter of ``targets.onnx`` loads and matches the manifest (the
    checks a session does when it opens, on unoptimised sessions: nothing is run)."""
    target = manifest.onnx
    if target is None:
        return
    options = session_options(1, optimize=False)
    if target.model is not None:
        load_model(bundle_dir, manifest, target.model, options, target)
        load_adapters(bundle_dir, manifest, target)
    for relpath in target.merged.values():
        load_model(bundle_dir, manifest, relpath, options, None)
