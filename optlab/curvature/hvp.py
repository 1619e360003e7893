"""Curvature-vector products: H·v and G·v without ever forming an n × n matrix.

For a scalar loss C(θ):

    H v = d/dε ∇C(θ + ε v) |ε=0          forward-over-reverse: jax.jvp of jax.grad,
                                          about the cost of two gradients

For a loss that is a convex output loss L of the network's outputs z = f(θ), the generalised
Gauss–Newton matrix drops the second derivatives of f:

    G v = Jᵀ (∇²_z L) (J v),  J = ∂f/∂θ   one jvp of f, one H-vector product of L, one vjp of f

G is positive semi-definite where L is convex (softmax cross-entropy is), which is why
Martens' Hessian-free method prefers it; H is what tells a saddle from a minimum. The empirical
Fisher F = (1/N) Σ_i ∇ℓ_i ∇ℓ_iᵀ of the per-example losses ℓ_i is the other PSD stand-in:

    F v = Jᵀ (J v) / N,  J = ∂ℓ/∂θ        one jvp and one vjp of the vector of per-example losses

Everything here works on *flat* vectors (jax.flatten_util.ravel_pytree) so that Lanczos and
conjugate gradient can treat the operator as a plain function R^n -> R^n. The matvecs are
`jax.tree_util.Partial`s carrying the parameters (and the loss's data) as pytree leaves: passed
into a jitted Lanczos as arguments, they stay inputs of the program. A plain closure would bake
the network and the data subset into the program as constants, which XLA then spends seconds
constant-folding at every compile.

`dense_hessian` is the one place where the n × n Hessian itself is formed, for small problems.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache, partial
from typing import Any, NamedTuple

import jax
from jax.flatten_util import ravel_pytree
from jax.tree_util import Partial

MatVec = Callable[[jax.Array], jax.Array]


class Operator(NamedTuple):
    """A symmetric linear operator on R^n given by its action v ↦ A v on flat vectors."""

    matvec: MatVec
    n: int
    dtype: Any


def hvp(loss: Callable[[Any], jax.Array], params: Any, v: Any) -> Any:
    """H v = d/dε ∇C(θ + ε v)|ε=0 for H = ∇²C(θ), C = `loss`, θ = `params`, v a pytree shaped like θ.

    `jax.jvp` of `jax.grad` (forward-over-reverse); the result is shaped like θ.
    """
    return jax.jvp(jax.grad(loss), (params,), (v,))[1]


def ggn_vp(model: Callable[[Any], jax.Array], output_loss: Callable[[jax.Array], jax.Array], params: Any,
           v: Any) -> Any:
    """G v = Jᵀ ∇²L(z) J v for C(θ) = L(f(θ)): f = `model`, L = `output_loss`, z = f(θ), J = ∂f/∂θ.

    J v by `jax.jvp` of f, ∇²L(z) (J v) by `jax.jvp` of `jax.grad` L, Jᵀ(·) by `jax.vjp` of f;
    v and the result are pytrees shaped like θ.
    """
    z, jv = jax.jvp(model, (params,), (v,))
    hjv = jax.jvp(jax.grad(output_loss), (z,), (jv,))[1]
    _, vjp = jax.vjp(model, params)
    return vjp(hjv)[0]


def as_partial(f: Callable) -> Partial:
    """`f` as a pytree-valued function (a Partial), so that jit can take it as an argument."""
    return f if isinstance(f, Partial) else Partial(f)


def bind_data(loss: Callable, batch: Any, key: jax.Array) -> Partial:
    """θ ↦ loss(θ, batch, key), holding `batch` and `key` as pytree leaves."""
    return Partial(_on_data(loss), batch, key)


@lru_cache(maxsize=64)
def _on_data(loss: Callable) -> Callable:
    # The same wrapper for the same loss: jit's cache is keyed on it, so analysing a model a
    # second time (another epoch, another probe) reuses the compiled programs.
    return partial(_loss_on, loss)


def _loss_on(loss, batch, key, params):
    return loss(params, batch, key)


def _hessian_matvec(loss, params, v):
    flat, unravel = ravel_pytree(params)
    return ravel_pytree(hvp(loss, params, unravel(v.astype(flat.dtype))))[0]


def hessian_operator(loss: Callable[[Any], jax.Array], params: Any) -> Operator:
    """v ↦ H v, H = ∇²C(θ) of C = `loss` at θ = `params`, on flat vectors v ∈ R^n (`hvp`)."""
    flat, _ = ravel_pytree(params)
    return Operator(Partial(_hessian_matvec, as_partial(loss), params), flat.size, flat.dtype)


def _ggn_matvec(model, output_loss, regulariser, params, v):
    flat, unravel = ravel_pytree(params)
    tangent = unravel(v.astype(flat.dtype))
    gv = ravel_pytree(ggn_vp(model, output_loss, params, tangent))[0]
    return gv if regulariser is None else gv + ravel_pytree(hvp(regulariser, params, tangent))[0]


def ggn_operator(model: Callable[[Any], jax.Array], output_loss: Callable[[jax.Array], jax.Array],
                 params: Any, regulariser: Callable[[Any], jax.Array] | None = None) -> Operator:
    """v ↦ G v, G = Jᵀ ∇²L(f(θ)) J (+ ∇²R(θ)): the generalised Gauss–Newton matrix of L∘f (+ R) at θ.

    On flat v (`ggn_vp`). A `regulariser` R (weight decay) is convex and needs no linearising, so
    its Hessian is added whole: G stays positive semi-definite wherever L is convex.
    """
    flat, _ = ravel_pytree(params)
    reg = None if regulariser is None else as_partial(regulariser)
    return Operator(Partial(_ggn_matvec, as_partial(model), as_partial(output_loss), reg, params), flat.size,
                    flat.dtype)


def fisher_vp(example_losses: Callable[[Any], jax.Array], params: Any, v: Any) -> Any:
    """F v for the empirical Fisher F = (1/N) Σ_i g_i g_iᵀ, g_i = ∇ℓ_i(θ), ℓ = `example_losses`(θ) ∈ R^N.

    With J = ∂ℓ/∂θ (N × n, row i = g_iᵀ), F = Jᵀ J / N: J v (every g_iᵀ v at once) by one `jax.jvp`
    and Jᵀ(J v) by one `jax.vjp`, so the N per-example gradients (an N × n matrix, 0.9 GB for
    1,000 MNIST images and the lecture's network) are never stored, as a vmap of `jax.grad` would.
    """
    losses, jv = jax.jvp(example_losses, (params,), (v,))
    _, vjp = jax.vjp(example_losses, params)
    return jax.tree.map(lambda g: g / losses.shape[0], vjp(jv)[0])


def _fisher_matvec(example_losses, params, v):
    flat, unravel = ravel_pytree(params)
    return ravel_pytree(fisher_vp(example_losses, params, unravel(v.astype(flat.dtype))))[0]


def fisher_operator(example_losses: Callable[[Any], jax.Array], params: Any) -> Operator:
    """v ↦ F v, F the empirical Fisher (1/N) Σ g_i g_iᵀ of the per-example losses at θ, on flat v (`fisher_vp`)."""
    flat, _ = ravel_pytree(params)
    return Operator(Partial(_fisher_matvec, as_partial(example_losses), params), flat.size, flat.dtype)


def _with_layer(index: int, loss, params, layer):
    return loss([layer if i == index else p for i, p in enumerate(params)])


def block_losses(loss: Callable[[Any], jax.Array], params: list | tuple) -> list[Partial]:
    """For each top-level entry θ_l of `params` (a network's layers), θ_l ↦ C(θ) with every other
    layer held fixed. Its Hessian is the diagonal block ∂²C/∂θ_l² of C's, whose top eigenvalue
    is layer l's own curvature."""
    loss = as_partial(loss)
    return [Partial(partial(_with_layer, i), loss, list(params)) for i in range(len(params))]


def dense_hessian(loss: Callable[[Any], jax.Array], params: Any) -> jax.Array:
    """H = ∇²C(θ) as an n × n matrix over the flat parameters: H_ij = ∂²C/∂θ_i∂θ_j, θ = ravel(`params`).

    `jax.hessian` (forward-over-reverse) of C ∘ unravel; n² memory, so for small problems only:
    Newton's methods, exact spectra up to `analysis.EXACT_LIMIT` parameters, and tests.
    """
    flat, unravel = ravel_pytree(params)
    return jax.hessian(lambda x: loss(unravel(x)))(flat)
