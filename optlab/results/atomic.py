"""Atomic writes: a temporary file in the same folder, fsynced, then renamed over the target.

A reader never sees half a file, and an OS error (a full disk, a quota, an I/O error) leaves the old
file and becomes a WriteError naming the file, which the CLI says in one line with exit code 74.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from optlab.errors import ResultsError

EXIT_IO = 74  # EX_IOERR: a write failed (disk full, quota, I/O error); 1 means "diverged", 2 bad input


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


class WriteError(ResultsError):
    """A file of a run folder could not be written: the OS error, naming the file. Exit code 74."""

    exit_code = EXIT_IO


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder and a rename.

    An OS error (a full disk, a quota, an I/O error) leaves the old file and raises WriteError
    naming the file and the error, so the CLI says it in one line with exit code 74.
    """
    path = Path(path)
    try:
        _write_atomic(path, data)
    except OSError as e:
        error = WriteError(f"cannot write {path}: {e.strerror or e}")
        error.strerror = e.strerror or str(e)
        raise error from None


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are for sharing
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
