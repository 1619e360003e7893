"""The optimizer registry: a name, a one-line help, and a factory returning an optax transformation.

First-order methods are optax's own. Adding one is one small function (here, or in a plug-in
file through `optlab.optimizer`, which is this decorator):

    @optimizer("lion", help="Lion (Chen et al., 2023): the sign of a momentum", default_lr=1e-4)
    def lion(learning_rate, b1=0.9, b2=0.99):
        import optax

        return optax.lion(learning_rate, b1=b1, b2=b2)

Factories take their hyperparameters as keyword arguments: `learning_rate`; keywords named like
one of optlab's optimizer settings (`momentum`, `damping`, `line_search`, `cg_iters`: the
config fields in OPTIMIZER_FIELDS, or those listed in `hyperparams`) take that setting; every
other keyword is the optimizer's own setting (`b1` above), with the factory's default as its
default: `--set b1=0.95`, `b1 = 0.95` in a TOML file, recorded in `config.optimizer_settings`.
`build` wraps the factory in `optax.inject_hyperparams`, so every real-valued hyperparameter is
an array in the optimizer state (a sweep over it is one program) and the learning rate can follow
a schedule; integer, true/false and text settings are static (`static_args`).

The registry and its metadata import no JAX (`optlab list`, `--help` and shell completion read
them): optax and the second-order module are imported inside the factories and `build`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from optlab import config, parsers
from optlab.errors import ConfigError
from optlab.registry import Registry

if TYPE_CHECKING:
    import jax
    import optax


@dataclass(frozen=True)
class OwnSetting:
    """One of an optimizer's own settings: a factory keyword that is not one of optlab's settings.

    Its kind comes from the factory's default: "real" (a float: traced, an array in the program),
    "integer", "switch" (True/False) or "text" (static: a different value is a different program),
    or "optional" (default None: unset leaves the factory's None, a value is a real number).
    """

    name: str
    default: Any
    kind: str

    def parse(self, raw: Any) -> Any:
        """The value of `raw` (a string from --set, or a TOML/JSON value); a ValueError says what it must be."""
        if self.kind == "optional" and (raw is None or (isinstance(raw, str) and raw.strip().lower() == "none")):
            return None
        return _PARSERS[self.kind](raw)

    def shown(self) -> str:
        return f"{self.name}={self.default!r}" if self.kind == "text" else f"{self.name}={self.default}"


_PARSERS = {"real": parsers.finite, "optional": parsers.finite, "switch": parsers.boolean, "text": parsers.name,
            "integer": parsers.checked(int, lambda v: True, "an integer")}
_KINDS = ((bool, "switch"), (int, "integer"), (float, "real"), (str, "text"), (type(None), "optional"))


@dataclass(frozen=True)
class OptimizerSpec:
    """A registered optimizer: `factory(learning_rate, **hyperparams, **own settings) -> optax transformation`."""

    factory: Callable[..., optax.GradientTransformation]
    default_lr: float
    hyperparams: tuple[str, ...] = ()  # config fields passed to the factory besides the learning rate
    dense_hessian: bool = False  # forms the n×n Hessian: refused when n > MAX_DENSE_PARAMS
    settings: tuple[OwnSetting, ...] = ()  # the factory's other keywords: the optimizer's own settings
    static: tuple[str, ...] = ()  # config fields passed as Python values (they shape the program), not arrays
    network: bool = False  # takes the network's split loss (optlab.curvature.layers.Network) as `network`
    needs_network: bool = False  # cannot run without one: refused on problems that are not networks

    def keywords(self) -> list[str]:
        """Every keyword of the factory besides learning_rate: optlab's settings it takes, then its own."""
        return [*self.hyperparams, *(s.name for s in self.settings)]


OPTIMIZERS: Registry[OptimizerSpec] = Registry("optimizer")
MAX_DENSE_PARAMS = 4096  # a 4096² float64 Hessian is 134 MB; beyond that use a matrix-free method
# optlab's settings a factory may take by naming a keyword after them (besides learning_rate)
OPTIMIZER_FIELDS = ("momentum", "damping", "line_search", "cg_iters")


def optimizer(name: str, help: str | None = None, default_lr: float = 1e-3, hyperparams: tuple[str, ...] | None = None,
              dense_hessian: bool = False, static: tuple[str, ...] = (), network: bool = False,
              needs_network: bool = False) -> Callable[[Callable], Callable]:
    """Register `factory` under `name`: it then shows in `optlab list`, `--opt`'s help and its completion.

    `help` is its line in `optlab list` (default: the first line of the factory's docstring);
    `hyperparams` the optlab settings it takes (default: its keywords named in OPTIMIZER_FIELDS).
    `static`: optlab settings it takes as Python values (they shape its program: hessian-free's
    curvature); `network` / `needs_network`: it takes (needs) the network's split loss as the keyword
    `network` (hessian-free's Gauss–Newton, kfac).
    A factory optlab cannot call (no `learning_rate` keyword, `*args`, a keyword named after another
    of optlab's settings, an own setting without a number, true/false or text default) is refused
    here with a ConfigError, when its file is loaded.
    """

    def decorate(factory):
        skip = (*static, *("network",) * (network or needs_network))
        taken, own = _signature(name, factory, hyperparams, skip)
        line = help if help is not None else (inspect.getdoc(factory) or name).splitlines()[0]
        OPTIMIZERS.register(name, line, OptimizerSpec(factory, default_lr, taken, dense_hessian, own, static,
                                                      network or needs_network, needs_network))
        return factory

    return decorate


def _signature(name: str, factory: Callable, hyperparams: tuple[str, ...] | None, skip: tuple[str, ...] = ()
               ) -> tuple[tuple, tuple]:
    """(the optlab settings the factory takes, its own settings), or why optlab cannot call it."""
    def refuse(why: str) -> ConfigError:
        return ConfigError(f"optimizer {name!r}: its factory {why}")

    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        raise refuse("has no signature optlab can read") from None
    if "learning_rate" not in params or params["learning_rate"].kind is inspect.Parameter.POSITIONAL_ONLY:
        raise refuse("takes no learning_rate keyword (optlab passes the step size as learning_rate=)")
    taken, own = [], []
    for p in params.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise refuse(f"takes {'*' if p.kind is p.VAR_POSITIONAL else '**'}{p.name}: list its keywords, each "
                         "with its default (they become its settings)")
        if p.kind is p.POSITIONAL_ONLY:
            raise refuse(f"takes {p.name} positionally only; optlab passes keywords")
        if p.name == "learning_rate" or p.name in skip:
            continue
        if p.name in (hyperparams if hyperparams is not None else OPTIMIZER_FIELDS):
            taken.append(p.name)
        elif p.name in config.FIELDS:
            raise refuse(f"takes {p.name!r}, the name of optlab's setting {config.flag(p.name)}, which an optimizer "
                         f"cannot take (its own settings need other names; it may take {', '.join(OPTIMIZER_FIELDS)})")
        else:
            own.append(_own(p, refuse))
    missing = [k for k in (hyperparams or ()) if k not in taken]
    if missing:
        raise refuse(f"has no keyword {missing[0]!r}, listed in its hyperparams")
    return tuple(taken), tuple(own)


def _own(p: inspect.Parameter, refuse: Callable[[str], ConfigError]) -> OwnSetting:
    kind = next((k for t, k in _KINDS if type(p.default) is t), None)
    if p.default is p.empty or kind is None:
        raise refuse(f"keyword {p.name!r} needs a default that is a number, true/false, text or None "
                     f"(its setting's default), got {'none' if p.default is p.empty else repr(p.default)}")
    return OwnSetting(p.name, p.default, kind)


def own_settings(name: str, given: Mapping[str, tuple[Any, str]]) -> tuple[tuple[str, Any], ...]:
    """The optimizer's own settings, each given one (key -> (raw value, where it came from)) parsed, the
    others at their defaults, in the factory's order: RunConfig.optimizer_settings."""
    spec = OPTIMIZERS[name]
    known = {s.name: s for s in spec.settings}
    for key, (_, label) in given.items():
        if key not in known:
            keywords = ", ".join(spec.keywords()) or "none besides learning_rate"
            raise ConfigError(f"{label}: {key!r} is neither one of optlab's settings (optlab run --help lists them) "
                              f"nor a keyword of optimizer {name!r} (its keywords: {keywords})")
    out = []
    for s in spec.settings:
        if s.name not in given:
            out.append((s.name, s.default))
            continue
        raw, label = given[s.name]
        try:
            out.append((s.name, s.parse(raw)))
        except ValueError as e:
            raise ConfigError(f"{label} {e}, got {raw if isinstance(raw, str) else repr(raw)!r}") from None
    return tuple(out)


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
    settings: tuple[tuple[str, Any], ...] = (),
    static: Mapping | None = None,
    network=None,
) -> optax.GradientTransformationExtraArgs:
    """The optimizer `name` with its learning rate following `schedule`.

    `grad_noise` (σ, may be traced) adds N(0, σ²) to every gradient before the optimizer
    sees it: the lecture's "momentum with a noisy gradient". Pass None to leave it out of
    the program entirely. `settings` are the optimizer's own (cfg.optimizer_settings): the real
    ones are taken from `hyperparams` (traced, see `hyperparams`), the rest passed as static
    arguments, and None ("unset") leaves the factory's default. `static` holds the optlab settings it
    takes as Python values (`static_settings`); `network` (optlab.curvature.layers.Network) is what
    the methods that need a network's outputs (hessian-free's Gauss–Newton, kfac) receive.
    """
    import optax

    spec = OPTIMIZERS[name]
    # A hyperparameter left out (or None: "not set") takes the factory's own default.
    given = {k: hyperparams[k] for k in (*spec.hyperparams, *dict(settings)) if hyperparams.get(k) is not None}
    fixed = {k: v for k, v in settings if k not in given and v is not None}
    fixed |= {k: static[k] for k in spec.static if static and static.get(k) is not None}
    if spec.network and network is not None:
        fixed["network"] = network
    tx = optax.inject_hyperparams(spec.factory, static_args=tuple(fixed))(learning_rate=schedule, **given, **fixed)
    if grad_noise is None:
        return tx
    return optax.chain(optax.add_noise(grad_noise**2, 0.0, key), tx)


