"""The lecture's two-weight model: one full-batch run of `steps` updates in float64."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from optlab import plots, results
from optlab.experiments.contract import (
    EXPERIMENTS,
    AnalyzeOptions,
    Experiment,
    RunContext,
    RunResult,
    Sweeping,
    SweepProgram,
    training_head,
)
from optlab.problems import tiny

CONVERGED_GRAD_NORM = 1e-6
DIVERGED_FACTOR = 1e8  # a loss this many times the starting loss has blown up, finite or not
OSCILLATION_WINDOW = 10  # updates inspected at the end of a run for a back-and-forth bounce
MAX_RACERS = 20  # runs raced in compare's GIF: each costs its share of every frame (100 runs of 100 steps: 6 s, 0.6 MB)


def prepare(cfg):
    from optlab.core import optimizers

    optimizers.check_size(cfg.optimizer, 2, 8, network=False)
    return partial(_train, cfg)


def make_tx_for(cfg):
    from optlab.core import optimizers, schedules

    def make_tx(hp, key):
        schedule = schedules.build(cfg.lr_schedule, hp["lr"], cfg.steps, cfg)
        noise = hp["grad_noise"] if cfg.grad_noise > 0 else None
        return optimizers.build(cfg.optimizer, schedule, hp, noise, key, cfg.optimizer_settings)

    return make_tx


def hyperparams(cfg) -> dict:
    """The run's array-valued settings (float64, call under jax.enable_x64) and its uint32 seed."""
    import jax.numpy as jnp

    from optlab.core import optimizers

    return optimizers.hyperparams(cfg, jnp.float64) | {"seed": jnp.asarray(cfg.seed, jnp.uint32)}


def run_fn(cfg):
    """`run(params, hp, key)`: the engine's whole-run program for this config (jit or vmap it)."""
    from optlab.core.engine import full_batch_run

    return full_batch_run(tiny.loss, make_tx_for(cfg), cfg.steps)


def simulate(cfg) -> tuple[dict, object, float, float]:
    """The whole run as one compiled program, in float64 so that Newton's quadratic
    convergence shows down to machine precision.

    Returns the history (numpy arrays of steps + 1 rows: step, loss, params, lr, grad_norm),
    the final optimizer state, and the compile and total wall times in seconds.
    """
    import jax

    with jax.enable_x64(True):
        hp = hyperparams(cfg)
        params, key = tiny.init(cfg.start), jax.random.key(cfg.seed)
        begin = time.perf_counter()
        compiled = run_fn(cfg).lower(params, hp, key).compile()
        compile_time = time.perf_counter() - begin
        _, opt_state, rows = jax.block_until_ready(compiled(params, hp, key))
        wall_time = time.perf_counter() - begin
    return history_of(rows, cfg.steps), opt_state, compile_time, wall_time


def history_of(rows, steps: int) -> dict:
    """The engine's StepRecord rows as the run's history of numpy arrays."""
    return {"step": np.arange(steps + 1), **{k: np.asarray(v) for k, v in rows._asdict().items()}}


def first_divergence(history: dict) -> int | None:
    """The first step whose loss is non-finite or has blown up, None if there is none."""
    with np.errstate(invalid="ignore"):
        blown_up = ~(history["loss"] <= DIVERGED_FACTOR * (1 + history["loss"][0]))  # NaN counts too
    bad = np.flatnonzero(blown_up | ~np.all(np.isfinite(history["params"]), axis=1))
    return int(bad[0]) if bad.size else None


def _train(cfg, ctx: RunContext) -> RunResult:
    return finish(ctx.run_dir, cfg, *simulate(cfg))


def cut_at_divergence(history: dict) -> tuple[dict, int | None]:
    """The history up to (not including) its first blown-up step, and that step (None: it never blew up)."""
    diverged_at = first_divergence(history)
    return (history if diverged_at is None else {k: v[:diverged_at] for k, v in history.items()}), diverged_at


