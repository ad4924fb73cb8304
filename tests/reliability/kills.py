"""SIGKILL during bundle export: each kill leaves the old or the new bundle, verified, and the
next run leaves no stray (issue 17, "Kill tests"; the naming scheme: docs/atomic-writes.md).

``run(work_dir, scale)`` SIGKILLs fresh processes (their whole process group) two ways:

- **export**: ``pocketgan export --targets onnx --out DIR`` of the embedded default bundle
  over an older bundle at DIR. 60 % of the kills at stratified delays over the measured
  (warm) export time; 40 % once the export's manifest is in its staging tree, plus 0-100 ms (the
  commit: fsync, renames, deleting the old tree).
- **swap**: this file run as a script: ``atomic_directory`` over a copy of the exported
  bundle plus PAD_FILES small files (a wider delete window). Stratified delays: 25 % of
  the kills over the build, 25 % over the commit (fsync of the tree, swap, delete), 50 %
  from the moment its ready tree appears (the renames and the delete).

Every other run has RENAME_EXCHANGE disabled (the two-rename fallback swap). After each
kill, as left: DIR is the old or the new bundle byte for byte and passes ``verify_bundle``,
or (fallback swap only) DIR is missing with the complete new tree beside it as a ready tree,
which the next run must promote. The next run (the next kill's process: every
``atomic_directory`` starts with ``recover_directory``) must have removed every stray of
earlier runs whenever it got as far as its own staging tree. Each part ends with one
uninterrupted run: DIR is the new bundle, ``pocketgan info DIR --verify`` exits 0, and DIR's
parent holds nothing else.

Run alone: ``python tests/reliability/kills.py WORK_DIR [SCALE]``.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

EXPORT_KILLS, SWAP_KILLS, PAD_FILES = 20, 100, 200
OLD_MARKER = "KILLTEST-OLD"  # an unlisted file (the runtime ignores it) that tells the old tree from the new
COMMIT_WINDOW_S = 0.1  # export kills after the manifest is written: 0 .. this
SWAP_WINDOW_S = 0.02  # least window for swap kills after the ready tree appears
SEED = 17
RUN_TIMEOUT_S = 600
_LAUNCH = (
    "import sys, pocketgan.atomic as a\n"
    "if sys.argv[1] == 'fallback': a._exchange = lambda x, y: False\n"
    "from pocketgan.cli import main; sys.exit(main(sys.argv[2:]))"
)
MODES = ("exchange", "fallback")


def tree_digest(path: Path) -> dict[str, str] | None:
    """relative path -> sha256 of every file below ``path``; None if ``path`` is not a directory."""
    if not path.is_dir():
        return None
    return {
        p.relative_to(path).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


@dataclass
class Part:
    """One kind of kill: the destination, the reference trees, and what the kills found."""

    name: str
    dest: Path
    old_tree: Path
    new: dict
    old: dict = field(init=False)
    kills: int = 0
    finished: int = 0
    left: Counter = field(default_factory=Counter)
    landed: Counter = field(default_factory=Counter)
    cleanup_checked: int = 0
    triggers: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    final: str = ""

    def __post_init__(self):
        self.old = tree_digest(self.old_tree)

    def reset(self) -> None:
        """Put the old bundle back at dest (strays stay: the next run must remove them)."""
        if self.dest.exists():
            shutil.rmtree(self.dest)
        shutil.copytree(self.old_tree, self.dest)

    def fail(self, what: str) -> None:
        self.failures.append(f"{self.name}: {what}")


def _state(part: Part, path: Path) -> str:
    digest = tree_digest(path)
    if digest is None:
        return "missing"
    if digest in (part.old, part.new):
        return "old" if digest == part.old else "new"
    changed = sorted(set(digest) ^ set(part.new) | {k for k in digest if part.new.get(k) != digest[k]})
    return f"other ({', '.join(changed[:4])})"


def _verify(part: Part, what: str) -> None:
    from pocketgan.runtime import verify_bundle

    try:
        verify_bundle(part.dest)
    except Exception as e:  # any error is a failure of this check, typed or not
        part.fail(f"{what}: verify_bundle raised {type(e).__name__}: {e}")


def check_left(part: Part, proc: subprocess.Popen, owner: tuple[int, int], mode: str, label: str) -> None:
    """Check what the killed (or finished) run ``owner`` = (pid, start) left, then reset dest."""
    from pocketgan.atomic import list_strays

    killed = proc.returncode == -signal.SIGKILL
    part.kills += killed
    part.finished += not killed
    strays = list_strays(part.dest)
    own = {s.kind for s in strays if (s.pid, s.start) == owner or (s.pid == owner[0] and owner[1] == 0)}
    names = [s.path.name for s in strays]
    others = [s.path.name for s in strays if s.pid != owner[0]]
    part.landed["+".join(sorted(own)) or "no tree of its own"] += killed
    state = _state(part, part.dest)
    part.left[state if killed else f"{state} (finished)"] += 1
    if not killed and (proc.returncode != 0 or state != "new" or strays):
        part.fail(f"{label}: finished with exit {proc.returncode}, dest {state}, strays {names}")
    if state == "missing":
        ready = [s for s in strays if s.kind == "ready" and tree_digest(s.path) == part.new]
        if mode != "fallback" or not ready:
            part.fail(f"{label}: dest missing ({mode} swap) without a complete ready tree")
    elif state.startswith("other"):
        part.fail(f"{label}: dest is neither the old nor the new bundle: {state}")
    else:
        _verify(part, label)
    if own & {"staging", "ready"} or state == "new" or not killed:  # the run got past its recovery step
        part.cleanup_checked += 1
        if others:
            part.fail(f"{label}: strays of earlier runs survived the next run: {others}")
    if state == "new":
        part.reset()


def _spawn(cmd: list[str], pipe: bool = False) -> tuple[subprocess.Popen, tuple[int, int]]:
    """Start ``cmd`` in its own process group; its (pid, start time); stdout piped only if ``pipe``."""
    from pocketgan.atomic import _proc_stat

    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if pipe else subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        text=True,
    )
    stat = _proc_stat(proc.pid)
    return proc, (proc.pid, stat[1] if stat else 0)


def _kill(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # the group: whatever the run started dies with it
    proc.wait(timeout=RUN_TIMEOUT_S)


def _kill_after(proc: subprocess.Popen, delay: float) -> None:
    try:
        proc.wait(timeout=max(delay, 0.0))
    except subprocess.TimeoutExpired:
        pass
    _kill(proc)


def _export_cmd(dest: Path, mode: str) -> list[str]:
    return [sys.executable, "-c", _LAUNCH, mode, "export", "--targets", "onnx", "--out", str(dest)]


def _run_to_end(cmd: list[str]) -> tuple[int, float]:
    start = time.monotonic()
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[3:]} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return proc.returncode, time.monotonic() - start


def _manifest_written(strays) -> bool:
    return any(s.kind != "staging" or (s.path / "manifest.json").exists() for s in strays)


def _swapping(strays) -> bool:
    return any(s.kind != "staging" for s in strays)


def _wait_for(part: Part, proc: subprocess.Popen, owner: tuple[int, int], seen) -> float:
    """Poll (1 ms) until ``seen(the run's own trees)`` or the run exits; return the time."""
    from pocketgan.atomic import list_strays

    deadline = time.monotonic() + RUN_TIMEOUT_S
    while proc.poll() is None and time.monotonic() < deadline:
        if seen([s for s in list_strays(part.dest) if s.pid == owner[0]]):
            break
        time.sleep(0.001)
    return time.monotonic()


def _stratified(rng: random.Random, n: int, low: float, high: float) -> list[float]:
    """``n`` delays, one uniformly drawn in each of ``n`` equal slices of [low, high], shuffled."""
    delays = [low + (high - low) * (i + rng.random()) / n for i in range(n)]
    rng.shuffle(delays)
    return delays


def _kill_runs(part: Part, plan: list[tuple[str, float]], launch, rng: random.Random) -> None:
    """Run ``plan`` [(how, delay)]: ``launch(how, mode)`` starts a run and waits for its trigger,
    then the run is killed ``delay`` s later. A run that ended before its kill is redone with a
    shorter delay (at most ``len(plan)`` redos), so the plan's count is the count of kills."""
    queue = list(plan)
    for i in range(2 * len(plan)):
        if not queue:
            break
        how, delay = queue.pop(0)
        mode = MODES[i % 2]
        proc, owner = launch(how, mode)
        _kill_after(proc, delay)
        check_left(part, proc, owner, mode, f"{part.name} run {i} ({mode}, {how} +{delay * 1000:.1f} ms)")
        if proc.returncode != -signal.SIGKILL:
            queue.append((how, delay * rng.random()))
        else:
            part.triggers[how] += 1


def _finish(part: Part, cmd: list[str]) -> None:
    """One uninterrupted run: it must leave the new bundle, verified by the CLI, and nothing else."""
    from pocketgan.atomic import list_strays

    before = len(list_strays(part.dest))
    try:
        _run_to_end(cmd)
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        part.fail(f"final run: {e}")
    state = _state(part, part.dest)
    info = subprocess.run(
        [sys.executable, "-m", "pocketgan", "info", str(part.dest), "--verify"],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    litter = sorted(set(os.listdir(part.dest.parent)) - {part.dest.name})
    part.final = (
        f"{before} strays before the final run, {len(litter)} after; dest {state}; "
        f"`pocketgan info DIR --verify` exit {info.returncode}"
    )
    if state != "new" or info.returncode != 0 or litter:
        part.fail(
            f"final run: dest {state}, info --verify exit {info.returncode} {info.stderr[-300:]}, litter {litter}"
        )


def export_part(work: Path, n: int, rng: random.Random) -> tuple[Part, Path]:
    """Kill ``n`` real exports; return the part and the reference export (the new bundle)."""
    reference, again = work / "export-reference" / "bundle", work / "export-again" / "bundle"
    _run_to_end(_export_cmd(reference, "exchange"))
    _, duration = _run_to_end(_export_cmd(again, "exchange"))  # timed warm (the first run is cold)
    if tree_digest(again) != tree_digest(reference):
        raise RuntimeError("two exports of the default bundle differ: old/new cannot be told apart")
    shutil.rmtree(again.parent)
    old_tree = work / "export-old"
    shutil.copytree(reference, old_tree)
    (old_tree / OLD_MARKER).write_text("the bundle before the killed exports\n")
    part = Part("export", work / "export-target" / "bundle", old_tree, tree_digest(reference))
    part.dest.parent.mkdir(parents=True)
    part.reset()
    n_commit = n * 2 // 5
    plan = [("at commit", d) for d in _stratified(rng, n_commit, 0.0, COMMIT_WINDOW_S)]
    plan += [("timed", d) for d in _stratified(rng, n - n_commit, 0.05 * duration, 0.95 * duration)]
    rng.shuffle(plan)

    def launch(how: str, mode: str) -> tuple[subprocess.Popen, tuple[int, int]]:
        proc, owner = _spawn(_export_cmd(part.dest, mode))
        if how == "at commit":
            _wait_for(part, proc, owner, _manifest_written)
        return proc, owner

    _kill_runs(part, plan, launch, rng)
    _finish(part, _export_cmd(part.dest, "exchange"))
    return part, reference


def _drive(src: str, dest: str, mode: str) -> None:
    """The swap driver (a child process): build ``dest`` from a copy of ``src`` with atomic_directory."""
    import pocketgan.atomic as atomic

    if mode == "fallback":
        atomic._exchange = lambda a, b: False
    with atomic.atomic_directory(Path(dest)) as staging:
        shutil.copytree(src, staging, dirs_exist_ok=True)
        print("commit", flush=True)


def _drive_cmd(src: Path, dest: Path, mode: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--drive", str(src), str(dest), mode]


def _calibrate(part: Part, src: Path, work: Path) -> tuple[float, float, float]:
    """Median seconds of 3 uninterrupted drives: launch to the "commit" line (the build),
    "commit" to exit (fsync, swap, delete, exit), and first ready tree to exit (swap, delete, exit)."""
    timings = []
    for i in range(3):
        probe = Part(part.name, work / f"calibrate-{i}" / "bundle", part.old_tree, part.new)
        start = time.monotonic()
        proc, owner = _spawn(_drive_cmd(src, probe.dest, MODES[i % 2]), pipe=True)
        proc.stdout.readline()
        commit = time.monotonic()
        ready = _wait_for(probe, proc, owner, _swapping)
        proc.wait(timeout=RUN_TIMEOUT_S)
        end = time.monotonic()
        ready = min(ready, end - SWAP_WINDOW_S)  # the poll may miss a fast swap: a floor on the window
        if proc.returncode != 0 or tree_digest(probe.dest) != part.new:
            raise RuntimeError(f"swap driver failed ({proc.returncode})")
        timings.append((commit - start, end - commit, end - ready))
    return tuple(sorted(column)[1] for column in zip(*timings))


def swap_part(work: Path, reference: Path, n: int, rng: random.Random) -> Part:
    """Kill ``n`` swap drivers replacing the old tree with ``reference`` + PAD_FILES files."""
    src = work / "swap-new"
    shutil.copytree(reference, src)
    (src / "pad").mkdir()
    for i in range(PAD_FILES):
        (src / "pad" / f"{i:04d}.bin").write_bytes(hashlib.sha256(str(i).encode()).digest() * 32)
    old_tree = work / "swap-old"
    shutil.copytree(src, old_tree)
    (old_tree / OLD_MARKER).write_text("the tree before the killed swaps\n")
    part = Part("swap", work / "swap-target" / "bundle", old_tree, tree_digest(src))
    part.dest.parent.mkdir(parents=True)
    part.reset()
    build_s, commit_s, swap_s = _calibrate(part, src, work)
    plan = [("build", d) for d in _stratified(rng, n // 4, 0.0, build_s)]
    plan += [("commit", d) for d in _stratified(rng, n // 4, 0.0, commit_s)]
    plan += [("swap", d) for d in _stratified(rng, n - n // 4 * 2, 0.0, swap_s)]
    rng.shuffle(plan)

    def launch(how: str, mode: str) -> tuple[subprocess.Popen, tuple[int, int]]:
        proc, owner = _spawn(_drive_cmd(src, part.dest, mode), pipe=True)
        if how != "build":
            proc.stdout.readline()  # "commit": the body is done; fsync, then the swap
        if how == "swap":
            _wait_for(part, proc, owner, _swapping)  # its ready (or trash) tree exists: the renames started
        return proc, owner

    _kill_runs(part, plan, launch, rng)
    _finish(part, _drive_cmd(src, part.dest, "exchange"))
    part.final += (
        f"; calibrated: build {build_s * 1000:.0f} ms, commit {commit_s * 1000:.0f} ms, "
        f"from the ready tree to exit {swap_s * 1000:.0f} ms"
    )
    return part


def _markdown(parts: list[Part], scale: float, seconds: float) -> str:
    kills = sum(p.kills for p in parts)
    lines = [
        f"{kills} SIGKILLs (scale {scale}, {seconds:.0f} s; tests/reliability/kills.py): "
        f"{sum(len(p.failures) for p in parts)} failures.",
        "",
        "| part | runs | killed | kills by trigger | finished first | left as | next run's cleanup checked "
        "| failures |",
        "|---|---:|---:|---|---:|---|---:|---:|",
    ]
    for p in parts:
        left = ", ".join(f"{k} {v}" for k, v in sorted(p.left.items()))
        triggers = ", ".join(f"{k} {v}" for k, v in sorted(p.triggers.items()))
        lines.append(
            f"| {p.name} | {p.kills + p.finished} | {p.kills} | {triggers} | {p.finished} | {left} | "
            f"{p.cleanup_checked} | {len(p.failures)} |"
        )
    lines += ["", "Trees of the killed run found right after each kill (where the kill landed):", ""]
    for p in parts:
        landed = ", ".join(f"{k} {v}" for k, v in sorted(p.landed.items()) if v)
        lines.append(f"- {p.name}: {landed}")
    lines += ["", "Final uninterrupted run:", ""] + [f"- {p.name}: {p.final}" for p in parts]
    failures = [f for p in parts for f in p.failures]
    if failures:
        lines += ["", "Failures (first 20):", ""] + [f"- {f}" for f in failures[:20]]
    return "\n".join(lines) + "\n"


def run(work_dir: Path, scale: float = 1.0) -> dict:
    """Kill exports and swaps (>= 100 kills at scale 1.0); {"title", "markdown", "failures"}."""
    work = Path(work_dir) / "kills"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    rng = random.Random(SEED)
    started = time.monotonic()
    export, reference = export_part(work, max(2, math.ceil(EXPORT_KILLS * scale)), rng)
    swap = swap_part(work, reference, max(4, math.ceil(SWAP_KILLS * scale)), rng)
    parts = [export, swap]
    return {
        "title": "Kills during export",
        "markdown": _markdown(parts, scale, time.monotonic() - started),
        "failures": sum(len(p.failures) for p in parts),
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["--drive"]:
        _drive(*sys.argv[2:5])
    else:
        result = run(Path(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 1.0)
        print(result["markdown"])
        sys.exit(1 if result["failures"] else 0)
