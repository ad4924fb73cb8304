"""ExecuTorch backend (XNNPACK-delegated ``.pte`` programs).

Separate mode: one program whose methods are the concepts (base weights stored once),
or, when a bundle only has that layout, one small program per concept over a shared
``base.ptd``. Merged mode: one program, a method per concept with its LoRA folded in.
Every method is loaded once when the backend opens, so a concept swap is a dict lookup.

Checks when it opens: each program is loaded from its verified bytes (the ``.ptd`` from a
private copy of its verified bytes, since ExecuTorch takes it only as a path) with
ExecuTorch's internal-consistency verification; every method the manifest names exists
and takes one float32 ``io.input``-shaped tensor and returns one float32
``io.output``-shaped tensor (:class:`InterfaceMismatchError`). A program ExecuTorch cannot
load, or a method that fails to run, is :class:`ArtifactFormatError` naming the file (each
distinct program is first loaded and run in a child process, :mod:`.executorch_probe`, so a
native abort inside ExecuTorch is a typed error too); an
output of another shape or dtype is :class:`InterfaceMismatchError`, never a picture.

ExecuTorch is optional: it is imported here, lazily, and a missing install raises
:class:`BackendUnavailableError` with the command that fixes it. (The ExecuTorch Python
runtime itself depends on torch; ``import pocketgan.runtime`` still does not.)
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from pocketgan._quiet import (
    library_warnings_filtered,
    native_stderr_filtered,
    quiet_library_logs,
    start_executorch_threadpool,
)
from pocketgan.runtime.backends import checked_output, library_reason, resolve_target
from pocketgan.runtime.backends.executorch_probe import probe_program
from pocketgan.runtime.bundle_files import PrivateCopies, read_artifact
from pocketgan.runtime.concept_mix import ConceptMix, MixError
from pocketgan.runtime.errors import (
    ArtifactFormatError,
    BackendUnavailableError,
    BundleError,
    InterfaceMismatchError,
)
from pocketgan.runtime.manifest_view import Manifest, TensorSpec, as_manifest

INSTALL_HINT = (
    "pip install 'pocketgan[executorch]' (executorch==1.5.1, which pins torch==2.13.0), or use backend='onnx'"
)
_FLOAT32 = 6  # ExecuTorch ScalarType::Float
#: bytes 4..6 of every .pte: its FlatBuffers file identifier starts with "ET"
PTE_IDENTIFIER = b"ET"
_threadpool_lock = threading.Lock()


def _executorch():
    """ExecuTorch's ``Runtime``, imported and its threadpool started without the libraries'
    known-harmless log lines, warnings and native cpuinfo lines (:mod:`pocketgan._quiet`)."""
    quiet_library_logs()  # before the import: torchao, which executorch imports, logs then
    try:
        with library_warnings_filtered():
            import torch  # noqa: F401  (executorch's pybindings exchange torch tensors)
            from executorch.runtime import Runtime
    except ImportError as e:
        raise BackendUnavailableError(f"the executorch backend needs ExecuTorch: {INSTALL_HINT}") from e
    start_executorch_threadpool()  # created now, its cpuinfo lines filtered; later loads print nothing
    runtime = Runtime.get()
    if not runtime.backend_registry.is_available("XnnpackBackend"):
        raise BackendUnavailableError(f"this ExecuTorch build has no XNNPACK backend: {INSTALL_HINT}")
    return runtime


def set_threads(threads: int) -> None:
    """Size ExecuTorch's (process-wide) CPU threadpool, which XNNPACK runs on."""
    from executorch.extension.pybindings import portable_lib

    with _threadpool_lock, native_stderr_filtered():  # the C++ side prints "Resetting threadpool to N threads."
        if portable_lib._threadpool_get_thread_count() != threads:
            portable_lib._unsafe_reset_threadpool(threads)


def check_pte_identifier(data: bytes, relpath: str) -> None:
    """A cheap structure check without ExecuTorch: the FlatBuffers file identifier."""
    # "ET" + two ASCII digits (the schema version). ExecuTorch puts these bytes into its own
    # error message, and a non-UTF-8 byte there aborts the process inside pybind11.
    if data[4:6] != PTE_IDENTIFIER or not data[6:8].isascii() or not data[6:8].isdigit():
        raise ArtifactFormatError(f"{relpath} is not an ExecuTorch program (no 'ETnn' file identifier)", file=relpath)


