"""The lecture's two-weight model.

Model y ~ N(w2·h, 1) with h = w1·x, one data point (x, y) = (1, 1.5), and weight decay 0.04:

    C(w1, w2) = (w1·w2 − 1.5)² + 0.04·(w1² + w2²)

Its critical points, from ∇C = 0: subtracting w2·∂C/∂w2 from w1·∂C/∂w1 gives
0.08·(w1² − w2²) = 0, so w1 = ±w2; then w1 = w2 = a with a·(a² − 1.46) = 0 and w1 = −w2
only at 0. Hence a saddle at the origin (Hessian eigenvalues 0.08 ± 3) and two minima at
w1 = w2 = ±√1.46 with C = 0.1184 (Hessian eigenvalues 0.16 and 5.84).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import jax

TARGET = 1.5
DECAY = 0.04
MINIMUM = math.sqrt(TARGET - DECAY)  # √1.46
MINIMUM_LOSS = DECAY * (2 * TARGET - DECAY)  # C at the minima: 0.04² + 0.08·1.46 = 0.1184
CRITICAL_POINTS: list[tuple[str, tuple[float, float]]] = [
    ("saddle", (0.0, 0.0)),
    ("minimum", (MINIMUM, MINIMUM)),
    ("minimum", (-MINIMUM, -MINIMUM)),
]


def loss(params: jax.Array, batch=None, key=None) -> jax.Array:
    """C(w1, w2) for params = [w1, w2] (a JAX or a numpy array); full batch, so `batch` and `key` are unused."""
    del batch, key
    w1, w2 = params[0], params[1]
    return (w1 * w2 - TARGET) ** 2 + DECAY * (w1**2 + w2**2)


def loss_grid(w1: np.ndarray, w2: np.ndarray) -> np.ndarray:
    """C evaluated elementwise on numpy arrays: the landscape for contour plots."""
    return (w1 * w2 - TARGET) ** 2 + DECAY * (w1**2 + w2**2)


def init(start: tuple[float, float]) -> jax.Array:
    import jax.numpy as jnp  # here, so that the module imports without JAX

    return jnp.asarray(start, dtype=jnp.float64)
