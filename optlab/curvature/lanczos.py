"""The Lanczos method with full reorthogonalisation, on a matrix given only by its matvec.

Starting from a unit vector v₁, Lanczos builds an orthonormal basis V = [v₁ … v_m] of the
Krylov space span{v₁, A v₁, …, A^{m−1} v₁} in which A is tridiagonal:

    A v_j = β_{j−1} v_{j−1} + α_j v_j + β_j v_{j+1},   T = Vᵀ A V = tridiag(β, α, β)

The eigenvalues of T (Ritz values) approximate A's, the extreme ones first: after m ≪ n
products the largest and smallest are usually accurate to many digits. In floating point the
v_j lose orthogonality exactly as Ritz values converge, producing spurious copies; so every
new vector is orthogonalised against all previous ones, twice ("twice is enough",
Giraitis & Parlett), which costs O(m n) memory and is cheap next to a Hessian-vector product.

If β_j vanishes the Krylov space is invariant (every eigenvalue in it has been found exactly);
the iteration then continues from a fresh random vector orthogonal to V, with β_j = 0 so that
T splits into independent blocks.

How sure: a Ritz pair (θ, y) has residual ‖A y − θ y‖ = |β_m s_m| (`ritz_residuals`), known
for free; `extreme_eigenvalues` keeps extending the run until the k values wanted at each end
have converged (residual ≤ RITZ_RTOL·‖A‖) or a step budget is spent, and returns only those.
Written here rather than taken from matfree (whose `decomp.tridiag_sym` the tests cross-check
against) because it must be continued to a larger order without starting over, and must go on
past an invariant subspace (dead pixels give exactly zero Hessian rows), which matfree does not.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from optlab.curvature.hvp import MatVec, as_partial

BREAKDOWN = 1e-10  # β below this × |α| scale: the Krylov space is invariant
RITZ_RTOL = 1e-4  # a Ritz value has converged when its residual is at most this × ‖A‖
DEFAULT_MAX_ORDER = 640  # Lanczos steps at most, by default: the basis takes order × n numbers


class Tridiagonal(NamedTuple):
    alphas: jax.Array  # (m,) diagonal
    betas: jax.Array  # (m,) β_j couples v_j and v_{j+1}; the last, β_m, couples the basis to `next`
    vectors: jax.Array  # (m, n) the orthonormal Lanczos basis, one vector per row
    next: jax.Array  # (n,) v_{m+1}, the unit vector that continues the basis (A V = V T + β_m v_{m+1} e_mᵀ)


class Extremes(NamedTuple):
    """The converged extreme eigenvalues of one Lanczos run and what it took.

    bottom (ascending) and top (descending) hold only converged Ritz values, at most k each, with
    their residuals ‖A y − θ y‖; `order` is the number of Lanczos steps (matrix-vector products),
    `tol` the residual below which a Ritz value counted as converged.
    """

    bottom: np.ndarray
    bottom_residuals: np.ndarray
    top: np.ndarray
    top_residuals: np.ndarray
    order: int
    tol: float


def _orthogonalise(w: jax.Array, basis: jax.Array) -> jax.Array:
    """w minus its projection on the rows of `basis` (zero rows project to nothing), twice."""
    for _ in range(2):
        w = w - basis.T @ (basis @ w)
    return w


def start(v: jax.Array) -> Tridiagonal:
    """Zero steps from `v` (normalised here): what `extend` continues."""
    zeros = jnp.zeros(0, v.dtype)
    return Tridiagonal(zeros, zeros, jnp.zeros((0, v.shape[0]), v.dtype), v / jnp.linalg.norm(v))


def extend(matvec: MatVec, t: Tridiagonal, order: int) -> Tridiagonal:
    """Continue the m steps of `t` to `order` steps: the same T as running `order` steps at once,
    for the price of only the new products. Jittable; `order` is static."""
    m, n = t.alphas.shape[0], t.next.shape[0]
    if not m < order <= n:
        raise ValueError(f"Lanczos order must be between {m + 1} and n = {n}, got {order}")
    basis = jnp.zeros((order, n), t.next.dtype).at[:m].set(t.vectors).at[m].set(t.next)
    zeros = jnp.zeros(order, t.next.dtype)
    key = jax.random.key(0)  # only used after a breakdown

    def step(j, carry):
        basis, alphas, betas, _ = carry
        v = basis[j]
        w = matvec(v)
        alpha = jnp.vdot(v, w)
        w = _orthogonalise(w, basis)
        beta = jnp.linalg.norm(w)
        scale = jnp.maximum(jnp.max(jnp.abs(alphas)), jnp.abs(alpha))
        broke = beta <= BREAKDOWN * jnp.maximum(scale, 1e-30)

        def restart(_):
            fresh = _orthogonalise(jax.random.normal(jax.random.fold_in(key, j), (n,), w.dtype), basis)
            return fresh / jnp.linalg.norm(fresh)

        nxt = jax.lax.cond(broke, restart, lambda _: w / jnp.where(broke, 1.0, beta), None)
        basis = jnp.where(j + 1 < order, basis.at[(j + 1) % order].set(nxt), basis)
        return basis, alphas.at[j].set(alpha), betas.at[j].set(jnp.where(broke, 0.0, beta)), nxt

    carry = (basis, zeros.at[:m].set(t.alphas), zeros.at[:m].set(t.betas), t.next)
    basis, alphas, betas, nxt = jax.lax.fori_loop(m, order, step, carry)
    return Tridiagonal(alphas, betas, basis, nxt)


def lanczos(matvec: MatVec, start_vector: jax.Array, order: int) -> Tridiagonal:
    """`order` Lanczos steps from `start_vector` (normalised here). Jittable; `order` is static."""
    n = start_vector.shape[0]
    if not 1 <= order <= n:
        raise ValueError(f"Lanczos order must be between 1 and n = {n}, got {order}")
    return extend(matvec, start(start_vector), order)


def tridiagonal_matrix(t: Tridiagonal) -> jax.Array:
    return jnp.diag(t.alphas) + jnp.diag(t.betas[:-1], 1) + jnp.diag(t.betas[:-1], -1)


def ritz(t: Tridiagonal) -> tuple[jax.Array, jax.Array]:
    """T's eigenvalues (ascending) and eigenvectors (columns): Ritz values and their weights."""
    return jnp.linalg.eigh(tridiagonal_matrix(t))


