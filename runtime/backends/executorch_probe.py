"""Load an untrusted ``.pte`` once in a child process before loading it in this one.

Some corruptions of a program's XNNPACK payload that keep the manifest's checksum
consistent (a re-hashed bundle) make ExecuTorch's native loader abort the whole process
(an ``ET_CHECK`` in ``XNNCompiler.cpp``), which no ``try`` can catch. So the backend first
loads the program, and runs each method once, in a short-lived child: if the child dies by
a signal or hangs, the bundle is refused with a typed error and this process never touches
those bytes natively. A program that passed is remembered by its digest, so each distinct
program costs one probe (about 2-4 s, mostly importing ExecuTorch) per process.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from pocketgan.runtime.errors import ArtifactFormatError

#: Seconds a probe may take (import + load + one run of every method) before it counts as a hang.
PROBE_TIMEOUT_S = 300
_passed: set[str] = set()
_passed_lock = threading.Lock()

# Runs in the child with only the standard library and ExecuTorch: argv = program path,
# external data path ("" for none), input shape "1,3,S,S", then the method names.
_CHILD = r"""
import sys
import torch
from executorch.runtime import Runtime
pte, ptd, shape = sys.argv[1], sys.argv[2] or None, [int(d) for d in sys.argv[3].split(",")]
program = Runtime.get().load_program(open(pte, "rb").read(), data_path=ptd)
for name in sys.argv[4:]:
    if name in program.method_names:
        program.load_method(name).execute([torch.zeros(shape)])
"""


def _digest(data: bytes, data_path: Path | None) -> str:
    h = hashlib.sha256(data)
    if data_path is not None:
        h.update(Path(data_path).read_bytes())
    return h.hexdigest()


def probe_program(
    data: bytes, relpath: str, methods: list[str], input_shape: tuple[int, ...], data_path: Path | None = None
) -> None:
    """Raise :class:`ArtifactFormatError` if loading ``data`` (the verified bytes of
    ``relpath``) or running one of ``methods`` on zeros of ``input_shape`` kills or hangs a
    child process. A Python-level failure in the child is left to the in-process load,
    which reports it as a typed error with the library's reason."""
    digest = _digest(data, data_path)
    with _passed_lock:
        if digest in _passed:
            return
    with tempfile.TemporaryDirectory(prefix="pocketgan-probe-") as tmp:
        pte = Path(tmp) / "program.pte"
        pte.write_bytes(data)
        args = [str(pte), str(data_path or ""), ",".join(map(str, input_shape)), *methods]
        try:
            child = subprocess.run(
                [sys.executable, "-I", "-c", _CHILD, *args], capture_output=True, timeout=PROBE_TIMEOUT_S
            )
        except subprocess.TimeoutExpired:
            raise ArtifactFormatError(
                f"{relpath}: ExecuTorch did not finish loading it within {PROBE_TIMEOUT_S} s (a probe process hung)",
                file=relpath,
            ) from None
    if child.returncode < 0 or child.returncode > 1:  # a signal, or an abort() in native code (134)
        how = f"signal {-child.returncode}" if child.returncode < 0 else f"exit status {child.returncode}"
        raise ArtifactFormatError(
            f"{relpath}: ExecuTorch's native loader crashed on this program in a probe process ({how}); "
            "the program is corrupted",
            file=relpath,
        )
    if child.returncode == 0:
        with _passed_lock:
            _passed.add(digest)
