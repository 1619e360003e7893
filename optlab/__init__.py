"""optlab: optimization experiments on feed-forward networks, on JAX and optax."""

__version__ = "0.1.0"

# The Python API (optlab.api), loaded on first use so that `import optlab` stays cheap and JAX-free.
# `optlab.sweep` is the optlab.sweep package, which is callable (optlab.sweep.call.sweep).
_API = ("run", "load", "compare", "Run")
# The plug-in decorators, each imported from its module on first use (none of these imports JAX).
_DECORATORS = {
    "dataset": "optlab.data.datasets",
    "model": "optlab.problems.models",
    "loss": "optlab.problems.losses",
    "activation": "optlab.problems.activations",
}


def __getattr__(name: str):
    if name in _API:
        from optlab import api

        return getattr(api, name)
    if name == "sweep":
        import optlab.sweep

        return optlab.sweep
    if name in _DECORATORS:
        import importlib

        return getattr(importlib.import_module(_DECORATORS[name]), name)
    raise AttributeError(f"module 'optlab' has no attribute {name!r}")
