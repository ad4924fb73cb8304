"""The bundle fuzzer: mutate the default bundle's ONNX and ExecuTorch exports, open, edit
and verify every mutant in a crash- and hang-safe pool, and classify what happened.

Outcomes (per case; ``cases.py`` says what ``expect`` and ``static`` mean):

- ``typed-rejected``: a ``PocketganError`` refused a bundle the mutator broke (or could not judge);
- ``accepted-valid``: a mutation that is harmless by construction opened, edited and verified;
- ``accepted-undecided``: an ``either`` mutation (e.g. a re-hashed bit flip in weight data,
  or a defect in a target this backend does not read) opened and edited;
- failures: ``accepted-INVALID`` (a broken bundle opened and edited, or ``verify_bundle``
  passed a defect it can see), ``rejected-valid`` (a harmless mutation was refused),
  ``wrong-output`` (a harmless mutation edited differently), ``untyped`` (any exception that is
  not a ``PocketganError``), ``crash`` (the worker process died), ``hang`` (past the timeout).

Rebuild and rerun one case (it prints the result and keeps the bundle)::

    .venv/bin/python -m tests.reliability.bundles --case 123 [--seed 0] [--work out/reliability/bundles]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import time
import traceback
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from . import content, mutations, paths, valid
from .cases import ACCEPT, CASES_DIR, EITHER, REJECT, SOURCES_DIR, Source, materialize
from .pool import CrashSafePool

CASES = 10_000
TIMEOUT_S = 120.0
FAILURES = ("accepted-INVALID", "rejected-valid", "wrong-output", "untyped", "crash", "hang")
OUTCOMES = ("typed-rejected", "accepted-valid", "accepted-undecided") + FAILURES
BOTH, ONNX, ET = ("onnx", "executorch"), ("onnx",), ("executorch",)

# name -> (mutator, sources it applies to, relative weight, safe to run in-process)
REGISTRY = {
    "manifest.int_as_float": (mutations.int_type("float"), BOTH, 2, True),
    "manifest.int_as_bool": (mutations.int_type("bool"), BOTH, 1, True),
    "manifest.int_as_string": (mutations.int_type("string"), BOTH, 1, True),
    "manifest.int_as_null": (mutations.int_type("null"), BOTH, 1, True),
    "manifest.int_as_list": (mutations.int_type("list"), BOTH, 1, True),
    "manifest.huge_int": (mutations.int_value("huge_int"), BOTH, 2, True),
    "manifest.negative_int": (mutations.int_value("negative_int"), BOTH, 1, True),
    "manifest.long_int": (mutations.int_value("long_int"), BOTH, 1, True),
    "manifest.weird_number": (mutations.int_value("weird_number"), BOTH, 1, True),
    "manifest.format_version": (mutations.format_version, BOTH, 1, True),
    "manifest.deep_nesting": (mutations.deep_nesting, BOTH, 1, True),
    "manifest.trailing_newline": (mutations.trailing_newline, BOTH, 2, True),
    "manifest.unknown_key": (mutations.unknown_key, BOTH, 1, True),
    "manifest.missing_key": (mutations.missing_key, BOTH, 2, True),
    "manifest.concept_inputs": (mutations.concept_inputs, BOTH, 2, True),
    "manifest.concept_input_dtype": (mutations.concept_dtype, BOTH, 1, True),
    "manifest.io_shape": (mutations.io_shape, BOTH, 2, True),
    "manifest.io_range": (mutations.io_range, BOTH, 1, True),
    "manifest.io_other": (mutations.io_other, BOTH, 1, True),
    "manifest.references": (mutations.references, BOTH, 1, True),
    "manifest.bytes": (mutations.manifest_bytes, BOTH, 1, True),
    "manifest.oversize": (mutations.manifest_oversize, BOTH, 0.2, False),
    "path.absolute": (paths.absolute, BOTH, 1, True),
    "path.dotdot": (paths.dotdot, BOTH, 1, True),
    "path.symlink_out": (paths.symlink_out, BOTH, 3, True),
    "path.symlink_in": (paths.symlink_in, BOTH, 1, True),
    "path.wrong_kind": (paths.wrong_kind, BOTH, 2, True),
    "path.missing": (paths.missing, BOTH, 1, True),
    "path.not_a_file": (paths.not_a_file, BOTH, 1, False),  # a named pipe blocks a naive reader
    "path.unlisted": (paths.unlisted, BOTH, 1, True),
    "path.noncanonical": (paths.noncanonical, BOTH, 1, True),
    "content.plain": (content.plain, BOTH, 3, True),
    "content.rehashed": (content.rehashed, BOTH, 3, True),
    "content.adapter": (content.adapter, ONNX, 4, True),
    "content.upsampler": (content.upsampler, BOTH, 2, True),
    "content.adapter_fp16": (content.adapter_dtype, ONNX, 1, True),
    "content.onnx_model": (content.onnx_model, ONNX, 2, True),
    "content.pte": (content.pte, ET, 4, False),  # a broken program may take ExecuTorch down
    "valid.text": (valid.text, BOTH, 1, True),
    "valid.reordered": (valid.reordered, BOTH, 1, True),
    "valid.metadata_numbers": (valid.metadata_numbers, BOTH, 1, True),
    "valid.metadata_key": (valid.metadata_key, BOTH, 1, True),
    "valid.optional_removed": (valid.optional_removed, BOTH, 1, True),
    "valid.explicit_dtype": (valid.explicit_dtype, BOTH, 0.5, True),
    "valid.relabel": (valid.relabel, BOTH, 1, True),
}


def schedule() -> list[tuple[str, str]]:
    """(class, source) pairs, each as often as its weight; case i is entry i mod len.

    Every pair comes once first, so any run of at least ``len(pairs())`` cases covers them all.
    """
    rng = random.Random(0)
    first, rest = pairs(), []
    for name, source in first:
        rest += [(name, source)] * (max(1, round(REGISTRY[name][2] * 5)) - 1)
    rng.shuffle(first)
    rng.shuffle(rest)
    return first + rest


def pairs() -> list[tuple[str, str]]:
    return [(name, source) for name, (_, sources, _, _) in REGISTRY.items() for source in sources]


def make_case(src: Source, cls: str, seed: int, index: int):
    """The mutation of case ``index``: a pure function of (class, source, seed, index)."""
    return REGISTRY[cls][0](src, random.Random(f"{seed}:{index}:{cls}:{src.name}"))


def _attempt(fn) -> tuple[str, str, object]:
    """("ok" | "typed" | "untyped", what was raised, the return value)."""
    from pocketgan.runtime import PocketganError

    try:
        return "ok", "", fn()
    except PocketganError as e:
        return "typed", f"{type(e).__name__}: {str(e)[:300]}", None
    except BaseException as e:  # noqa: BLE001 - every other exception is what we are counting
        if isinstance(e, KeyboardInterrupt):
            raise
        frame = traceback.extract_tb(e.__traceback__)[-1]
        where = f"{Path(frame.filename).name}:{frame.lineno}"
        return "untyped", f"{type(e).__name__} at {where}: {str(e)[:300]}", None


def check(bundle: Path, backend: str, concept: str, photo: np.ndarray) -> dict:
    """Open ``bundle`` on ``backend`` and edit ``photo`` with ``concept``; then verify it."""
    from pocketgan.runtime import open_bundle, verify_bundle

    opened = _attempt(lambda: open_bundle(bundle, backend=backend, threads=1))
    edited = _attempt(lambda: opened[2].edit(photo, concept=concept)) if opened[0] == "ok" else opened
    verified = _attempt(lambda: verify_bundle(bundle))
    return {
        "open": edited[0],
        "open_error": edited[1],
        "step": "edit" if opened[0] == "ok" else "open",
        "verify": verified[0],
        "verify_error": verified[1],
        "output": edited[2],
    }


def classify(expect: str, static: bool, same_output: bool, result: dict, reference: np.ndarray | None) -> str:
    """The outcome of one case from what was expected by construction and what happened."""
    if "untyped" in (result["open"], result["verify"]):
        return "untyped"
    opened, verified = result["open"] == "ok", result["verify"] == "ok"
    if expect == REJECT:
        return "accepted-INVALID" if opened or (static and verified) else "typed-rejected"
    if expect == ACCEPT:
        if not (opened and verified):
            return "rejected-valid"
        same = reference is None or np.array_equal(result["output"], reference)
        return "wrong-output" if same_output and not same else "accepted-valid"
    assert expect == EITHER, expect
    return "accepted-undecided" if opened and verified else "typed-rejected"


class Fuzzer:
    """Builds, runs and classifies cases; one per worker process (or in-process in tests)."""

    def __init__(self, work_dir: Path, seed: int = 0) -> None:
        from .sources import photos

        self.work_dir, self.seed = Path(work_dir), seed
        self.sources = {
            name: Source(name, self.work_dir / SOURCES_DIR / name)
            for name in BOTH
            if (self.work_dir / SOURCES_DIR / name).is_dir()
        }
        self.photo = photos()[0]
        self.schedule = schedule()
        self._reference: dict[tuple[str, str], np.ndarray] = {}

    def reference(self, source: str, concept: str) -> np.ndarray:
        key = (source, concept)
        if key not in self._reference:
            from pocketgan.runtime import open_bundle

            rt = open_bundle(self.sources[source].path, backend=source, threads=1)
            self._reference[key] = rt.edit(self.photo, concept=concept)
        return self._reference[key]

    def run_case(self, index: int, cls: str | None = None, source: str | None = None, keep: bool = False) -> dict:
        if cls is None:
            cls, source = self.schedule[index % len(self.schedule)]
        src = self.sources[source]
        t0, cpu0 = time.perf_counter(), time.process_time()
        case = make_case(src, cls, self.seed, index)
        concept = case.concept or src.concepts[0]
        bundle = self.work_dir / CASES_DIR / f"{index}"
        if bundle.exists():
            shutil.rmtree(bundle)
        try:
            materialize(src, case, bundle)
            result = check(bundle, source, concept, self.photo)
            reference = self.reference(source, concept) if case.same_output and result["open"] == "ok" else None
            outcome = classify(case.expect, case.static, case.same_output, result, reference)
        finally:
            if not keep:
                shutil.rmtree(bundle, ignore_errors=True)
        result.pop("output")
        return {
            "index": index,
            "source": source,
            **case.summary(),
            "outcome": outcome,
            **result,
            "seconds": round(time.perf_counter() - t0, 3),
            "cpu_seconds": round(time.process_time() - cpu0, 3),
        }

    def __call__(self, index: int) -> dict:
        return self.run_case(index)


def _worker_init(work_dir: str, seed: int) -> Fuzzer:
    """A worker's fuzzer, warmed up: the first case must not pay for importing ExecuTorch
    (and torch) under the per-case timeout."""
    fuzzer = Fuzzer(Path(work_dir), seed)
    for source in fuzzer.sources.values():
        fuzzer.reference(source.name, source.concepts[0])
    return fuzzer


def _lost(work_dir: Path, seed: int):
    """The result of a case whose worker crashed or hung (rebuilt here to say what it was)."""
    sched = schedule()
    sources: dict[str, Source] = {}

    def on_lost(index: int, kind: str, info: str) -> dict:
        cls, source = sched[index % len(sched)]
        shutil.rmtree(work_dir / CASES_DIR / f"{index}", ignore_errors=True)
        if source not in sources:
            sources[source] = Source(source, work_dir / SOURCES_DIR / source)
        summary = make_case(sources[source], cls, seed, index).summary()
        lost = {"open": kind, "open_error": info, "verify": kind, "verify_error": info}
        return {"index": index, "source": source, **summary, "outcome": kind, **lost, "seconds": None}

    return on_lost


def fuzz(work_dir: Path, cases: int, *, seed: int = 0, processes: int = 2, progress=print) -> list[dict]:
    """Run cases 0..cases-1 in a crash-safe pool; return every case's result."""
    from .sources import copy_sources

    work_dir = Path(work_dir)
    copies = copy_sources(work_dir)
    shutil.rmtree(work_dir / CASES_DIR, ignore_errors=True)
    (work_dir / CASES_DIR).mkdir(parents=True)
    pool = CrashSafePool(processes, _worker_init, (str(work_dir), seed), timeout=TIMEOUT_S, log_dir=str(work_dir))
    results, t0 = [], time.monotonic()
    with open(work_dir / "bundles.jsonl", "w") as log:
        for _, result in pool.run(range(cases), _lost(work_dir, seed)):
            results.append(result)
            log.write(json.dumps(result) + "\n")
            if len(results) % 500 == 0 or len(results) == cases:
                bad = sum(r["outcome"] in FAILURES for r in results)
                progress(f"  bundles: {len(results)}/{cases} cases, {bad} failures, {time.monotonic() - t0:.0f} s")
    from .sources import check_sources_intact

    check_sources_intact(copies)
    return sorted(results, key=lambda r: r["index"])


