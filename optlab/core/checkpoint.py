"""Checkpoints: everything an epoch-based run needs to continue exactly where it stopped.

One file, RUN_DIR/checkpoint.npz, written atomically: the training state (parameters,
optimizer state, PRNG key) as the leaves of its pytree, the epoch it was taken after, and
any named host arrays the experiment wants back (e.g. the first-layer weight snapshots).
Restoring needs a template state of the same structure (a freshly initialised one, or its
`jax.eval_shape`), which supplies the tree structure; the leaves come from the file, bit for bit.

Resuming reads in steps, so that a damaged file is refused before anything is written:
`read` (a readable file holding an integer epoch and every leaf, all numbers), `check_epoch`
(the epoch against the run's record), `check_layout` (every leaf against the template), and
only then `restore`. Each refusal is one ResultsError naming the file.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np

from optlab import results
from optlab.errors import ResultsError
from optlab.results import write_atomic

CHECKPOINT_FILE = results.CHECKPOINT_FILE
# What reading a damaged .npz raises: a cut-off or garbled zip, a cut-off array, pickled objects refused.
_UNREADABLE = (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error, NotImplementedError)


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint file's contents, checked to be complete and numeric (see `read`)."""

    path: Path
    epoch: int
    leaves: tuple[np.ndarray, ...]
    extras: dict[str, np.ndarray]

    def damaged(self, what: str) -> ResultsError:
        return ResultsError(f"{self.path}: damaged checkpoint ({what}); the run cannot continue from it")


def _is_key(leaf: Any) -> bool:
    return jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _to_host(leaf: Any) -> np.ndarray:
    if isinstance(leaf, jax.Array) and _is_key(leaf):
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


def read(run_dir: Path) -> Checkpoint:
    """RUN_DIR/checkpoint.npz, refused in one line if it is missing, unreadable or incomplete.

    Every array is read here (not lazily), so that a cut-off member fails now and not halfway
    through restoring; an EOFError must not escape either, as click would take it for Ctrl-D.
    """
    path = Path(run_dir) / CHECKPOINT_FILE
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):  # a single .npy array
            raise ValueError("a single array, not an .npz archive")
        with data:
            files = {name: data[name] for name in data.files}
    except FileNotFoundError:
        raise ResultsError(f"{run_dir}: no checkpoint to resume from ({CHECKPOINT_FILE} is missing)") from None
    except _UNREADABLE as e:
        raise ResultsError(f"{path}: unreadable checkpoint ({str(e).strip() or type(e).__name__})") from None
    shell = Checkpoint(path, 0, (), {})
    epoch, count = (_integer(shell, files, name) for name in ("epoch", "leaves"))
    missing = [f"state/{i}" for i in range(count) if f"state/{i}" not in files]
    if missing:
        raise shell.damaged(f"no {missing[0]}" + (f" and {len(missing) - 1} more leaves" if len(missing) > 1 else ""))
    leaves = tuple(files[f"state/{i}"] for i in range(count))
    extras = {name.removeprefix("extra/"): value for name, value in files.items() if name.startswith("extra/")}
    named = [*((f"state/{i}", v) for i, v in enumerate(leaves)), *((f"extra/{k}", v) for k, v in extras.items())]
    for name, value in named:
        if value.dtype.kind not in "biuf":
            raise shell.damaged(f"{name} holds {value.dtype} values, not numbers")
    return Checkpoint(path, epoch, leaves, extras)


def _integer(shell: Checkpoint, files: Mapping[str, np.ndarray], name: str) -> int:
    if name not in files:
        raise shell.damaged(f"no {name!r}")
    value = files[name]
    if value.shape != () or value.dtype.kind not in "iu":
        raise shell.damaged(f"{name!r} is {value.dtype} of shape {value.shape}, not one integer")
    return int(value)


def check_epoch(saved: Checkpoint, recorded: Sequence[Any], total: int) -> None:
    """The checkpoint's epoch against the record: taken after one of the epochs metrics.json holds.

    metrics.json is written before each checkpoint, so it may hold later epochs (they are trained
    again) but never fewer; epoch 0 or a negative one would retrain the run on top of later weights.
    """
    held = len(recorded)
    if not 1 <= saved.epoch <= min(held, total) or list(recorded[: saved.epoch]) != list(range(1, saved.epoch + 1)):
        holds = f"epochs 1..{held}" if held else "no epochs"
        raise saved.damaged(f"taken after epoch {saved.epoch}, but metrics.json holds {holds} of the run's {total}")


def layout(template: Any) -> list[jax.ShapeDtypeStruct]:
    """Shape and dtype of each leaf as the file stores it (typed keys as their raw data), from a concrete
    or an abstract (`jax.eval_shape`) template: what a checkpoint of this model must hold."""
    def stored(tree):
        return [jax.random.key_data(leaf) if _is_key(leaf) else leaf for leaf in jax.tree.leaves(tree)]

    return jax.eval_shape(stored, template)


def check_layout(saved: Checkpoint, template: Any) -> None:
    """Every leaf of the file has the template's shape and dtype (no silent casts, no reshapes)."""
    wanted = layout(template)
    if len(saved.leaves) != len(wanted):
        raise ResultsError(f"{saved.path}: checkpoint does not match this run's model and optimizer "
                           f"({len(saved.leaves)} arrays, the run's state has {len(wanted)})")
    for i, (stored, like) in enumerate(zip(saved.leaves, wanted)):
        if stored.shape != like.shape or stored.dtype != like.dtype:
            raise ResultsError(f"{saved.path}: checkpoint does not match this run's model and optimizer "
                               f"(state/{i} is {stored.dtype}{list(stored.shape)}, the run's is "
                               f"{like.dtype}{list(like.shape)})")


def restore(saved: Checkpoint, template: Any) -> Any:
    """The state shaped like `template` from a checked checkpoint, bit for bit."""
    check_layout(saved, template)
    template_leaves, treedef = jax.tree.flatten(template)
    leaves = [jax.random.wrap_key_data(stored, impl=jax.random.key_impl(like)) if _is_key(like)
              else jax.numpy.asarray(stored) for stored, like in zip(saved.leaves, template_leaves)]
    return jax.tree.unflatten(treedef, leaves)


def load(run_dir: Path, template: Any) -> tuple[int, Any, dict[str, np.ndarray]]:
    """(epoch, state, extras) from RUN_DIR/checkpoint.npz, the state shaped like `template`."""
    saved = read(run_dir)
    return saved.epoch, restore(saved, template), saved.extras
