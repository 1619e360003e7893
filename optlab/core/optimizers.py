"""The optimizer registry: a name, a one-line help, and a factory returning an optax transformation.

First-order methods are optax's own. Adding one is one small function:

    @optimizer("lion", "Lion (Chen et al., 2023): the sign of a momentum", default_lr=1e-4)
    def lion(learning_rate):
        import optax

        return optax.lion(learning_rate)

Factories take their hyperparameters as keyword arguments (`learning_rate`, and any names
listed in `hyperparams`, which are config fields); `build` wraps them in
`optax.inject_hyperparams`, so every hyperparameter is an array in the optimizer state and
the learning rate can follow a schedule.

The registry and its metadata import no JAX (`optlab list`, `--help` and shell completion read
them): optax and the second-order module are imported inside the factories and `build`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from optlab.errors import ConfigError
from optlab.registry import Registry

if TYPE_CHECKING:
    import jax
    import optax


@dataclass(frozen=True)
class OptimizerSpec:
    """A registered optimizer: `factory(learning_rate, **hyperparams) -> optax transformation`."""

    factory: Callable[..., optax.GradientTransformation]
    default_lr: float
    hyperparams: tuple[str, ...] = ()  # config fields passed to the factory besides the learning rate
    dense_hessian: bool = False  # forms the n×n Hessian: refused when n > MAX_DENSE_PARAMS
    static: tuple[str, ...] = ()  # config fields passed as Python values (they shape the program), not arrays
    network: bool = False  # takes the network's split loss (optlab.curvature.layers.Network) as `network`
    needs_network: bool = False  # cannot run without one: refused on problems that are not networks


OPTIMIZERS: Registry[OptimizerSpec] = Registry("optimizer")
MAX_DENSE_PARAMS = 4096  # a 4096² float64 Hessian is 134 MB; beyond that use a matrix-free method


def optimizer(name: str, help: str, default_lr: float, hyperparams: tuple[str, ...] = (),
              dense_hessian: bool = False, static: tuple[str, ...] = (), network: bool = False,
              needs_network: bool = False) -> Callable[[Callable], Callable]:
    """Register `factory` under `name`: it then shows in `optlab list`, `--opt`'s help and its completion."""

    def decorate(factory):
        OPTIMIZERS.register(name, help, OptimizerSpec(factory, default_lr, hyperparams, dense_hessian, static,
                                                      network or needs_network, needs_network))
        return factory

    return decorate


@optimizer("gd", "gradient descent: θ ← θ − η ∇C", default_lr=0.1)
def gd(learning_rate):
    import optax

    return optax.sgd(learning_rate)


@optimizer("momentum", "heavy ball: v ← α v − η ∇C, θ ← θ + v (α = --momentum)", 0.01, ("momentum",))
def momentum(learning_rate, momentum):
    import optax

    return optax.sgd(learning_rate, momentum=momentum)


@optimizer("nesterov", "Nesterov momentum: the gradient taken after the momentum step", 0.01, ("momentum",))
def nesterov(learning_rate, momentum):
    import optax

    return optax.sgd(learning_rate, momentum=momentum, nesterov=True)


@optimizer("newton", "Newton's method θ ← θ − η (H + λI)⁻¹∇C, exact Hessian (--damping λ, --line-search)", 1.0,
           ("damping", "line_search"), dense_hessian=True)
def newton(learning_rate, damping=0.0, line_search=False):
    from optlab.core import second_order

    return second_order.newton(learning_rate, damping, line_search)


@optimizer("saddle-free-newton",
           "saddle-free Newton (Dauphin et al., 2014): θ ← θ − η (|H| + λI)⁻¹∇C, repelled by saddles", 1.0,
           ("damping", "line_search"), dense_hessian=True)
def saddle_free_newton(learning_rate, damping=0.0, line_search=False):
    from optlab.core import second_order

    return second_order.saddle_free_newton(learning_rate, damping, line_search)


@optimizer("hessian-free", "Hessian-free (Martens, 2010): preconditioned CG on Gauss–Newton products, backtracked, "
           "λ adapted (--cg-iters, --curvature, --curvature-batch)", 1.0, ("damping", "cg_iters"),
           static=("curvature", "curvature_batch"), network=True)
def hessian_free(learning_rate, damping=1.0, cg_iters=50, curvature=None, curvature_batch=None, network=None):
    from optlab.core import second_order

    return second_order.hessian_free(learning_rate, damping, cg_iters, curvature=curvature,
                                     curvature_batch=curvature_batch, network=network)


@optimizer("kfac", "K-FAC (Martens & Grosse, 2015): Kronecker-factored natural gradient with momentum, dense "
           "layers (--damping, --momentum, --inverse-every)", 0.1, ("damping", "momentum", "inverse_every"),
           static=("curvature_batch",), needs_network=True)
