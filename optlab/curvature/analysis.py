"""Pure functions of (loss, params): curvature and the kind of critical point.

The exact Hessian is for small problems (it is n × n); `hvp.dense_hessian` forms it with
`jax.hessian` and each analysis diagonalises it once. For networks, `hessian_spectrum` uses
only Hessian-vector products (optlab.curvature.hvp): Lanczos for the extreme eigenvalues (only
converged ones reported, with their residuals), Hutchinson for the trace, stochastic Lanczos
quadrature for the density and the shares of negative and zero eigenvalues (|λ| ≤ ZERO_RTOL·‖H‖₂
counts as zero). `ggn_spectrum` reports the same for the Gauss–Newton matrix.
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
    return _report(gradient_norm(loss, params), hessian_eigenvalues(loss, params))


def critical_point_reports(loss: Callable, points) -> list[dict]:
    """`critical_point_report` at each row of `points` (m × n flat parameters), as one vmapped program.

    The same gradient norm, exact Hessian and eigvalsh, vmapped, so that a sweep of thousands of
    configurations pays one dispatch instead of one per configuration (the vmapped eigvalsh may
    round differently from the unbatched one in the last place).
    """
    points = jnp.asarray(points)
    norms, eigenvalues = jax.jit(jax.vmap(_norm_and_eigenvalues, in_axes=(None, 0)), static_argnums=0)(loss, points)
    return [_report(float(g), e) for g, e in zip(np.asarray(norms), np.asarray(eigenvalues))]


def _norm_and_eigenvalues(loss: Callable, params: jax.Array) -> tuple[jax.Array, jax.Array]:
    return jnp.linalg.norm(jax.grad(loss)(params)), jnp.linalg.eigvalsh(hvp.dense_hessian(loss, params))


def _report(grad_norm: float, eigenvalues: np.ndarray) -> dict:
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


# ---- networks: the spectrum from curvature-vector products ------------------------------------

EXACT_LIMIT = 1500  # up to this many parameters the matrix is formed and diagonalised exactly
LAYER_ORDER = 40  # Lanczos steps to start each layer's top eigenvalue from: the top one converges first
ZERO_RTOL = 1e-4  # |λ| ≤ ZERO_RTOL × ‖A‖₂ (= λmax unless λmin is larger in size) counts as zero


def dense_matrix(op: hvp.Operator) -> np.ndarray:
    """The operator's n × n matrix, column j = A e_j (vmapped products), for small problems."""
    columns = jax.jit(jax.vmap(lambda mv, v: mv(v), (None, 0), 1))(op.matvec, jnp.eye(op.n, dtype=op.dtype))
    return np.asarray(columns, np.float64)


def exact_extremes(matrix: np.ndarray, k: int) -> tuple[lanczos.Extremes, np.ndarray]:
    """Bottom-k and top-k of a dense symmetric matrix (float64 `eigh`), residuals ‖A y − λ y‖, and
    every eigenvalue (ascending)."""
    matrix = (np.asarray(matrix, np.float64) + np.asarray(matrix, np.float64).T) / 2
    values, vectors = np.linalg.eigh(matrix)
    residuals = np.linalg.norm(matrix @ vectors - vectors * values, axis=0)
    extremes = lanczos.Extremes(values[:k], residuals[:k], values[::-1][:k], residuals[::-1][:k], len(values), 0.0)
    return extremes, values


def _extremes(op: hvp.Operator, dense: Callable[[], np.ndarray], k: int, key, order: int | None,
              max_order: int | None) -> tuple[lanczos.Extremes, np.ndarray | None]:
    """Exact (`dense()` diagonalised once) when n ≤ EXACT_LIMIT, with every eigenvalue; else Lanczos, None."""
    if op.n <= EXACT_LIMIT:
        return exact_extremes(dense(), k)
    return lanczos.extreme_eigenvalues(op.matvec, op.n, k, key, op.dtype, order, max_order), None


def _first(values: np.ndarray) -> float | None:
    return float(values[0]) if len(values) else None


