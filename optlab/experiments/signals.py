"""Signal propagation at initialisation: why the scale of the initial weights matters.

A batch is pushed through networks of `depth` hidden layers of `width` units, for each activation
(--activation, by default ReLU and tanh), initialisation and scale, with no training. Per hidden
layer l it records the standard deviation of the activations h_l (forward) and the norm of ∂C/∂z_l,
the gradient at the pre-activations (backward).

Theory (He et al., 2015): with weights of variance g·s²/fan_in, a pre-activation z = W h has
variance fan_in · Var(w) · E[h²] and a ReLU halves the second moment of a symmetric input, so
each square layer multiplies the activations' scale by s·√(g/2); backward, δ_l = Wᵀδ_{l+1} ⊙ 1[z>0]
shrinks or grows by the same factor. He's init (g = 2) keeps it at s; Glorot's on square layers
(g = 1) gives s/√2, an exponential decay. In general the factor is s·√(g·c), c = E[φ(z)²]/E[z²]
the activation's small-signal gain (optlab.problems.activations): c = 1 for tanh, which is linear
near 0, so there Glorot's init keeps the signal (Glorot & Bengio, 2010) and He's grows it by √2
per layer until tanh saturates. The theory holds while signals are small; it has no value (None)
for an activation without a gain.
"""

from __future__ import annotations

from functools import cache, partial
from typing import TYPE_CHECKING

import numpy as np

from optlab import parsers, plots, results
from optlab.data import datasets
from optlab.errors import ConfigError
from optlab.experiments.contract import EXPERIMENTS, Experiment, RunContext, RunResult

if TYPE_CHECKING:
    import jax

CLASSES = 10


def theory_factor(init: str, scale: float, width: int, activation: str = "relu") -> float:
    """s·√(g·c) with g = fan_in · std² of the init on a square width × width layer and c the activation's
    gain (½ for ReLU: s·√(g/2)); NaN for an activation without one."""
    from optlab.problems import activations, mlp

    g, c = width * mlp.INITS[init](width, width) ** 2, activations.ACTIVATIONS[activation].gain
    return float("nan") if c is None else scale * float(np.sqrt(g * c))


def fitted_factor(values: np.ndarray) -> float:
    """exp of the least-squares slope of log(values) against the layer index: the per-layer factor."""
    layers = np.arange(1, len(values) + 1)
    keep = np.isfinite(values) & (values > 0)  # a signal that underflowed to 0 has no logarithm
    return float(np.exp(np.polyfit(layers[keep], np.log(values[keep]), 1)[0])) if keep.sum() > 1 else float("nan")


def propagate(params: list[dict], x: jax.Array, labels: jax.Array,
              activation: str = "relu") -> tuple[jax.Array, jax.Array]:
    """Per hidden layer: std of h_l, and ‖∂C/∂z_l‖ (C the batch's mean cross-entropy); compiled."""
    return _compiled()(params, x, labels, activation)


@cache
def _compiled():
    import jax

    return jax.jit(_propagate, static_argnums=3)


def _propagate(params: list[dict], x: jax.Array, labels: jax.Array, activation: str) -> tuple[jax.Array, jax.Array]:
    import jax
    import jax.numpy as jnp
    import optax

    from optlab.problems.activations import ACTIVATIONS

    phi = ACTIVATIONS[activation].fn

    def loss(shifts):  # zero shifts added to each z_l: their gradient is ∂C/∂z_l
        h, hidden = x, []
        for layer, shift in zip(params[:-1], shifts):
            h = phi(h @ layer["w"].T + layer["b"] + shift)
            hidden.append(h)
        logits = h @ params[-1]["w"].T + params[-1]["b"]
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), hidden

    shifts = [jnp.zeros((x.shape[0], layer["b"].shape[0]), x.dtype) for layer in params[:-1]]
    grads, hidden = jax.grad(loss, has_aux=True)(shifts)
    return jnp.stack([_scaled(jnp.std, h) for h in hidden]), jnp.stack([_scaled(jnp.linalg.norm, g) for g in grads])


def _scaled(stat, a: jax.Array) -> jax.Array:
    """stat(a) = m·stat(a/m), m = max|a|: squares of 1e-25 underflow float32, squares of O(1) do not."""
    import jax.numpy as jnp

    m = jnp.max(jnp.abs(a))
    return jnp.where(m > 0, m * stat(a / jnp.where(m > 0, m, 1.0)), 0.0)


