"""Concurrency stress: 8 threads x 5,000 edits on one Runtime while concepts are swapped,
every result compared bit for bit with a single-threaded reference, on ONNX Runtime and
ExecuTorch.

Per edit, at random: an explicit ``edit(photo, concept=c)`` must equal the reference of
``c`` exactly; an ``edit(photo)`` with the active concept (which other threads keep
swapping) must equal the reference of *some* concept exactly, never a blend or garbage.
A quarter of the edits pass a PIL image, the rest a uint8 array. Every tenth edit the
thread swaps the concept itself, and one more thread does nothing but ``set_concept``.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from .sources import executorch_export, photos

THREADS = 8
EDITS = 5000
STRESS_SIZE = 64  # the model's input size for the stress export (see run())


class _Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.edits = self.mismatches = self.swaps = 0
        self.errors: list[str] = []

    def add(self, edits: int = 0, mismatches: int = 0, swaps: int = 0, error: str | None = None) -> None:
        with self.lock:
            self.edits += edits
            self.mismatches += mismatches
            self.swaps += swaps
            if error is not None and len(self.errors) < 5:
                self.errors.append(error)


def _edit_loop(rt, images, reference, edits: int, seed: int, tally: _Tally) -> None:
    rng = random.Random(seed)
    concepts = list(rt.concepts)
    try:
        for j in range(edits):
            i = rng.randrange(len(images))
            as_pil = rng.random() < 0.25
            photo = Image.fromarray(images[i]) if as_pil else images[i]
            if rng.random() < 0.5:
                c = rng.choice(concepts)
                out = np.asarray(rt.edit(photo, concept=c))
                ok = np.array_equal(out, reference[i][c])
            else:
                out = np.asarray(rt.edit(photo))
                ok = any(np.array_equal(out, reference[i][c]) for c in concepts)
            tally.add(edits=1, mismatches=int(not ok))
            if j % 10 == 9:
                rt.set_concept(rng.choice(concepts))
                tally.add(swaps=1)
    except Exception as e:  # noqa: BLE001 - counted and reported, never a silent thread death
        tally.add(error=f"{type(e).__name__}: {e}")


def _swapper(rt, stop: threading.Event, tally: _Tally) -> None:
    rng = random.Random(-1)
    try:
        while not stop.is_set():
            rt.set_concept(rng.choice(rt.concepts))
            tally.add(swaps=1)
            time.sleep(0.001)  # swap ~1,000 times a second without starving the editors of the GIL
    except Exception as e:  # noqa: BLE001
        tally.add(error=f"swapper {type(e).__name__}: {e}")


def stress(bundle: Path, backend: str, *, threads: int = THREADS, edits: int = EDITS) -> dict:
    """Run the stress on one backend; return counts (edits, mismatches, swaps, errors, seconds)."""
    from pocketgan.runtime import open_bundle

    # ExecuTorch runs one method at a time per program (the backend serialises), so give
    # that run both cores; ONNX Runtime runs sessions concurrently, one core each.
    rt = open_bundle(bundle, backend=backend, threads=2 if backend == "executorch" else 1)
    images = photos()
    reference = [{c: np.asarray(rt.edit(img, concept=c)) for c in rt.concepts} for img in images]
    again = [{c: np.asarray(rt.edit(img, concept=c)) for c in rt.concepts} for img in images]
    deterministic = all(np.array_equal(a[c], b[c]) for a, b in zip(reference, again) for c in rt.concepts)
    distinct = len({reference[0][c].tobytes() for c in rt.concepts}) == len(rt.concepts)
    tally, stop = _Tally(), threading.Event()
    workers = [
        threading.Thread(target=_edit_loop, args=(rt, images, reference, edits, t, tally)) for t in range(threads)
    ]
    swapper = threading.Thread(target=_swapper, args=(rt, stop, tally))
    t0 = time.monotonic()
    swapper.start()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    stop.set()
    swapper.join()
    return {
        "backend": backend,
        "threads": threads,
        "edits": tally.edits,
        "planned": threads * edits,
        "mismatches": tally.mismatches,
        "swaps": tally.swaps,
        "errors": tally.errors,
        "deterministic": deterministic,
        "distinct": distinct,
        "seconds": time.monotonic() - t0,
    }


def _failures(r: dict) -> int:
    return (
        r["mismatches"]
        + len(r["errors"])
        + (r["edits"] != r["planned"])
        + (not r["deterministic"])
        + (not r["distinct"])
    )


def run(work_dir: Path, scale: float = 1.0) -> dict:
    """The section of docs/reliability.md (``scale`` shrinks the edits per thread)."""
    edits = max(20, round(EDITS * scale))
    # The default bundle exported at 64 x 64: the threading, swapping and arena code paths are
    # the same at every size, and 16x fewer MACs let 8 x 5,000 edits per backend run in
    # minutes on 2 cores instead of an hour.
    export = executorch_export(Path(work_dir), image_size=STRESS_SIZE)
    bundles = {"onnx": export, "executorch": export}
    results = []
    for backend, bundle in bundles.items():
        print(f"  stress: {backend}, {THREADS} threads x {edits} edits", flush=True)
        results.append(stress(bundle, backend, edits=edits))
    titles = {"onnx": "ONNX Runtime", "executorch": "ExecuTorch (XNNPACK)"}
    lines = [
        f"{THREADS} threads x {edits:,} edits per backend on one `Runtime` (the default bundle exported at "
        f"{STRESS_SIZE} x {STRESS_SIZE} with `pocketgan export --targets onnx executorch --image-size {STRESS_SIZE}`), "
        "with concurrent `set_concept` swaps "
        "(each thread every tenth edit, plus a thread that only swaps). Reference: the same runtime, single-threaded, "
        f"before the threads start; {len(photos())} small photos (17 x 23 to 64 x 48) x every concept. "
        "An explicit-concept edit must equal its concept's reference bit for bit; an active-concept edit must equal "
        "one concept's reference bit for bit.",
        "",
        "| backend | edits | swaps | mismatches | errors | reference deterministic | edits/s | minutes |",
        "|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {titles[r['backend']]} | {r['edits']:,} | {r['swaps']:,} | {r['mismatches']} | "
            f"{len(r['errors'])} | {'yes' if r['deterministic'] else '**no**'} | "
            f"{r['edits'] / r['seconds']:.0f} | {r['seconds'] / 60:.1f} |"
        )
    for r in results:
        lines += [f"- {titles[r['backend']]} error: `{e}`" for e in r["errors"]]
        if not r["distinct"]:
            lines.append(f"- {titles[r['backend']]}: two concepts edit identically, so a swap could go unnoticed")
    return {
        "title": "Concurrent edits and concept swaps",
        "markdown": "\n".join(lines) + "\n",
        "failures": sum(_failures(r) for r in results),
    }
