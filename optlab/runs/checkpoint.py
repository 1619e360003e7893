"""Checkpoints: everything an epoch-based run needs to continue exactly where it stopped.

One file, RUN_DIR/checkpoint.npz, written atomically: the training state (parameters,
optimizer state, PRNG key) as the leaves of its pytree, the epoch it was taken after, and
any named host arrays the experiment wants back (e.g. the first-layer weight snapshots).
Restoring needs a template state of the same structure (a freshly initialised one), which
supplies the tree structure; the leaves come from the file, bit for bit.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from optlab import results
from optlab.errors import ResultsError
from optlab.results import write_atomic

CHECKPOINT_FILE = results.CHECKPOINT_FILE


def _to_host(leaf: Any) -> np.ndarray:
    if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        return np.asarray(jax.random.key_data(leaf))  # typed keys are stored as their raw data
    return np.asarray(leaf)


def save(run_dir: Path, epoch: int, state: Any, extras: Mapping[str, np.ndarray] | None = None) -> Path:
    """Write the checkpoint taken after `epoch`: the pytree `state` and named host arrays."""
    leaves = jax.tree.leaves(state)
    arrays = {f"state/{i}": _to_host(leaf) for i, leaf in enumerate(leaves)}
    arrays |= {f"extra/{name}": np.asarray(value) for name, value in (extras or {}).items()}
    buffer = io.BytesIO()
    np.savez(buffer, epoch=np.asarray(epoch), leaves=np.asarray(len(leaves)), **arrays)
    path = Path(run_dir) / CHECKPOINT_FILE
    write_atomic(path, buffer.getvalue())
    return path


def load(run_dir: Path, template: Any) -> tuple[int, Any, dict[str, np.ndarray]]:
    """(epoch, state, extras) from RUN_DIR/checkpoint.npz, the state shaped like `template`."""
    path = Path(run_dir) / CHECKPOINT_FILE
    try:
        with np.load(path) as data:
            files = {name: data[name] for name in data.files}
    except FileNotFoundError:
        raise ResultsError(f"{run_dir}: no checkpoint to resume from ({CHECKPOINT_FILE} is missing)") from None
    except (OSError, ValueError) as e:
        raise ResultsError(f"{path}: unreadable checkpoint ({e})") from None
    template_leaves, treedef = jax.tree.flatten(template)
    if int(files.get("leaves", -1)) != len(template_leaves):
        raise ResultsError(f"{path}: checkpoint does not match this run's model and optimizer")
    leaves = []
    for i, like in enumerate(template_leaves):
        stored = files[f"state/{i}"]
        if isinstance(like, jax.Array) and jax.dtypes.issubdtype(like.dtype, jax.dtypes.prng_key):
            leaves.append(jax.random.wrap_key_data(stored, impl=jax.random.key_impl(like)))
        elif np.shape(stored) != np.shape(like):
            raise ResultsError(f"{path}: checkpoint does not match this run's model and optimizer")
        else:
            leaves.append(jax.numpy.asarray(stored, dtype=like.dtype))
    extras = {name.removeprefix("extra/"): value for name, value in files.items() if name.startswith("extra/")}
    return int(files["epoch"]), jax.tree.unflatten(treedef, leaves), extras
