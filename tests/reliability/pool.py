"""A worker pool that survives its tasks: a worker that dies (a segfault in a native
library) is counted as a crash, one that runs past the timeout is killed and counted as a
hang, and either is replaced by a fresh process. ``concurrent.futures`` cannot do this: one
dead worker breaks the whole pool, and a running task cannot be timed out.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from multiprocessing.connection import wait


def _worker(conn, init, init_args, log_path) -> None:
    """Child process: ``handler = init(*init_args)``, then answer tasks until told to stop."""
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)  # native libraries log to fds 1 and 2; keep them out of the console
    os.dup2(fd, 2)
    try:
        handler = init(*init_args)
    except BaseException as e:  # the harness is broken: tell the parent, which stops
        conn.send(("error", f"{type(e).__name__}: {e}"))
        return
    conn.send(("ready", None))
    while True:
        task = conn.recv()
        if task is None:
            return
        conn.send(("done", handler(task)))


class _Slot:
    def __init__(self, pool: "CrashSafePool", number: int) -> None:
        self.number = number
        self.conn, child = pool.ctx.Pipe()
        log = os.path.join(pool.log_dir, f"worker-{number}.log")
        self.proc = pool.ctx.Process(target=_worker, args=(child, pool.init, pool.init_args, log), daemon=True)
        self.proc.start()
        child.close()
        self.task = None
        self.started = time.monotonic()
        self.ready = False
        self.done = 0

    def stop(self, kill: bool = False) -> None:
        if kill:
            self.proc.kill()
        else:
            try:
                self.conn.send(None)
            except OSError:
                pass
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()


class CrashSafePool:
    """``processes`` spawned workers, each running ``init(*init_args)(task)`` per task.

    ``run(tasks, on_lost)`` yields ``(task, result)``; a task whose worker crashed or hung
    yields ``on_lost(task, "crash" | "hang", info)`` instead. Workers are recycled after
    ``recycle`` tasks to bound what a leaking native library can accumulate.
    """

    def __init__(
        self,
        processes: int,
        init,
        init_args: tuple,
        *,
        timeout: float,
        log_dir: str,
        init_timeout: float = 600,
        recycle: int = 1000,
    ) -> None:
        self.ctx = mp.get_context("spawn")  # no fork of a parent holding native library state
        self.processes, self.init, self.init_args = processes, init, init_args
        self.timeout, self.init_timeout, self.recycle = timeout, init_timeout, recycle
        self.log_dir = log_dir
        self._spawned = 0

    def _spawn(self) -> _Slot:
        self._spawned += 1
        return _Slot(self, self._spawned)

    def run(self, tasks, on_lost):
        pending = iter(tasks)
        slots = [self._spawn() for _ in range(self.processes)]
        live = len(slots)
        try:
            while live:
                for i, slot in enumerate(slots):
                    if slot is not None and slot.ready and slot.task is None:
                        slot.task = next(pending, None)
                        if slot.task is None:
                            slot.stop()
                            slots[i], live = None, live - 1
                        else:
                            slot.conn.send(slot.task)
                            slot.started = time.monotonic()
                active = [s for s in slots if s is not None]
                wait([s.conn for s in active] + [s.proc.sentinel for s in active], timeout=1.0)
                for i, slot in enumerate(slots):
                    if slot is not None:
                        yield from self._service(slots, i, on_lost)
        finally:
            for slot in slots:
                if slot is not None:
                    slot.stop(kill=True)

    def _service(self, slots: list, i: int, on_lost):
        """Collect what slot ``i`` finished; replace it when it died, hung or is worn out."""
        slot = slots[i]
        lost = None
        try:
            while slot.conn.poll():
                kind, value = slot.conn.recv()
                if kind == "error":
                    raise RuntimeError(f"fuzz worker failed to start: {value}")
                if kind == "ready":
                    slot.ready = True
                else:
                    yield slot.task, value
                    slot.task, slot.done = None, slot.done + 1
        except (EOFError, OSError):
            pass
        limit = self.timeout if slot.ready else self.init_timeout
        if not slot.proc.is_alive():
            if not slot.ready:
                raise RuntimeError(f"fuzz worker exited with code {slot.proc.exitcode} before it was ready")
            lost = ("crash", f"worker exit code {slot.proc.exitcode}")
        elif time.monotonic() - slot.started > limit and (slot.task is not None or not slot.ready):
            lost = ("hang", f"no answer after {limit:.0f} s; killed")
        if lost is not None:
            slot.stop(kill=True)
            if slot.task is not None:
                yield slot.task, on_lost(slot.task, *lost)
            slots[i] = self._spawn()
        elif slot.ready and slot.task is None and slot.done >= self.recycle:
            slot.stop()
            slots[i] = self._spawn()
