"""The image classifier's functions: a network of the model registry, trained on a loss of the loss registry.

By default the lecture's 784-225-225-10 ReLU network with a softmax output and cross-entropy; the
`model`, `activation` and `objective` keywords (the settings --model, --activation, --loss; see
`network(cfg)`) choose others from optlab.problems.models, .activations and .losses.

Parameters are a list of layers {"w": (fan_out, fan_in), "b": (fan_out,)}, so the first
layer's `w` is 225 × 784 and row i is hidden unit i's receptive field. Images arrive as
uint8 (scaled to [0, 1] inside the compiled step) or as floats already in [0, 1].
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from optlab.problems import noise
from optlab.problems.activations import ACTIVATIONS
from optlab.problems.inits import INITS, InitStd  # noqa: F401  (mlp.INITS: the registry lives in inits.py)
from optlab.problems.losses import LOSSES
from optlab.problems.models import MODELS

DEFAULTS = {"model": "mlp", "activation": "relu", "objective": "cross-entropy"}


def network(cfg: Any) -> dict[str, str]:
    """The keywords {model, activation, objective} of a RunConfig or of a record's config dict (an older
    record, written before these settings existed, has none: the defaults, which is what it ran)."""
    get = cfg.get if isinstance(cfg, Mapping) else lambda key, default: getattr(cfg, key, default)
    return {"model": get("model", "mlp"), "activation": get("activation", "relu"),
            "objective": get("loss", "cross-entropy")}


def init(key: jax.Array, sizes: Sequence[int], init_name: str = "he", scale: float = 1.0, *,
         model: str = "mlp") -> list[dict]:
    """The model's parameters: Gaussian weights with the init's standard deviation × `scale`; zero biases."""
    return MODELS[model].init(key, tuple(sizes), INITS[init_name], scale)


def param_count(sizes: Sequence[int], model: str = "mlp") -> int:
    """How many numbers the model's parameters hold: by formula for the MLP, by jax.eval_shape (nothing is
    computed) for any other."""
    if model == "mlp":
        return sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))
    shapes = jax.eval_shape(lambda key: init(key, sizes, model=model), jax.random.key(0))
    return sum(int(leaf.size) for leaf in jax.tree_util.tree_leaves(shapes))


def pixels(images: jax.Array) -> jax.Array:
    """Images of any shape (N, ...) -> float32 rows (N, D) in [0, 1]: uint8 divided by 255, floats as they are."""
    x = images.reshape(images.shape[0], -1)
    return x.astype(jnp.float32) / 255.0 if x.dtype == jnp.uint8 else x.astype(jnp.float32)


def forward(params: list[dict], x: jax.Array, dropout: float = 0.0, key: jax.Array | None = None, *,
            model: str = "mlp", activation: str = "relu"):
    """Outputs and the hidden activations (after φ, before dropout) for inputs x (N, D)."""
    phi = ACTIVATIONS[activation].fn
    if dropout <= 0:
        return MODELS[model].apply(params, x, phi)
    keys, clean = jax.random.split(key, len(params)), []

    def dropped(z):  # inverted dropout: the expected activation is unchanged
        h = phi(z)
        clean.append(h)
        return jnp.where(jax.random.bernoulli(keys[len(clean) - 1], 1 - dropout, h.shape), h / (1 - dropout), 0.0)

    outputs, _ = MODELS[model].apply(params, x, dropped)
    return outputs, clean


def loss(params, batch, key, *, input_noise=0.0, dropout: float = 0.0, weight_decay=0.0,
         model: str = "mlp", activation: str = "relu", objective: str = "cross-entropy"):
    """The mean of the objective over the batch (cross-entropy from the logits, stably, by default), plus
    (λ/2)‖W‖² over every layer's `w`.

    In training, N(0, input_noise²) is added to the scaled pixels (optlab.problems.noise: the normal
    quantised to 2¹⁶ levels) and hidden units are dropped with probability `dropout`. A term given as
    the Python number 0 is left out of the program; `input_noise` and `weight_decay` may also be traced
    arrays (a sweep's lanes).
    """
    logits, _ = outputs(params, batch, key, input_noise=input_noise, dropout=dropout, model=model,
                        activation=activation)
    value = example_losses(logits, batch[1], objective).mean()
    if not _is_zero(weight_decay):
        value = value + penalty(params, weight_decay)
    return value


def outputs(params, batch, key, *, input_noise=0.0, dropout: float = 0.0, model: str = "mlp",
            activation: str = "relu"):
    """`loss`'s forward pass: the logits z and each dense layer's input [x, h₁, h₂, …] (x with its
    input noise, hᵢ after the activation and before dropout). Second-order methods split the loss as
    C(θ) = L(z(θ), y) + R(θ) (optlab.curvature.layers.Network) to linearise z."""
    images, _ = batch
    x = pixels(images)
    noise_key, dropout_key = jax.random.split(key)
    if not _is_zero(input_noise):
        x = x + input_noise * noise.normal(noise_key, x.shape, x.dtype)
    logits, hidden = forward(params, x, dropout, dropout_key, model=model, activation=activation)
    return logits, [x, *hidden]


def example_losses(outputs: jax.Array, labels: jax.Array, objective: str = "cross-entropy") -> jax.Array:
    """Each example's loss ℓᵢ = ℓ(zᵢ, yᵢ) of the objective (optlab.problems.losses; by default the softmax
    cross-entropy −log softmax(zᵢ)_{yᵢ}, from the logits, stably)."""
    return LOSSES[objective](outputs, labels.astype(jnp.int32))


def penalty(params, weight_decay) -> jax.Array:
    """The weight decay term (λ/2) Σ ‖W‖² (biases are not penalised)."""
    return 0.5 * weight_decay * sum(jnp.sum(layer["w"] ** 2) for layer in params)


def _is_zero(value) -> bool:
    return isinstance(value, (int, float)) and value == 0


def evaluate(params, images, labels, *, model: str = "mlp", activation: str = "relu",
             objective: str = "cross-entropy") -> dict:
    """Clean (no noise, no dropout) loss, error rate (argmax of the outputs), each hidden unit's active fraction."""
    outputs, hidden = forward(params, pixels(images), model=model, activation=activation)
    labels = labels.astype(jnp.int32)
    return {
        "loss": LOSSES[objective](outputs, labels).mean(),
        "error": jnp.mean(jnp.argmax(outputs, axis=-1) != labels),
        "active": [jnp.mean(h > 0, axis=0) for h in hidden],
    }
