"""Atomic file and directory writes: a crash or a SIGKILL leaves the old state or the new one.

Files: write a temporary sibling, fsync, ``os.replace``.

Directories (bundles, checkpoints; docs/atomic-writes.md): every temporary tree of a
destination ``PARENT/NAME`` lives in ``PARENT`` under a name that says what it is and who
made it, so that a later run can find it and decide what to do with it::

    .NAME.staging-PID-START-RAND   being built: incomplete
    .NAME.ready-PID-START-RAND     complete (fsync'd), being swapped in
    .NAME.trash-PID-START-RAND     garbage (the replaced tree or a claimed stray), being deleted

``PID`` is the writing process, ``START`` its start time (Linux: field 22 of
``/proc/PID/stat``, clock ticks since boot, so a reused pid is told apart; 0 where unknown),
``RAND`` 8 hex digits. The commit: fsync the staged tree, rename staging -> ready, then
swap: on Linux one ``renameat2(RENAME_EXCHANGE)`` of ready and ``NAME`` (``NAME`` is never
missing) followed by a rename of the old tree, now at the ready name, to trash; elsewhere
``NAME`` -> trash, ready -> ``NAME``. Then fsync ``PARENT`` and delete the trash.

Every :func:`atomic_directory` starts with :func:`recover_directory`: trees whose owner is
no longer alive are strays. If ``NAME`` is missing (a kill between the two renames of the
fallback swap) the newest dead ready tree is promoted to ``NAME``; every other dead stray is
renamed to this process's trash and deleted. A live owner's trees are never touched.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import re
import secrets
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

_WINDOWS = sys.platform.startswith("win")
STRAY_KINDS = ("staging", "ready", "trash")


def _fsync_path(path: Path | str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    if not _WINDOWS:
        _fsync_path(path)


def _fsync_tree(root: Path) -> None:
    """fsync every regular file and directory below ``root`` (POSIX; a no-op on Windows)."""
    if _WINDOWS:
        return
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                _fsync_path(path)
        _fsync_dir(Path(dirpath))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual file mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode("utf-8"))


# --- owners of temporary trees ----------------------------------------------------------


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) of a process from /proc; None where unreadable."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
        fields = text[text.rindex(")") + 2 :].split()  # comm (field 2) may hold spaces and ")"
        return fields[0], int(fields[19])  # fields 3 and 22
    except (OSError, ValueError, IndexError):
        return None


def _owner_tag() -> str:
    pid = os.getpid()
    stat = _proc_stat(pid)
    return f"{pid}-{stat[1] if stat else 0}"


def owner_alive(pid: int, start: int) -> bool:
    """Whether the process that named a tree ``...-PID-START-...`` may still be writing it.

    Dead: no process has the pid, or it is a zombie, or (Linux) the pid now belongs to a
    process started at another time. Anything uncertain counts as alive (the tree is kept):
    another user's process, a platform without /proc (the pid alone decides), Windows (where
    ``os.kill`` would terminate the process, so every owner counts as alive).
    """
    if _WINDOWS:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    except (OverflowError, ValueError):  # not a pid this system can have
        return False
    stat = _proc_stat(pid)
    if stat is None:
        return True
    state, actual_start = stat
    if state in ("Z", "X"):
        return False
    return start == 0 or actual_start == start


@dataclass(frozen=True)
class Stray:
    """A temporary tree of a destination: ``kind`` is one of STRAY_KINDS; ``pid``, ``start`` its owner."""

    path: Path
    kind: str
    pid: int
    start: int

    @property
    def alive(self) -> bool:
        return owner_alive(self.pid, self.start)


def _sibling(dest: Path, kind: str) -> Path:
    return dest.with_name(f".{dest.name}.{kind}-{_owner_tag()}-{secrets.token_hex(4)}")


def list_strays(dest: str | Path) -> list[Stray]:
    """Every temporary tree of ``dest`` in its parent, whatever its owner (sorted by name).

    Only real directories count: a file or symlink with such a name was not made here.
    """
    dest = Path(dest).absolute()
    pattern = re.compile(re.escape(f".{dest.name}.") + r"(staging|ready|trash)-(\d{1,10})-(\d{1,20})-[0-9a-f]{8}")
    try:
        entries = list(os.scandir(dest.parent))
    except FileNotFoundError:
        return []
    strays = []
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match and entry.is_dir(follow_symlinks=False):
            strays.append(Stray(Path(entry.path), match[1], int(match[2]), int(match[3])))
    return sorted(strays, key=lambda s: s.path.name)


def _remove_tree(path: Path) -> None:
    """Delete a tree (or a file or symlink at its name); errors leave it for a later run."""
    try:
        if path.is_symlink() or not path.is_dir():
            path.unlink()
        else:
            shutil.rmtree(path, ignore_errors=True)
    except OSError:
        pass


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


def recover_directory(dest: str | Path) -> list[Stray]:
    """Finish or undo what dead writers of ``dest`` left behind; return the strays handled.

    If ``dest`` is missing, the newest dead *ready* tree (complete by construction) becomes
    ``dest``. Every other dead stray is claimed by a rename to this process's trash name (so
    two runs never delete the same tree) and deleted. Trash is never restored: whenever the
    fallback swap has moved ``dest`` to trash, a complete ready tree exists until it is
    renamed to ``dest``. Safe to call at any time, from any process.
    """
    dest = Path(dest).absolute()
    dead = [s for s in list_strays(dest) if not s.alive]
    if not dead:
        return []
    if not os.path.lexists(dest):
        for stray in sorted((s for s in dead if s.kind == "ready"), key=lambda s: _mtime(s.path), reverse=True):
            try:
                os.rename(stray.path, dest)
            except OSError:  # another run promoted it first, or dest appeared meanwhile
                continue
            _fsync_dir(dest.parent)
            break
    for stray in dead:
        if not stray.path.exists():
            continue  # promoted just now, or claimed by another run
        trash = _sibling(dest, "trash")
        try:
            os.rename(stray.path, trash)
        except OSError:
            continue
        _remove_tree(trash)
    return dead


# --- the swap -----------------------------------------------------------------------------

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux >= 3.15). False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    rc = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc != 0:
        err = ctypes.get_errno()
        if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: filesystem can't exchange
            return False
        raise OSError(err, os.strerror(err), str(a))
    return True


def _check_replaceable(dest: Path) -> None:
    if os.path.lexists(dest) and not dest.is_dir():
        raise NotADirectoryError(f"{dest} exists and is not a directory")


def _swap_in(ready: Path, dest: Path) -> Path | None:
    """Put the complete tree ``ready`` at ``dest``; return where the old tree went (to delete)."""
    if not os.path.lexists(dest):
        os.rename(ready, dest)
        return None
    trash = _sibling(dest, "trash")
    if _exchange(ready, dest):
        os.rename(ready, trash)  # ``ready`` holds the old tree now
        return trash
    os.rename(dest, trash)  # until the next rename ``dest`` is missing: recover_directory promotes ``ready``
    try:
        os.rename(ready, dest)
    except BaseException:
        os.rename(trash, dest)
        raise
    return trash


def _commit(staging: Path, dest: Path) -> None:
    _fsync_tree(staging)  # the data is on disk before any name points at it
    _check_replaceable(dest)
    ready = _sibling(dest, "ready")
    os.rename(staging, ready)
    try:
        trash = _swap_in(ready, dest)
    except BaseException:
        _remove_tree(ready)
        raise
    _fsync_dir(dest.parent)
    if trash is not None:
        _remove_tree(trash)


def replace_directory(new: Path, dest: Path) -> None:
    """Move the complete directory ``new`` (in ``dest``'s parent) to ``dest``, replacing what is there."""
    dest = Path(dest).absolute()
    _check_replaceable(dest)
    recover_directory(dest)
    _commit(Path(new), dest)


@contextlib.contextmanager
def atomic_directory(dest: Path) -> Iterator[Path]:
    """Yield an empty staging directory; on normal exit it replaces ``dest`` atomically.

    On an exception the staging directory is removed and ``dest`` is untouched. A SIGKILL at
    any point leaves the old or the new tree at ``dest`` (or, without RENAME_EXCHANGE, a
    ready tree that the next call promotes); the next call removes what the dead run left.
    """
    dest = Path(dest).absolute()
    dest.parent.mkdir(parents=True, exist_ok=True)
    _check_replaceable(dest)
    recover_directory(dest)
    staging = _sibling(dest, "staging")
    staging.mkdir(mode=0o777)  # the umask applies, as for any new directory
    try:
        yield staging
        _commit(staging, dest)
    except BaseException:
        _remove_tree(staging)
        raise