def tally(results: list[dict]) -> tuple[dict, dict]:
    """(class -> outcome -> count, (class, outcome) -> first few failing results)."""
    counts: dict[str, Counter] = defaultdict(Counter)
    examples: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in results:
        counts[r["cls"]][r["outcome"]] += 1
        if r["outcome"] in FAILURES and len(examples[r["cls"], r["outcome"]]) < 3:
            examples[r["cls"], r["outcome"]].append(r)
    return counts, examples


def run(work_dir: Path, scale: float = 1.0, *, seed: int = 0, processes: int = 2) -> dict:
    """The section of docs/reliability.md: ``CASES * scale`` cases (at least one of every class)."""
    from . import report

    cases = max(len(pairs()), round(CASES * scale))
    t0 = time.monotonic()
    results = fuzz(work_dir, cases, seed=seed, processes=processes)
    seconds = time.monotonic() - t0
    text = report.markdown(
        results, seconds=seconds, processes=processes, seed=seed, outcomes=OUTCOMES, failures=FAILURES
    )
    return {
        "title": "Fuzzed bundles",
        "markdown": text,
        "failures": sum(r["outcome"] in FAILURES for r in results),
        "cases": len(results),
        "seconds": seconds,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="rebuild and run one fuzz case (see tests/reliability/bundles.py)")
    parser.add_argument("--case", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path("out/reliability/bundles"), help="the bundles section's dir")
    args = parser.parse_args(argv)
    fuzzer = Fuzzer(args.work, args.seed)
    if not fuzzer.sources:
        from .sources import copy_sources

        copy_sources(args.work)
        fuzzer = Fuzzer(args.work, args.seed)
    result = fuzzer.run_case(args.case, keep=True)
    print(json.dumps(result, indent=2))
    print(f"bundle kept in {args.work / CASES_DIR / str(args.case)}")
    return int(result["outcome"] in FAILURES)


if __name__ == "__main__":
    raise SystemExit(main())
