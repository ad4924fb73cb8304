"""pocketgan.atomic directory writes: the swap, stray cleanup, and recovery from every crash point.

A crash point is simulated by building on disk exactly what a SIGKILL there leaves (the
names of docs/atomic-writes.md), owned by a process that is no longer alive; the next
``atomic_directory`` (or ``recover_directory``) must leave ``dest`` old or new and no stray.
tests/test_export_kills.py and tests/reliability/kills.py kill real processes instead.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import pocketgan.atomic as atomic
from pocketgan.atomic import atomic_directory, list_strays, owner_alive, recover_directory


def write_tree(path: Path, label: str, files: int = 3) -> Path:
    """A small directory tree whose content names ``label`` (old / new)."""
    (path / "sub").mkdir(parents=True)
    for i in range(files):
        (path / "sub" / f"f{i}.bin").write_bytes(f"{label}-{i}".encode())
    (path / "label.txt").write_text(label)
    return path


def label_of(path: Path) -> str:
    return (path / "label.txt").read_text()


def files_of(path: Path) -> dict[str, bytes]:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def stray(dest: Path, kind: str, pid: int, start: int = 0, label: str | None = None) -> Path:
    """Create ``.NAME.KIND-PID-START-RAND`` next to ``dest`` (holding a tree if ``label``)."""
    path = dest.with_name(f".{dest.name}.{kind}-{pid}-{start}-{os.urandom(4).hex()}")
    if label is None:
        path.mkdir()
    else:
        write_tree(path, label)
    return path


@pytest.fixture(params=["renameat2", "rename-aside"])
def exchange_mode(request, monkeypatch):
    """Both swaps: Linux RENAME_EXCHANGE and the two-rename fallback."""
    if request.param == "rename-aside":
        monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    return request.param


# --- the normal swap ------------------------------------------------------------------------


def test_first_write_and_overwrite(tmp_path, exchange_mode):
    dest = tmp_path / "bundle"
    with atomic_directory(dest) as staging:
        assert staging.parent == tmp_path and staging.name.startswith(".bundle.staging-")
        assert list_strays(dest)[0].kind == "staging" and list_strays(dest)[0].alive
        write_tree(staging, "old")
    assert label_of(dest) == "old"
    with atomic_directory(dest) as staging:
        write_tree(staging, "new", files=1)
        assert label_of(dest) == "old", "dest is untouched until the body finishes"
    assert files_of(dest) == {"label.txt": b"new", "sub/f0.bin": b"new-0"}, "no file of the old tree survives"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_exception_in_body_keeps_the_old_tree(tmp_path, exchange_mode):
    dest = write_tree(tmp_path / "bundle", "old")
    before = files_of(dest)
    with pytest.raises(KeyboardInterrupt), atomic_directory(dest) as staging:
        write_tree(staging, "new")
        raise KeyboardInterrupt
    assert files_of(dest) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_failed_second_rename_restores_the_old_tree(tmp_path, monkeypatch):
    """Fallback swap: if ready -> dest fails after dest -> trash, dest is renamed back."""
    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    dest = write_tree(tmp_path / "bundle", "old")
    real_rename = os.rename

    def rename(src, dst):
        if ".ready-" in Path(src).name and Path(dst) == dest:
            raise OSError(5, "injected I/O error")
        real_rename(src, dst)

    monkeypatch.setattr(atomic.os, "rename", rename)
    with pytest.raises(OSError, match="injected"), atomic_directory(dest) as staging:
        write_tree(staging, "new")
    assert label_of(dest) == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_refuses_a_file_before_building(tmp_path):
    dest = tmp_path / "bundle"
    dest.write_text("a file")
    with pytest.raises(NotADirectoryError), atomic_directory(dest):
        pytest.fail("the body must not run")
    assert dest.read_text() == "a file" and sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


# --- owners ------------------------------------------------------------------------------------


def test_owner_liveness(dead_pid):
    me = os.getpid()
    start = atomic._proc_stat(me)[1] if atomic._proc_stat(me) else 0
    assert owner_alive(me, start)
    assert owner_alive(me, 0), "start 0 (unknown): the pid alone decides"
    assert not owner_alive(dead_pid, 0)
    assert not owner_alive(2**40, 0), "not a pid this system can have"
    if atomic._proc_stat(me) is not None:
        assert not owner_alive(me, start + 1), "a reused pid (another start time) is not the owner"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="zombie detection reads /proc")
def test_a_zombie_owner_is_dead():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        start = atomic._proc_stat(proc.pid)[1]
        assert owner_alive(proc.pid, start)
        os.kill(proc.pid, signal.SIGKILL)
        for _ in range(500):  # until the kernel has made it a zombie (not reaped: no wait yet)
            if atomic._proc_stat(proc.pid)[0] == "Z":
                break
            os.sched_yield()
        assert not owner_alive(proc.pid, start)
    finally:
        proc.kill()
        proc.wait()


# --- stray cleanup ---------------------------------------------------------------------------


def test_dead_strays_are_removed_live_ones_kept(tmp_path, dead_pid):
    dest = write_tree(tmp_path / "bundle", "old")
    dead = [stray(dest, kind, dead_pid, label="x") for kind in atomic.STRAY_KINDS]
    live = stray(dest, "staging", os.getpid(), label="live")  # a concurrent export of this process
    other = tmp_path / f".bundle.x.staging-{dead_pid}-0-00000000"  # belongs to "bundle.x"
    other.mkdir()
    legacy = tmp_path / ".bundle.staging-ab12cd34"  # no owner recorded: never touched
    legacy.mkdir()
    with atomic_directory(dest) as staging:
        assert not any(p.exists() for p in dead), "removed before the new tree is built"
        write_tree(staging, "new")
    assert label_of(dest) == "new"
    assert [s.path for s in list_strays(dest)] == [live]
    assert other.exists() and legacy.exists()


def test_stray_lookalikes_are_not_strays(tmp_path, dead_pid):
    dest = tmp_path / "bundle"
    target = write_tree(tmp_path / "elsewhere", "keep")
    (tmp_path / f".bundle.trash-{dead_pid}-0-0000000a").symlink_to(target)
    (tmp_path / f".bundle.staging-{dead_pid}-0-0000000b").write_text("a file")
    (tmp_path / f".bundle.staging-{dead_pid}-0-0000000c.bak").mkdir()
    assert list_strays(dest) == []
    assert recover_directory(dest) == []
    assert label_of(target) == "keep" and len(list(tmp_path.iterdir())) == 4


# --- recovery from each crash point ----------------------------------------------------------
# (what is on disk after a kill there) -> what dest holds after the next run


CRASH_POINTS = {
    # killed while building: an incomplete staging tree
    "building": ({"dest": "old", "staging": "half"}, "old"),
    # after staging -> ready, before the swap
    "ready": ({"dest": "old", "ready": "new"}, "old"),
    # RENAME_EXCHANGE done, before ready (now the old tree) -> trash
    "exchanged": ({"dest": "new", "ready": "old"}, "new"),
    # fallback: dest -> trash done, ready -> dest not yet: dest is missing
    "between-renames": ({"trash": "old", "ready": "new"}, "new"),
    # swapped, killed while deleting the old tree
    "deleting-trash": ({"dest": "new", "trash": "half"}, "new"),
    # first write of dest, killed before ready -> dest
    "first-write-ready": ({"ready": "new"}, "new"),
    # first write, killed while building
    "first-write-building": ({"staging": "half"}, None),
}


def build_crash_state(dest: Path, state: dict, pid: int) -> None:
    for where, label in state.items():
        if where == "dest":
            write_tree(dest, label)
        else:
            path = stray(dest, where, pid, label=label)
            if label == "half":  # a tree cut short mid-write or mid-delete
                (path / "label.txt").unlink()


@pytest.mark.parametrize("point", sorted(CRASH_POINTS))
def test_recovery_from_each_crash_point(tmp_path, dead_pid, point):
    state, expected = CRASH_POINTS[point]
    dest = tmp_path / "bundle"
    build_crash_state(dest, state, dead_pid)
    handled = recover_directory(dest)
    assert sorted(s.kind for s in handled) == sorted(k for k in state if k != "dest")
    if expected is None:
        assert not dest.exists()
    else:
        assert label_of(dest) == expected and len(files_of(dest)) == 4, "a complete tree"
    assert list_strays(dest) == [] and [p.name for p in tmp_path.iterdir()] == (["bundle"] if expected else [])


@pytest.mark.parametrize("point", sorted(CRASH_POINTS))
def test_next_write_after_each_crash_point(tmp_path, dead_pid, exchange_mode, point):
    dest = tmp_path / "bundle"
    build_crash_state(dest, CRASH_POINTS[point][0], dead_pid)
    with atomic_directory(dest) as staging:
        write_tree(staging, "newer")
    assert label_of(dest) == "newer"
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]


def test_a_live_writers_ready_tree_is_not_promoted(tmp_path):
    """dest missing with a live owner's ready tree: that writer is mid-swap; leave it alone."""
    dest = tmp_path / "bundle"
    ready = stray(dest, "ready", os.getpid(), label="new")
    assert recover_directory(dest) == []
    assert not dest.exists() and label_of(ready) == "new"


def test_newest_dead_ready_tree_is_promoted(tmp_path, dead_pid):
    dest = tmp_path / "bundle"
    older = stray(dest, "ready", dead_pid, label="older")
    stray(dest, "ready", dead_pid, label="newer")
    os.utime(older, ns=(10**9, 10**9))
    recover_directory(dest)
    assert label_of(dest) == "newer" and list_strays(dest) == []
