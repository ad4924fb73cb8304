"""ExecuTorch backend (XNNPACK-delegated ``.pte`` programs).

Separate mode: one program whose methods are the concepts (base weights stored once),
or, when a bundle only has that layout, one small program per concept over a shared
``base.ptd``. Merged mode: one program, a method per concept with its LoRA folded in.
Every method is loaded once when the backend opens, so a concept swap is a dict lookup.

ExecuTorch is optional: it is imported here, lazily, and a missing install raises
:class:`BackendUnavailableError` with the command that fixes it. (The ExecuTorch Python
runtime itself depends on torch; ``import pocketgan.runtime`` still does not.)
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from pocketgan.runtime.backends import resolve_target
from pocketgan.runtime.errors import BackendUnavailableError, BundleError
from pocketgan.runtime.manifest import read_artifact, verify_artifact

INSTALL_HINT = "pip install 'pocketgan[executorch]' (executorch==1.5.1, which pins torch==2.13.0), or use backend='onnx'"
_FLOAT32 = 6  # ExecuTorch ScalarType::Float
_threadpool_lock = threading.Lock()


def _executorch():
    try:
        import torch  # noqa: F401  (executorch's pybindings exchange torch tensors)
        from executorch.runtime import Runtime
    except ImportError as e:
        raise BackendUnavailableError(f"the executorch backend needs ExecuTorch: {INSTALL_HINT}") from e
    runtime = Runtime.get()
    if not runtime.backend_registry.is_available("XnnpackBackend"):
        raise BackendUnavailableError(f"this ExecuTorch build has no XNNPACK backend: {INSTALL_HINT}")
    return runtime


def set_threads(threads: int) -> None:
    """Size ExecuTorch's (process-wide) CPU threadpool, which XNNPACK runs on."""
    from executorch.extension.pybindings import portable_lib

    with _threadpool_lock:
        if portable_lib._threadpool_get_thread_count() != threads:
            portable_lib._unsafe_reset_threadpool(threads)


class ExecuTorchBackend:
    name = "executorch"

    def __init__(self, bundle_dir: Path, manifest: dict, *, threads: int | None, concept_mode: str = "auto") -> None:
        target, concept_mode = resolve_target(bundle_dir, manifest, "executorch", concept_mode)
        runtime = _executorch()
        if threads:
            set_threads(threads)
        self.concept_mode = concept_mode
        self._io = manifest["io"]
        self._bundle_dir = Path(bundle_dir)
        # Methods of one program share their memory-planned arenas, so runs are serialised.
        self._lock = threading.Lock()
        self._programs = []  # keep every Program (and its bytes) alive with its methods
        self._methods: dict[str, object] = {}
        if concept_mode == "merged":
            self._load_program(runtime, manifest, target["merged_program"], target["methods"])
        elif "program" in target:  # preferred: one program, loaded once
            self._load_program(runtime, manifest, target["program"], target["methods"])
        else:  # shared base .ptd + one program per concept
            external = target["external_data"]
            data = verify_artifact(bundle_dir, manifest, external["data"])
            for concept, relpath in external["programs"].items():
                self._load_program(runtime, manifest, relpath, {concept: external["method"]}, data_path=data)
        missing = [c["name"] for c in manifest["concepts"] if c["name"] not in self._methods]
        if missing:
            raise BundleError(f"the ExecuTorch export has no method for concept(s) {missing}")

    def _load_program(self, runtime, manifest: dict, relpath: str, methods: dict[str, str], data_path=None) -> None:
        """Verify ``relpath`` against the manifest, load it from those verified bytes, and
        load each concept's method."""
        data = read_artifact(self._bundle_dir, manifest, relpath)
        try:
            program = runtime.load_program(data, data_path=data_path)
        except RuntimeError as e:
            raise BundleError(f"ExecuTorch cannot load {relpath}: {e}") from e
        self._programs.append(program)
        for concept, method in methods.items():
            if method not in program.method_names:
                raise BundleError(
                    f"{relpath} has no method {method!r} (concept {concept!r}); it has {sorted(program.method_names)}"
                )
            try:
                loaded = program.load_method(method)
            except RuntimeError as e:
                raise BundleError(f"ExecuTorch cannot load method {method!r} of {relpath}: {e}") from e
            self._check_io(loaded.metadata, f"{relpath}:{method}")
            self._methods[concept] = loaded

    def _check_io(self, meta, where: str) -> None:
        if meta.num_inputs() != 1 or meta.num_outputs() != 1:
            raise BundleError(
                f"{where} takes {meta.num_inputs()} inputs and returns {meta.num_outputs()} outputs, expected 1 and 1"
            )
        for kind, info, spec in (("input", meta.input_tensor_meta(0), self._io["input"]),
                                 ("output", meta.output_tensor_meta(0), self._io["output"])):
            if list(info.sizes()) != list(spec["shape"]) or info.dtype() != _FLOAT32:
                raise BundleError(
                    f"{where} {kind} is {list(info.sizes())} (dtype {info.dtype()}), manifest says float32 {spec['shape']}"
                )

    def activate(self, concept: str) -> None:
        if concept not in self._methods:
            raise BundleError(f"concept {concept!r} has no ExecuTorch method in this bundle")

    def run(self, x: np.ndarray, concept: str) -> np.ndarray:
        import torch

        method = self._methods[concept]
        with self._lock:
            out = method.execute([torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))])[0]
        return out.numpy()
