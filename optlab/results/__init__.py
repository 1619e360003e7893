"""Run folders: the one module that writes and reads them.

A run folder holds `metrics.json` (the results contract, below), the PNG figures it names,
and `params.npz` (the final parameters); while a process writes it, also `.optlab.lock`, its
claim (optlab.results.claim). Every file is written to a temporary name in the
same folder and renamed into place, so a reader never sees half a file.

metrics.json keys (users script against these names; renaming one means bumping
SCHEMA_VERSION and still reading the old):
    schema_version, run_id, status, experiment, config, environment,
    history, summary, analysis, figures

Schema versions: 1, each `figures` entry a file name ("loss.png"); 2, each an object saying what
the figure shows: {"path": "weights.png", "caption": "...", "epochs": [1, 2, 3], ...}. Readers
take both through `figures_of`; writing always writes the current schema (`upgraded`), so a
version-1 record that optlab rewrites (`run --resume`, `analyze`) becomes version 2, never a mix.
"""

from __future__ import annotations

import json
import math
import os
import platform
import secrets
import stat
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from optlab import interrupts
from optlab.errors import ResultsError
from optlab.results import claim
from optlab.results.arrays import (  # noqa: F401  (results.save_params, … : the package's surface)
    INITIAL_PARAMS_FILE,
    PARAMS_FILE,
    TRAJECTORY_FILE,
    flat_params,
    load_params,
    load_trajectory,
    save_params,
    save_trajectory,
)
from optlab.results.atomic import _UMASK, EXIT_IO, WriteError, write_atomic  # noqa: F401
from optlab.results.checks import check_types

SCHEMA_VERSION = 2  # see the module docstring for what changed
METRICS_FILE = "metrics.json"
CHECKPOINT_FILE = "checkpoint.npz"  # optlab.core.checkpoint's, named here so --overwrite knows it
LOCK_FILE = claim.LOCK_FILE  # held while a process writes the folder (optlab.results.claim)
STATUSES = ("running", "completed", "diverged", "interrupted", "failed")
REQUIRED_KEYS = (
    "schema_version", "run_id", "status", "experiment", "config",
    "environment", "history", "summary", "analysis", "figures",
)


def figure_entry(path: str, caption: str, **meta: Any) -> dict:
    """One `figures` entry (schema 2): the PNG relative to the run folder, one sentence saying what it
    shows (the report prints it under the image), and what it holds, e.g. `epochs=[1, 2, 3]`, so that
    a script can tell without opening the picture."""
    return {"path": str(path), "caption": caption, **meta}


def figure_path(entry: str | Mapping[str, Any]) -> str:
    """The file of a `figures` entry of any schema: a version-1 entry is the file name itself.

    This and `figures_of` are the only readers that know both forms (check_types validates both);
    every other reader goes through them.
    """
    return str(entry["path"]) if isinstance(entry, Mapping) else str(entry)


def figures_of(record: Mapping[str, Any]) -> dict[str, dict]:
    """A record's figures as schema-2 entries, whatever its version: a bare name becomes {"path": name}."""
    return {str(name): dict(entry) if isinstance(entry, Mapping) else {"path": figure_path(entry)}
            for name, entry in record["figures"].items()}


def upgraded(record: Mapping[str, Any]) -> dict:
    """A copy of `record` in the current schema: version 1 differs only in its figures, so those are rewritten.

    A plug-in experiment that still returns plain file names as RunResult.figures gets a valid
    version-2 record the same way. A newer record is not optlab's to rewrite (ValueError).
    """
    version = record.get("schema_version", SCHEMA_VERSION)
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise ValueError(f"cannot rewrite a schema {version} record (this optlab writes {SCHEMA_VERSION})")
    return {**record, "schema_version": SCHEMA_VERSION, "figures": figures_of(record)}


