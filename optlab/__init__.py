"""optlab: optimization experiments on feed-forward networks, on JAX and optax."""

__version__ = "0.1.0"
