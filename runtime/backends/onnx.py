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
  Python ``LoraAdapter`` loads only from a path), holds exactly ``concept_inputs`` but the
  second (mix) LoRA's, the neutral adapter the same at the neutral's ranks:
  every name, shape and dtype, finite values (:class:`AdapterMismatchError`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from pocketgan.runtime.backends import checked_output, library_reason, resolve_target
from pocketgan.runtime.bundle_files import PrivateCopies, read_artifact
from pocketgan.runtime.concept_mix import MIX_A, ConceptMix, MixError, mix_slot_names, mix_tensors, split_slots
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
#: the key of the neutral adapter's tensors (not a valid concept name: no clash)
NEUTRAL = "<neutral>"


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


def adapter_shapes(target: OnnxTarget, ranks: Mapping[str, int] | None = None) -> dict[str, tuple[int, ...]]:
    """What an adapter holds: ``concept_inputs`` without the second (mix) LoRA's, which no
    adapter sets; with ``ranks`` (the neutral's), each layer's tensors at that rank instead."""
    mix = mix_slot_names(k[: -len(".lora_A.weight")] for k in target.concept_inputs if k.endswith(".lora_A.weight"))
    shapes = {name: tuple(shape) for name, shape in target.concept_inputs.items() if name not in mix}
    for name, shape in list(shapes.items()):
        layer, _, kind = name.rpartition(".lora_")
        if ranks and layer in ranks:
            r = ranks[layer]
            shapes[name] = (r, *shape[1:]) if kind == "A.weight" else (shape[0], r, *shape[2:])
    return shapes


def check_adapter(path: Path, relpath: str, target: OnnxTarget, shapes=None) -> dict[str, np.ndarray]:
    """The adapter at ``path`` (a private copy of ``relpath``) holds exactly ``shapes`` (default:
    :func:`adapter_shapes`, the concepts' inputs); returns its tensors (what mixes are made of)."""
    try:
        params = _ort().AdapterFormat.read_adapter(str(path)).get_parameters()
        got = {name: (list(v.shape()), v.data_type()) for name, v in params.items()}
        arrays = {name: np.array(v.numpy()) for name, v in params.items()}
        finite = {name: bool(np.isfinite(a).all()) for name, a in arrays.items()}
    except Exception as e:  # RuntimeError (not a FlatBuffer), UnicodeDecodeError (names), ...
        raise ArtifactFormatError(
            f"{relpath}: not an ONNX Runtime adapter ({library_reason(e)})", file=relpath
        ) from None
    dtype = ORT_TYPES[target.concept_input_dtype]
    want = {name: (list(shape), dtype) for name, shape in (shapes or adapter_shapes(target)).items()}
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
    return arrays


def load_adapters(bundle_dir: Path, manifest: Manifest, target: OnnxTarget) -> tuple[dict, dict]:
    """(concept -> (RunOptions with its adapter active, the adapter), concept -> its tensors),
    every adapter checked; the tensors also hold the neutral adapter's under ``NEUTRAL``."""
    ort = _ort()
    copies = PrivateCopies("pocketgan-onnx-")
    try:
        out, tensors = {}, {}
        if target.neutral is not None:
            path = copies.write(target.neutral, read_artifact(bundle_dir, manifest, target.neutral))
            neutral_ranks = manifest.neutral.ranks if manifest.neutral is not None else None
            if neutral_ranks is None:
                raise AdapterMismatchError(
                    f"{target.neutral}: a neutral adapter, but the manifest has no neutral concept",
                    file=target.neutral,
                    field="targets.onnx.neutral",
                )
            tensors[NEUTRAL] = check_adapter(path, target.neutral, target, adapter_shapes(target, neutral_ranks))
        for concept, relpath in target.adapters.items():
            path = copies.write(relpath, read_artifact(bundle_dir, manifest, relpath))
            tensors[concept] = check_adapter(path, relpath, target)
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
        return out, tensors
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
            self._run_options, self._tensors = load_adapters(bundle_dir, manifest, target)
            inputs = target.concept_inputs
            self._ranks = {k[: -len(".lora_A.weight")]: v[0] for k, v in inputs.items() if k.endswith(".lora_A.weight")}
            seconds = {k[: -len(MIX_A)]: v[0] for k, v in inputs.items() if k.endswith(MIX_A)}
            # a mix fills the concepts' LoRA, then the second one (split_slots)
            self._total_ranks = {layer: r + seconds.get(layer, 0) for layer, r in self._ranks.items()}
            self._dtype = np.dtype(target.concept_input_dtype)
            self._mix_cache: tuple[ConceptMix, dict] | None = None
        else:
            self._merged = dict(target.merged)
            self._sessions = {c: load_model(bundle_dir, manifest, p, options, None) for c, p in target.merged.items()}

    def activate(self, concept: str) -> None:
        table = self._run_options if self.concept_mode == "separate" else self._sessions
        if concept not in table:
            raise BundleError(f"concept {concept!r} has no ONNX artifact in this bundle")

    def check_mix(self, mix: ConceptMix) -> None:
        """Raise :class:`MixError` unless this export can run ``mix``."""
        if self.concept_mode != "separate":
            raise MixError(
                "strength and blending need the separate export (base + adapters): merged mode bakes each "
                "concept into its own model. Open the bundle with concept_mode='separate', or export it with "
                "--concepts separate (or both)"
            )
        if NEUTRAL not in self._tensors:
            raise MixError(
                "this bundle has no neutral concept, so it has no strength or blending: re-export it with a "
                "pocketgan that trains one (pocketgan train-neutral, docs/strength-and-blending.md)"
            )

    def mix_feeds(self, mix: ConceptMix) -> dict[str, np.ndarray]:
        """The concept inputs of ``mix`` (the last one is cached: a slider sends the same mix
        for many frames)."""
        cached = self._mix_cache
        if cached is not None and cached[0] == mix:
            return cached[1]
        mixed, _ = mix_tensors(self._tensors, self._tensors[NEUTRAL], mix, self._total_ranks, self._dtype)
        feeds = split_slots(mixed, self._ranks)
        self._mix_cache = (mix, feeds)
        return feeds

    def run_mix(self, x: np.ndarray, mix: ConceptMix) -> np.ndarray:
        """(1, 3, S, S) float32 in [-1, 1] -> same shape, edited with a strength or blend."""
        self.check_mix(mix)
        feeds = {self._input_name: x, **self.mix_feeds(mix)}
        try:
            y = self._session.run(None, feeds)[0]
        except Exception as e:
            raise ArtifactFormatError(
                f"{self._model}: ONNX Runtime failed running {mix.label()} ({library_reason(e)})", file=self._model
            ) from None
        return checked_output(y, self._output, self._model, mix.label())

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
