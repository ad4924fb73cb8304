"""``python -m pocketgan.bench [options]``: the same as ``pocketgan bench [options]``."""

import argparse
import sys

from pocketgan.bench.api import add_bench_command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pocketgan")  # usage reads "pocketgan bench ...", as the CLI
    sub = parser.add_subparsers(dest="command", required=True)
    add_bench_command(sub)
    args = parser.parse_args(["bench", *(sys.argv[1:] if argv is None else argv)])
    try:
        return args.func(args)
    except Exception as e:  # PocketganError, ValueError, OSError: a message, not a traceback
        from pocketgan.runtime.errors import PocketganError

        if not isinstance(e, (PocketganError, ValueError, OSError)):
            raise
        print(f"pocketgan bench: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
