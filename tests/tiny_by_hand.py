"""The tiny model's derivatives written out by hand, for tests that check optimizers against them.

C(w1, w2) = (w1 w2 − 1.5)² + 0.04 (w1² + w2²)
"""

import numpy as np


def grad(w) -> np.ndarray:
    """∇C = [2 (w1 w2 − 1.5) w2 + 0.08 w1, 2 (w1 w2 − 1.5) w1 + 0.08 w2]."""
    w1, w2 = w
    r = w1 * w2 - 1.5
    return np.array([2 * r * w2 + 0.08 * w1, 2 * r * w1 + 0.08 * w2])


def hessian(w) -> np.ndarray:
    """∇²C = [[2 w2² + 0.08, 4 w1 w2 − 3], [4 w1 w2 − 3, 2 w1² + 0.08]]."""
    w1, w2 = w
    off = 4 * w1 * w2 - 3.0
    return np.array([[2 * w2**2 + 0.08, off], [off, 2 * w1**2 + 0.08]])
