"""``python -m pocketgan``: the same as the ``pocketgan`` command."""

import sys

from pocketgan.cli import main

sys.exit(main())
