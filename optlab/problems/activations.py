"""Hidden-unit nonlinearities φ, by name (`--activation`): each a function of the pre-activations z = Wx + b.

Plain registrations, no JAX at import (`optlab list`, `--activation`'s help and completion read this
registry without starting JAX): each function imports jax.nn when it is first traced. The functions
are jax.nn's own, not rewritten.

`gain` is the small-signal ratio c = E[φ(z)²] / E[z²] for z ~ N(0, q), q small: what one layer
does to the scale of a signal. With weights of variance g·s²/fan_in on square layers the scale
changes per layer by s·√(g·c) (optlab run signals; He et al. 2015, Glorot & Bengio 2010):
ReLU halves the second moment (c = ½), so He's g = 2 keeps it; tanh and the identity keep it
(c = 1), so Glorot's g = 1 does. None where no such constant exists (sigmoid is not centred at 0).

A plug-in adds one with the decorator:

    @optlab.activation("swish", help="z·σ(z)", gain=None)
    def swish(z):
        import jax
        return z * jax.nn.sigmoid(z)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from optlab.registry import Registry

LEAKY_SLOPE = 0.01  # jax.nn.leaky_relu's default negative slope


@dataclass(frozen=True)
class Activation:
    """φ (an elementwise function of a JAX array) and its small-signal gain c (see the module docstring)."""

    fn: Callable[[Any], Any]
    gain: float | None = None


ACTIVATIONS: Registry[Activation] = Registry("activation")


def activation(name: str, help: str, *, gain: float | None = None) -> Callable[[Callable], Callable]:
    """Decorator: register `fn(z) -> φ(z)` (elementwise, JAX) under `name`; `gain` as in the module docstring."""

    def decorate(fn: Callable) -> Callable:
        ACTIVATIONS.register(name, help, Activation(fn, gain))
        return fn

    return decorate


@activation("relu", "max(0, z): the lecture's; sparse, and He's init keeps its signals", gain=0.5)
def relu(z):
    import jax

    return jax.nn.relu(z)


@activation("leaky-relu", f"max(z, {LEAKY_SLOPE}·z): a ReLU whose units never die", gain=(1 + LEAKY_SLOPE**2) / 2)
def leaky_relu(z):
    import jax

    return jax.nn.leaky_relu(z, LEAKY_SLOPE)


@activation("tanh", "tanh(z): centred, saturating; Glorot's init keeps its signals", gain=1.0)
def tanh(z):
    import jax.numpy as jnp

    return jnp.tanh(z)


@activation("sigmoid", "1/(1 + e^−z): the logistic function, in (0, 1)")
def sigmoid(z):
    import jax

    return jax.nn.sigmoid(z)


@activation("identity", "z: no nonlinearity, so the whole network is one affine map W′x + b′", gain=1.0)
def identity(z):
    return z


@activation("gelu", "z·Φ(z) (tanh approximation, as jax.nn.gelu)")
def gelu(z):
    import jax

    return jax.nn.gelu(z)


@activation("elu", "z for z > 0, e^z − 1 below", gain=1.0)
def elu(z):
    import jax

    return jax.nn.elu(z)


@activation("softplus", "log(1 + e^z): a smooth ReLU, never exactly 0")
def softplus(z):
    import jax

    return jax.nn.softplus(z)


@activation("silu", "z·σ(z) (swish)")
def silu(z):
    import jax

    return jax.nn.silu(z)
