"""Known-harmless noise of third-party libraries, filtered where it arises.

A newcomer reads a log line on stderr as a problem with their install. The lines filtered
here are not: each is one exact message (never a whole warning category or logger), listed
with the reason it is harmless, so anything else a library says still reaches the user.

- :func:`quiet_library_logs`: Python ``logging`` filters, installed before ``torchao`` /
  ``executorch`` / ``coremltools`` are imported (cheap; imports nothing);
- :func:`quiet_library_warnings` / :func:`library_warnings_filtered`: library-internal
  deprecation warnings, by message;
- :func:`native_stderr_filtered`: lines that native code (ExecuTorch's C++ runtime) writes
  straight to file descriptor 2, captured around the call that writes them; the lines not
  listed are written back to stderr.
- :func:`start_executorch_threadpool`: the pool created with those lines filtered, so
  that later loads anywhere (export parity, runtime) print nothing;
- :func:`coreml_progress`: Core ML's tqdm bars ("Converting PyTorch Frontend ==> MIL Ops",
  "Running MIL ... pipeline") routed to pocketgan's own progress callback.

Standard library only: the runtime may use it without torch.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import threading
from typing import Callable, Iterable, Iterator

# logger name -> messages of that logger that say nothing a user can act on. A logger's
# filters see only the records it creates itself, so each name is the exact module logger.
HARMLESS_LOG_MESSAGES: dict[str, tuple[str, ...]] = {
    # torchao's import tries to load its CUDA / CPython-3.10 kernel libraries (_C_mxfp8,
    # _C_cutlass_90a) and logs each one this CPU-only Python 3.11 install cannot load; the
    # CPU quantisation paths that ExecuTorch and the int8 export use do not need them.
    "torchao": (r"Failed to load .*torchao[/\\]_C",),
    # Triton (GPU kernels) is not part of a CPU install; nothing here uses torchao's intmm.
    "torchao.kernel.intmm": (r"Detected no triton",),
    # torchao (imported by executorch) registers Enums as pytree constants, which torch 2.13
    # deprecates; torchao's to change, nothing a pocketgan user can do.
    "torch.utils._pytree": (r"is an Enum subclass and is now natively supported by torch\.compile",),
    # the ONNX exporter lists torchvision's operators it cannot register; pocketgan's
    # models use none of them.
    "torch.onnx._internal.exporter._registration": (r"torchvision is not installed\. Skipping torchvision::",),
    # diffusers' and transformers' imports (the diffusion teacher): no torchvision, so the
    # CLIP / SigLIP image processors fall back to their PIL versions, which pocketgan's
    # pipelines do not use (no safety checker, no image encoder); and diffusers' torchao
    # quantizer cannot import torchao's CUDA tensor types, which no pocketgan pipeline loads.
    "transformers.utils.import_utils": (r"^`\w+ImageProcessor` requires torchvision \(not installed\)",),
    "diffusers.quantizers.torchao.torchao_quantizer": (r"^Unable to import `torchao` Tensor objects",),
    # coremltools on Linux: no Core ML framework to run models (conversion works; pocketgan
    # runs Core ML only on macOS), no scikit-learn converter (unused), and torch newer than
    # it was tested with (every export is parity-checked against PyTorch instead).
    "coremltools": (
        r"^Failed to load _ML\w+Proxy: No module named 'coremltools\.libcoremlpython'",
        r"^scikit-learn version \S+ is not supported",
        r"^Torch version \S+ has not been tested with coremltools",
    ),
}

# (category, message regex at the start of the warning text): library-internal
# deprecations that only the library's authors can act on
HARMLESS_WARNINGS: tuple[tuple[type[Warning], str], ...] = (
    (FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated"),  # torch's own run_decompositions
    (UserWarning, r"Deprecation: TorchAODType is deprecated"),  # torchao's import
    (DeprecationWarning, r"Function _TORCH_OPS_REGISTRY\.__contains__ is deprecated"),  # coremltools' converter
    (DeprecationWarning, r"`torch\.jit\.script_method` is deprecated"),
    (DeprecationWarning, r"(read_binary|read_text|open_text) is deprecated\. Use files\(\) instead"),  # executorch
    (Warning, r"This API is experimental and subject to change without notice"),  # executorch's pybindings import
)

# lines ExecuTorch's C++ runtime prints while it sizes its threadpool (cpuinfo probing ARM
# registers that an x86 machine does not have, and the reset it was asked for)
HARMLESS_NATIVE_LINES: tuple[str, ...] = (
    r"^\[cpuinfo_utils\.cpp:\d+\] (Reading file|Failed to open midr file) /sys/",
    r"^\[cpuinfo_utils\.cpp:\d+\] CPU info and manual query on # of cpus dont match\.",
    r"^\[threadpool\.cpp:\d+\] Resetting threadpool to \d+ threads\.",
)


class _DropMessages(logging.Filter):
    """Drops records whose message matches one of ``patterns``."""

    def __init__(self, patterns: Iterable[str]) -> None:
        super().__init__()
        self.patterns = [re.compile(p) for p in patterns]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(p.search(message) for p in self.patterns)


def quiet_library_logs() -> None:
    """Install the ``HARMLESS_LOG_MESSAGES`` filters on their loggers (idempotent).

    A logger's own filters see every record it creates, whatever handlers torch's logging
    set-up adds later, so installing them before the import that logs is enough.
    """
    for name, patterns in HARMLESS_LOG_MESSAGES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) for f in logger.filters):
            logger.addFilter(_DropMessages(patterns))


def quiet_library_warnings() -> None:
    """Ignore the ``HARMLESS_WARNINGS`` (by category and message; every other warning of
    the same category still shows). Process-wide, like any ``warnings`` filter: call it
    where the libraries are imported, or use :func:`library_warnings_filtered` around a call."""
    import warnings

    for category, message in HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)


@contextlib.contextmanager
def library_warnings_filtered() -> Iterator[None]:
    """Inside the block, the ``HARMLESS_WARNINGS`` are ignored (and nothing else is)."""
    import warnings

    with warnings.catch_warnings():
        quiet_library_warnings()
        yield


_fd_lock = threading.Lock()


@contextlib.contextmanager
def native_stderr_filtered(patterns: Iterable[str] = HARMLESS_NATIVE_LINES) -> Iterator[None]:
    """Capture what native code writes to file descriptor 2 inside the block; write back
    every line that matches none of ``patterns`` (regular expressions) when it ends.

    Other threads' stderr in the same window is captured and written back too, only later.
    """
    compiled = [re.compile(p) for p in patterns]
    with _fd_lock, tempfile.TemporaryFile() as capture:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [
                line
                for line in capture.read().decode(errors="replace").splitlines(keepends=True)
                if not any(p.search(line) for p in compiled)
            ]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


_patch_lock = threading.Lock()


def start_executorch_threadpool() -> int | None:
    """Create ExecuTorch's process-wide CPU threadpool (XNNPACK runs on it) now, with the
    lines its C++ code prints while creating it filtered; return its thread count (None
    without executorch: whoever needs it reports that). Later program and method loads
    print nothing. Imports torch."""
    try:
        import torch  # noqa: F401  (the pybindings link against libtorch)
        from executorch.extension.pybindings import portable_lib
    except ImportError:
        return None
    with native_stderr_filtered():
        return portable_lib._threadpool_get_thread_count()


# coremltools modules that call tqdm by a module-level name, and that name
_COREML_TQDM = (
    ("coremltools.converters.mil.frontend.torch.ops", "_tqdm"),
    ("coremltools.converters.mil.mil.passes.pass_pipeline", "tqdm"),
)


@contextlib.contextmanager
def coreml_progress(progress: Callable[[str], None] | None) -> Iterator[None]:
    """Inside the block, Core ML's conversion progress bars are not drawn; each bar's title
    ("Converting PyTorch Frontend ==> MIL Ops", ...) goes to ``progress`` once instead
    (``None``: nowhere).

    coremltools has no option for this (apple/coremltools#1815): it calls tqdm through a
    name in each converter module, which is swapped for the block's duration.
    """
    import importlib

    def bar(iterable=None, desc: str | None = None, **_ignored):
        if desc and progress is not None:
            progress(f"Core ML: {desc}")
        return iterable if iterable is not None else _NoBar()

    with _patch_lock:
        modules = [(importlib.import_module(m), name) for m, name in _COREML_TQDM]
        saved = [getattr(module, name) for module, name in modules]
        for module, name in modules:
            setattr(module, name, bar)
    try:
        yield
    finally:
        with _patch_lock:
            for (module, name), original in zip(modules, saved):
                setattr(module, name, original)


class _NoBar:
    """What a tqdm bar without an iterable offers coremltools: ``update`` and ``close``."""

    def update(self, *_args) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *_exc) -> None:
        pass
