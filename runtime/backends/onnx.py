"""ONNX Runtime backend.

Separate mode: one session for the base graph, whose concept tensors (LoRA A/B and the
concept tokens) are graph inputs with zero defaults; each concept is an ``.onnx_adapter``
that ``RunOptions.add_active_adapter`` applies per run, so a swap is a pointer change.
Merged mode: one session per concept with the LoRA folded into the weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pocketgan.runtime.backends import resolve_target
from pocketgan.runtime.errors import BackendUnavailableError, BundleError
from pocketgan.runtime.manifest import read_artifact, verify_artifact


def _ort():
    try:
        import onnxruntime
    except ImportError as e:  # pragma: no cover - onnxruntime is a core dependency
        raise BackendUnavailableError("the onnx backend needs onnxruntime: pip install onnxruntime") from e
    return onnxruntime


def session_options(threads: int | None):
    ort = _ort()
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return so


class OnnxBackend:
    name = "onnx"

    def __init__(self, bundle_dir: Path, manifest: dict, *, threads: int | None, concept_mode: str = "auto") -> None:
        ort = _ort()
        target, concept_mode = resolve_target(bundle_dir, manifest, "onnx", concept_mode)
        self.concept_mode = concept_mode
        self._io = manifest["io"]
        options = session_options(threads)
        providers = ["CPUExecutionProvider"]
        if concept_mode == "separate":
            model = read_artifact(bundle_dir, manifest, target["model"])
            self._session = ort.InferenceSession(model, options, providers=providers)
            self._check_io(self._session, extra_inputs=target["concept_inputs"])
            self._run_options = {}
            for concept, relpath in target["adapters"].items():
                adapter = ort.LoraAdapter()
                adapter.Load(str(verify_artifact(bundle_dir, manifest, relpath)))
                ro = ort.RunOptions()
                ro.add_active_adapter(adapter)
                self._run_options[concept] = (ro, adapter)  # keep the adapter alive with its options
        else:
            self._sessions = {}
            for concept, relpath in target["merged"].items():
                model = read_artifact(bundle_dir, manifest, relpath)
                self._sessions[concept] = ort.InferenceSession(model, options, providers=providers)
                self._check_io(self._sessions[concept], extra_inputs={})

    def _check_io(self, session, extra_inputs: dict) -> None:
        spec_in, spec_out = self._io["input"], self._io["output"]
        inputs = {i.name: i for i in session.get_inputs()}
        if spec_in["name"] not in inputs or list(inputs[spec_in["name"]].shape) != spec_in["shape"]:
            raise BundleError(f"ONNX model input does not match the manifest's io.input {spec_in['name']} {spec_in['shape']}")
        if inputs[spec_in["name"]].type != "tensor(float)":
            raise BundleError(f"ONNX model input {spec_in['name']} is {inputs[spec_in['name']].type}, expected float32")
        overridable = {i.name for i in session.get_overridable_initializers()}
        missing = set(extra_inputs) - overridable
        if missing:
            raise BundleError(f"ONNX model lacks the concept inputs {sorted(missing)[:3]} listed in the manifest")
        outputs = [o.name for o in session.get_outputs()]
        if outputs != [spec_out["name"]]:
            raise BundleError(f"ONNX model outputs {outputs}, manifest says [{spec_out['name']!r}]")

    def activate(self, concept: str) -> None:
        table = self._run_options if self.concept_mode == "separate" else self._sessions
        if concept not in table:
            raise BundleError(f"concept {concept!r} has no ONNX artifact in this bundle")

    def run(self, x: np.ndarray, concept: str) -> np.ndarray:
        feeds = {self._io["input"]["name"]: x}
        if self.concept_mode == "separate":
            run_options, _ = self._run_options[concept]
            return self._session.run(None, feeds, run_options)[0]
        return self._sessions[concept].run(None, feeds)[0]
