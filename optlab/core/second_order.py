"""Second-order methods as optax transformations.

They need more than the gradient: the loss itself, passed by the engine as the extra
argument `value_fn` (a function params -> scalar loss on the current batch), and its value at
the current parameters as `value` (computed with the gradient; without it, `value_fn(params)`), as
optax's own line searches do.

- `newton` and `saddle_free_newton` form the dense Hessian, so they are for small problems
  only; `optlab.core.optimizers` refuses them on large ones before anything runs.
- `hessian_free` only ever multiplies by a curvature matrix (optlab.curvature.hvp: the Gauss–Newton
  matrix of a network's outputs, or the Hessian), so it runs on networks. On a network it also
  receives the engine's `batch` and `key` and the run's `network` (optlab.curvature.layers.Network).

Hyperparameters arrive as arrays (optax.inject_hyperparams), so switches such as the line
search are traced booleans, used inside the program rather than in Python `if`s.
"""

from __future__ import annotations

import math
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

    def update_fn(updates, state, params=None, *, value_fn: Callable, value=None, **extra):
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
            current = value_fn(params) if value is None else value
            return search.update(step, fresh, params, value=current, grad=updates, value_fn=value_fn)[0]

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
    previous: jax.Array  # the last CG iterate (flat), CG's warm start (× ζ)
    rho: jax.Array  # the last reduction ratio, for inspection
    cg_steps: jax.Array  # CG iterations the last update took
    chosen: jax.Array  # the CG iteration backtracking chose


class CGPath(NamedTuple):
    """What `preconditioned_cg` returns: the final iterate, the saved ones and how many."""

    x: jax.Array  # the last iterate
    saved: jax.Array  # (len(SAVE_AT) + 1, n): the iterates at SAVE_AT, then the last one
    iteration: jax.Array  # (len(SAVE_AT) + 1,): the iteration each saved row is from
    count: jax.Array  # how many rows of `saved` are filled
    steps: jax.Array  # iterations taken


MAX_CG = 10_000  # the largest --cg-iters (config's count(10_000)): the size of the φ history
# Martens saves the iterates at iterations ⌈1.3ʲ⌉ for backtracking (and the last one).
SAVE_AT = tuple(sorted({math.ceil(1.3**j) for j in range(40) if math.ceil(1.3**j) <= MAX_CG}))
PROGRESS_EPS = 5e-4  # Martens' ε in the relative-progress stopping rule
PRECONDITIONER_POWER = 0.75  # Martens' exponent ξ of (diag(Σ g²) + λ)^ξ
DAMPING_RANGE = (1e-6, 1e6)


def conjugate_gradient(matvec: MatVec, b: jax.Array, x0: jax.Array, max_iters: int | jax.Array,
                       tol: float = 1e-4) -> jax.Array:
    """Approximately solve A x = b for symmetric A by at most `max_iters` CG steps from x0 (no preconditioner).

    `preconditioned_cg` with M = I and only the residual and negative-curvature stops: its last iterate.
    """
    return preconditioned_cg(matvec, b, x0, max_iters, None, tol=tol, progress=False).x