def inputs(cfg) -> tuple[jax.Array, jax.Array, str]:
    """The first `batch_size` MNIST training images if the files are present, else uniform noise images."""
    import jax.numpy as jnp

    from optlab.problems import mlp

    if all(s.path is not None for s in datasets.locate("mnist", cfg.data_dir, verify=False)):
        data = datasets.load("mnist", cfg.data_dir)
        if cfg.batch_size > len(data.train_images):
            available = len(data.train_images)
            raise ConfigError(f"--batch-size {cfg.batch_size:,} is more than the {available:,} MNIST images")
        images, labels = data.train_images[: cfg.batch_size], data.train_labels[: cfg.batch_size]
        source = f"the first {cfg.batch_size:,} MNIST training images ({data.source})"
    else:
        rng = np.random.default_rng(cfg.seed)
        images = rng.integers(0, 256, (cfg.batch_size, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, CLASSES, cfg.batch_size, dtype=np.uint8)
        source = f"{cfg.batch_size:,} synthetic uniform-noise 28×28 images (MNIST not found)"
    return mlp.pixels(jnp.asarray(images)), jnp.asarray(labels, jnp.int32), source


def prepare(cfg):
    x, labels, source = inputs(cfg)
    return partial(_run, cfg, x, labels, source)


def _run(cfg, x, labels, source: str, ctx: RunContext) -> RunResult:
    import jax

    from optlab.problems import mlp

    rows = {"depth": [], "activation": [], "init": [], "init_scale": [], "activation_std": [], "grad_norm": []}
    combos = [(d, a, i, s) for d in cfg.depth for a in cfg.activation for i in cfg.init for s in cfg.init_scale]
    ctx.progress.start(len(combos), "signals: network")
    for n, (depth, activation, init, scale) in enumerate(combos, 1):
        key = jax.random.fold_in(jax.random.key(cfg.seed), depth)  # the same weights up to scale across inits
        params = mlp.init(key, (x.shape[1], *[cfg.width] * depth, CLASSES), init, scale)
        std, grad = (np.asarray(a, np.float64) for a in propagate(params, x, labels, activation))
        for k, v in zip(rows, (depth, activation, init, scale, std, grad)):
            rows[k].append(v)
        ctx.progress.advance(n, {"depth": depth})
    ctx.progress.stop()
    deepest = max(cfg.depth)
    lines = [_line(rows, j, cfg.width) for j, d in enumerate(rows["depth"]) if d == deepest]
    panels = [(a, [(f"{line['init']} ×{line['init_scale']:g}", rows["activation_std"][line["row"]],
                    rows["grad_norm"][line["row"]]) for line in lines if line["activation"] == a])
              for a in cfg.activation]
    plots.signals(ctx.run_dir / "signals.png", [], panels=panels,
                  title=f"{deepest} hidden layers of {cfg.width} ({', '.join(cfg.activation)}), at initialisation")
    for line in lines:
        del line["row"]
    summary = {"depth": deepest, "width": cfg.width, "lines": lines}
    figure = results.figure_entry(
        "signals.png", f"activation scale and gradient norm per layer of {deepest} hidden layers of {cfg.width} "
        f"at initialisation, a row of panels per activation ({', '.join(cfg.activation)}), one line per init and "
        f"scale, measured on {source}", depth=deepest, activations=list(cfg.activation), measured_on=source)
    return RunResult("completed", rows, summary, {"data": source}, {"signals": figure}, params={})


def _line(rows: dict, j: int, width: int) -> dict:
    std, grad = rows["activation_std"][j], rows["grad_norm"][j]
    init, scale, activation = rows["init"][j], rows["init_scale"][j], rows["activation"][j]
    return {
        "row": j, "activation": activation, "init": init, "init_scale": scale,
        "forward_factor": fitted_factor(std),  # h_{l+1} / h_l
        "backward_factor": 1 / fitted_factor(grad),  # ‖δ_l‖ / ‖δ_{l+1}‖, towards the input
        "theory_factor": theory_factor(init, scale, width, activation),
        "activation_std_last_over_first": float(std[-1] / std[0]),
        "grad_norm_first_over_last": float(grad[0] / grad[-1]),
    }


def summary_line(record: dict) -> str:
    """The per-layer factor of each init at the deepest depth, measured and in theory."""
    summary = record["summary"]
    factors = ", ".join(f"{f.get('activation', 'relu')} {f['init']}×{f['init_scale']:g} {_g(f['forward_factor'])} "
                        f"(theory {_g(f['theory_factor'])})" for f in summary["lines"])
    return f"signals, {summary['depth']} layers: activation std × per layer: {factors}"


def _g(value) -> str:
    return "-" if value is None else f"{value:.3g}"  # None: NaN in metrics.json (a fit or theory without value)


def _names(registry: str):
    """A parser of comma-separated names from a registry ("module:NAME"), each checked (a did-you-mean error)."""

    def parse(raw) -> tuple[str, ...]:
        import importlib

        module, _, attr = registry.partition(":")
        names = tuple(x.strip() for x in (raw.split(",") if isinstance(raw, str) else raw))
        for n in names:
            getattr(importlib.import_module(module), attr).entry(n)
        return names

    return parse


_inits = _names("optlab.problems.inits:INITS")


EXPERIMENTS.register(
    "signals",
    "activation std and gradient norm per layer of deep MLPs at initialisation (--depth, --activation, --init, "
    "--init-scale)",
    Experiment(
        prepare=prepare,
        fields=("depth", "width", "activation", "init", "init_scale", "batch_size", "data_dir"),
        defaults={"depth": tuple(range(2, 21)), "activation": ("relu", "tanh"), "init": ("glorot", "he", "normal"),
                  "init_scale": (0.5, 1.0, 2.0), "batch_size": 256},
        parsers={"init": _inits, "activation": _names("optlab.problems.activations:ACTIVATIONS"),
                 "init_scale": parsers.number_list(parsers.positive, None,
                                                  "comma-separated positive scales (e.g. 0.5,1,2)")},
        trains=False,
        summary_line=summary_line,
    ),
)
