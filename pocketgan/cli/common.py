"""What every command module of the CLI shares: the parser class, progress lines, the
toolchain check."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Callable

from pocketgan.runtime.errors import PocketganError

_STARTED = time.perf_counter()


class CommandParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that can add flags on first use (:func:`defer`).

    A command whose flags come from a dataclass in a module that imports torch builds them
    only when that command is parsed (or its help printed), so ``pocketgan info`` and
    ``pocketgan edit`` never import torch.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._deferred: list[Callable[[argparse.ArgumentParser], None]] = []

    def _build(self) -> None:
        while self._deferred:
            try:
                self._deferred.pop(0)(self)
            except ImportError as e:  # the flags' dataclass lives in a toolchain module
                self.exit(
                    2,
                    f"{self.prog}: error: needs the toolchain ({e.name} is not installed): "
                    "pip install 'pocketgan[toolchain]'\n",
                )

    def parse_known_args(self, args=None, namespace=None):
        self._build()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self._build()
        return super().format_help()

    def format_usage(self) -> str:
        self._build()
        return super().format_usage()


def defer(parser: argparse.ArgumentParser, build: Callable[[argparse.ArgumentParser], None]) -> None:
    """Run ``build(parser)`` when ``parser`` is first used (at once on a plain parser)."""
    if isinstance(parser, CommandParser):
        parser._deferred.append(build)
    else:
        build(parser)


def progress(message: str) -> None:
    """One progress line on stderr, stamped with the seconds since start."""
    print(f"[{time.perf_counter() - _STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


def need_toolchain(command: str) -> None:
    """Raise a one-line error when the toolchain extra (torch) is not installed."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise PocketganError(f"`pocketgan {command}` needs the toolchain: pip install 'pocketgan[toolchain]'") from None
