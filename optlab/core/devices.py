"""Where a sweep runs: its configuration axis sharded over every device JAX sees, on one host or many.

A sweep stacks its configurations along a leading axis of length L (the "lanes"). `Lanes`
pads L up to a multiple of the device count (repeating the last configuration; the copies
are computed and thrown away) and places arrays with a `NamedSharding` over a 1-D `Mesh`
named "config": device d holds lanes [d·L/D, (d+1)·L/D). Data that every lane reads (the
training images) are replicated. XLA then runs each device's share of the vmapped program
on that device; there is no pmap and no hand-written communication, since lanes never talk.

Multi-host: `initialize` calls `jax.distributed.initialize`, either with explicit
--coordinator/--num-processes/--process-id or, when the usual cluster variables are set
(SLURM, Open MPI, or JAX_COORDINATOR_ADDRESS + JAX_NUM_PROCESSES + JAX_PROCESS_ID), with
JAX's own detection. `jax.devices()` then lists every host's devices, the same sharded program
spans them all, and `to_host` gathers the lanes back to every process; only process 0
(`is_writer`) writes results.

A single run can instead split each minibatch over the devices (`optlab run --data-parallel`):
`DataParallel` is a 1-D mesh named "data" with the parameters, optimizer state and images
replicated and every minibatch sharded along its batch axis; XLA partitions the forward and
backward pass and all-reduces the gradient.

    # by hand, two hosts (run on each, with its own --process-id):
    optlab sweep mnist --lr 1e-4,1e-3 --seed 0..7 --coordinator host0:1234 --num-processes 2 --process-id 0
    # SLURM: one task per host; JAX reads SLURM_* itself
    srun --nodes 2 --ntasks-per-node 1 optlab sweep mnist --lr 1e-4,1e-3 --seed 0..7
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from optlab.errors import ConfigError

AXIS = "config"
DATA_AXIS = "data"
# Variables by which JAX's cluster detection recognises a multi-process launch.
CLUSTER_VARIABLES = ("JAX_COORDINATOR_ADDRESS", "SLURM_JOB_ID", "OMPI_MCA_orte_hnp_uri", "PMIX_RANK")


def cluster_detected(environ: dict | None = None) -> bool:
    """Is this process one of several launched together (a variable JAX's detection reads is set)?"""
    environ = os.environ if environ is None else environ
    if "SLURM_JOB_ID" in environ:  # a SLURM allocation with a single task is not a cluster
        return int(environ.get("SLURM_NTASKS", environ.get("SLURM_NPROCS", "1"))) > 1
    return any(v in environ for v in CLUSTER_VARIABLES)


def initialize(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None) -> bool:
    """Join a multi-process run if one was asked for (flags) or launched (cluster variables).

    Returns True when jax.distributed was initialized. Must run before anything touches a device.
    """
    explicit = (coordinator, num_processes, process_id)
    if any(v is not None for v in explicit):
        if any(v is None for v in explicit):
            raise ConfigError("--coordinator, --num-processes and --process-id go together: give all three")
        if not 0 <= process_id < num_processes:
            raise ConfigError(f"--process-id {process_id} must be from 0 to {num_processes - 1} "
                              f"(--num-processes {num_processes})")
        _join(coordinator, num_processes, process_id)
        return True
    if cluster_detected():
        _join()  # JAX reads the coordinator, count and rank from the environment
        return True
    return False


def _join(*args: Any) -> None:
    """jax.distributed.initialize, then one barrier so that every process has connected.

    The CPU backend's collectives (gloo) print a line on file descriptor 1 when they connect;
    stdout belongs to optlab's results (its last line is the folder), so that line is sent to
    stderr by pointing descriptor 1 there for the duration.
    """
    import sys

    from jax.experimental import multihost_utils

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        jax.distributed.initialize(*args)
        multihost_utils.sync_global_devices("optlab: every process has joined")
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def is_writer() -> bool:
    """Only process 0 writes run folders, so that hosts sharing a file system do not collide."""
    return jax.process_index() == 0


def padded(n: int, multiple: int) -> int:
    """The smallest multiple of `multiple` that is ≥ n (and ≥ multiple)."""
    return max(1, -(-n // multiple)) * multiple


@dataclass(frozen=True)
class Lanes:
    """n configurations laid out as `size` lanes (n rounded up to the device count) over a mesh."""

    n: int
    mesh: Mesh

    @classmethod
    def over(cls, n: int, devices: Sequence[jax.Device] | None = None) -> Lanes:
        devices = list(jax.devices() if devices is None else devices)
        return cls(n, Mesh(np.array(devices), (AXIS,)))

    @property
    def size(self) -> int:
        return padded(self.n, self.mesh.size)

    @property
    def sharded(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec(AXIS))

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec())

    def stack(self, trees: Sequence[Any]) -> Any:
        """Stack n pytrees of host arrays into one pytree with a leading lane axis, padded and sharded."""
        if len(trees) != self.n:
            raise ValueError(f"expected {self.n} configurations, got {len(trees)}")
        trees = list(trees) + [trees[-1]] * (self.size - self.n)
        stacked = jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees)
        return jax.tree.map(lambda a: self.put(a, self.sharded), stacked)

    def replicate(self, tree: Any) -> Any:
        """Every device gets the whole of `tree` (data that every lane reads)."""
        return jax.tree.map(lambda a: self.put(np.asarray(a), self.replicated), tree)

    @staticmethod
    def put(array: np.ndarray, sharding: NamedSharding) -> jax.Array:
        # make_array_from_callback works across hosts too: each process supplies its devices' slices.
        return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])