def preconditioned_cg(matvec: MatVec, b: jax.Array, x0: jax.Array, max_iters: int | jax.Array,
                      preconditioner: jax.Array | None, tol: float = 1e-6, progress: bool = True) -> CGPath:
    """Minimise φ(x) = ½ xᵀAx − bᵀx (i.e. solve A x = b, A symmetric) by preconditioned CG from x0.

    With M = diag(`preconditioner`) (None: M = I): r₀ = b − A x₀, y₀ = M⁻¹r₀, p₀ = y₀;
    α_k = r_kᵀy_k / p_kᵀAp_k, x_{k+1} = x_k + α_k p_k, r_{k+1} = r_k − α_k A p_k, y_{k+1} = M⁻¹r_{k+1},
    p_{k+1} = y_{k+1} + (r_{k+1}ᵀy_{k+1} / r_kᵀy_k) p_k. Since A x = b − r, φ(x) = −½ xᵀ(b + r) costs
    no product. Written by hand because `jax.scipy.sparse.linalg.cg` has no negative-curvature stop
    (it divides by pᵀAp whatever its sign), no progress rule and keeps no iterates.

    Stops after `max_iters`, when ‖r‖ ≤ tol ‖b‖, when pᵀAp ≤ 0 (A is not positive definite there:
    that step is not taken), or — `progress` — by Martens' (2010) relative-progress rule: at
    iteration i with k = max(10, ⌊i/10⌋), stop once φ(x_i) < 0 and (φ(x_i) − φ(x_{i−k})) / φ(x_i) < k ε,
    ε = 5·10⁻⁴. The iterates at iterations in SAVE_AT (⌈1.3ʲ⌉) and the last are kept, for backtracking.
    """
    inverse = jnp.ones_like(b) if preconditioner is None else 1.0 / preconditioner
    slots = jnp.asarray(SAVE_AT, jnp.int32)
    max_iters = jnp.minimum(max_iters, MAX_CG)

    def phi(x, r):
        return -0.5 * jnp.vdot(x, b + r)

    def cond(c):
        return (c["i"] < max_iters) & ~c["done"]

    def body(c):
        i, x, r, p, ry = c["i"], c["x"], c["r"], c["p"], c["ry"]
        ap = matvec(p)
        curvature = jnp.vdot(p, ap)
        negative = curvature <= 0
        alpha = jnp.where(negative, 0.0, ry / jnp.where(negative, 1.0, curvature))
        x, r = x + alpha * p, r - alpha * ap
        y = inverse * r
        ry_new = jnp.vdot(r, y)
        p = y + (ry_new / jnp.where(ry != 0, ry, 1.0)) * p
        i = i + 1
        value = phi(x, r)
        k = jnp.maximum(10, i // 10)
        before = c["phis"][jnp.maximum(i - k, 0)]
        progressed = (value - before) / jnp.where(value < 0, value, -1.0)
        stalled = progress & (i > k) & (value < 0) & (progressed < k * PROGRESS_EPS)
        save = jnp.isin(i, slots) & ~negative
        slot = jnp.minimum(jnp.searchsorted(slots, i), len(SAVE_AT))
        # one row written in place (rewritten unchanged when nothing is saved), not a copy of the buffer
        saved = c["saved"].at[slot].set(jnp.where(save, x, c["saved"][slot]))
        iteration = c["iteration"].at[slot].set(jnp.where(save, i, c["iteration"][slot]))
        done = negative | stalled | (jnp.linalg.norm(r) <= tol * jnp.linalg.norm(b))
        return dict(i=i, x=x, r=r, p=p, ry=ry_new, done=done, phis=c["phis"].at[i].set(value), saved=saved,
                    iteration=iteration, count=c["count"] + save, last_saved=jnp.where(save, i, c["last_saved"]))

    r = b - matvec(x0)
    y = inverse * r
    rows = len(SAVE_AT) + 1
    start = dict(i=jnp.zeros([], jnp.int32), x=x0, r=r, p=y, ry=jnp.vdot(r, y), done=jnp.vdot(r, r) == 0,
                 phis=jnp.zeros(MAX_CG + 1, b.dtype).at[0].set(phi(x0, r)),
                 saved=jnp.zeros((rows, b.size), b.dtype), iteration=jnp.zeros(rows, jnp.int32),
                 count=jnp.zeros([], jnp.int32), last_saved=jnp.zeros([], jnp.int32))
    c = jax.lax.while_loop(cond, body, start)
    # the last iterate joins the saved ones unless it is one already (a step at negative curvature is
    # not taken, so the last iterate is then the one before it)
    extra = c["last_saved"] != c["i"]
    saved = jnp.where(extra, c["saved"].at[c["count"]].set(c["x"]), c["saved"])
    iteration = jnp.where(extra, c["iteration"].at[c["count"]].set(c["i"]), c["iteration"])
    return CGPath(c["x"], saved, iteration, c["count"] + extra, c["i"])


def backtrack(path: CGPath, value_at: Callable[[jax.Array], jax.Array]) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Martens' CG backtracking: from the last saved iterate back, keep the earlier one while f is lower.

    Returns (p, f(p), iteration of p) for p = x_{j*}: starting at the last saved row, step back to
    the previous row as long as its `value_at` (f(θ + η x)) is lower than the current choice's.
    """
    last = path.count - 1

    def cond(c):
        j, best, value, going = c
        return going & (j > 0)

    def body(c):
        j, best, value, _ = c
        candidate = value_at(path.saved[j - 1])
        better = candidate < value
        return jnp.where(better, j - 1, j), best, jnp.where(better, candidate, value), better

    first = value_at(path.saved[last])
    j, _, value, _ = jax.lax.while_loop(cond, body, (last, last, first, jnp.asarray(True)))
    return path.saved[j], value, path.iteration[j]


def hessian_free(learning_rate: float | jax.Array = 1.0, damping: float | jax.Array = 1.0,
                 cg_iters: int | jax.Array = 50, warm_start: float = 0.95, curvature: str | None = None,
                 curvature_batch: int | None = None, network=None, precondition: bool = True
                 ) -> optax.GradientTransformationExtraArgs:
    """Hessian-free optimisation as Martens (2010) does it; never forms a matrix.

    Each step: p ≈ argmin q(p), q(p) = gᵀp + ½ pᵀ(B + λI)p, by preconditioned CG (`preconditioned_cg`)
    from ζ × the previous step's last CG iterate (ζ = `warm_start`), stopped by the relative-progress
    rule; then CG backtracking (`backtrack`) picks the saved iterate with the lowest C(θ + η p); the
    step θ ← θ + η p is taken if it lowers C.

    - B (`curvature`): "ggn", the generalised Gauss–Newton matrix Jᵀ∇²L J (+ ∇²R) of the network's
      outputs (`optlab.curvature.hvp.ggn_operator`: positive semi-definite, so CG's quadratic has a
      minimum), or "hessian", ∇²C (indefinite away from a minimum: CG stops at negative curvature).
      None: "ggn" when a `network` is given, otherwise "hessian" (a problem that is not a network,
      such as tiny, has no outputs to linearise).
    - The curvature products use the first `curvature_batch` examples of the (shuffled) minibatch
      (None: all of it), the gradient and C the whole minibatch, as Martens does.
    - λ follows Levenberg–Marquardt on ρ = (C(θ + ηp) − C(θ)) / (gᵀ(ηp) + ½ (ηp)ᵀB(ηp)): λ × 2/3 when
      ρ > 3/4, × 3/2 when ρ < 1/4, kept in [10⁻⁶, 10⁶]; `damping` is its initial value.
    - `precondition`: M = (diag(F) + λ)^0.75 with F the empirical Fisher (1/N) Σ ∇ℓᵢ∇ℓᵢᵀ on the
      minibatch (`optlab.curvature.layers.fisher_diagonal`; g ⊙ g for a problem without examples).

    The update needs the extra arguments `value_fn` (C on the minibatch) and, with a `network`
    (`optlab.curvature.layers.Network`), `batch` and `key` (the engine passes all three).
    Written by hand: optax has no Hessian-free method, nor this damping rule.
    """
    from optlab.curvature.hvp import ggn_operator
    from optlab.curvature.layers import fisher_diagonal

    kind = curvature or ("ggn" if network is not None else "hessian")
    if kind not in ("ggn", "hessian"):
        raise ValueError(f"curvature must be ggn or hessian, got {kind!r}")
    if kind == "ggn" and network is None:
        raise ValueError("hessian-free's Gauss–Newton curvature needs a network's outputs; use curvature='hessian'")

    def init_fn(params):
        flat, _ = ravel_pytree(params)
        zero = jnp.zeros([], jnp.int32)
        return HessianFreeState(jnp.asarray(damping, flat.dtype), jnp.zeros_like(flat), jnp.zeros([], flat.dtype),
                                zero, zero)

    def curvature_matvec(params, value_fn, batch, key) -> MatVec:
        if network is None:
            return hessian_operator(value_fn, params).matvec
        rows = network.rows(batch, curvature_batch)
        if kind == "hessian":
            return hessian_operator(network.loss(rows, key), params).matvec
        return ggn_operator(network.outputs(rows, key), network.output_loss(rows), params, network.regulariser).matvec

    def diagonal(params, grad, batch, key):
        if network is None:
            return grad * grad
        return ravel_pytree(fisher_diagonal(network, params, batch, key))[0]

    def update_fn(updates, state, params=None, *, value_fn: Callable, value=None, batch=None, key=None, **extra):
        del extra
        if params is None:
            raise ValueError("hessian-free needs the current params")
        flat, unravel = ravel_pytree(params)
        grad, _ = ravel_pytree(updates)
        b = curvature_matvec(params, value_fn, batch, key)
        lam = state.damping
        m = (diagonal(params, grad, batch, key) + lam) ** PRECONDITIONER_POWER if precondition else None
        path = preconditioned_cg(lambda v: b(v) + lam * v, -grad, warm_start * state.previous, cg_iters, m)
        eta = jnp.asarray(learning_rate, flat.dtype)
        p, f1, chosen = backtrack(path, lambda x: value_fn(unravel(flat + eta * x)))
        step = eta * p
        f0 = value_fn(params) if value is None else value  # C(θ): the engine passes the one it computed
        model = jnp.vdot(grad, step) + 0.5 * jnp.vdot(step, b(step))
        rho = jnp.where(model < 0, (f1 - f0) / jnp.where(model < 0, model, -1.0), -jnp.inf)
        lam = jnp.where(rho > 0.75, lam * 2 / 3, jnp.where(rho < 0.25, lam * 1.5, lam))
        lam = jnp.clip(lam, *DAMPING_RANGE)  # neither vanishing (CG on a singular B) nor freezing the run
        accept = f1 < f0
        state = HessianFreeState(lam, path.x, rho, path.steps, chosen)
        return unravel(jnp.where(accept, step, 0.0)), state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
