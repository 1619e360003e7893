"""Pure functions of (loss, params): curvature and the kind of critical point.

The exact Hessian is for small problems (it is n × n); `jax.hessian` forms it from
forward-over-reverse differentiation of the loss.
"""

from __future__ import annotations

import itertools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

GRAD_TOL = 1e-6  # a point with a smaller gradient norm counts as critical
EIG_TOL = 1e-9  # eigenvalues smaller than this in magnitude count as zero


def gradient_norm(loss: Callable, params) -> float:
    grad, _ = ravel_pytree(jax.grad(loss)(params))
    return float(jnp.linalg.norm(grad))


def hessian_eigenvalues(loss: Callable, params) -> np.ndarray:
    """The exact Hessian's eigenvalues, ascending."""
    flat, unravel = ravel_pytree(params)
    hessian = jax.hessian(lambda x: loss(unravel(x)))(flat)
    return np.asarray(jnp.linalg.eigvalsh(hessian))


def classify(grad_norm: float, eigenvalues: np.ndarray) -> str:
    """"minimum" | "maximum" | "saddle" | "not-critical" by the gradient and the Hessian's signs."""
    if not np.isfinite(grad_norm) or grad_norm > GRAD_TOL or not np.all(np.isfinite(eigenvalues)):
        return "not-critical"
    positive, negative = np.any(eigenvalues > EIG_TOL), np.any(eigenvalues < -EIG_TOL)
    if positive and negative:
        return "saddle"
    if positive:
        return "minimum"
    if negative:
        return "maximum"
    return "not-critical"  # a flat point: the second-order test cannot tell


def critical_point_report(loss: Callable, params) -> dict:
    """What the analysis section of metrics.json says about the final point."""
    grad_norm = gradient_norm(loss, params)
    eigenvalues = hessian_eigenvalues(loss, params)
    top = float(eigenvalues[-1])
    return {
        "grad_norm": grad_norm,
        "hessian_eigenvalues": eigenvalues.tolist(),
        "critical_point": classify(grad_norm, eigenvalues),
        # plain gradient descent is stable near this point only for η < 2/λmax
        "gd_max_stable_lr": 2.0 / top if top > EIG_TOL else None,
    }


def find_critical_points(
    loss: Callable, bounds: tuple[float, float, float, float], n: int = 9, iterations: int = 50
) -> list[tuple[str, tuple[float, float]]]:
    """Critical points of a 2-parameter loss inside `bounds`, found by Newton from an n×n grid.

    Newton's method converges to critical points of every kind (it solves ∇C = 0), which
    is exactly what is wanted here; duplicates are merged.
    """
    grad = jax.grad(loss)
    hess = jax.hessian(loss)

    @jax.jit
    def solve(x):
        def body(x, _):
            step = jnp.linalg.lstsq(hess(x), grad(x))[0]
            return x - step, None

        return jax.lax.scan(body, x, None, length=iterations)[0]

    x0, x1, y0, y1 = bounds
    starts = jnp.asarray(list(itertools.product(np.linspace(x0, x1, n), np.linspace(y0, y1, n))))
    found: list[tuple[str, tuple[float, float]]] = []
    for point in np.asarray(jax.vmap(solve)(starts)):
        inside = x0 <= point[0] <= x1 and y0 <= point[1] <= y1
        if not inside or any(np.allclose(point, p, atol=1e-6) for _, p in found):
            continue
        kind = classify(gradient_norm(loss, jnp.asarray(point)), hessian_eigenvalues(loss, jnp.asarray(point)))
        if kind != "not-critical":
            found.append((kind, (float(point[0]), float(point[1]))))
    return sorted(found, key=lambda item: item[1])