def new_run_id(name: str) -> str:
    """`mnist-adam-20261127-211530-3f9a1c`: readable, sortable by time, unique by its random tail."""
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def create_run_dir(path: Path, overwrite: bool = False) -> Path:
    """Create an empty run folder, claim it for this process and prove it is writable, before any work.

    With `overwrite`, an existing folder is emptied only if it is an optlab run folder (see
    `replaceable_files`); anything else is refused and left exactly as it was. The claim
    (optlab.results.claim) makes a second process given the same folder fail at once, naming it;
    `release_run_dir` ends it. Emptiness is checked again once claimed: a run that finished
    in between is not clobbered.
    """
    path = Path(path)
    interrupts.check()  # a signal JAX swallowed during the preparation: stop before any folder exists
    _refuse_to_clobber(path, overwrite)  # before touching anything
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ResultsError(f"cannot write to results folder {path}: {e.strerror or e}") from None
    claim.acquire(path)
    try:
        for file in _refuse_to_clobber(path, overwrite):
            file.unlink()
        probe = path / ".write-probe"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as e:
        claim.release(path)
        raise ResultsError(f"cannot write to results folder {path}: {e.strerror or e}") from None
    except BaseException:
        claim.release(path)
        raise
    return path


def claim_run_dir(path: Path) -> Path:
    """Claim an existing run folder (for --resume), so a second resume of it fails at once."""
    path = Path(path)
    if not (path / METRICS_FILE).is_file():  # not a run folder: leave it untouched (read_metrics says more)
        read_metrics(path)
    claim.acquire(path)
    return path


def release_run_dir(path: Path) -> None:
    """End this process's claim on a run folder (the kernel ends it too, when the process dies)."""
    claim.release(path)


def _refuse_to_clobber(path: Path, overwrite: bool) -> list[Path]:
    """The files to delete before `path` can hold a new run: none, or all of a run folder's with `overwrite`."""
    if path.exists() and not path.is_dir():
        raise ResultsError(f"run folder {path} exists and is not a directory")
    if not path.exists() or not any(entry.name != LOCK_FILE for entry in path.iterdir()):
        return []
    if not overwrite:
        claim.refuse_if_busy(path)  # another process is writing it: say that, rather than "not empty"
        raise ResultsError(f"run folder {path} already exists and is not empty (pass --overwrite to replace it)")
    return [file for file in replaceable_files(path) if file.name != LOCK_FILE]


def replaceable_files(path: Path) -> list[Path]:
    """The files `--overwrite` may delete: all of `path`, if it is a run folder holding only optlab's files.

    A run folder is one whose metrics.json reads as optlab's and names the folder as its run
    (`run_id` equals the folder's name). optlab's files are metrics.json, params.npz,
    checkpoint.npz, the figures metrics.json lists, and optlab's own temporary files. Anything
    else in the folder (a subfolder, a note, another run) means the folder is not optlab's to
    empty: ResultsError naming the folder and the first such entry, and nothing is deleted.
    """
    try:
        record = read_metrics(path)
    except ResultsError as e:
        raise ResultsError(f"--overwrite refuses to empty {path}: it is not an optlab run folder ({e})") from None
    if record.get("run_id") != path.name:
        raise ResultsError(f"--overwrite refuses to empty {path}: its metrics.json belongs to run "
                           f"{record.get('run_id')!r}, not to a run named {path.name!r}")
    figure_names = [entry["path"] for entry in figures_of(record).values()]
    ours = {METRICS_FILE, PARAMS_FILE, INITIAL_PARAMS_FILE, TRAJECTORY_FILE, CHECKPOINT_FILE, LOCK_FILE,
            ".write-probe", *figure_names}
    files = []
    for entry in sorted(path.iterdir()):
        temporary = entry.name.startswith(".") and entry.name.endswith(".tmp")
        if entry.is_symlink() or not entry.is_file() or not (entry.name in ours or temporary):
            raise ResultsError(f"--overwrite refuses to empty {path}: {entry.name!r} is not a file optlab wrote "
                               "there; move it away or choose another --run-dir")
        files.append(entry)
    return files