def finish(run_dir, cfg, history: dict, opt_state, compile_time: float, wall_time: float,
           report: dict | None = None) -> RunResult:
    """Divergence, critical-point analysis, summary and figures of one configuration's history.

    `report`: the final point's critical-point report when the caller has it already (a sweep
    computes every lane's in one program, `analysis.critical_point_reports`)."""
    import jax
    import jax.numpy as jnp

    from optlab.curvature import analysis

    history, diverged_at = cut_at_divergence(history)
    final = history["params"][-1]
    if report is None:
        with jax.enable_x64(True):
            report = analysis.critical_point_report(tiny.loss, jnp.asarray(final))
    return RunResult(
        status="completed" if diverged_at is None else "diverged",
        history=history,
        summary=_summary(history, diverged_at) | {"wall_time_s": wall_time, "compile_time_s": compile_time},
        analysis=report,
        figures=_figures(run_dir, cfg, history["params"], history["loss"]) if run_dir else {},
        params={"w": np.asarray(final, dtype=np.float64)},
        notes=_singular_hessian_notes(opt_state, history["params"]),
    )


LANE_BYTES = 64 * 1024  # generous for one 2-weight configuration and its history


def run_lanes(cfgs, lanes, run_dirs, progress, save_progress=None) -> list[RunResult]:
    """Whole runs of configurations that differ only in array settings (SWEEPING.array_keys), as one vmapped program.

    Each lane is run_fn(cfg) from its own seed's key (one program, so nothing to save on the
    way: `save_progress` is unused); lanes never mix, so one that diverges
    is cut at its first blown-up step by `finish` exactly as a single run would be.
    """
    import jax

    from optlab.core.devices import lane, to_host
    from optlab.curvature import analysis

    cfg = cfgs[0]  # the group shares start, steps, optimizer and schedule
    with jax.enable_x64(True):
        hp = lanes.stack(host_hyperparams(cfgs))
        params, run = tiny.init(cfg.start), run_fn(cfg)
        sweep = jax.jit(jax.vmap(lambda hp: run(params, hp, jax.random.key(hp["seed"]))), out_shardings=lanes.sharded)
        begin = time.perf_counter()
        compiled = sweep.lower(hp).compile()
        compile_time = time.perf_counter() - begin
        _, opt_state, rows = jax.block_until_ready(compiled(hp))
        wall_time = time.perf_counter() - begin
        opt_state, rows = to_host((opt_state, rows))
        histories = [history_of(lane(rows, i), c.steps) for i, c in enumerate(cfgs)]
        finals = np.stack([cut_at_divergence(h)[0]["params"][-1] for h in histories])
        reports = analysis.critical_point_reports(tiny.loss, finals)
    singular = _singular_steps(opt_state)  # None when no lane met a singular Hessian: no note to look up per lane
    out = [finish(d, c, h, None if singular is None else lane(opt_state, i), compile_time, wall_time, report)
           for i, (c, d, h, report) in enumerate(zip(cfgs, run_dirs, histories, reports))]
    progress.advance(len(cfgs), [r.summary for r in out])
    return out


def draw(run_dir: Path, cfg, record: Mapping[str, Any]) -> dict[str, dict]:
    """A finished configuration's figures from its record (`optlab sweep --figures K` draws the best K afterwards)."""
    history = record["history"]
    return _figures(run_dir, cfg, np.array(history["params"], dtype=float), np.array(history["loss"], dtype=float))


def _summary(history: dict, diverged_at: int | None) -> dict:
    moves = np.diff(history["params"][-OSCILLATION_WINDOW - 1 :], axis=0)
    turns = np.sum(moves[1:] * moves[:-1], axis=1) < 0  # successive moves point against each other
    converged = bool(history["grad_norm"][-1] < CONVERGED_GRAD_NORM) and diverged_at is None
    return {
        "final_loss": float(history["loss"][-1]),
        "steps": int(history["step"][-1]),
        "converged": converged,
        "oscillating": bool(not converged and turns.size > 0 and turns.all()),
        "diverged_at_step": diverged_at,
    }


