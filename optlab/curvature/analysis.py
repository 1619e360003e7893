"""Pure functions of (loss, params): curvature and the kind of critical point.

The exact Hessian is for small problems (it is n × n); `hvp.dense_hessian` forms it with
`jax.hessian` and each analysis diagonalises it once. For networks, `hessian_spectrum` uses
only Hessian-vector products (optlab.curvature.hvp): Lanczos for the extreme eigenvalues, Hutchinson
for the trace, stochastic Lanczos quadrature for the density.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from optlab.curvature import hvp, lanczos, spectrum

GRAD_TOL = 1e-6  # a point with a smaller gradient norm counts as critical
EIG_TOL = 1e-9  # eigenvalues smaller than this in magnitude count as zero


def gradient_norm(loss: Callable, params) -> float:
    """‖∇C(θ)‖₂ over all parameters."""
    grad, _ = ravel_pytree(jax.grad(loss)(params))
    return float(jnp.linalg.norm(grad))


def hessian_eigenvalues(loss: Callable, params) -> np.ndarray:
    """The exact Hessian's eigenvalues λ₁ ≤ … ≤ λ_n, ascending."""
    return np.asarray(jnp.linalg.eigvalsh(hvp.dense_hessian(loss, params)))


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

    @jax.jit
    def solve(x):
        def body(x, _):
            step = jnp.linalg.lstsq(hvp.dense_hessian(loss, x), grad(x))[0]
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


# ---- networks: the spectrum from Hessian-vector products --------------------------------------

EXACT_LIMIT = 1500  # up to this many parameters the Hessian is formed and diagonalised exactly
LAYER_ORDER = 40  # Lanczos steps for each layer's top eigenvalue: the top one converges first


def _extremes(loss: Callable, params, k: int, key, order: int | None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Bottom-k ascending, top-k descending, and every eigenvalue when the Hessian was formed
    and diagonalised (once) because n ≤ EXACT_LIMIT, else None (Lanczos)."""
    op = hvp.hessian_operator(loss, params)
    if op.n <= EXACT_LIMIT:
        values = np.asarray(jnp.linalg.eigvalsh(hvp.dense_hessian(loss, params)), np.float64)
        return values[:k], values[::-1][:k], values
    bottom, top = lanczos.extreme_eigenvalues(op.matvec, op.n, k, key, op.dtype, order)
    return np.asarray(bottom), np.asarray(top), None


def hessian_spectrum(loss: Callable, params, *, k: int = 20, probes: int = 10, order: int | None = None,
                     seed: int = 0) -> dict:
    """What the Hessian of `loss` (params -> scalar) says at `params`, without forming it when large.

    The k extreme eigenvalues (Lanczos with full reorthogonalisation, or exact up to
    EXACT_LIMIT parameters), tr H by Hutchinson, the density by stochastic Lanczos quadrature,
    the negative eigenvalues' share, and for a list of layers each layer's own top eigenvalue.
    """
    op = hvp.hessian_operator(loss, params)
    if not 1 <= k <= op.n:
        raise ValueError(f"asked for {k} eigenvalues but the problem has {op.n} parameters")
    keys = jax.random.split(jax.random.key(seed), 4)
    bottom, top, values = _extremes(loss, params, k, keys[0], order)
    if values is not None:
        method = "exact"
        q = spectrum.Quadrature(values[None], np.full((1, op.n), 1.0 / op.n))
        trace, trace_stderr = float(values.sum()), 0.0
    else:
        method = "lanczos"
        slq_order = order or lanczos.default_order(op.n, k)
        q = spectrum.slq(op.matvec, op.n, slq_order, probes, keys[1], op.dtype)
        trace, trace_stderr = spectrum.hutchinson_trace(op.matvec, op.n, max(probes, 2), keys[2], op.dtype)
    grid, phi = spectrum.density(q)
    grad_norm = gradient_norm(loss, params)
    lam_max = float(top[0])
    report = {
        "method": method,
        "n_params": op.n,
        "loss": float(loss(params)),
        "grad_norm": grad_norm,
        "top_eigenvalues": top.tolist(),
        "bottom_eigenvalues": bottom.tolist(),
        "lambda_max": lam_max,
        "lambda_min": float(bottom[0]),
        # plain gradient descent is stable near here only for η < 2/λmax
        "gd_max_stable_lr": 2.0 / lam_max if lam_max > EIG_TOL else None,
        "trace": trace,
        "trace_stderr": trace_stderr,
        **spectrum.negative_share(q),
        "critical_point": classify(grad_norm, np.array([bottom[0], lam_max])),
        "density": {"eigenvalue": grid.tolist(), "density": phi.tolist()},
    }
    if isinstance(params, (list, tuple)) and len(params) > 1:
        report["layer_lambda_max"] = [
            float(_extremes(block, params[i], 1, jax.random.fold_in(keys[3], i), LAYER_ORDER)[1][0])
            for i, block in enumerate(hvp.block_losses(loss, params))
        ]
    return report


def analyze_params(loss: Callable, params, batch, data: str, **options) -> dict:
    """`hessian_spectrum` of `loss(params, batch, key)` on a fixed data subset `batch`.

    `data` says in words which subset it is ("the first 1,000 mnist training images"); it is
    stored with the numbers, since the spectrum depends on it. `loss` must be deterministic
    (no input noise or dropout): the same key is passed every time.
    """
    return {"data": data, **hessian_spectrum(hvp.bind_data(loss, batch, jax.random.key(0)), params, **options)}
