"""The bundle fuzzer's section of docs/reliability.md, from its per-case results."""

from __future__ import annotations

import os
from collections import Counter

from . import valid
from .cases import REJECT

MEANING = {
    "typed-rejected": "a `PocketganError` refused the bundle",
    "accepted-valid": "a mutation harmless by construction opened, edited (bit-identically where the "
    "mutation cannot change pixels) and verified",
    "accepted-undecided": "a mutation the fuzzer cannot judge (random re-hashed bit flips and appended bytes, a "
    "symlink that stays inside the bundle, a defect in a target this backend never reads) "
    "opened and edited",
    "accepted-INVALID": "**failure**: a bundle broken by construction opened and edited, or `verify_bundle` "
    "passed a defect visible without loading a model",
    "rejected-valid": "**failure**: a harmless mutation was refused",
    "wrong-output": "**failure**: a harmless mutation edited differently from the unmutated bundle",
    "untyped": "**failure**: an exception that is not a `PocketganError`",
    "crash": "**failure**: the worker process died (signal or abort in a native library)",
    "hang": "**failure**: no answer within the per-case timeout",
}

SHORT = {
    "typed-rejected": "typed",
    "accepted-valid": "valid",
    "accepted-undecided": "undecided",
    "accepted-INVALID": "INVALID",
    "rejected-valid": "rej-valid",
    "wrong-output": "wrong-out",
    "untyped": "untyped",
    "crash": "crash",
    "hang": "hang",
}


def _table(header: list[str], rows: list[list], text_columns: int = 1) -> list[str]:
    rule = "|" + "|".join("---" if i < text_columns else "---:" for i in range(len(header))) + "|"
    lines = ["| " + " | ".join(header) + " |", rule]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def _class_rows(results: list[dict], outcomes: tuple) -> list[list]:
    by_class: dict[str, Counter] = {}
    sources: dict[str, set] = {}
    for r in results:
        by_class.setdefault(r["cls"], Counter())[r["outcome"]] += 1
        sources.setdefault(r["cls"], set()).add(r["source"])
    return [
        [f"`{cls}`", "+".join(sorted(sources[cls])), sum(c.values())] + [c.get(o, 0) or "" for o in outcomes]
        for cls, c in sorted(by_class.items())
    ]


def _what_happened(r: dict) -> str:
    if r["outcome"] == "accepted-INVALID":
        return "opened and edited" if r["open"] == "ok" else "refused when opened, but `verify_bundle` passed it"
    for step in ("open", "verify"):
        if r[step] in ("untyped", "crash", "hang") or (r["outcome"] == "rejected-valid" and r[step] == "typed"):
            where = {"open": "open+edit", "verify": "verify_bundle"}[step]
            return f"{where}: `{r[step + '_error'][:200]}`"
    return r["outcome"]


def _examples(results: list[dict], failures: tuple, cmd: str) -> list[str]:
    seen: Counter = Counter()
    lines = []
    for r in results:
        key = (r["cls"], r["outcome"])
        if r["outcome"] in failures and seen[key] < 2:
            seen[key] += 1
            lines.append(
                f"- `{r['cls']}` {r['outcome']} ({r['source']}, `{cmd} --case {r['index']}`): "
                f"{r['detail']}; {_what_happened(r)}"
            )
    return lines


def _load() -> str:
    """The 1-minute load average: other work on the machine stretches the wall times."""
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "unknown"


def _why_valid() -> list[str]:
    """The bullet list of valid.py's docstring, one line per bullet, in Markdown."""
    items: list[str] = []
    for line in valid.__doc__.split("Why each is valid:")[1].strip().splitlines():
        line = line.strip().replace("``", "`")
        if line.startswith("- ") or not items:
            items.append(line)
        else:
            items[-1] += " " + line
    return items


def markdown(
    results: list[dict], *, seconds: float, processes: int, seed: int, outcomes: tuple, failures: tuple
) -> str:
    total = Counter(r["outcome"] for r in results)
    per_source = Counter(r["source"] for r in results)
    timed = [r["seconds"] for r in results if r["seconds"] is not None]
    cpu = [r.get("cpu_seconds") for r in results if r.get("cpu_seconds") is not None]
    lines = [
        f"{len(results):,} mutated bundles ({', '.join(f'{n:,} {s}' for s, n in sorted(per_source.items()))}), "
        f"{processes} worker processes, seed {seed}: {seconds / 60:.1f} min wall "
        f"({sum(timed) / max(len(timed), 1):.2f} s wall and {sum(cpu) / max(len(cpu), 1):.2f} s CPU per case in a "
        f"worker; load average {_load()} at the end). Each case is opened with "
        "`open_bundle(path, backend=...)` on its source's backend, edits one 24 x 32 photo with the mutated "
        "concept, and is checked with `verify_bundle(path)`.",
        "",
        "Sources: the embedded default bundle (ONNX) and an ONNX + ExecuTorch export of it "
        "(`pocketgan export --targets onnx executorch`), opened on ExecuTorch.",
        "",
    ]
    lines += _table(["outcome", "meaning", "cases"], [[o, MEANING[o], total.get(o, 0)] for o in outcomes], 2)
    lines += [
        "",
        "Per mutation class (validity is decided by the mutator from what it changed, never from the "
        "outcome; `tests/reliability/` documents each class):",
        "",
    ]
    lines += _table(["class", "sources", "cases"] + [SHORT[o] for o in outcomes], _class_rows(results, outcomes), 2)
    loose = sum(
        1 for r in results if r["expect"] == REJECT and not r["static"] and r["open"] == "typed" and r["verify"] == "ok"
    )
    lines += [
        "",
        f"`verify_bundle` is not required to load models or programs: of the broken bundles whose defect "
        f"only a loaded model shows (io shapes and names, re-hashed model and program damage), {loose} "
        "passed `verify_bundle` and were refused when opened.",
        "",
    ]
    late = sum(1 for r in results if r.get("step") == "edit" and r["open"] == "typed")
    lines[-1:-1] = [f"{late} bundles opened and were refused only by the first `edit()`."] if late else []
    lines += ["What the fuzzer accepts as valid, and why:", ""]
    lines += _why_valid()
    lines += [
        "- `valid.adapter`: an adapter re-written with the same tensor names, shapes and dtypes but other "
        "values (or another tensor order): another concept's weights, as a retrained concept would have.",
        "",
    ]
    bad = _examples(results, failures, "python -m tests.reliability.bundles" + (f" --seed {seed}" if seed else ""))
    lines += (
        (["Failures (two examples per class and outcome; the command rebuilds the bundle and reruns it):", ""] + bad)
        if bad
        else ["No failures."]
    )
    return "\n".join(lines) + "\n"
