"""optlab: optimization experiments on feed-forward networks, on JAX and optax."""

__version__ = "0.1.0"

# The Python API (optlab.api), loaded on first use so that `import optlab` stays cheap and JAX-free.
# `optlab.sweep` is the optlab.sweep package, which is callable (optlab.sweep.call.sweep).
_API = ("run", "load", "compare", "Run")


def __getattr__(name: str):
    if name in _API:
        from optlab import api

        return getattr(api, name)
    if name == "sweep":
        import optlab.sweep

        return optlab.sweep
    raise AttributeError(f"module 'optlab' has no attribute {name!r}")
