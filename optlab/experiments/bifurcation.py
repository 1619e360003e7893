"""Bifurcation diagram: where gradient descent on the tiny model settles, against the step size η.

For each of `lr_count` evenly spaced step sizes the tiny run goes `steps` updates from `start`; the
last TAIL iterates are its attractor. All step sizes are one vmapped, compiled float64 program (the
tiny run, `jax.vmap`-ed over a traced η). The attractor's period (1 a fixed point, p a p-cycle, 0 none
up to MAX_PERIOD: chaotic, −1 diverged) is read off by `period`, a pure numpy function.

Why it bifurcates: at the minimum the steep direction (λmax = 5.84) is multiplied by 1 − ηλmax per
step, so the minimum repels once η > 2/λmax = 0.3425; the quartic terms of C then hold the iterate in
a 2-cycle around it, which in turn loses stability and doubles again (4, 8, …) into chaos, with
periodic windows (period 3) inside it, until the iterate escapes and diverges: the logistic map's
route to chaos, in a two-weight network.
"""

from __future__ import annotations

import time
from functools import partial

import numpy as np

import optlab.experiments.tiny as tiny_experiment
from optlab import config, plots, results
from optlab.errors import ConfigError
from optlab.experiments.contract import EXPERIMENTS, Experiment, RunContext, RunResult
from optlab.problems import tiny

LAMBDA_MAX = 5.84  # the Hessian's largest eigenvalue at the minima
TAIL = 128  # last iterates kept per step size: the attractor
MAX_PERIOD = 32  # longest cycle told apart from chaos (each is checked over TAIL − p ≥ 96 returns)
PERIOD_TOL = 1e-5  # a p-cycle returns within PERIOD_TOL·(1 + max|x|) of itself after p steps
DIVERGED_BOUND = 1e6  # an orbit past this (or non-finite) has diverged
MAX_ITERATES = 50_000_000  # step sizes × steps one program may run (its history takes 32 bytes per iterate)


def period(orbit: np.ndarray, max_period: int = MAX_PERIOD, tol: float = PERIOD_TOL,
           bound: float = DIVERGED_BOUND) -> int:
    """The period of the attractor that an orbit's tail has settled on: p ≥ 1, 0 for none (chaotic), −1 diverged.

    `orbit` is (T,) or (T, d): the last T iterates x_t of a map. The period is the smallest p ≤ max_period
    with max_t ‖x_{t+p} − x_t‖_∞ ≤ tol·(1 + max|x|) over the whole tail: a fixed point is p = 1, a
    2-cycle p = 2, and an orbit that never returns to within the tolerance is chaotic (0). The tolerance
    must exceed what is left of the transient (near a bifurcation it decays slowly) and stay below a new
    cycle's size: 1e-5 does both for the tiny model after 5,000 steps and for the logistic map after 2,000.
    An orbit with a non-finite value or one beyond `bound` has diverged (−1).
    """
    x = np.asarray(orbit, dtype=float).reshape(len(orbit), -1)
    if len(x) <= 2 * max_period:
        raise ValueError(f"an orbit of {len(x)} points cannot show periods up to {max_period} "
                         f"(it needs more than {2 * max_period})")
    if not np.all(np.isfinite(x)) or np.max(np.abs(x)) > bound:
        return -1
    scale = tol * (1 + np.max(np.abs(x)))
    for p in range(1, max_period + 1):
        if np.max(np.abs(x[p:] - x[:-p])) <= scale:
            return p
    return 0


def doublings(lrs: np.ndarray, periods: np.ndarray, max_period: int = MAX_PERIOD) -> list[float]:
    """The period-doubling cascade: the first η with period 2, then the first after it with 4, 8, …"""
    found, at, p = [], 0, 2
    while p <= max_period:
        hits = np.flatnonzero(periods[at:] == p)
        if not hits.size:
            break
        at += int(hits[0])
        found.append(float(lrs[at]))
        p *= 2
    return found


def windows(lrs: np.ndarray, periods: np.ndarray) -> list[dict]:
    """Periodic windows inside chaos: runs of one period ≥ 1 that start right after a chaotic step size."""
    out = []
    for i in np.flatnonzero((periods[1:] >= 1) & (periods[:-1] == 0)) + 1:
        j = i
        while j + 1 < len(periods) and periods[j + 1] == periods[i]:
            j += 1
        out.append({"period": int(periods[i]), "lr_from": float(lrs[i]), "lr_to": float(lrs[j])})
    return out


def first(lrs: np.ndarray, mask: np.ndarray) -> float | None:
    hits = np.flatnonzero(mask)
    return float(lrs[hits[0]]) if hits.size else None


