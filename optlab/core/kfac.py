"""K-FAC (Martens & Grosse, 2015) for stacks of dense layers, as an optax transformation.

Natural gradient descent preconditions the gradient by the Fisher F = E[∇ℓ ∇ℓᵀ], with the targets
drawn from the model's own predictive distribution; for softmax cross-entropy F equals the
Gauss–Newton matrix, so it is "the approximation of Newton" a network can afford once F is
approximated. K-FAC keeps only F's diagonal blocks, one per layer, and factors each: with layer l's
input ā = [a; 1] (the bias as a last input) and pre-activation gradient g = ∂ℓ/∂s,

    F_l = E[vec(g āᵀ) vec(g āᵀ)ᵀ] ≈ E[ā āᵀ] ⊗ E[g gᵀ] = A_l ⊗ G_l,

so (A_l ⊗ G_l)⁻¹ vec(V) = vec(G_l⁻¹ V A_l⁻¹) costs two small inverses instead of one of F_l's
(in+1)·out rows. Damping is factored Tikhonov: A_l + π_l √λ I and G_l + (√λ / π_l) I with
π_l² = (tr A_l / dim A_l) / (tr G_l / dim G_l). The factors are running averages (decay ε) of each
step's estimates on the curvature minibatch; their inverses are recomputed every `inverse_every`
steps. The preconditioned gradient is rescaled so that the quadratic model's step is at most
`kl_clip` (Ba et al., 2017: ν = min(1, √(κ / (η² Σ_l ⟨V_l, ∇_l⟩)))) and followed by heavy-ball momentum.

Written by hand, not with kfac-jax (PyPI 0.0.8): its `kfac_jax.Optimizer` owns the training step
(it takes the loss function, calls value-and-grad itself and finds the layers by tracing and
matching the graph), so it cannot be a transformation inside optlab's engine, whose step computes
the gradient and calls `tx.update`; it would also bring distrax and a TensorFlow Probability nightly.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from optlab.curvature.layers import Network, check_dense, layer_statistics


class KFACState(NamedTuple):
    a: list  # A_l = E[ā āᵀ], (in+1) × (in+1), running averages
    g: list  # G_l = E[g gᵀ], out × out
    a_inverse: list  # (A_l + π_l √λ I)⁻¹, recomputed every `inverse_every` steps
    g_inverse: list  # (G_l + √λ / π_l I)⁻¹
    count: jax.Array


def kronecker_factors(network: Network, params: list[dict], batch, key: jax.Array
                      ) -> tuple[list[jax.Array], list[jax.Array]]:
    """This batch's A_l = (1/N) Σᵢ āᵢāᵢᵀ and G_l = (1/N) Σᵢ gᵢgᵢᵀ, gᵢ for targets drawn from the model.

    gᵢ = ∂ℓ(zᵢ, tᵢ)/∂sᵢ with tᵢ ~ p(y | zᵢ) (`Network.sample`): the true Fisher's, not the empirical
    one's (which would use the labels).
    """
    sample_key, forward_key = jax.random.split(key)
    z, _ = network.forward(params, batch, forward_key)
    targets = jax.lax.stop_gradient(network.sample(z, sample_key))
    inputs, grads, _ = layer_statistics(network, params, batch, forward_key, targets)
    n = grads[0].shape[0]
    bars = [jnp.concatenate([a, jnp.ones((n, 1), a.dtype)], axis=1) for a in inputs]
    return [b.T @ b / n for b in bars], [g.T @ g / n for g in grads]


def damped_inverses(a: jax.Array, g: jax.Array, damping: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(A + π√λ I)⁻¹ and (G + √λ/π I)⁻¹, π² = (tr A / dim A) / (tr G / dim G) (factored Tikhonov)."""
    tiny = jnp.finfo(a.dtype).tiny
    pi = jnp.sqrt(jnp.maximum(jnp.trace(a) / a.shape[0], tiny) / jnp.maximum(jnp.trace(g) / g.shape[0], tiny))
    root = jnp.sqrt(damping)
    eye_a, eye_g = jnp.eye(a.shape[0], dtype=a.dtype), jnp.eye(g.shape[0], dtype=g.dtype)
    return jnp.linalg.inv(a + pi * root * eye_a), jnp.linalg.inv(g + root / pi * eye_g)


