"""The ``pocketgan`` command line: every subcommand's parser, one module per group.

- :mod:`~pocketgan.cli.bundle`: ``info``, ``costs``, ``export``, ``edit``, ``demo``;
- :mod:`~pocketgan.cli.training`: ``distill-data``, ``train-base``, ``train-concept``, ``study``, ``evaluate``;
- :mod:`~pocketgan.cli.bench`: ``bench``;
- :mod:`~pocketgan.cli.serve`: ``serve-demo``.

Each command parses arguments and calls a typed function (``run_export``, ``Runtime``,
``run_bench``, ...); no logic lives here. Flags that a config dataclass describes are built
from its fields (:mod:`~pocketgan.cli.flags`), when the command runs: nothing heavy (torch)
is imported before a command needs it. ``python -m pocketgan.bench`` and the other module
entry points run the same parsers through :func:`command_main`.
"""

from __future__ import annotations

import argparse
import os
import sys

from pocketgan.cli import bench, bundle, generate, generation, serve, training
from pocketgan.cli.common import CommandParser
from pocketgan.runtime.errors import PocketganError

# each module's register(subparsers) adds its commands, in this order in --help
COMMAND_GROUPS = (bundle, training, generation, generate, serve, bench)


def build_parser() -> argparse.ArgumentParser:
    p = CommandParser(
        prog="pocketgan", description="Distil, export and run tiny image-editing GANs with hot-swappable concepts."
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(sub)
    return p


def run(args: argparse.Namespace, prog: str | None = None) -> int:
    """Run a parsed command: errors a user can cause print one line ("PROG: error: ...",
    PROG by default ``pocketgan COMMAND``) and return 2."""
    from pocketgan._quiet import quiet_library_logs, quiet_library_warnings

    quiet_library_logs()  # before any command imports torchao, executorch or coremltools
    quiet_library_warnings()
    prog = prog or f"pocketgan {args.command}"
    try:
        return args.func(args)
    except BrokenPipeError:  # `pocketgan info | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (PocketganError, ValueError, OSError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        said = getattr(args, "interrupted", "nothing half-written was left in place")
        print(f"{prog}: interrupted; {said}", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


def command_main(command: str, argv: list[str] | None = None) -> int:
    """``python -m MODULE [options]`` as ``pocketgan COMMAND [options]``: the same parser,
    usage line and error handling."""
    return main([command, *(sys.argv[1:] if argv is None else argv)])