def attractors(cfg, lrs: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    """The last TAIL iterates (len(lrs), TAIL, 2) and their losses (len(lrs), TAIL) of the tiny run at every η.

    One program: the tiny run (optimizer `cfg.optimizer`, its other hyperparameters fixed) vmapped over
    a traced η, in float64. Returns also the compile and total wall times in seconds.
    """
    import jax
    import jax.numpy as jnp

    with jax.enable_x64(True):
        hp, run = tiny_experiment.hyperparams(cfg), tiny_experiment.run_fn(cfg)
        start, key = tiny.init(cfg.start), jax.random.key(cfg.seed)

        def lane(lr):
            _, _, rows = run(start, hp | {"lr": lr}, key)
            return rows.params[-TAIL:], rows.loss[-TAIL:]

        etas = jnp.asarray(lrs, jnp.float64)
        begin = time.perf_counter()
        compiled = jax.jit(jax.vmap(lane)).lower(etas).compile()
        compile_time = time.perf_counter() - begin
        points, losses = jax.block_until_ready(compiled(etas))
        wall_time = time.perf_counter() - begin
    return np.asarray(points), np.asarray(losses), compile_time, wall_time


def check(settings: dict) -> None:
    get = partial(lambda s, k: s.get(k, getattr(config.RunConfig, k)), settings)
    if get("lr_min") >= get("lr_max"):
        raise ConfigError(f"--lr-min {get('lr_min'):g} must be below --lr-max {get('lr_max'):g}")
    if get("steps") < 2 * TAIL:
        raise ConfigError(f"--steps {get('steps')}: a bifurcation run needs at least {2 * TAIL} "
                          f"(the attractor is its last {TAIL} iterates, after the transient)")
    if get("lr_count") < 2:
        raise ConfigError(f"--lr-count {get('lr_count')}: a bifurcation diagram needs at least 2 step sizes")
    if get("lr_count") * get("steps") > MAX_ITERATES:
        raise ConfigError(f"--lr-count × --steps = {get('lr_count'):,} × {get('steps'):,} is more than the "
                          f"{MAX_ITERATES:,} iterates one program runs here; use fewer step sizes or steps")


def prepare(cfg):
    return partial(_run, cfg)


def _run(cfg, ctx: RunContext) -> RunResult:
    lrs = np.linspace(cfg.lr_min, cfg.lr_max, cfg.lr_count)
    ctx.progress.start(1, f"bifurcation: {lrs.size:,} step sizes")
    points, losses, compile_time, wall_time = attractors(cfg, lrs)
    ctx.progress.advance(1, {})
    ctx.progress.stop()
    with np.errstate(invalid="ignore", over="ignore"):
        periods = np.array([period(p) for p in points])
    local = local_limit(cfg)
    analysis = {
        "lr": lrs.tolist(), "period": periods.tolist(), "period_doubling_lrs": doublings(lrs, periods),
        "windows": windows(lrs, periods), "local_max_stable_lr": local, "lambda_max": LAMBDA_MAX,
        "tail": TAIL, "max_period": MAX_PERIOD, "period_tolerance": PERIOD_TOL,
    }
    summary = {
        "optimizer": cfg.optimizer, "steps": cfg.steps, "lr_count": int(lrs.size),
        "first_doubling_lr": (analysis["period_doubling_lrs"] or [None])[0],
        "chaos_lr": first(lrs, periods == 0), "first_diverged_lr": first(lrs, periods == -1),
        "diverged_lr": first(lrs, np.flip(np.cumprod(np.flip(periods == -1)))),  # every η from here on
        "local_max_stable_lr": local, "wall_time_s": wall_time, "compile_time_s": compile_time,
    }
    marks = [] if local is None else [(local, f"local stability limit η = {local:.4g}")]
    plots.bifurcation(ctx.run_dir / "bifurcation.png", lrs, points[..., 0], losses, marks,
                      title=f"tiny model, {cfg.optimizer}: last {TAIL} of {cfg.steps:,} iterates from "
                            f"({cfg.start[0]:g}, {cfg.start[1]:g})")
    figure = results.figure_entry(
        "bifurcation.png", f"the last {TAIL} iterates' w1 and loss against the step size η, {len(lrs):,} values "
        f"from {lrs[0]:g} to {lrs[-1]:g}, {cfg.optimizer} from ({cfg.start[0]:g}, {cfg.start[1]:g})",
        lr_range=[float(lrs[0]), float(lrs[-1])], lr_count=len(lrs))
    return RunResult("completed", {}, summary, analysis, {"bifurcation": figure},
                     params={"lr": lrs, "w": points[:, -1]})


def local_limit(cfg) -> float | None:
    """2/λmax for gd; for momentum and nesterov at their α the phase diagram's boundary; else None."""
    from optlab.experiments.phase_diagram import max_stable_lr

    if cfg.optimizer == "gd":
        return 2 / LAMBDA_MAX
    return max_stable_lr(cfg.optimizer, "momentum", cfg.momentum, LAMBDA_MAX)


def summary_line(record: dict) -> str:
    s, a = record["summary"], record["analysis"]
    parts = [f"bifurcation {s['optimizer']}, {s['lr_count']:,} step sizes"]
    cascade = a.get("period_doubling_lrs") or []
    local = s.get("local_max_stable_lr")
    if cascade:
        parts.append(f"period doubling at η = {cascade[0]:.4g}"
                     + (f" (local limit {local:.4g})" if local is not None else "")
                     + "".join(f", {2 ** (k + 2)} at {lr:.4g}" for k, lr in enumerate(cascade[1:])))
    else:
        parts.append("no period doubling in the range")
    if s.get("chaos_lr") is not None:
        parts.append(f"chaos from {s['chaos_lr']:.4g}")
    parts += [f"period-{w['period']} window at {w['lr_from']:.4g}–{w['lr_to']:.4g}"
              for w in a.get("windows", []) if w["period"] == 3]
    if s.get("diverged_lr") is not None:
        parts.append(f"diverged from {s['diverged_lr']:.4g}")
    if s.get("first_diverged_lr") is not None and s["first_diverged_lr"] != s.get("diverged_lr"):
        parts.append(f"first diverged at {s['first_diverged_lr']:.4g}")
    return "; ".join(parts)


EXPERIMENTS.register(
    "bifurcation",
    "the tiny model's attractor against the step size η: period doubling at 2/λmax, chaos, divergence",
    Experiment(
        prepare=prepare,
        fields=tiny_experiment.GRID_FIELDS,
        defaults={"optimizer": "gd", "lr_min": 0.2, "lr_max": 0.7, "lr_count": 1000, "steps": 5000},
        check=check,
        trains=False,
        summary_line=summary_line,
    ),
)