def kfac(learning_rate, damping=0.3, momentum=0.9, inverse_every=20, curvature_batch=None, network=None):
    from optlab.core import kfac as kfac_module

    if network is None:
        raise ValueError("kfac needs a network of dense layers (the classify experiments)")
    return kfac_module.kfac(learning_rate, network, damping, momentum, inverse_every,
                            curvature_batch=curvature_batch)


@optimizer("adagrad", "Adagrad (Duchi et al., 2011): η scaled by the root of the summed squared gradients", 0.01)
def adagrad(learning_rate):
    import optax

    return optax.adagrad(learning_rate)


@optimizer("adadelta", "Adadelta (Zeiler, 2012): step sizes from running averages, η = 1 is the paper's", 1.0)
def adadelta(learning_rate):
    import optax

    return optax.adadelta(learning_rate)


@optimizer("rmsprop", "RMSprop (Tieleman & Hinton, 2012): η over a running RMS of the gradient", 1e-3)
def rmsprop(learning_rate):
    import optax

    return optax.rmsprop(learning_rate)


@optimizer("adam", "Adam (Kingma & Ba, 2015): momentum and RMS scaling with bias correction", 1e-3)
def adam(learning_rate):
    import optax

    return optax.adam(learning_rate)


def build(
    name: str,
    schedule: optax.Schedule,
    hyperparams: Mapping[str, jax.Array],
    grad_noise: jax.Array | None = None,
    key: jax.Array | None = None,
    static: Mapping | None = None,
    network=None,
) -> optax.GradientTransformationExtraArgs:
    """The optimizer `name` with its learning rate following `schedule`.

    `grad_noise` (σ, may be traced) adds N(0, σ²) to every gradient before the optimizer
    sees it: the lecture's "momentum with a noisy gradient". Pass None to leave it out of
    the program entirely. `static` holds the optimizer's settings that shape its program (Python
    values, `static_settings`); `network` (optlab.curvature.layers.Network) is what the methods that
    need a network's outputs (hessian-free's Gauss–Newton, kfac) receive.
    """
    import optax

    spec = OPTIMIZERS[name]
    # A hyperparameter left out (or None: "not set") takes the factory's own default.
    given = {k: hyperparams[k] for k in spec.hyperparams if hyperparams.get(k) is not None}
    given |= {k: static[k] for k in spec.static if static and static.get(k) is not None}
    if spec.network and network is not None:
        given["network"] = network
    static_args = (*spec.static, *("network",) * spec.network)
    tx = optax.inject_hyperparams(spec.factory, static_args=static_args)(learning_rate=schedule, **given)
    if grad_noise is None:
        return tx
    return optax.chain(optax.add_noise(grad_noise**2, 0.0, key), tx)


def hyperparams(cfg, dtype) -> dict[str, jax.Array]:
    """The traced hyperparameters of a run: lr, momentum, grad_noise and the optimizer's own
    (damping, line_search, cg_iters, …), as arrays; settings left unset (None) are left out."""
    import jax.numpy as jnp

    names = ("lr", "momentum", "grad_noise", *OPTIMIZERS[cfg.optimizer].hyperparams)
    values = {k: getattr(cfg, k) for k in dict.fromkeys(names) if getattr(cfg, k) is not None}
    kinds = {bool: bool, int: jnp.int32}
    return {k: jnp.asarray(v, kinds.get(type(v), dtype)) for k, v in values.items()}


def static_settings(cfg) -> dict:
    """The run's settings its optimizer takes as Python values (OptimizerSpec.static)."""
    return {k: getattr(cfg, k) for k in OPTIMIZERS[cfg.optimizer].static}


def check_size(name: str, n_params: int, itemsize: int, network: bool = True) -> None:
    """Refuse a dense-Hessian method on a problem whose Hessian would not fit, and one that needs a
    network's layers on a problem without them (`network` False), before it runs."""
    if OPTIMIZERS[name].needs_network and not network:
        raise ConfigError(f"--opt {name} needs a network of dense layers: use it on mnist or fashion-mnist")
    if OPTIMIZERS[name].dense_hessian and n_params > MAX_DENSE_PARAMS:
        gigabytes = n_params**2 * itemsize / 1e9
        raise ConfigError(
            f"--opt {name} forms the dense Hessian: {n_params:,} parameters need "
            f"{n_params:,}² × {itemsize} bytes = {gigabytes:,.1f} GB; it is limited to "
            f"{MAX_DENSE_PARAMS:,} parameters (use a first-order optimizer such as adam)"
        )
