"""A feed-forward ReLU network with a softmax output: the lecture's 784-225-225-10 classifier.

Parameters are a list of layers {"w": (fan_out, fan_in), "b": (fan_out,)}, so the first
layer's `w` is 225 × 784 and row i is hidden unit i's receptive field. Images arrive as
uint8 and are scaled to [0, 1] inside the compiled step.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import optax

from optlab.problems.inits import INITS, InitStd  # noqa: F401  (mlp.INITS: the registry lives in inits.py)


def init(key: jax.Array, sizes: Sequence[int], init_name: str = "he", scale: float = 1.0) -> list[dict]:
    """Gaussian weights with the init's standard deviation × `scale`; zero biases."""
    std_of = INITS[init_name]
    layers = []
    for k, (fan_in, fan_out) in zip(jax.random.split(key, len(sizes) - 1), zip(sizes[:-1], sizes[1:])):
        w = scale * std_of(fan_in, fan_out) * jax.random.normal(k, (fan_out, fan_in), jnp.float32)
        layers.append({"w": w, "b": jnp.zeros(fan_out, jnp.float32)})
    return layers


def param_count(sizes: Sequence[int]) -> int:
    return sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))


def pixels(images: jax.Array) -> jax.Array:
    """uint8 images of any shape (N, ...) -> float32 rows (N, D) in [0, 1]."""
    return images.reshape(images.shape[0], -1).astype(jnp.float32) / 255.0


def forward(params: list[dict], x: jax.Array, dropout: float = 0.0, key: jax.Array | None = None):
    """Logits and the hidden activations (after ReLU, before dropout) for inputs x (N, D)."""
    hidden = []
    keys = jax.random.split(key, len(params)) if dropout > 0 else [None] * len(params)
    for layer, k in zip(params[:-1], keys):
        x = jax.nn.relu(x @ layer["w"].T + layer["b"])
        hidden.append(x)
        if dropout > 0:  # inverted dropout: the expected activation is unchanged
            x = jnp.where(jax.random.bernoulli(k, 1 - dropout, x.shape), x / (1 - dropout), 0.0)
    last = params[-1]
    return x @ last["w"].T + last["b"], hidden


def loss(params, batch, key, *, input_noise=0.0, dropout: float = 0.0, weight_decay=0.0):
    """Mean softmax cross-entropy over the batch (computed from logits, stably), plus (λ/2)‖W‖².

    In training, N(0, input_noise²) is added to the scaled pixels and hidden units are
    dropped with probability `dropout`. A term given as the Python number 0 is left out of
    the program; `input_noise` and `weight_decay` may also be traced arrays (a sweep's lanes).
    """
    logits, _ = outputs(params, batch, key, input_noise=input_noise, dropout=dropout)
    value = example_losses(logits, batch[1]).mean()
    if not _is_zero(weight_decay):
        value = value + penalty(params, weight_decay)
    return value


def outputs(params, batch, key, *, input_noise=0.0, dropout: float = 0.0):
    """`loss`'s forward pass: the logits z and each dense layer's input [x, h₁, h₂, …] (x with its
    input noise, hᵢ after the activation and before dropout). Second-order methods split the loss as
    C(θ) = L(z(θ), y) + R(θ) (optlab.curvature.layers.Network) to linearise z."""
    images, _ = batch
    x = pixels(images)
    noise_key, dropout_key = jax.random.split(key)
    if not _is_zero(input_noise):
        x = x + input_noise * jax.random.normal(noise_key, x.shape, x.dtype)
    logits, hidden = forward(params, x, dropout, dropout_key)
    return logits, [x, *hidden]


def example_losses(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Each example's softmax cross-entropy ℓᵢ = −log softmax(zᵢ)_{yᵢ}, from the logits (stably)."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels.astype(jnp.int32))


def penalty(params, weight_decay) -> jax.Array:
    """The weight decay term (λ/2) Σ ‖W‖² (biases are not penalised)."""
    return 0.5 * weight_decay * sum(jnp.sum(layer["w"] ** 2) for layer in params)


def _is_zero(value) -> bool:
    return isinstance(value, (int, float)) and value == 0


def evaluate(params, images, labels) -> dict:
    """Clean (no noise, no dropout) loss, error rate, and each hidden unit's active fraction."""
    logits, hidden = forward(params, pixels(images))
    labels = labels.astype(jnp.int32)
    return {
        "loss": optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(),
        "error": jnp.mean(jnp.argmax(logits, axis=-1) != labels),
        "active": [jnp.mean(h > 0, axis=0) for h in hidden],
    }
