"""optlab: optimization experiments on feed-forward networks, on JAX and optax."""

__version__ = "0.1.0"

# The plug-in decorators, each imported from its module on first use (none of these imports JAX).
_LAZY = {
    "dataset": "optlab.data.datasets",
    "model": "optlab.problems.models",
    "loss": "optlab.problems.losses",
    "activation": "optlab.problems.activations",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'optlab' has no attribute {name!r}")
