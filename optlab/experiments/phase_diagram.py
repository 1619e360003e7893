"""Phase diagram: the tiny model's final loss over a grid of (step size η, one optimizer hyperparameter).

Every cell is the tiny run from `start` for `steps` updates; the whole grid is one vmapped, compiled
float64 program (`jax.vmap` of the tiny run over η and the hyperparameter, both traced).

Over the map is drawn where the local quadratic at the minimum is stable. Near a minimum with Hessian
eigenvalues λ the tiny model is, to first order, C ≈ C* + ½ Σ λ e_i², and each eigen-direction evolves
by the optimizer's linear map on a 1-D quadratic of curvature λ (h = ηλ):

    gd           e ← (1 − h) e                                  stable iff 0 < h < 2
    momentum     e_{t+1} = (1 + α − h) e_t − α e_{t−1}          stable iff 0 < h < 2(1 + α), |α| < 1
    nesterov     (e, v) ← M (e, v), M = [[1 − h(1+α), −ηα²],     stable iff 0 < h < (2 + 2α)/(1 + 2α)
                                        [λ, α]]                 (0 ≤ α < 1)
    newton       e ← (1 − ηλ/(λ + d)) e  (damping d)            stable iff 0 < η < 2(1 + d/λ)

(the momentum conditions are Jury's on z² − (1 + α − h) z + α; nesterov's on z² − (1 + α)(1 − h) z + α(1 − h),
optax's convention v ← g + αv, Δw = −η(g + αv)). Outside the boundary for λmax = 5.84 the minimum repels:
a run cannot converge to it; inside it may, if the start lies in its basin. For λ = 0.16 the same
boundaries lie 36.5 times further out in η. Other optimizers or hyperparameters have no closed form here
and are drawn without a boundary.
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

CURVATURES = (5.84, 0.16)  # the Hessian eigenvalues at the minima
CONVERGED_GAP = 1e-8  # final C − C* below this: converged to the minimum
DIVERGED_FACTOR = tiny_experiment.DIVERGED_FACTOR  # a final loss this many times the start's: diverged
MAX_ITERATES = 50_000_000  # cells × steps one program may run (its history takes 32 bytes per iterate)


def max_stable_lr(optimizer: str, hparam: str, value: float, curvature: float) -> float | None:
    """The largest η at which `optimizer` with `hparam` = value is stable on a quadratic of this curvature
    (see the module's table); None where there is no closed form or no stable η (|α| ≥ 1)."""
    lam = curvature
    if optimizer in ("momentum", "nesterov") and hparam == "momentum":
        if not -1 < value < 1 or (optimizer == "nesterov" and not 0 <= value < 1):
            return None
        return 2 * (1 + value) / lam if optimizer == "momentum" else (2 + 2 * value) / ((1 + 2 * value) * lam)
    if optimizer in ("newton", "saddle-free-newton") and hparam == "damping":
        return 2 * (1 + value / lam) if value >= 0 else None
    return None


def optimal_heavy_ball(lam_max: float = CURVATURES[0], lam_min: float = CURVATURES[1]) -> tuple[float, float]:
    """Polyak's optimal heavy ball on a quadratic: η* = (2/(√λmax + √λmin))², α* = ((√κ − 1)/(√κ + 1))²."""
    a, b = np.sqrt(lam_max), np.sqrt(lam_min)
    return float((2 / (a + b)) ** 2), float(((a - b) / (a + b)) ** 2)


def grid(cfg) -> tuple[np.ndarray, np.ndarray]:
    """The evenly spaced step sizes (columns) and hyperparameter values (rows)."""
    return (np.linspace(cfg.lr_min, cfg.lr_max, cfg.lr_count),
            np.linspace(cfg.hparam_min, cfg.hparam_max, cfg.hparam_count))


def check(settings: dict) -> None:
    """The grid's ranges, and a hyperparameter that the optimizer takes and that is a real number."""
    from optlab.core.optimizers import OPTIMIZERS

    get = partial(lambda s, k: s.get(k, getattr(config.RunConfig, k)), settings)
    if get("lr_min") >= get("lr_max"):
        raise ConfigError(f"--lr-min {get('lr_min'):g} must be below --lr-max {get('lr_max'):g}")
    optimizer, hparam = get("optimizer"), get("hparam")
    takes = OPTIMIZERS[optimizer].hyperparams
    if hparam not in takes:
        raise ConfigError(f"--hparam {hparam}: optimizer {optimizer!r} takes "
                          + (f"{', '.join(takes)}" if takes else "no hyperparameter besides η"))
    if get("hparam_min") >= get("hparam_max"):
        raise ConfigError(f"--hparam-min {get('hparam_min'):g} must be below --hparam-max {get('hparam_max'):g}")
    parse = config.SETTINGS[hparam].parse
    for key in ("hparam_min", "hparam_max"):
        try:
            value = parse(get(key))
        except ValueError as e:
            raise ConfigError(f"{config.flag(key)} {get(key):g}: {config.flag(hparam)} {e}") from None
        if not isinstance(value, float):
            raise ConfigError(f"--hparam {hparam}: a phase diagram needs a real-valued hyperparameter")
    cells, steps = get("lr_count") * get("hparam_count"), get("steps")
    if cells * steps > MAX_ITERATES:
        raise ConfigError(f"--lr-count × --hparam-count × --steps = {cells:,} × {steps:,} is more than the "
                          f"{MAX_ITERATES:,} iterates one program runs here; use a coarser grid or fewer steps")


def final_losses(cfg, lrs: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, float, float]:
    """C after `steps` updates for every (hyperparameter, η) cell: (len(values), len(lrs)), float64.

    One program: the tiny run vmapped over the flattened grid, η and the hyperparameter traced.
    Returns the losses and the compile and total wall times in seconds.
    """
    import jax
    import jax.numpy as jnp

    with jax.enable_x64(True):
        hp, run = tiny_experiment.hyperparams(cfg), tiny_experiment.run_fn(cfg)
        start, key = tiny.init(cfg.start), jax.random.key(cfg.seed)

        def cell(lr, value):
            final, _, _ = run(start, hp | {"lr": lr, cfg.hparam: value}, key)
            return tiny.loss(final)

        lr_grid, value_grid = np.meshgrid(lrs, values)
        args = (jnp.asarray(lr_grid.ravel()), jnp.asarray(value_grid.ravel()))
        begin = time.perf_counter()
        compiled = jax.jit(jax.vmap(cell)).lower(*args).compile()
        compile_time = time.perf_counter() - begin
        losses = np.asarray(jax.block_until_ready(compiled(*args)))
        wall_time = time.perf_counter() - begin
    return losses.reshape(len(values), len(lrs)), compile_time, wall_time


def classify(losses: np.ndarray, start_loss: float) -> tuple[np.ndarray, np.ndarray]:
    """(converged, diverged) masks: C − C* < CONVERGED_GAP; non-finite or above DIVERGED_FACTOR·(1 + C(start))."""
    with np.errstate(invalid="ignore"):
        diverged = ~(losses <= DIVERGED_FACTOR * (1 + start_loss))
        converged = ~diverged & (losses - tiny.MINIMUM_LOSS < CONVERGED_GAP)
    return converged, diverged


def predicted_stable(optimizer: str, hparam: str, lrs: np.ndarray, values: np.ndarray) -> np.ndarray | None:
    """Cells inside the local quadratic's boundary for every curvature (rows: values, columns: lrs); None: no
    closed form. (Each limit falls as λ grows, so λmax = 5.84 is the one that binds.)"""
    per_curvature = [[max_stable_lr(optimizer, hparam, float(v), lam) for lam in CURVATURES] for v in values]
    if all(None in limits for limits in per_curvature):
        return None
    limits = np.array([np.nan if None in limits else min(limits) for limits in per_curvature])
    with np.errstate(invalid="ignore"):
        return lrs[None, :] < limits[:, None]


def prepare(cfg):
    return partial(_run, cfg)


def _run(cfg, ctx: RunContext) -> RunResult:
    lrs, values = grid(cfg)
    ctx.progress.start(1, f"phase diagram: {lrs.size * values.size:,} runs")
    losses, compile_time, wall_time = final_losses(cfg, lrs, values)
    ctx.progress.advance(1, {})
    ctx.progress.stop()
    converged, diverged = classify(losses, float(tiny.loss_grid(*np.asarray(cfg.start))))
    stable = predicted_stable(cfg.optimizer, cfg.hparam, lrs, values)
    gap = np.where(diverged, np.nan, losses - tiny.MINIMUM_LOSS)
    analysis = {
        "lr": lrs.tolist(), "hparam": cfg.hparam, "hparam_values": values.tolist(),
        "final_gap": [[None if not np.isfinite(g) else float(g) for g in row] for row in gap],
        "converged": converged.tolist(), "diverged": diverged.tolist(),
        "curvatures": list(CURVATURES), "converged_gap": CONVERGED_GAP,
        "stable_local": None if stable is None else stable.tolist(),
    }
    summary = _summary(cfg, lrs, values, gap, converged, diverged, stable) | {
        "wall_time_s": wall_time, "compile_time_s": compile_time}
    _figure(ctx.run_dir / "phase-diagram.png", cfg, lrs, values, gap)
    figure = results.figure_entry(
        "phase-diagram.png", f"the final C − C* of {cfg.optimizer} after {cfg.steps:,} steps over {len(lrs)} "
        f"step sizes × {len(values)} values of {cfg.hparam}, with the local quadratic's stability boundary",
        lr_range=[float(lrs[0]), float(lrs[-1])], hparam=cfg.hparam,
        hparam_range=[float(values[0]), float(values[-1])])
    return RunResult("completed", {}, summary, analysis, {"phase_diagram": figure},
                     params={"lr": lrs, "hparam_values": values, "final_loss": losses})


def _summary(cfg, lrs, values, gap, converged, diverged, stable) -> dict:
    best = np.unravel_index(np.nanargmin(np.where(np.isfinite(gap), gap, np.inf)), gap.shape)
    summary = {
        "optimizer": cfg.optimizer, "hparam": cfg.hparam, "cells": int(gap.size),
        "converged_fraction": float(converged.mean()), "diverged_fraction": float(diverged.mean()),
        "best_lr": float(lrs[best[1]]), "best_hparam": float(values[best[0]]),
        "final_loss": float(gap[best] + tiny.MINIMUM_LOSS),
    }
    if stable is not None:  # outside, the minimum repels: no run can converge there; inside, one may
        summary |= {"converged_outside": int(np.sum(converged & ~stable)), "cells_outside": int(np.sum(~stable)),
                    "converged_inside_fraction": float(converged[stable].mean()) if stable.any() else None}
    return summary


def _figure(path, cfg, lrs, values, gap) -> None:
    boundaries = []
    for lam in CURVATURES:
        limits = np.array([max_stable_lr(cfg.optimizer, cfg.hparam, float(v), lam) or np.nan for v in values])
        inside = np.isfinite(limits) & (limits >= lrs.min()) & (limits <= lrs.max())
        if inside.any():
            boundaries.append((f"local boundary, λ = {lam:g}", np.where(inside, limits, np.nan), values))
        elif np.isfinite(limits).any():  # named in the legend, so that its absence is not mistaken for a bug
            where = "above" if np.nanmin(limits) > lrs.max() else "below"
            boundaries.append((f"local boundary, λ = {lam:g}: η from {np.nanmin(limits):.3g}, {where} the grid",
                               np.array([]), np.array([])))
    points = []
    if cfg.optimizer == "momentum" and cfg.hparam == "momentum":
        eta, alpha = optimal_heavy_ball()
        points.append((f"quadratic optimum η* = {eta:.3f}, α* = {alpha:.3f}", eta, alpha))
    plots.phase_diagram(path, lrs, values, gap, boundaries, points, ylabel=cfg.hparam,
                        title=f"tiny model, {cfg.optimizer}: C − C* after {cfg.steps:,} steps from "
                              f"({cfg.start[0]:g}, {cfg.start[1]:g})")


def summary_line(record: dict) -> str:
    s = record["summary"]
    head = (f"phase-diagram {s['optimizer']} (η, {s['hparam']}), {s['cells']:,} runs of {record['config']['steps']:,}"
            f" steps: {s['converged_fraction']:.0%} converged, {s['diverged_fraction']:.0%} diverged")
    if "cells_outside" in s:
        inside = s["converged_inside_fraction"]
        head += (f"; outside the local boundary (λmax = {CURVATURES[0]}) {s['converged_outside']:,} of "
                 f"{s['cells_outside']:,} cells converged" + ("" if inside is None else f", inside {inside:.0%}"))
    else:
        head += "; no closed-form boundary for this pair"
    return head + (f"; lowest loss {s['final_loss']:.6g} at η = {s['best_lr']:.3g}, "
                   f"{s['hparam']} = {s['best_hparam']:.3g}")


EXPERIMENTS.register(
    "phase-diagram",
    "the tiny model's final loss over an (η, hyperparameter) grid, e.g. momentum's, with the local stability boundary",
    Experiment(
        prepare=prepare,
        fields=tiny_experiment.GRID_FIELDS + ("hparam", "hparam_min", "hparam_max", "hparam_count"),
        defaults={"optimizer": "momentum", "hparam": "momentum", "lr_min": 0.005, "lr_max": 0.8, "lr_count": 160,
                  "hparam_min": 0.0, "hparam_max": 0.99, "hparam_count": 100, "steps": 300},
        check=check,
        trains=False,
        summary_line=summary_line,
    ),
)