def scale_by_kfac(network: Network, damping: float | jax.Array = 1e-3, inverse_every: int | jax.Array = 20,
                  decay: float = 0.95, curvature_batch: int | None = None) -> optax.GradientTransformationExtraArgs:
    """updates ↦ per layer G_l⁻¹ [∇W_l ∇b_l] A_l⁻¹ with the damped inverses of the running factors.

    Needs the extra arguments `batch` and `key` (the engine passes them): the factors' statistics
    come from the first `curvature_batch` examples of each minibatch (None: all). The first step's
    factors are its own estimates; later ones A ← ε A + (1 − ε) Â (ε = `decay`).
    """

    def init_fn(params):
        check_dense(params, "kfac")
        a = [jnp.eye(p["w"].shape[1] + 1, dtype=p["w"].dtype) for p in params]
        g = [jnp.eye(p["w"].shape[0], dtype=p["w"].dtype) for p in params]
        return KFACState(a, g, a, g, jnp.zeros([], jnp.int32))

    def update_fn(updates, state, params=None, *, batch=None, key=None, **extra):
        del extra
        if params is None or batch is None or key is None:
            raise ValueError("kfac needs the current params, batch and key")
        new_a, new_g = kronecker_factors(network, params, network.rows(batch, curvature_batch), key)
        weight = jnp.where(state.count == 0, 0.0, decay)
        a = [weight * old + (1 - weight) * new for old, new in zip(state.a, new_a)]
        g = [weight * old + (1 - weight) * new for old, new in zip(state.g, new_g)]

        def invert(_):
            pairs = [damped_inverses(x, y, damping) for x, y in zip(a, g)]
            return [p[0] for p in pairs], [p[1] for p in pairs]

        a_inverse, g_inverse = jax.lax.cond(state.count % inverse_every == 0, invert,
                                            lambda _: (state.a_inverse, state.g_inverse), None)
        out = []
        for u, ai, gi in zip(updates, a_inverse, g_inverse):
            v = gi @ jnp.concatenate([u["w"], u["b"][:, None]], axis=1) @ ai
            out.append({"w": v[:, :-1], "b": v[:, -1]})
        return out, KFACState(a, g, a_inverse, g_inverse, state.count + 1)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def clip_by_model_change(learning_rate: float | jax.Array, bound: float) -> optax.GradientTransformationExtraArgs:
    """Rescale the preconditioned gradient V by ν = min(1, √(κ / (η² |⟨V, g⟩|))), κ = `bound`.

    η² ⟨V, g⟩ = η² gᵀ F̂⁻¹ g is the step's size measured by the approximate Fisher (twice the KL
    divergence it predicts), so large natural-gradient steps early in training are shrunk
    (Ba, Grosse & Martens, 2017). The raw gradient g comes as the extra argument `grad`.
    """

    def update_fn(updates, state, params=None, *, grad=None, **extra):
        del params, extra
        inner = sum(jnp.vdot(v, g) for v, g in zip(jax.tree.leaves(updates), jax.tree.leaves(grad)))
        size = jnp.asarray(learning_rate) ** 2 * jnp.abs(inner)
        nu = jnp.minimum(1.0, jnp.sqrt(bound / jnp.maximum(size, jnp.finfo(size.dtype).tiny)))
        return jax.tree.map(lambda v: nu * v, updates), state

    return optax.GradientTransformationExtraArgs(lambda params: optax.EmptyState(), update_fn)


def kfac(learning_rate: float | jax.Array, network: Network, damping: float | jax.Array = 0.3,
         momentum: float | jax.Array = 0.9, inverse_every: int | jax.Array = 20, decay: float = 0.95,
         kl_clip: float = 1e-2, curvature_batch: int | None = None) -> optax.GradientTransformationExtraArgs:
    """θ ← θ + v, v ← μ v − η ν F̂⁻¹ g: `scale_by_kfac`, `clip_by_model_change`, then optax's momentum SGD."""
    precondition = scale_by_kfac(network, damping, inverse_every, decay, curvature_batch)
    clip = clip_by_model_change(learning_rate, kl_clip)
    sgd = optax.sgd(learning_rate, momentum=momentum)

    def init_fn(params):
        return precondition.init(params), clip.init(params), sgd.init(params)

    def update_fn(updates, state, params=None, **extra):
        p_state, c_state, s_state = state
        v, p_state = precondition.update(updates, p_state, params, **extra)
        v, c_state = clip.update(v, c_state, params, grad=updates)
        v, s_state = sgd.update(v, s_state, params)
        return v, (p_state, c_state, s_state)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