def to_jsonable(value: Any) -> Any:
    """Arrays to lists, numpy scalars to Python, non-finite floats to None (JSON has no NaN)."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "__array__") and not isinstance(value, (str, bytes)):
        arr = np.asarray(value)
        return to_jsonable(arr.tolist()) if arr.ndim else to_jsonable(arr.item())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


def record_end(run_dir: Path, record: Mapping[str, Any], cause: BaseException | None = None,
               exit_code: int | None = None) -> None:
    """Write the record a run ends with (failed, interrupted); if even that fails, raise one WriteError saying both.

    `cause` is what ended the run (its message leads the line); `exit_code` overrides 74 (an
    interrupted run keeps 130 / 143).
    """
    try:
        write_metrics(run_dir, record)
    except (WriteError, OSError) as e:
        what = "the run was stopped" if cause is None else str(cause) if isinstance(cause, (ResultsError, OSError)) \
            else f"{type(cause).__name__}: {cause}"
        error = WriteError(f"{what}; {Path(run_dir) / METRICS_FILE} could not be marked {record['status']} either "
                           f"({getattr(e, 'strerror', None) or e}), so it may still say running")
        error.exit_code = exit_code or EXIT_IO
        raise error from None


def write_json(path: Path, obj: Any) -> None:
    text = json.dumps(to_jsonable(obj), indent=1, allow_nan=False)
    write_atomic(path, (text + "\n").encode())


def write_metrics(run_dir: Path, record: Mapping[str, Any]) -> Path:
    """Write `record` as metrics.json in the current schema (an older record is upgraded, see `upgraded`)."""
    missing = [k for k in REQUIRED_KEYS if k not in record]
    if missing:
        raise ValueError(f"metrics record lacks {missing}")
    if record["status"] not in STATUSES:
        raise ValueError(f"unknown status {record['status']!r}")
    record = upgraded(record)
    path = Path(run_dir) / METRICS_FILE
    write_json(path, record)
    return path


def read_metrics(path: Path) -> dict:
    """Read a run's metrics.json (the folder or the file itself).

    Raises ResultsError naming the file for a missing, empty, corrupt or newer-schema file, for
    one that is not a regular file (a FIFO would block the reader forever), and for a record
    whose values have the wrong types (see `check_types`); older schema versions are accepted.
    """
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    text = _read_regular_file(path)
    if not text.strip():
        raise ResultsError(f"{path}: empty file")
    try:
        record = json.loads(text)
    except json.JSONDecodeError as e:
        raise ResultsError(f"{path}: not valid JSON (truncated or corrupt?): {e.msg} at line {e.lineno}") from None
    if not isinstance(record, dict) or not isinstance(record.get("schema_version"), int):
        raise ResultsError(f"{path}: not an optlab metrics file (no integer schema_version)")
    if record["schema_version"] > SCHEMA_VERSION:
        raise ResultsError(
            f"{path}: written by a newer optlab (schema {record['schema_version']}, "
            f"this one reads up to {SCHEMA_VERSION}); upgrade optlab to read it"
        )
    missing = [k for k in REQUIRED_KEYS if k not in record]
    if missing:
        raise ResultsError(f"{path}: incomplete metrics file, missing {', '.join(missing)}")
    problem = check_types(record)
    if problem:
        raise ResultsError(f"{path}: malformed metrics file, {problem}")
    return record


def _read_regular_file(path: Path) -> str:
    """The UTF-8 text of `path`, refusing anything but a regular file without blocking on it.

    O_NONBLOCK makes opening a FIFO return at once instead of waiting for a writer; fstat on the
    open descriptor then tells a FIFO, device or folder from a file with no race in between.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise ResultsError(f"{path}: no such file") from None
    except OSError as e:
        raise ResultsError(f"{path}: cannot read ({e.strerror or e})") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise ResultsError(f"{path}: not a regular file")
        try:
            return f.read().decode("utf-8")
        except OSError as e:
            raise ResultsError(f"{path}: cannot read ({e.strerror or e})") from None
        except UnicodeDecodeError as e:
            raise ResultsError(f"{path}: cannot read (not UTF-8 text: {e.reason} at byte {e.start})") from None


def find_runs(*roots: Path) -> Iterator[Path]:
    """Every folder below `roots` (any depth) that holds a metrics.json, sorted."""
    seen = set()
    for root in roots:
        root = Path(root)
        candidates = [root / METRICS_FILE] if (root / METRICS_FILE).exists() else []
        candidates += sorted(root.rglob(METRICS_FILE))
        for file in candidates:
            folder = file.parent.resolve()
            if folder not in seen:
                seen.add(folder)
                yield file.parent


def environment() -> dict:
    """What is needed to reproduce a run: library versions, the device it ran on, and the plug-ins loaded
    (`plugins`: each one's path or entry-point name and the sha256 of its file; see optlab.plugins)."""
    import jax
    import jaxlib
    import optax

    from optlab import __version__, plugins

    devices = jax.devices()
    return {
        "optlab": __version__,
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "optax": optax.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "backend": jax.default_backend(),
        "device_count": len(devices),
        "device_kind": devices[0].device_kind,
        "platform": platform.platform(terse=True),
        "plugins": plugins.records(),
    }