@dataclass(frozen=True)
class DataParallel:
    """One run's minibatches split over the devices of a 1-D mesh along axis "data"."""

    mesh: Mesh

    @classmethod
    def over(cls, devices: Sequence[jax.Device] | None = None) -> DataParallel:
        devices = list(jax.devices() if devices is None else devices)
        return cls(Mesh(np.array(devices), (DATA_AXIS,)))

    @property
    def size(self) -> int:
        return self.mesh.size

    @property
    def batch(self) -> NamedSharding:
        """A minibatch (any pytree of arrays with a leading batch axis): slice d on device d."""
        return NamedSharding(self.mesh, PartitionSpec(DATA_AXIS))

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec())

    def replicate(self, tree: Any) -> Any:
        """Every device gets the whole of `tree` (parameters, optimizer state, the images)."""
        return jax.device_put(tree, self.replicated)


def to_host(tree: Any) -> Any:
    """A pytree of (possibly multi-host) arrays as numpy, on every process (PRNG keys as their key data)."""
    tree = jax.tree.map(lambda a: jax.random.key_data(a) if _is_key(a) else a, tree)
    return jax.tree.map(_gathered, tree)


def _gathered(a: Any) -> np.ndarray:
    """One leaf on the host. A global array spanning several processes is gathered from all of
    them; anything this process holds whole (host values, single-process arrays) is read as it
    is — gathering those would stack every process's own copy along a new axis."""
    if isinstance(a, jax.Array) and not a.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(a, tiled=True))
    return np.asarray(jax.device_get(a))


def _is_key(a: Any) -> bool:
    return hasattr(a, "dtype") and jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key)


def lane(tree: Any, i: int) -> Any:
    """Configuration i's slice of a stacked pytree of host arrays."""
    return jax.tree.map(lambda a: a[i], tree)


def shares(array: jax.Array) -> dict[str, int]:
    """How many lanes each device holds: {device: count} (what the tests check)."""
    return {str(s.device): int(s.data.shape[0]) for s in array.addressable_shards}


def memory_budget() -> int:
    """Bytes one sweep program may plan to use over all local devices: half of what is free.

    Accelerators report their own memory; CPU devices (even several virtual ones) share the
    host's available memory.
    """
    devices = jax.local_devices()
    try:
        stats = devices[0].memory_stats() or {}
    except Exception:  # backends without memory_stats (CPU) raise or return None
        stats = {}
    if "bytes_limit" in stats:
        return len(devices) * (stats["bytes_limit"] - stats.get("bytes_in_use", 0)) // 2
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        available = 8 << 30
    return available // 2
