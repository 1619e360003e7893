"""Second-order methods as optax transformations.

They need more than the gradient: the loss itself, passed by the engine as the extra
argument `value_fn` (a function params -> scalar loss on the current batch), as optax's
own line searches do. The transformations here form the dense Hessian, so they are for
small problems only; `optlab.optimizers` refuses them on large ones before anything runs.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree


class NewtonState(NamedTuple):
    singular_steps: jax.Array  # how many steps met a singular Hessian
    first_singular_step: jax.Array  # the first such step, -1 if none
    count: jax.Array


def newton(
    learning_rate: float | jax.Array = 1.0, damping: float = 0.0, rcond: float = 1e-10
) -> optax.GradientTransformationExtraArgs:
    """Newton's method: θ ← θ − η (H + λI)⁻¹ g, with H = ∇²C(θ) from `jax.hessian`.

    H is diagonalised (H = QΛQᵀ) so that a singular Hessian, which has no inverse, is met
    with its pseudo-inverse instead of a crash: directions whose |eigenvalue| is below
    `rcond` × the largest get no step. Such steps are counted in the state
    (`singular_steps`, `first_singular_step`) so that the run can say where it happened.
    η = 1 and λ = 0 is the pure method.
    """

    def init_fn(params):
        del params
        return NewtonState(jnp.zeros([], jnp.int32), jnp.full([], -1, jnp.int32), jnp.zeros([], jnp.int32))

    def update_fn(updates, state, params=None, *, value_fn: Callable, **extra):
        del extra
        if params is None:
            raise ValueError("newton needs the current params")
        flat, unravel = ravel_pytree(params)
        grad, _ = ravel_pytree(updates)
        hessian = jax.hessian(lambda x: value_fn(unravel(x)))(flat)
        hessian = hessian + damping * jnp.eye(flat.size, dtype=flat.dtype)
        eigenvalues, q = jnp.linalg.eigh(hessian)
        tiny = jnp.abs(eigenvalues) <= rcond * jnp.max(jnp.abs(eigenvalues))
        inverse = jnp.where(tiny, 0.0, 1.0 / jnp.where(tiny, 1.0, eigenvalues))
        direction = q @ (inverse * (q.T @ grad))
        singular = jnp.any(tiny)
        state = NewtonState(
            singular_steps=state.singular_steps + singular,
            first_singular_step=jnp.where(
                singular & (state.first_singular_step < 0), state.count, state.first_singular_step
            ),
            count=state.count + 1,
        )
        return unravel(-learning_rate * direction), state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
