"""optlab: optimization experiments on feed-forward networks, on JAX and optax.

The public surface is read lazily from `_EXPORTS` (name -> "module:attribute", or "module" for the
module itself), so that `import optlab` stays cheap and JAX-free: a plug-in's `@optlab.optimizer(...)`
imports only the optimizer registry, `optlab.run` the Python API (optlab.api). Add an export by
adding its line there.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    # the Python API (optlab.api); `optlab.sweep` is the optlab.sweep package, which is callable
    "run": "optlab.api:run",
    "load": "optlab.api:load",
    "compare": "optlab.api:compare",
    "Run": "optlab.api:Run",
    "sweep": "optlab.sweep",
    # the registry decorators: a plug-in file registers with these (README "Plug-ins")
    "optimizer": "optlab.core.optimizers:optimizer",
    "schedule": "optlab.core.schedules:schedule",
    "init": "optlab.problems.inits:init",
    "experiment": "optlab.experiments.contract:experiment",
    # what a plug-in experiment builds, returns and receives
    "transformation": "optlab.core.optimizers:transformation",
    "Experiment": "optlab.experiments.contract:Experiment",
    "RunContext": "optlab.experiments.contract:RunContext",
    "RunResult": "optlab.experiments.contract:RunResult",
    "Sweeping": "optlab.experiments.contract:Sweeping",
    "SweepProgram": "optlab.experiments.contract:SweepProgram",
    "ConfigError": "optlab.errors:ConfigError",
    "OptlabError": "optlab.errors:OptlabError",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def _version() -> str:
    """The installed distribution's version (its metadata, as pyproject.toml says), like equinox's."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("optlab")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        value = _version()
    elif name in _EXPORTS:
        module, _, attr = _EXPORTS[name].partition(":")
        value = importlib.import_module(module)
        value = getattr(value, attr) if attr else value
    else:
        raise AttributeError(f"module 'optlab' has no attribute {name!r}")
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
