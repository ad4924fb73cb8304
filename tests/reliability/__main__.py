"""``python -m tests.reliability``: run every reliability section and write the report.

    .venv/bin/python -m tests.reliability --out docs/reliability.md            # make fuzz
    .venv/bin/python -m tests.reliability --scale 0.02 --only bundles stress   # a quick look

Exits 1 when any section counted a failure (the report is written either way).
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import importlib.util
import os
import platform
import sys
import time
from pathlib import Path

from pocketgan.atomic import atomic_write_bytes

SECTIONS = ("bundles", "stress", "images", "kills")


def _module(name: str):
    """The section's module, or None when no helper has written it (yet)."""
    full = f"{__package__}.{name}"
    return importlib.import_module(full) if importlib.util.find_spec(full) is not None else None


def _host() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{os.cpu_count()} CPU cores ({cpu}), Python {platform.python_version()}, {platform.system()}"


def _document(args, sections: list[dict], seconds: float) -> str:
    command = " ".join(["python -m tests.reliability", *sys.argv[1:]])
    scale_note = (
        ""
        if args.scale == 1.0
        else (f" **Scale {args.scale}: a reduced run; the claims of issue 17 are made at scale 1.0 (`make fuzz`).**")
    )
    lines = [
        "# Reliability",
        "",
        "Every bad bundle or image must get a typed `PocketganError`, never a crash, a hang or a wrong picture; "
        "concurrent edits must be bit-exact; a killed export must leave the old or the new bundle and no litter. "
        f"This report is written by `make fuzz` (`.venv/bin/{command}`).",
        "",
        f"Run on {datetime.date.today().isoformat()}, {_host()}, {seconds / 60:.1f} min in all.{scale_note}",
        "",
        "| section | failures | minutes |",
        "|---|---:|---:|",
    ]
    lines += [f"| {s['title']} | {s['failures']} | {s['seconds'] / 60:.1f} |" for s in sections]
    for s in sections:
        lines += ["", f"## {s['title']}", "", s["markdown"].rstrip()]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="write the report here (e.g. docs/reliability.md)")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the full case counts (default 1.0)")
    parser.add_argument("--work", type=Path, default=Path("out/reliability"), help="scratch directory (cached)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    sections, t0 = [], time.monotonic()
    for name in args.only:
        module = _module(name)
        if module is None:
            print(f"== {name}: not present, skipped", flush=True)
            continue
        print(f"== {name} (scale {args.scale})", flush=True)
        start = time.monotonic()
        result = module.run(args.work / name, scale=args.scale)
        result["seconds"] = time.monotonic() - start
        sections.append(result)
        print(f"== {name}: {result['failures']} failures, {result['seconds']:.0f} s", flush=True)
    text = _document(args, sections, time.monotonic() - t0)
    if args.out is not None:
        atomic_write_bytes(args.out, text.encode("utf-8"))
        print(f"wrote {args.out}")
    else:
        print(text)
    failures = sum(s["failures"] for s in sections)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