def transformation(cfg, total_steps: int, key: jax.Array | None = None, dtype=None) -> optax.GradientTransformation:
    """The run's optimizer as one optax transformation (`optlab.transformation`, for a plug-in experiment):
    `--opt` with its settings, η following `--lr-schedule` over `total_steps` updates, and N(0, σ²) gradient
    noise when --grad-noise σ > 0 (drawn from `key`, by default the run's seed). `dtype`: of the
    hyperparameters (float32 by default). This is what optlab's own experiments build."""
    import jax
    import jax.numpy as jnp

    from optlab.core import schedules

    hp = hyperparams(cfg, dtype or jnp.float32)
    schedule = schedules.build(cfg.lr_schedule, hp["lr"], total_steps, cfg)
    noise = hp["grad_noise"] if cfg.grad_noise > 0 else None
    key = jax.random.key(cfg.seed) if key is None and noise is not None else key
    return build(cfg.optimizer, schedule, hp, noise, key, cfg.optimizer_settings)


def hyperparams(cfg, dtype) -> dict[str, jax.Array]:
    """The traced hyperparameters of a run: lr, momentum, grad_noise, the optlab settings the optimizer
    takes (damping, line_search, cg_iters, …) and its own real-valued settings (a plug-in's b1, …), as
    arrays; settings left unset (None) are left out."""
    import jax.numpy as jnp

    names = ("lr", "momentum", "grad_noise", *OPTIMIZERS[cfg.optimizer].hyperparams)
    values = {k: getattr(cfg, k) for k in dict.fromkeys(names) if getattr(cfg, k) is not None}
    values |= {k: v for k, v in cfg.optimizer_settings if traced(v)}
    kinds = {bool: bool, int: jnp.int32}
    return {k: jnp.asarray(v, kinds.get(type(v), dtype)) for k, v in values.items()}


def traced(value: Any) -> bool:
    """Whether an own setting's value is an array in the compiled program (a real number), not static."""
    return isinstance(value, float)


def static_settings(cfg) -> dict:
    """The run's settings its optimizer takes as Python values (OptimizerSpec.static)."""
    return {k: getattr(cfg, k) for k in OPTIMIZERS[cfg.optimizer].static}


def check_size(name: str, n_params: int, itemsize: int, network: bool = True) -> None:
    """Refuse a dense-Hessian method on a problem whose Hessian would not fit, and one that needs a
    network's layers on a problem without them (`network` False), before it runs."""
    if OPTIMIZERS[name].needs_network and not network:
        raise ConfigError(f"--opt {name} needs a network of dense layers: use it on a dataset's classifier "
                          "(optlab list)")
    if OPTIMIZERS[name].dense_hessian and n_params > MAX_DENSE_PARAMS:
        gigabytes = n_params**2 * itemsize / 1e9
        raise ConfigError(
            f"--opt {name} forms the dense Hessian: {n_params:,} parameters need "
            f"{n_params:,}² × {itemsize} bytes = {gigabytes:,.1f} GB; it is limited to "
            f"{MAX_DENSE_PARAMS:,} parameters (use a first-order optimizer such as adam)"
        )
