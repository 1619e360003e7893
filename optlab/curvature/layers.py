"""A network's loss split into its outputs and an output loss, and per-example statistics of its dense layers.

Second-order methods for networks need more than C(θ): Hessian-free's Gauss–Newton matrix
linearises the outputs z = f(θ; x) of C(θ) = mean_i ℓ(zᵢ, yᵢ) + R(θ), and K-FAC needs each dense
layer's inputs aᵢ and the gradients gᵢ = ∂ℓᵢ/∂sᵢ of its pre-activations sᵢ = W aᵢ + b, per
example. A `Network` describes the split; the engine hands each step's `batch` and `key` to the
optimizer, which evaluates the network on (part of) it.

Per-example pre-activation gradients come from one backward pass: the bias b (out,) is replaced by
B = b broadcast to (N, out), so that sᵢ = W aᵢ + Bᵢ and ∂(Σᵢ ℓᵢ)/∂Bᵢ = ∂ℓᵢ/∂sᵢ = gᵢ. Written by
hand (JAX has no layer hooks); it needs only that every layer is {"w": (out, in), "b": (out,)} and
adds its bias by broadcasting, as optlab.problems.mlp does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


class Network(NamedTuple):
    """C(θ) = mean_i ℓ(z_i, y_i) + R(θ) with z = f(θ; x) the outputs of a stack of dense layers."""

    forward: Callable  # (params, batch, key) -> (z (N, K), [a_0, a_1, …] each dense layer's input (N, in_l))
    example_losses: Callable  # (z, targets) -> ℓ (N,): convex in z
    regulariser: Callable | None  # params -> R(θ) (weight decay), or None
    sample: Callable  # (z, key) -> targets drawn from the model's predictive distribution p(y | z)

    def rows(self, batch: Any, count: int | None) -> Any:
        """The first `count` examples of a (shuffled) minibatch: the curvature minibatch."""
        return batch if count is None else jax.tree.map(lambda x: x[:count], batch)

    def loss(self, batch: Any, key: jax.Array) -> Callable:
        """θ ↦ C(θ) on `batch`."""
        def value(params):
            z, _ = self.forward(params, batch, key)
            total = jnp.mean(self.example_losses(z, batch[1]))
            return total if self.regulariser is None else total + self.regulariser(params)
        return value

    def outputs(self, batch: Any, key: jax.Array) -> Callable:
        """θ ↦ z = f(θ; x), the function Gauss–Newton linearises."""
        return lambda params: self.forward(params, batch, key)[0]

    def output_loss(self, batch: Any) -> Callable:
        """z ↦ mean_i ℓ(z_i, y_i), convex in z: its Hessian is the middle of G = Jᵀ ∇²L J."""
        return lambda z: jnp.mean(self.example_losses(z, batch[1]))


def check_dense(params: Any, who: str) -> None:
    """Raise if `params` is not a list of dense layers {"w": (out, in), "b": (out,)}."""
    from optlab.errors import ConfigError

    ok = isinstance(params, (list, tuple)) and all(
        isinstance(p, dict) and set(p) == {"w", "b"} and p["w"].ndim == 2 and p["b"].shape == p["w"].shape[:1]
        for p in params)
    if not ok:
        raise ConfigError(f"--opt {who} works on stacks of dense layers (w, b) only")


def layer_statistics(network: Network, params: list[dict], batch: Any, key: jax.Array, targets: jax.Array
                     ) -> tuple[list[jax.Array], list[jax.Array], jax.Array]:
    """Per example i and dense layer l: its input a_{l,i} and g_{l,i} = ∂ℓ(z_i, t_i)/∂s_{l,i} for targets t.

    Returns ([a_l (N, in_l)], [g_l (N, out_l)], z): one forward and one backward pass (the broadcast
    bias, see the module's docstring). The targets t may be the labels (empirical statistics) or
    drawn from the model (`Network.sample`, K-FAC's true Fisher).
    """
    n = jax.tree.leaves(batch)[0].shape[0]
    weights = [p["w"] for p in params]

    def total(biases):
        layers = [{"w": w, "b": b} for w, b in zip(weights, biases)]
        z, inputs = network.forward(layers, batch, key)
        return jnp.sum(network.example_losses(z, targets)), (z, inputs)

    wide = [jnp.broadcast_to(p["b"], (n, *p["b"].shape)) for p in params]
    grads, (z, inputs) = jax.grad(total, has_aux=True)(wide)
    return list(inputs[:len(params)]), list(grads), z


def fisher_diagonal(network: Network, params: list[dict], batch: Any, key: jax.Array) -> list[dict]:
    """diag of the empirical Fisher (1/N) Σᵢ ∇ℓᵢ ⊙ ∇ℓᵢ, shaped like `params`, without per-example gradients.

    For a dense layer ∇_W ℓᵢ = gᵢ aᵢᵀ, so (1/N) Σᵢ (∇_W ℓᵢ)² = (g ⊙ g)ᵀ (a ⊙ a) / N and for the bias
    (1/N) Σᵢ gᵢ ⊙ gᵢ: two matrix products per layer instead of N gradients.
    """
    inputs, grads, _ = layer_statistics(network, params, batch, key, batch[1])
    n = grads[0].shape[0]
    return [{"w": (g * g).T @ (a * a) / n, "b": jnp.mean(g * g, axis=0)} for a, g in zip(inputs, grads)]