def _figures(run_dir, cfg, points: np.ndarray, losses: np.ndarray) -> dict[str, dict]:
    label = f"{cfg.optimizer} η={cfg.lr:g}"
    plots.landscape(
        run_dir / "landscape.png", tiny.loss_grid, [(label, points)], tiny.CRITICAL_POINTS,
        title=f"C(w1, w2) with {label}",
    )
    # The gap to the minimum on a log axis shows the rate: a straight line for gradient
    # descent's linear convergence, a plunge to machine precision for Newton's quadratic one.
    gap = losses - tiny.MINIMUM_LOSS
    plots.curves(
        run_dir / "loss.png", [plots.Curve(label, np.arange(len(losses)), gap)],
        xlabel="step", ylabel=f"C − C* (C* = {tiny.MINIMUM_LOSS:.4f})", title="distance to the minimum loss",
    )
    steps, (w1, w2) = len(losses) - 1, points[0]
    animated = {"trajectory": _animation(run_dir, label, points, losses)} if cfg.animate else {}
    return {
        "landscape": results.figure_entry(
            "landscape.png", f"the loss surface C(w1, w2) and {label}'s path over {steps} steps from ({w1:g}, {w2:g})",
            steps=steps),
        "loss": results.figure_entry(
            "loss.png", f"C − C* per step on a log axis ({steps} steps of {label}): a straight line is linear "
            "convergence, a plunge to machine precision quadratic", steps=steps),
        **animated,
    }


def _animation(run_dir, label: str, points: np.ndarray, losses: np.ndarray) -> dict:
    """--animate: trajectory.gif, the iterate moving over the landscape while C − C* fills in beside it."""
    steps = len(losses) - 1
    shown = plots.race(run_dir / "trajectory.gif", tiny.loss_grid, [plots.Racer(label, points, losses)],
                       tiny.CRITICAL_POINTS, minimum_loss=tiny.MINIMUM_LOSS, title=label)
    every = "every step" if shown["frames"] == steps + 1 else f"{shown['frames']} of the {steps + 1} iterates"
    return results.figure_entry(
        "trajectory.gif", f"{label} moving over the loss surface, C − C* filling in beside it ({every}, "
        f"first and last included)", steps=steps, frames=shown["frames"], fps=shown["fps"])


def host_hyperparams(cfgs) -> list[dict]:
    """`hyperparams(c)` of each configuration as numpy values of the same dtypes, built on the host:
    one device array per value and configuration would cost more than a 10,000-lane sweep's program."""
    from optlab.core.devices import to_host

    template = to_host(hyperparams(cfgs[0]))
    if not all(hasattr(cfgs[0], k) for k in template):  # a value that is not a setting of its own name
        return [to_host(hyperparams(c)) for c in cfgs]
    # A group shares every other setting, so only these can be unset (left out of hyperparams) in some configurations.
    varying = [k for k in SWEEPING.array_keys if k != "seed"]
    unset = {k for k in varying if getattr(cfgs[0], k) is None}
    out = []
    for c in cfgs:
        if {k for k in varying if getattr(c, k) is None} != unset:
            out.append(to_host(hyperparams(c)))
            continue
        out.append({k: np.asarray(getattr(c, k), template[k].dtype) for k in template})
    return out


def _singular_steps(opt_state):
    """Every lane's count of singular-Hessian steps, None when there are none (or the optimizer keeps no count)."""
    import optax

    count = optax.tree_utils.tree_get(opt_state, "singular_steps")
    return None if count is None or not np.any(np.asarray(count)) else count


def _singular_hessian_notes(opt_state, points: np.ndarray) -> list[str]:
    """Newton meets a singular Hessian where det H = 0: say so instead of failing (opt_state None: it did not)."""
    import optax

    if opt_state is None:
        return []
    count = optax.tree_utils.tree_get(opt_state, "singular_steps")
    if count is None or int(count) == 0:
        return []
    first = int(optax.tree_utils.tree_get(opt_state, "first_singular_step"))
    w1, w2 = points[min(first, len(points) - 1)]
    return [
        f"the Hessian was singular at {int(count)} step(s), first at step {first} (w1={w1:.4g}, w2={w2:.4g}); "
        "there Newton stepped with the pseudo-inverse, moving only along directions of non-zero curvature"
    ]


def _sweep_program(cfg, cache: dict) -> SweepProgram:
    if cfg.animate:
        from optlab.errors import ConfigError

        raise ConfigError("animate is for single runs (a GIF per configuration costs more than the sweep): race "
                          "the sweep's runs with `optlab compare`, or animate one with `optlab run tiny --animate`")
    prepare(cfg)
    return SweepProgram(run_lanes, LANE_BYTES)


