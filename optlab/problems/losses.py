"""The classifier's training objectives, by name (`--loss`): per-example losses of a network's outputs.

A loss is `fn(outputs, labels) -> (N,)`: outputs f(x) of shape (N, classes), integer labels (N,);
the training loss is its mean over the batch (plus weight decay). The prediction is argmax f(x)
whatever the loss, so the error rate means the same for every one. No JAX at import: each
function imports it when first traced.

    cross-entropy   −log softmax(f(x))_y, computed from the logits stably (optax's own)
    squared-error   ½‖f(x) − e_y‖², e_y the one-hot target: the negative log-likelihood of the
                    lecture's tiny example, y ~ N(f(x), I), up to a constant, on one-hot targets.
                    The outputs are used as they are (no softmax).

A plug-in adds one with the decorator:

    @optlab.loss("hinge", help="multi-class hinge")
    def hinge(outputs, labels): ...
"""

from __future__ import annotations

from collections.abc import Callable

from optlab.registry import Registry

LOSSES: Registry[Callable] = Registry("loss")


def loss(name: str, help: str) -> Callable[[Callable], Callable]:
    """Decorator: register `fn(outputs (N, classes), integer labels (N,)) -> per-example losses (N,)`."""
    return LOSSES(name, help)


@loss("cross-entropy", "softmax cross-entropy −log softmax(f(x))_y (the lecture's)")
def cross_entropy(outputs, labels):
    import optax

    return optax.softmax_cross_entropy_with_integer_labels(outputs, labels)


@loss("squared-error", "½‖f(x) − onehot(y)‖²: Gaussian negative log-likelihood on one-hot targets, no softmax")
def squared_error(outputs, labels):
    import jax

    one_hot = jax.nn.one_hot(labels, outputs.shape[-1], dtype=outputs.dtype)
    return 0.5 * ((outputs - one_hot) ** 2).sum(axis=-1)
