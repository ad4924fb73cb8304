"""``python -m pocketgan.bench [options]``: the same as ``pocketgan bench [options]``."""

import sys


def main(argv: list[str] | None = None) -> int:
    from pocketgan.cli import command_main

    return command_main("bench", argv)


if __name__ == "__main__":
    sys.exit(main())
