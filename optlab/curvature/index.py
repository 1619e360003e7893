"""The index of a small network's Hessian at an iterate: how many directions curve downwards.

The index of a critical point is its number of negative Hessian eigenvalues: 0 at a minimum, > 0
at a saddle. Dauphin et al. (2014) argue that in high dimensions most critical points with a high
loss are saddles, that the index falls as the loss does, and that Newton's method is attracted to
them while saddle-free Newton is repelled. Measured here exactly: the dense Hessian
(`hvp.dense_hessian`, n ≤ a few thousand parameters) diagonalised once, every eigenvalue counted.

An eigenvalue counts as zero when |λ| ≤ ZERO_RTOL · ‖H‖₂ (‖H‖₂ = max |λ|), the spectrum module's
tolerance (optlab.curvature.analysis.ZERO_RTOL): a network's Hessian has an exact null space
(the weights of always-black pixels) whose roundoff would otherwise count as negative or positive
by the sign of a rounding error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from optlab.curvature import hvp
from optlab.curvature.analysis import ZERO_RTOL

# The history keys one measurement adds, per epoch (metrics.json history.<key>).
KEYS = ("hessian_negative_count", "hessian_negative_fraction", "hessian_zero_fraction", "hessian_lambda_min",
        "hessian_lambda_max", "hessian_grad_norm")


def counts(eigenvalues: np.ndarray, zero_rtol: float = ZERO_RTOL) -> dict[str, float]:
    """The number and share of eigenvalues below −tol (the index), the share within ±tol (zero), with
    tol = zero_rtol · max |λ|, and the extreme eigenvalues."""
    eigenvalues = np.asarray(eigenvalues, np.float64)
    tol = zero_rtol * float(np.max(np.abs(eigenvalues)))
    n = len(eigenvalues)
    return {
        "hessian_negative_count": int(np.sum(eigenvalues < -tol)),
        "hessian_negative_fraction": float(np.sum(eigenvalues < -tol) / n),
        "hessian_zero_fraction": float(np.sum(np.abs(eigenvalues) <= tol) / n),
        "hessian_lambda_min": float(eigenvalues.min()),
        "hessian_lambda_max": float(eigenvalues.max()),
    }


def index_program(loss: Callable[[Any, Any], jax.Array]) -> Callable[[Any, Any], tuple[jax.Array, jax.Array]]:
    """`measure(params, batch) -> (eigenvalues ascending, ‖∇C‖₂)`, jitted: compiled once per shape
    and reused every epoch. `loss(params, batch)` is the clean loss (no noise, no dropout)."""

    def measure(params, batch):
        value = lambda p: loss(p, batch)  # noqa: E731
        grad, _ = ravel_pytree(jax.grad(value)(params))
        return jnp.linalg.eigvalsh(hvp.dense_hessian(value, params)), jnp.linalg.norm(grad)

    return jax.jit(measure)


def hessian_index(measure: Callable, params, batch) -> dict[str, float]:
    """One measurement as the history's row: `counts` of the eigenvalues and the gradient norm."""
    eigenvalues, grad_norm = measure(params, batch)
    return counts(np.asarray(eigenvalues)) | {"hessian_grad_norm": float(grad_norm)}