def ritz_residuals(t: Tridiagonal, vectors: jax.Array) -> jax.Array:
    """‖A y_j − θ_j y_j‖ for the Ritz pairs (θ_j, y_j = V s_j), s_j the columns of `vectors`.

    From A V = V T + β_m v_{m+1} e_mᵀ: A y_j − θ_j y_j = β_m s_{mj} v_{m+1}, so the residual is
    |β_m| |s_{mj}| without a single further product. For symmetric A some eigenvalue lies
    within that distance of θ_j (and within residual² / gap when θ_j is isolated).
    """
    return jnp.abs(t.betas[-1]) * jnp.abs(vectors[-1, :])


def default_order(n: int, k: int) -> int:
    """Where to start: enough steps that the k extreme Ritz values at each end often converge."""
    return min(n, max(4 * k, 60))


def _converged_run(residuals: np.ndarray, tol: float) -> int:
    """How many Ritz values, from the end the residuals are ordered from, converged one after another."""
    bad = np.flatnonzero(residuals > tol)
    return int(bad[0]) if bad.size else residuals.size


def _ritz_pairs(t: Tridiagonal):
    values, vectors = ritz(t)
    return values, ritz_residuals(t, vectors)


_extend = jax.jit(extend, static_argnums=2)
_ritz_jit = jax.jit(_ritz_pairs)


def extreme_eigenvalues(matvec: MatVec, n: int, k: int, key: jax.Array, dtype=jnp.float32, order: int | None = None,
                        max_order: int | None = None, rtol: float = RITZ_RTOL) -> Extremes:
    """The k smallest and k largest eigenvalues that Lanczos has converged, growing its order until it has.

    Starts at `order` steps (default `default_order`) and doubles them, continuing the same
    run, until the k extreme Ritz values at each end have residuals ≤ rtol·‖A‖ (‖A‖ estimated
    by the largest |Ritz value|), or until `max_order` steps (default DEFAULT_MAX_ORDER, at most
    n). Only converged values are returned: the first unconverged one at an end stops that end's
    list, since past it an eigenvalue may be missing. Raises ValueError when k exceeds n.
    """
    if not 1 <= k <= n:
        raise ValueError(f"asked for {k} eigenvalues of a {n} × {n} matrix")
    budget = min(max_order or DEFAULT_MAX_ORDER, n)
    order = min(order or default_order(n, k), budget)
    matvec = as_partial(matvec)
    t = _extend(matvec, start(jax.random.normal(key, (n,), dtype)), order)
    while True:
        values, residuals = (np.asarray(a, np.float64) for a in _ritz_jit(t))
        tol = rtol * float(np.max(np.abs(values)))
        low, high = _converged_run(residuals, tol), _converged_run(residuals[::-1], tol)
        if (low >= k and high >= k) or order >= budget:
            break
        order = min(2 * order, budget)
        t = _extend(matvec, t, order)
    low, high = min(low, k), min(high, k)
    return Extremes(values[:low], residuals[:low], values[::-1][:high], residuals[::-1][:high], order, tol)