def operator_spectrum(op: hvp.Operator, dense: Callable[[], np.ndarray], *, k: int = 20, probes: int = 10,
                      order: int | None = None, max_order: int | None = None, seed: int = 0) -> dict:
    """What a symmetric curvature operator's spectrum is, with how sure each number is.

    Extreme eigenvalues: exact up to EXACT_LIMIT parameters, else Lanczos grown from `order`
    steps until the k at each end converge or `max_order` steps are spent; only converged
    ones are listed, each with its residual ‖A y − θ y‖ (an eigenvalue lies within it).
    tr A by Hutchinson (with its standard error); the density by stochastic Lanczos quadrature
    at `order` (default `lanczos.default_order`) steps, with its smoothing width; the shares of
    negative and of zero eigenvalues, |λ| ≤ ZERO_RTOL·‖A‖₂ counting as zero.
    """
    if not 1 <= k <= op.n:
        raise ValueError(f"asked for {k} eigenvalues but the problem has {op.n} parameters")
    keys = jax.random.split(jax.random.key(seed), 3)
    ext, values = _extremes(op, dense, k, keys[0], order, max_order)
    if values is not None:
        q = spectrum.Quadrature(values[None], np.full((1, op.n), 1.0 / op.n))
        trace, trace_stderr, slq_order = float(values.sum()), 0.0, None
    else:
        slq_order = order or lanczos.default_order(op.n, k)
        q = spectrum.slq(op.matvec, op.n, slq_order, probes, keys[1], op.dtype)
        trace, trace_stderr = spectrum.hutchinson_trace(op.matvec, op.n, max(probes, 2), keys[2], op.dtype)
    lam_max, lam_min = _first(ext.top), _first(ext.bottom)
    zero_tol = ZERO_RTOL * max(abs(lam_max or 0.0), abs(lam_min or 0.0), float(np.abs(q.nodes).max()))
    return {
        "method": "exact" if values is not None else "lanczos",
        "n_params": op.n,
        "k": k,
        "top_eigenvalues": ext.top.tolist(),
        "top_residuals": ext.top_residuals.tolist(),
        "bottom_eigenvalues": ext.bottom.tolist(),
        "bottom_residuals": ext.bottom_residuals.tolist(),
        "lambda_max": lam_max,
        "lambda_min": lam_min,
        "lanczos_order": None if values is not None else ext.order,
        "max_order": None if values is not None else min(max_order or lanczos.DEFAULT_MAX_ORDER, op.n),
        "residual_tol": ext.tol,
        "trace": trace,
        "trace_stderr": trace_stderr,
        "zero_tol": zero_tol,
        **spectrum.shares(q, zero_tol),
        "slq_order": slq_order,
        "density": spectrum.density(q),
        "negative_density": spectrum.negative_density(q, zero_tol),
    }


def hessian_spectrum(loss: Callable, params, *, k: int = 20, probes: int = 10, order: int | None = None,
                     max_order: int | None = None, seed: int = 0) -> dict:
    """What the Hessian of `loss` (params -> scalar) says at `params`, without forming it when large.

    `operator_spectrum` of H (formed by `jax.hessian` when small), plus the loss, the gradient
    norm, the kind of point, GD's stable step size and, for a list of layers, each layer's own
    top eigenvalue (of its diagonal block).
    """
    op = hvp.hessian_operator(loss, params)
    report = operator_spectrum(op, lambda: np.asarray(hvp.dense_hessian(loss, params), np.float64), k=k,
                               probes=probes, order=order, max_order=max_order, seed=seed)
    grad_norm = gradient_norm(loss, params)
    lam_max, lam_min = report["lambda_max"], report["lambda_min"]
    report = {"curvature": "hessian", **report, "loss": float(loss(params)), "grad_norm": grad_norm,
              # plain gradient descent is stable near here only for η < 2/λmax
              "gd_max_stable_lr": 2.0 / lam_max if lam_max is not None and lam_max > EIG_TOL else None,
              "critical_point": classify(grad_norm, np.array([np.nan if v is None else v for v in (lam_min, lam_max)]))}
    if isinstance(params, (list, tuple)) and len(params) > 1:
        report["layer_lambda_max"] = [_layer_lambda_max(block, p, jax.random.fold_in(jax.random.key(seed + 1), i))
                                      for i, (block, p) in enumerate(zip(hvp.block_losses(loss, params), params))]
    return report


def _layer_lambda_max(block: Callable, layer, key) -> float | None:
    op = hvp.hessian_operator(block, layer)
    ext, _ = _extremes(op, lambda: np.asarray(hvp.dense_hessian(block, layer), np.float64), 1, key, LAYER_ORDER, None)
    return _first(ext.top)


def ggn_spectrum(model: Callable, output_loss: Callable, params, *, regulariser: Callable | None = None,
                 **options) -> dict:
    """`operator_spectrum` of the generalised Gauss–Newton matrix G = Jᵀ ∇²L J (+ ∇²R) of L∘f (+ R)."""
    op = hvp.ggn_operator(model, output_loss, params, regulariser)
    return {"curvature": "ggn", **operator_spectrum(op, lambda: dense_matrix(op), **options)}


def analyze_params(loss: Callable, params, batch, data: str, **options) -> dict:
    """`hessian_spectrum` of `loss(params, batch, key)` on a fixed data subset `batch`.

    `data` says in words which subset it is ("the first 1,000 mnist training images"); it is
    stored with the numbers, since the spectrum depends on it. `loss` must be deterministic
    (no input noise or dropout): the same key is passed every time.
    """
    return {"data": data, **hessian_spectrum(hvp.bind_data(loss, batch, jax.random.key(0)), params, **options)}
