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
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from optlab.curvature.hvp import MatVec, as_partial

BREAKDOWN = 1e-10  # β below this × |α| scale: the Krylov space is invariant


class Tridiagonal(NamedTuple):
    alphas: jax.Array  # (m,) diagonal
    betas: jax.Array  # (m − 1,) off-diagonal
    vectors: jax.Array  # (m, n) the orthonormal Lanczos basis, one vector per row


def _orthogonalise(w: jax.Array, basis: jax.Array) -> jax.Array:
    """w minus its projection on the rows of `basis` (zero rows project to nothing), twice."""
    for _ in range(2):
        w = w - basis.T @ (basis @ w)
    return w


def lanczos(matvec: MatVec, start: jax.Array, order: int) -> Tridiagonal:
    """`order` Lanczos steps from `start` (normalised here). Jittable; `order` is static."""
    n = start.shape[0]
    if not 1 <= order <= n:
        raise ValueError(f"Lanczos order must be between 1 and n = {n}, got {order}")
    basis = jnp.zeros((order, n), start.dtype).at[0].set(start / jnp.linalg.norm(start))
    key = jax.random.key(0)  # only used after a breakdown

    def step(j, carry):
        basis, alphas, betas = carry
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
        return basis, alphas.at[j].set(alpha), betas.at[j].set(jnp.where(broke, 0.0, beta))

    zeros = jnp.zeros(order, start.dtype)
    basis, alphas, betas = jax.lax.fori_loop(0, order, step, (basis, zeros, zeros))
    return Tridiagonal(alphas, betas[:-1], basis)


def tridiagonal_matrix(t: Tridiagonal) -> jax.Array:
    return jnp.diag(t.alphas) + jnp.diag(t.betas, 1) + jnp.diag(t.betas, -1)


def ritz(t: Tridiagonal) -> tuple[jax.Array, jax.Array]:
    """T's eigenvalues (ascending) and eigenvectors (columns): Ritz values and their weights."""
    return jnp.linalg.eigh(tridiagonal_matrix(t))


def default_order(n: int, k: int) -> int:
    """Enough steps that the k extreme Ritz values at each end have converged in practice."""
    return min(n, max(4 * k, 60))


def extreme_eigenvalues(
    matvec: MatVec, n: int, k: int, key: jax.Array, dtype=jnp.float32, order: int | None = None
) -> tuple[jax.Array, jax.Array]:
    """The k smallest (ascending) and k largest (descending) eigenvalues, from one Lanczos run.

    Raises ValueError when k exceeds n: a matrix has only n eigenvalues.
    """
    if not 1 <= k <= n:
        raise ValueError(f"asked for {k} eigenvalues of a {n} × {n} matrix")
    order = default_order(n, k) if order is None else min(order, n)
    start = jax.random.normal(key, (n,), dtype)
    values, _ = ritz(jax.jit(lanczos, static_argnums=2)(as_partial(matvec), start, order))
    return values[:k], values[::-1][:k]
