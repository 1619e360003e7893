"""Claiming a run folder, so that one process at a time writes it.

Two processes given the same `--run-dir` (array jobs, retries) or two `--resume` of one folder
would otherwise both write it, and one run's result would silently replace the other's. A
process claims a folder by holding an exclusive flock on RUN_DIR/.optlab.lock while it writes
there. The kernel drops the lock when the process dies, however it dies (SIGKILL included), so a
claim is never stale: a lock file left behind is only an empty file, and the next process claims
the folder again. Claims end with the process: at exit (and on optlab's quick exit after a
signal) every lock file this process holds is removed. Only the standard library is used here.
"""

from __future__ import annotations

import atexit
import fcntl
import os
import time
from pathlib import Path

from optlab import interrupts
from optlab.errors import ResultsError

LOCK_FILE = ".optlab.lock"
_held: dict[Path, int] = {}  # resolved folder -> the open, locked lock file


def acquire(folder: Path) -> None:
    """Claim `folder` (which exists) for this process, or raise ResultsError naming it.

    Re-entrant: a folder this process already holds, or one inside it (a sweep's runs), is
    covered by that claim.
    """
    key = Path(folder).resolve()
    if key in _held or any(parent in _held for parent in key.parents):
        return
    for _ in range(10):  # a holder may remove the file between our open and our lock: try again
        fd = _open(folder, key / LOCK_FILE)
        try:
            _lock(fd)
        except BlockingIOError:
            error = _in_use(folder, fd)
            os.close(fd)
            raise error from None
        except OSError as e:
            os.close(fd)
            raise ResultsError(f"cannot lock run folder {folder}: {e.strerror or e}") from None
        if _still_linked(fd, key / LOCK_FILE):
            _note_pid(fd)
            _held[key] = fd
            return
        os.close(fd)
    raise ResultsError(f"cannot claim run folder {folder}: its lock file keeps changing")


def refuse_if_busy(folder: Path) -> None:
    """Raise the "in use" error if another process holds `folder`; creates nothing (a probe, not a claim)."""
    key = Path(folder).resolve()
    if key in _held or any(parent in _held for parent in key.parents):
        return
    try:
        fd = os.open(key / LOCK_FILE, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return  # no lock file (or none we can open): no holder, or acquire will say what is wrong
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _in_use(folder, fd) from None
    except OSError:
        pass
    finally:
        os.close(fd)  # also drops the probe's lock, if it got one


def _in_use(folder: Path, fd: int) -> ResultsError:
    return ResultsError(f"run folder {folder} is in use by another optlab process{_holder(fd)}; "
                        "wait for it to end or choose another --run-dir")


def release(folder: Path) -> None:
    """Give up the claim on `folder` (if this process holds it) and remove its lock file."""
    key = Path(folder).resolve()
    fd = _held.pop(key, None)
    if fd is None:
        return
    try:
        (key / LOCK_FILE).unlink(missing_ok=True)  # while still locked: no one can be holding it
    except OSError:
        pass  # an empty file left behind is harmless
    os.close(fd)


def held(folder: Path) -> bool:
    return Path(folder).resolve() in _held


def release_all() -> None:
    """End every claim of this process (at exit), so no lock file is left in a folder it refused."""
    for key in list(_held):
        release(key)


atexit.register(release_all)
interrupts.on_leave(release_all)


def _lock(fd: int) -> None:
    """flock, without waiting for a real holder (they hold for the run's life) but past a probe's instant."""
    for _ in range(5):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            time.sleep(0.01)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _open(folder: Path, lock: Path) -> int:
    try:
        return os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except OSError as e:
        raise ResultsError(f"cannot write to results folder {folder}: {e.strerror or e}") from None


def _still_linked(fd: int, lock: Path) -> bool:
    """True if the file we locked is still the one at `lock` (not removed by its last holder)."""
    try:
        return os.stat(lock).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _note_pid(fd: int) -> None:
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:
        pass  # only for the loser's message


def _holder(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""