def analyze(record: dict, saved: Mapping[str, Any], options: AnalyzeOptions) -> dict:
    """The exact Hessian at the final point, and every critical point of the landscape."""
    import jax
    import jax.numpy as jnp

    from optlab.curvature import analysis
    from optlab.errors import ConfigError

    if options.curvature != "hessian":
        raise ConfigError(f"--curvature {options.curvature} needs a network's outputs: the tiny problem has only "
                          "its Hessian (use --curvature hessian)")
    with jax.enable_x64(True):
        w = jnp.asarray(saved["w"], jnp.float64)
        report = analysis.hessian_spectrum(tiny.loss, w, k=options.k_for(w.size))
        report["critical_points"] = [{"kind": kind, "at": list(p)}
                                     for kind, p in analysis.find_critical_points(tiny.loss, (-3, 3, -3, 3))]
    return {"data": "none: the tiny problem is its own single data point", **report}


def summary_line(record: dict) -> str:
    summary, analysis = record["summary"], record["analysis"]
    head = training_head(record)
    if record["status"] == "diverged":
        return f"[red]{head}: diverged[/] (the loss blew up at step {summary.get('diverged_at_step')})"
    return (f"{head}: loss {summary['final_loss']:.6g} after {summary['steps']} steps, "
            f"|∇C| = {analysis['grad_norm']:.2g}, {analysis['critical_point']}"
            + (", oscillating" if summary.get("oscillating") else ""))


def overlays(lines: Sequence[tuple[str, dict]], stem: Path) -> list[tuple[Path, str]]:
    """Every trajectory on one contour plot of the landscape, and all of them racing over it in one GIF."""
    trajectories, losses = [], []
    for label, record in lines:
        params = record["history"].get("params") or []
        points = np.array([[np.nan if v is None else v for v in (p or (None, None))] for p in params], dtype=float)
        if points.ndim == 2 and points.shape[1] == 2 and len(points):
            trajectories.append((label, points))
            loss = record["history"].get("loss")
            losses.append(np.array([np.nan if v is None else v for v in loss], dtype=float)
                          if isinstance(loss, list) else None)
    if not trajectories:
        return []
    path = stem.with_name(stem.name + "-landscape.png")
    plots.landscape(path, tiny.loss_grid, trajectories, tiny.CRITICAL_POINTS, title="tiny: trajectories")
    race = stem.with_name(stem.name + "-race.gif")
    racers = [plots.Racer(label, points, loss) for (label, points), loss in zip(trajectories, losses)]
    shown = plots.race(race, tiny.loss_grid, racers[:MAX_RACERS], tiny.CRITICAL_POINTS,
                       minimum_loss=tiny.MINIMUM_LOSS, title="tiny")
    who = (f"the {len(racers)} runs" if len(racers) <= MAX_RACERS else
           f"the first {MAX_RACERS} of the {len(racers)} runs (in the table's order: --sort and --where choose)")
    return [(path, f"tiny: {len(trajectories)} trajectories on the loss landscape"),
            (race, f"tiny: {who} racing over the loss landscape, one marker each "
                   f"({shown['frames']} frames at {shown['fps']} per second)")]


SWEEPING = Sweeping(_sweep_program, units=lambda cfg: 1, array_keys=("lr", "momentum", "grad_noise", "seed",
                                                                       "optimizer_settings"),
                    presence_keys=("grad_noise",), draw=draw)

# The settings of the experiments that run the tiny model over a grid of step sizes (bifurcation,
# phase-diagram): an optimizer and its own settings, the run's length and start, and the grid.
GRID_FIELDS = ("optimizer", "momentum", "damping", "line_search", "cg_iters", "steps", "start",
               "lr_min", "lr_max", "lr_count")

EXPERIMENTS.register(
    "tiny",
    "the lecture's 2-weight model C = (w1·w2 − 1.5)² + 0.04(w1² + w2²): landscape and trajectory",
    Experiment(
        prepare=prepare,
        fields=("steps", "start", "animate"),
        default_lrs={"gd": 0.25, "momentum": 0.05, "nesterov": 0.05, "adagrad": 0.5, "rmsprop": 0.05, "adam": 0.1},
        sweep=SWEEPING,
        metrics=("final_loss",),
        analyze=analyze,
        summary_line=summary_line,
        overlays=overlays,
    ),
)