def check_method_meta(meta, where: str, relpath: str, io: tuple[TensorSpec, TensorSpec]) -> None:
    """One float32 input of io.input's shape, one float32 output of io.output's shape."""
    try:
        counts = (meta.num_inputs(), meta.num_outputs())
        tensors = [meta.input_tensor_meta(0), meta.output_tensor_meta(0)] if counts == (1, 1) else []
        described = [(list(t.sizes()), t.dtype()) for t in tensors]
    except Exception as e:  # a corrupted method table: RuntimeError/IndexError from the pybindings
        raise ArtifactFormatError(f"{where}: unreadable method metadata ({library_reason(e)})", file=relpath) from None
    if counts != (1, 1):
        raise InterfaceMismatchError(
            f"{where} takes {counts[0]} inputs and returns {counts[1]} outputs, expected 1 and 1",
            file=relpath,
            field="io",
        )
    for kind, (sizes, dtype), spec in zip(("input", "output"), described, io):
        if sizes != list(spec.shape) or dtype != _FLOAT32:
            raise InterfaceMismatchError(
                f"{where} {kind} is {sizes} (dtype {dtype}), the manifest's io.{kind} says float32 {list(spec.shape)}",
                file=relpath,
                field=f"io.{kind}",
            )


class ExecuTorchBackend:
    name = "executorch"

    def __init__(
        self, bundle_dir: Path, manifest: Manifest | Mapping, *, threads: int | None, concept_mode: str = "auto"
    ) -> None:
        manifest = as_manifest(manifest)
        target, concept_mode = resolve_target(bundle_dir, manifest, "executorch", concept_mode)
        runtime = _executorch()
        if threads:
            set_threads(threads)
        self.concept_mode = concept_mode
        self._io = (manifest.input, manifest.output)
        self._bundle_dir = Path(bundle_dir)
        # Methods of one program share their memory-planned arenas, so runs are serialised.
        self._lock = threading.Lock()
        self._programs = []  # keep every Program (and its bytes) alive with its methods
        self._methods: dict[str, tuple[object, str, str]] = {}  # concept -> (method, file, method name)
        self._copies = None  # private copy of a .ptd, alive with the programs that read it
        if concept_mode == "merged":
            self._load_program(runtime, manifest, target.merged_program, target.methods)
        elif target.program is not None:  # preferred: one program, loaded once
            self._load_program(runtime, manifest, target.program, target.methods)
        else:  # shared base .ptd + one program per concept
            external = target.external_data
            self._copies = PrivateCopies("pocketgan-executorch-")
            data = self._copies.write(external.data, read_artifact(bundle_dir, manifest, external.data))
            for concept, relpath in external.programs.items():
                self._load_program(runtime, manifest, relpath, {concept: external.method}, data_path=data)
        missing = [c for c in manifest.concept_names if c not in self._methods]
        if missing:
            raise BundleError(f"the ExecuTorch export has no method for concept(s) {missing}")
        self._mix = None  # (method, relpath, name, concept order) of strength and blending
        if concept_mode == "separate" and target.mix_method is not None:
            self._mix = (
                *self._load_mix(target.program, target.mix_method, len(target.mix_concepts)),
                target.mix_concepts,
            )

    def _load_program(self, runtime, manifest: Manifest, relpath: str, methods: Mapping[str, str], data_path=None):
        """Load ``relpath`` from its verified bytes, then each concept's method, checked."""
        data = read_artifact(self._bundle_dir, manifest, relpath)
        check_pte_identifier(data, relpath)
        # a native abort in ExecuTorch's loader must not take this process down with it
        probe_program(data, relpath, list(methods.values()), tuple(self._io[0].shape), data_path)
        try:
            program = runtime.load_program(data, data_path=data_path)
            names = set(program.method_names)
        except Exception as e:  # RuntimeError from the loader on a corrupted program
            raise ArtifactFormatError(f"ExecuTorch cannot load {relpath} ({library_reason(e)})", file=relpath) from None
        self._programs.append(program)
        for concept, method in methods.items():
            if method not in names:
                raise InterfaceMismatchError(
                    f"{relpath} has no method {method!r} (concept {concept!r}); it has {sorted(names)}",
                    file=relpath,
                    field="targets.executorch.methods",
                )
            where = f"{relpath}:{method}"
            try:
                loaded = program.load_method(method)
                meta = loaded.metadata
            except Exception as e:
                raise ArtifactFormatError(
                    f"ExecuTorch cannot load method {where} ({library_reason(e)})", file=relpath
                ) from None
            check_method_meta(meta, where, relpath, self._io)
            self._methods[concept] = (loaded, relpath, method)

    def _load_mix(self, relpath: str, name: str, count: int) -> tuple[object, str, str]:
        """The program's mix method: (image, weights (count,)) -> edited, checked."""
        program = self._programs[-1]
        where = f"{relpath}:{name}"
        if name not in set(program.method_names):
            raise InterfaceMismatchError(
                f"{relpath} has no mix method {name!r}", file=relpath, field="targets.executorch.mix"
            )
        try:
            loaded = program.load_method(name)
            meta = loaded.metadata
            counts = (meta.num_inputs(), meta.num_outputs())
            described = (
                [(list(meta.input_tensor_meta(i).sizes()), meta.input_tensor_meta(i).dtype()) for i in range(2)]
                + [(list(meta.output_tensor_meta(0).sizes()), meta.output_tensor_meta(0).dtype())]
                if counts == (2, 1)
                else []
            )
        except Exception as e:
            raise ArtifactFormatError(
                f"ExecuTorch cannot load method {where} ({library_reason(e)})", file=relpath
            ) from None
        want = [(list(self._io[0].shape), _FLOAT32), ([count], _FLOAT32), (list(self._io[1].shape), _FLOAT32)]
        if described != want:
            raise InterfaceMismatchError(
                f"{where} takes/returns {described or counts}, expected image, weights [{count}] -> edited (float32)",
                file=relpath,
                field="targets.executorch.mix",
            )
        return loaded, relpath, name

    def check_mix(self, mix: ConceptMix) -> None:
        """Raise :class:`MixError` unless this export can run ``mix``."""
        if self._mix is None:
            why = (
                "merged mode bakes each concept into its own method: open the bundle with concept_mode='separate'"
                if self.concept_mode == "merged"
                else "this ExecuTorch export has no mix method (a bundle without a neutral concept, an int8 "
                "or shared-.ptd export): re-export fp32 --executorch-layout program from a bundle with one"
            )
            raise MixError(f"strength and blending need the mix method; {why}")

    def run_mix(self, x: np.ndarray, mix: ConceptMix) -> np.ndarray:
        """(1, 3, S, S) float32 in [-1, 1] -> same shape, edited with a strength or blend."""
        import torch

        self.check_mix(mix)
        method, relpath, name, order = self._mix
        weights = mix.as_dict()
        w = torch.tensor([float(weights.get(c, 0.0)) for c in order], dtype=torch.float32)
        if len(weights) > 0 and set(weights) - set(order):
            raise MixError(f"the mix method has no weight for {sorted(set(weights) - set(order))}")
        try:
            with self._lock:
                out = method.execute([torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), w])
            y = out[0].numpy()
        except Exception as e:
            raise ArtifactFormatError(f"{relpath}:{name} failed to run ({library_reason(e)})", file=relpath) from None
        return checked_output(y, self._io[1], relpath, mix.label())

    def activate(self, concept: str) -> None:
        if concept not in self._methods:
            raise BundleError(f"concept {concept!r} has no ExecuTorch method in this bundle")

    def run(self, x: np.ndarray, concept: str) -> np.ndarray:
        import torch

        method, relpath, name = self._methods[concept]
        where = f"{relpath}:{name}"
        try:
            with self._lock:
                out = method.execute([torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))])
            y = out[0].numpy()
        except Exception as e:  # RuntimeError from a method whose program is corrupted
            raise ArtifactFormatError(f"{where} failed to run ({library_reason(e)})", file=relpath) from None
        return checked_output(y, self._io[1], relpath, concept)
