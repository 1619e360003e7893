"""Second-order methods as optax transformations.

They need more than the gradient: the loss itself, passed by the engine as the extra
argument `value_fn` (a function params -> scalar loss on the current batch), as optax's
own line searches do.

- `newton` and `saddle_free_newton` form the dense Hessian, so they are for small problems
  only; `optlab.core.optimizers` refuses them on large ones before anything runs.
- `hessian_free` only ever multiplies by the Hessian (optlab.curvature.hvp), so it runs on networks.

Hyperparameters arrive as arrays (optax.inject_hyperparams), so switches such as the line
search are traced booleans, used inside the program rather than in Python `if`s.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from optlab.curvature.hvp import MatVec, dense_hessian, hessian_operator

ARMIJO = 1e-4  # sufficient decrease: accept t when C(θ + t d) ≤ C(θ) + ARMIJO · t · gᵀd
MAX_BACKTRACKS = 30  # halvings: t reaches η · 2⁻³⁰ before the line search gives up


class NewtonState(NamedTuple):
    singular_steps: jax.Array  # how many steps met a singular Hessian
    first_singular_step: jax.Array  # the first such step, -1 if none
    count: jax.Array


def armijo_line_search() -> optax.GradientTransformationExtraArgs:
    """Backtracking by halving from the full update: optax's own line search, set to the rule.

    Given an update u (here u = η d, d the Newton direction), it returns s u for the first s of
    1, 1/2, 1/4, …, 2⁻³⁰ (MAX_BACKTRACKS halvings) with

        C(θ + s u) ≤ C(θ) + c · s · gᵀu,   c = ARMIJO,

    that is t = s η, the first of η, η/2, … with C(θ + t d) ≤ C(θ) + c t gᵀd. It is
    `optax.scale_by_backtracking_linesearch` with decrease_factor = 1/2, slope_rtol = c and
    atol = rtol = 0. Its state only carries the last accepted s as the next first guess
    (× increase_factor, capped at max_learning_rate = 1); the Newton methods call it with a
    fresh `init` every step, so the first trial is always s = 1 (t = η) and NewtonState stays as
    it is. Its `update` needs `value` = C(θ), `grad` = g and `value_fn` = C as keyword arguments.

    If no trial passes it keeps s = 2⁻³⁰, except that when C(θ + 2⁻³⁰ u) is NaN or +∞ it takes
    no step (s = 0) rather than one into a non-finite loss.
    """
    return optax.scale_by_backtracking_linesearch(
        max_backtracking_steps=MAX_BACKTRACKS, slope_rtol=ARMIJO, decrease_factor=0.5,
        increase_factor=1.0, max_learning_rate=1.0,
    )


def _dense_second_order(name: str, absolute: bool, learning_rate, damping, line_search, rcond: float
                        ) -> optax.GradientTransformationExtraArgs:
    """θ ← θ − t (f(H) + λI)⁺ g with f = identity (Newton) or |·| (saddle-free).

    One dense Hessian H = ∇²C(θ) (`dense_hessian`) and one eigendecomposition H = QΛQᵀ per
    step: (f(H) + λI)⁺ g = Q (f(Λ) + λ)⁺ Qᵀ g, the pseudo-inverse dropping the directions whose
    |f(λ_i) + λ| ≤ rcond · max_j |f(λ_j) + λ|.
    """
    search = armijo_line_search()

    def init_fn(params):
        del params
        return NewtonState(jnp.zeros([], jnp.int32), jnp.full([], -1, jnp.int32), jnp.zeros([], jnp.int32))

    def update_fn(updates, state, params=None, *, value_fn: Callable, **extra):
        del extra
        if params is None:
            raise ValueError(f"{name} needs the current params")
        flat, unravel = ravel_pytree(params)
        grad, _ = ravel_pytree(updates)
        eigenvalues, q = jnp.linalg.eigh(dense_hessian(value_fn, params))
        eigenvalues = (jnp.abs(eigenvalues) if absolute else eigenvalues) + damping
        # A singular matrix has no inverse: directions whose |eigenvalue| is below rcond × the
        # largest get no step (the pseudo-inverse), and the step is counted instead of crashing.
        tiny = jnp.abs(eigenvalues) <= rcond * jnp.max(jnp.abs(eigenvalues))
        inverse = jnp.where(tiny, 0.0, 1.0 / jnp.where(tiny, 1.0, eigenvalues))
        direction = -(q @ (inverse * (q.T @ grad)))
        step = unravel(jnp.asarray(learning_rate, flat.dtype) * direction)

        def searched(step):
            fresh = search.init(params)  # the first trial is the full step η d, every step
            return search.update(step, fresh, params, value=value_fn(params), grad=updates, value_fn=value_fn)[0]

        # line_search is a traced boolean (inject_hyperparams): a cond, not a Python `if`
        step = jax.lax.cond(jnp.asarray(line_search, bool), searched, lambda step: step, step)
        singular = jnp.any(tiny)
        first = jnp.where(singular & (state.first_singular_step < 0), state.count, state.first_singular_step)
        state = NewtonState(singular_steps=state.singular_steps + singular, first_singular_step=first,
                            count=state.count + 1)
        return step, state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def newton(learning_rate: float | jax.Array = 1.0, damping: float | jax.Array = 0.0,
           line_search: bool | jax.Array = False, rcond: float = 1e-10) -> optax.GradientTransformationExtraArgs:
    """Newton's method: θ ← θ − t (H + λI)⁻¹ g, with g = ∇C(θ), H = ∇²C(θ) from `jax.hessian`.

    λ = `damping` > 0 is Levenberg–Marquardt: it shifts every eigenvalue by λ, shortening the
    step along weakly curved directions (and, for λ > |λ_min|, making H + λI positive definite).
    t = η, or with `line_search` the first of η, η/2, η/4, … that decreases C enough (Armijo,
    `armijo_line_search`). A (numerically) singular H + λI is inverted on its range only (the
    pseudo-inverse, eigenvalues below `rcond` × the largest dropped), and counted in NewtonState.
    η = 1, λ = 0, no line search is the pure method, which heads for the nearest critical
    point of any kind: near a saddle it is attracted to it.

    The update needs the extra argument `value_fn` (θ ↦ C(θ) on the current batch) and `params`.
    """
    return _dense_second_order("newton", False, learning_rate, damping, line_search, rcond)


def saddle_free_newton(learning_rate: float | jax.Array = 1.0, damping: float | jax.Array = 0.0,
                       line_search: bool | jax.Array = False, rcond: float = 1e-10
                       ) -> optax.GradientTransformationExtraArgs:
    """Saddle-free Newton (Dauphin et al., 2014): θ ← θ − t (|H| + λI)⁻¹ g, |H| = Q|Λ|Qᵀ for H = QΛQᵀ.

    Along positive curvature it is Newton's step; along negative curvature the step's sign is
    flipped, so it moves *away* from a saddle (down the negative-curvature direction) instead
    of towards it. Since |H| + λI is positive semi-definite, −(|H| + λI)⁺ g is always a descent
    direction. t, λ, `rcond` and `value_fn` as for `newton`.
    """
    return _dense_second_order("saddle-free-newton", True, learning_rate, damping, line_search, rcond)


class HessianFreeState(NamedTuple):
    damping: jax.Array  # λ, adapted by the Levenberg–Marquardt rule
    previous: jax.Array  # the last CG solution (flat), CG's warm start
    rho: jax.Array  # the last reduction ratio, for inspection


def conjugate_gradient(matvec: MatVec, b: jax.Array, x0: jax.Array, max_iters: int | jax.Array,
                       tol: float = 1e-4) -> jax.Array:
    """Approximately solve A x = b for symmetric A by at most `max_iters` CG steps from x0.

    Hestenes–Stiefel: r₀ = b − A x₀, p₀ = r₀; α_k = r_kᵀr_k / p_kᵀAp_k, x_{k+1} = x_k + α_k p_k,
    r_{k+1} = r_k − α_k A p_k, p_{k+1} = r_{k+1} + (r_{k+1}ᵀr_{k+1} / r_kᵀr_k) p_k. Written by hand
    because `jax.scipy.sparse.linalg.cg` has no negative-curvature stop: it divides by pᵀAp
    whatever its sign, stepping uphill (or to ±∞ at pᵀAp = 0) on an indefinite matrix.

    Stops early when ‖r‖ ≤ tol ‖b‖, or when a search direction has pᵀAp ≤ 0: A is not positive
    definite there (a damped Hessian can still be indefinite) and CG's step would go uphill.
    """

    def cond(c):
        i, x, r, p, rr, done = c
        return (i < max_iters) & ~done

    def body(c):
        i, x, r, p, rr, done = c
        ap = matvec(p)
        curvature = jnp.vdot(p, ap)
        negative = curvature <= 0
        alpha = jnp.where(negative, 0.0, rr / jnp.where(negative, 1.0, curvature))
        x, r = x + alpha * p, r - alpha * ap
        rr_new = jnp.vdot(r, r)
        p = r + (rr_new / jnp.where(rr > 0, rr, 1.0)) * p
        return i + 1, x, r, p, rr_new, negative | (jnp.sqrt(rr_new) <= tol * jnp.linalg.norm(b))

    r = b - matvec(x0)
    rr = jnp.vdot(r, r)
    return jax.lax.while_loop(cond, body, (0, x0, r, r, rr, rr == 0))[1]


def hessian_free(learning_rate: float | jax.Array = 1.0, damping: float | jax.Array = 1.0,
                 cg_iters: int | jax.Array = 10, warm_start: float = 0.95) -> optax.GradientTransformationExtraArgs:
    """Hessian-free Newton (Martens, 2010): p ≈ −(H + λI)⁻¹ g by truncated CG on H-vector
    products of the current batch's loss, never forming H; θ ← θ + η p if it lowers C.

    λ follows the Levenberg–Marquardt rule on the reduction ratio ρ = (C(θ + ηp) − C(θ)) / q(ηp),
    q(s) = gᵀs + ½ sᵀHs the quadratic model: λ × 2/3 when ρ > 3/4 (the model is trusted),
    λ × 3/2 when ρ < 1/4, kept within [10⁻⁶, 10⁶]. A step that raises C is rejected. `damping` is
    the initial λ, and CG starts from `warm_start` × the previous solution, as Martens does.
    Written by hand: optax has no Hessian-free method nor this damping rule.
    """

    def init_fn(params):
        flat, _ = ravel_pytree(params)
        return HessianFreeState(jnp.asarray(damping, flat.dtype), jnp.zeros_like(flat), jnp.zeros([], flat.dtype))

    def update_fn(updates, state, params=None, *, value_fn: Callable, **extra):
        del extra
        if params is None:
            raise ValueError("hessian-free needs the current params")
        flat, unravel = ravel_pytree(params)
        grad, _ = ravel_pytree(updates)
        h = hessian_operator(value_fn, params).matvec
        lam = state.damping
        p = conjugate_gradient(lambda v: h(v) + lam * v, -grad, warm_start * state.previous, cg_iters)
        step = learning_rate * p
        f0, f1 = value_fn(params), value_fn(unravel(flat + step))
        model = jnp.vdot(grad, step) + 0.5 * jnp.vdot(step, h(step))
        rho = jnp.where(model < 0, (f1 - f0) / jnp.where(model < 0, model, -1.0), -jnp.inf)
        lam = jnp.where(rho > 0.75, lam * 2 / 3, jnp.where(rho < 0.25, lam * 1.5, lam))
        lam = jnp.clip(lam, 1e-6, 1e6)  # neither vanishing (CG on a singular H) nor freezing the run
        accept = f1 < f0
        return unravel(jnp.where(accept, step, 0.0)), HessianFreeState(lam, jnp.where(accept, p, 0.0), rho)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
