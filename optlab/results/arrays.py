"""A run's arrays: params.npz (the final parameters), params_init.npz (a network's before its first step)
and trajectory.npz (a network's flat parameters after chosen epochs), written atomically, read with one
ResultsError naming the file for whatever a damaged archive makes numpy raise.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from optlab.errors import ResultsError
from optlab.results.atomic import write_atomic

PARAMS_FILE = "params.npz"
INITIAL_PARAMS_FILE = "params_init.npz"  # a network's parameters before its first step, as params.npz
TRAJECTORY_FILE = "trajectory.npz"  # a network's flat parameters after chosen epochs (save_trajectory)


def save_params(run_dir: Path, params: Any, file: str = PARAMS_FILE) -> Path:
    """Save a pytree of arrays as params.npz (or `file`), keyed by its path ("layers/0/w")."""
    return _save_npz(Path(run_dir) / file, flat_params(params))


def _save_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> Path:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomic(path, buffer.getvalue())
    return path


def flat_params(params: Any) -> dict[str, np.ndarray]:
    """A pytree of arrays as {path: array}, the keys params.npz uses ("layers/0/w")."""
    import jax

    return {"/".join(_key_name(k) for k in keypath): np.asarray(leaf)
            for keypath, leaf in jax.tree_util.tree_flatten_with_path(params)[0]}


def save_trajectory(run_dir: Path, epochs: Sequence[int], flat_params: np.ndarray) -> Path:
    """trajectory.npz: "epochs" (k,) and "params" (k, n), row i the parameters after epoch epochs[i]
    (0: before training) as one flat vector, in the order of jax.flatten_util.ravel_pytree of the
    saved parameters (layer 0's b, w, layer 1's b, w, …: params.npz's keys sorted within a layer)."""
    return _save_npz(Path(run_dir) / TRAJECTORY_FILE,
                     {"epochs": np.asarray(epochs, np.int64), "params": np.asarray(flat_params)})


def load_trajectory(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(epochs, flat params) of a run's trajectory.npz (save_trajectory); ResultsError when absent or damaged."""
    saved = load_params(run_dir, TRAJECTORY_FILE)
    if set(saved) != {"epochs", "params"} or saved["params"].ndim != 2 or len(saved["epochs"]) != len(saved["params"]):
        raise ResultsError(f"{Path(run_dir) / TRAJECTORY_FILE}: not a trajectory (arrays 'epochs' (k,) and "
                           "'params' (k, n))")
    return saved["epochs"], saved["params"]


def load_params(run_dir: Path, file: str = PARAMS_FILE) -> dict[str, np.ndarray]:
    """The arrays of a run's params.npz by key; ResultsError naming the file when it cannot be read.

    np.load reads a zip archive lazily, so a truncated or corrupt file fails only when an array is
    taken out, and with whatever zipfile, zlib, tokenize (the .npy header) or numpy raise on the
    bytes they find (BadZipFile, zlib.error, EOFError, TokenError, NotImplementedError, ...).
    Reading has no side effects, so every one of them means "this file is damaged".
    """
    path = Path(run_dir) / file
    if not path.exists():
        raise ResultsError(f"{run_dir}: no saved parameters ({file} is missing)")
    if not path.is_file():
        raise ResultsError(f"{path}: not a regular file")
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError("a single array, not an archive of arrays")
        with data:
            return {k: data[k] for k in data.files}
    except Exception as e:  # see the docstring: what corrupt bytes make these libraries raise is an open list
        detail = " ".join(str(e).split()) or type(e).__name__
        raise ResultsError(f"{path}: cannot read the saved parameters (truncated or corrupt?): {detail}") from None


def _key_name(key: Any) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)
