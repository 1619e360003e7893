"""The classifier's networks, by name (`--model`): each a pair of pure functions, `init` and `apply`.

The protocol a model follows (what optlab's training, figures, sparsity and `optlab analyze` rely on):

    init(key, sizes, std_of, scale) -> params
        key     a jax.random key
        sizes   (input width D, *--hidden, classes): the flattened image size, the hidden widths, the class count
        std_of  the --init rule (fan_in, fan_out) -> standard deviation (optlab.problems.inits)
        scale   --init-scale, a number or a traced scalar (a sweep's lanes): multiplies every std
        params  a list of layers {"w": (fan_out, fan_in), "b": (fan_out,)}: the first layer's `w`
                rows are drawn as images in weights.png, and params.npz is read back as this list

    apply(params, x, activation) -> (outputs, hidden)
        x          float32 inputs (N, D) in [0, 1]
        activation φ, to apply once to each hidden layer's pre-activations (training wraps it
                   with --dropout, so a model needs nothing of its own for that)
        outputs    (N, classes), the logits the --loss reads
        hidden     the list of hidden activations (N, units), one per hidden layer, as φ returned
                   them: the sparsity figure and the dead-unit counts measure h > 0 on them

Both are pure functions of arrays (jit, vmap and grad go through them). No JAX at import: the
functions import it when they run, so that `optlab list` and `--model`'s help need no JAX.

A plug-in adds one with the decorator, on any object with `init` and `apply` (a class used as a
namespace reads well):

    @optlab.model("wide-first", help="one hidden layer of twice the first --hidden width")
    class WideFirst:
        def init(key, sizes, std_of, scale): ...
        def apply(params, x, activation): ...
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from optlab.registry import Registry


class Model(NamedTuple):
    """A network as its two pure functions (see the module docstring)."""

    init: Callable[..., list[dict]]
    apply: Callable[..., tuple[Any, list]]


MODELS: Registry[Model] = Registry("model")


def model(name: str, help: str) -> Callable[[Any], Any]:
    """Decorator: register an object with `init` and `apply` (a class as a namespace, a module) as a model."""

    def decorate(obj: Any) -> Any:
        missing = [f for f in ("init", "apply") if not callable(getattr(obj, f, None))]
        if missing:
            raise TypeError(f"model {name!r} needs callable {' and '.join(missing)} (see optlab.problems.models)")
        MODELS.register(name, help, Model(obj.init, obj.apply))
        return obj

    return decorate


def dense_layers(key, sizes: Sequence[int], std_of: Callable[[int, int], float], scale) -> list[dict]:
    """Gaussian weights of std std_of(fan_in, fan_out)·scale, zero biases, for consecutive `sizes`."""
    import jax
    import jax.numpy as jnp

    layers = []
    for k, (fan_in, fan_out) in zip(jax.random.split(key, len(sizes) - 1), zip(sizes[:-1], sizes[1:])):
        w = scale * std_of(fan_in, fan_out) * jax.random.normal(k, (fan_out, fan_in), jnp.float32)
        layers.append({"w": w, "b": jnp.zeros(fan_out, jnp.float32)})
    return layers


@model("mlp", "feed-forward network D-(--hidden)-classes, --activation between layers (the lecture's)")
class MLP:
    def init(key, sizes, std_of, scale):
        return dense_layers(key, sizes, std_of, scale)

    def apply(params, x, activation):
        """h_l = φ(W_l h_{l−1} + b_l) for each hidden layer, then the affine output layer."""
        hidden = []
        for layer in params[:-1]:
            x = activation(x @ layer["w"].T + layer["b"])
            hidden.append(x)
        last = params[-1]
        return x @ last["w"].T + last["b"], hidden


@model("linear", "softmax regression: one affine map D → classes, no hidden layer (--hidden is not used)")
class Linear:
    def init(key, sizes, std_of, scale):
        return dense_layers(key, (sizes[0], sizes[-1]), std_of, scale)

    def apply(params, x, activation):
        """f(x) = Wx + b: with the cross-entropy loss, multinomial logistic regression."""
        (layer,) = params
        return x @ layer["w"].T + layer["b"], []
