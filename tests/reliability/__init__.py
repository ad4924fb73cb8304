"""Reliability harness: fuzzed bundles, concurrent concept swaps, bad images, killed exports.

Run it from the repository root (``make fuzz`` does)::

    .venv/bin/python -m tests.reliability --out docs/reliability.md [--scale 0.05]

Each section is a module with ``run(work_dir: pathlib.Path, scale: float = 1.0) -> dict``
returning ``{"title": str, "markdown": str, "failures": int}``; ``scale`` shrinks the
number of cases (1.0 is the size the report's claims are made at). Sections:

- ``bundles``: >= 10,000 mutated bundles (ONNX and ExecuTorch), each opened, edited and
  verified in a crash- and hang-safe worker pool, every outcome classified;
- ``stress``: 8 threads editing while concepts are swapped, bit-exact against a
  single-threaded reference, on ONNX Runtime and ExecuTorch;
- ``images`` and ``kills`` (when present): bad images, SIGKILLed exports.

The bundle fuzzer's parts: ``cases.py`` (what a case is, how it is laid out on disk),
``mutations.py`` / ``paths.py`` / ``content.py`` / ``valid.py`` (the mutators, each deciding
validity by construction), ``pool.py`` (the crash- and hang-safe worker pool),
``bundles.py`` (registry, classification, the section), ``report.py`` (its Markdown);
``sources.py`` holds the source bundles (and the cached ExecuTorch export) and photos.

The package is also importable as ``reliability`` (pytest puts ``tests/`` on sys.path),
which is how ``tests/test_fuzz_bundles.py`` reaches the mutator; modules here only use
relative imports so both names work.
"""
