"""`optlab sweep`: a grid of configurations trained as few compiled programs as possible.

    optlab sweep mnist --opt adam --lr 1e-4,3e-4,1e-3 --seed 0..4
    optlab.sweep("mnist", optimizer="adam", lr=[1e-4, 3e-4, 1e-3], seed=range(5))   # from Python

Each setting takes a list ("1e-4,3e-4"; an integer range "0..4" is 0,1,2,3,4; list-valued
settings such as --hidden separate their alternatives with ";": "32;225,225"), or the same
under a `[sweep]` table of an experiment file. Every combination is one configuration, resolved
and validated like `optlab run` would. Configurations that differ only in array-valued
settings (the experiment's `Sweeping.array_keys`: learning rate, momentum, noise, seed, …) form a
group: one program, `jax.vmap` of the single run's own step functions over the configuration
axis, sharded over every device (optlab.core.devices). Anything else (optimizer, hidden sizes,
batch size, schedule, …) and whether each noise/decay term is present at all (a static branch,
as in a single run) splits the grid into groups. A group too large for memory runs in chunks.

Results: OUT/SWEEP_ID/RUN_ID/metrics.json per configuration, exactly as `optlab run` writes it
plus `sweep_id` (so `optlab compare OUT/SWEEP_ID` works), and OUT/SWEEP_ID/summary.{csv,json},
heatmap.png, and with --best METRIC, best.toml (runnable with `optlab run best.toml`): those
are optlab.sweep.summary's.

Modules: grid (the settings' alternatives and every configuration), plan (groups into compiled
programs and memory-sized chunks), execute (folders, training, summaries), summary (the sweep's
summary files, heat-map and best configuration); sources (the first argument, and Python keywords),
call (`optlab.sweep(...)` from Python: the package is callable, see `_Package`).
"""

import sys
import types
from typing import Any

from optlab.sweep.execute import Outcome, run
from optlab.sweep.grid import Sweep, build


class _Package(types.ModuleType):
    """`optlab.sweep("tiny", lr=[0.1, 0.2])` runs a sweep (optlab.sweep.call.sweep, which see).

    The Python API's name is this package's: once `optlab.sweep` is imported, Python sets the attribute
    `sweep` of `optlab` to it, so the package itself is what a user calls.
    """

    def __call__(self, target: Any, /, **settings: Any) -> Any:
        from optlab.sweep.call import sweep

        return sweep(target, **settings)


sys.modules[__name__].__class__ = _Package
__all__ = ["Outcome", "Sweep", "build", "run"]
