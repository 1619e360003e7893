"""How the lecture's page reads each number: the measures of optlab.reporting.lecture's sections.

A measure takes the reproduction's runs (readings.Runs, by experiment-file stem) and returns one
sentence with the numbers it read from their metrics.json, or raises NotMeasured saying which run
lacks what. Plain dicts only: no JAX, no experiment code.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from optlab.reporting.readings import NotMeasured, Runs, coordinate, finite, fmt, pct

CONVERGED_GRAD = 1e-8  # |∇C| below this counts as "at machine precision" for Newton's step count
ADAM_CLOSE = 1e-3  # C − C* below this counts as "at the minimum" for Adam's step count
TAIL = 20  # the last steps over which the noisy run's jitter is measured


# ----------------------------------------------------------------------------- shared readings

NEWTON, SADDLE, SFN = "tiny-newton", "tiny-newton-saddle", "tiny-saddle-free-newton"
GD_SLOW, GD_BOUNCE, MOMENTUM, NOISY, ADAM = (
    "tiny-gd-slow", "tiny-gd-oscillates", "tiny-momentum", "tiny-momentum-noisy", "tiny-adam")
BIF_GD, BIF_MOMENTUM = "bifurcation-gd", "bifurcation-momentum"
PHASE_MOMENTUM, PHASE_NESTEROV = "phase-diagram-momentum", "phase-diagram-nesterov"
MNIST, SIGNALS = "mnist-adam-anneal", "signals"


def minimum(runs: Runs) -> tuple[float, float, float]:
    """(C*, λmin, λmax) at the minimum, from the Newton run that converged there."""
    kind = runs.get(NEWTON, "analysis.critical_point")
    if kind != "minimum":
        raise NotMeasured(f"the run of {NEWTON}.toml ended at a {kind}, not at the minimum")
    eigs = sorted(runs.numbers(NEWTON, "analysis.hessian_eigenvalues"))
    return runs.number(NEWTON, "summary.final_loss"), eigs[0], eigs[-1]


def end_point(runs: Runs, stem: str) -> str:
    """The run's last iterate, "(w1, w2)"."""
    last = runs.get(stem, "history.params")[-1]
    if not isinstance(last, list) or len(last) != 2:
        raise NotMeasured(f"the run of {stem}.toml has no 2-weight point in history.params")
    w1, w2 = (finite(v, stem, "history.params") for v in last)
    return f"({coordinate(w1)}, {coordinate(w2)})"


def start_point(runs: Runs, stem: str) -> str:
    w1, w2 = (finite(v, stem, "config.start") for v in runs.get(stem, "config.start"))
    return f"({w1:g}, {w2:g})"


def gap(runs: Runs, stem: str) -> float:
    """C − C* at the run's end."""
    return runs.number(stem, "summary.final_loss") - minimum(runs)[0]


def label(runs: Runs, stem: str) -> str:
    """"gd η=0.25" — the optimizer and its step as the run's config has them."""
    cfg = runs.get(stem, "config")
    lr = cfg.get("lr")
    return str(cfg.get("optimizer", "?")) + (f" η={lr:g}" if isinstance(lr, (int, float)) else "")


def eigen_text(runs: Runs, stem: str) -> str:
    eigs = sorted(runs.numbers(stem, "analysis.hessian_eigenvalues"))
    return " and ".join(fmt(e) for e in eigs)


# ----------------------------------------------------------------------------- the tiny model


def landscape(runs: Runs) -> str:
    c_min, lo, hi = minimum(runs)
    return (f"Newton from {start_point(runs, NEWTON)} ends at (w1, w2) = {end_point(runs, NEWTON)} with "
            f"C* = {fmt(c_min)}, a minimum whose Hessian eigenvalues are {fmt(lo)} and {fmt(hi)}: "
            f"the valley is {hi / lo:.3g}× steeper across than along.")


def stable_limit(runs: Runs) -> str:
    _, _, hi = minimum(runs)
    return f"λmax = {fmt(hi)} at the minimum, so 2/λmax = {fmt(2 / hi)}."


def gd_slow(runs: Runs) -> str:
    _, lo, hi = minimum(runs)
    lr, steps = runs.number(GD_SLOW, "config.lr"), int(runs.number(GD_SLOW, "summary.steps"))
    side = "below" if lr < 2 / hi else "not below"
    return (f"η = {lr:g} is {side} it; along the valley the error shrinks by 1 − ηλmin = {fmt(1 - lr * lo)} per "
            f"step, and after {steps} steps C − C* = {fmt(gap(runs, GD_SLOW))} "
            f"(|∇C| = {fmt(runs.number(GD_SLOW, 'analysis.grad_norm'))}).")


def gd_bounce(runs: Runs) -> str:
    _, _, hi = minimum(runs)
    lr, steps = runs.number(GD_BOUNCE, "config.lr"), int(runs.number(GD_BOUNCE, "summary.steps"))
    oscillating = runs.get(GD_BOUNCE, "summary.oscillating")
    return (f"At η = {lr:g} the steep direction's error is multiplied by 1 − ηλmax = {fmt(1 - lr * hi)} per step; "
            f"after {steps} steps the run {'is' if oscillating is True else 'is not'} oscillating, "
            f"C − C* = {fmt(gap(runs, GD_BOUNCE))}.")


def bounce_period(runs: Runs) -> str:
    lr = runs.number(GD_BOUNCE, "config.lr")
    lrs, periods = runs.numbers(BIF_GD, "analysis.lr"), runs.get(BIF_GD, "analysis.period")
    if not isinstance(periods, list) or len(periods) != len(lrs):
        raise NotMeasured(f"the run of {BIF_GD}.toml has no analysis.period for each of its step sizes")
    i = min(range(len(lrs)), key=lambda j: abs(lrs[j] - lr))
    return (f"In the bifurcation run, the attractor at η = {fmt(lrs[i])} (the grid's nearest to {lr:g}) "
            f"{period_text(periods[i])}.")


def period_text(p: Any) -> str:
    """bifurcation's analysis.period: n ≥ 1 a cycle of n, 0 no period found (chaos), −1 diverged."""
    if p == -1:
        return "diverges"
    if p == 0:
        return "has no period (chaos)"
    return "is a fixed point" if p == 1 else f"has period {p}"


def newton_fast(runs: Runs) -> str:
    norms = runs.numbers(NEWTON, "history.grad_norm")
    k = next((i for i, g in enumerate(norms) if g < CONVERGED_GRAD), None)
    if k is None:
        return f"From {start_point(runs, NEWTON)}, |∇C| stayed above {CONVERGED_GRAD:g} for all {len(norms) - 1} steps."
    shown = ", ".join(f"{g:.1e}" for g in norms[: k + 1])
    return f"From {start_point(runs, NEWTON)}, |∇C| fell below {CONVERGED_GRAD:g} after {k} steps: {shown}."


def newton_saddle(runs: Runs) -> str:
    return (f"From {start_point(runs, SADDLE)} it converges to {end_point(runs, SADDLE)} with "
            f"|∇C| = {fmt(runs.number(SADDLE, 'analysis.grad_norm'))} and C = "
            f"{fmt(runs.number(SADDLE, 'summary.final_loss'))}: a {runs.get(SADDLE, 'analysis.critical_point')}.")


def momentum(runs: Runs) -> str:
    _, lo, _ = minimum(runs)
    lr, alpha = runs.number(MOMENTUM, "config.lr"), runs.number(MOMENTUM, "config.momentum")
    steps = int(runs.number(MOMENTUM, "summary.steps"))
    start = runs.numbers(MOMENTUM, "history.loss")[0] - minimum(runs)[0]
    return (f"Momentum η = {lr:g}, α = {alpha:g} goes from C − C* = {fmt(start)} to {fmt(gap(runs, MOMENTUM))} in "
            f"{steps} steps; gradient descent with the same η would keep (1 − ηλmin)^{steps} = "
            f"{fmt((1 - lr * lo) ** steps)} of its error along the valley, and {label(runs, GD_SLOW)} "
            f"(a {runs.number(GD_SLOW, 'config.lr') / lr:g}× larger step) reaches {fmt(gap(runs, GD_SLOW))}.")


def jitter(runs: Runs, stem: str) -> float:
    """Standard deviation of the loss over the last TAIL steps."""
    tail = runs.numbers(stem, "history.loss")[-TAIL:]
    mean = sum(tail) / len(tail)
    return math.sqrt(sum((v - mean) ** 2 for v in tail) / len(tail))


def noisy(runs: Runs) -> str:
    sigma = runs.number(NOISY, "config.grad_noise")
    return (f"With gradient noise σ = {sigma:g}, C − C* = {fmt(gap(runs, NOISY))} at the end (without noise "
            f"{fmt(gap(runs, MOMENTUM))}), and over the last {TAIL} steps the loss jitters with std "
            f"{fmt(jitter(runs, NOISY))} (without noise {fmt(jitter(runs, MOMENTUM))}).")


def adam(runs: Runs) -> str:
    c_min = minimum(runs)[0]
    losses = runs.numbers(ADAM, "history.loss")
    k = next((i for i, c in enumerate(losses) if c - c_min < ADAM_CLOSE), None)
    reached = (f"C − C* fell below {ADAM_CLOSE:g} at step {k}" if k is not None
               else f"C − C* stayed above {ADAM_CLOSE:g}")
    return (f"{label(runs, ADAM)}: {reached}; after {len(losses) - 1} steps C − C* = {fmt(gap(runs, ADAM))}, "
            f"|∇C| = {fmt(runs.number(ADAM, 'analysis.grad_norm'))}.")


def cascade(runs: Runs, stem: str) -> str:
    """The period-doubling cascade of one bifurcation run, as its summary and analysis hold it."""
    cfg = runs.get(stem, "config")
    who = str(cfg.get("optimizer")) + (f" α = {cfg['momentum']:g}" if cfg.get("optimizer") != "gd" else "")
    doublings = runs.numbers(stem, "analysis.period_doubling_lrs")
    parts = [f"{who}: first period doubling at η = {fmt(doublings[0])} (local limit "
             f"{fmt(runs.number(stem, 'summary.local_max_stable_lr'))})"]
    parts += [f"period {2 ** (k + 2)} at {fmt(lr)}" for k, lr in enumerate(doublings[1:4])]
    summary = runs.get(stem, "summary")
    if isinstance(summary.get("chaos_lr"), (int, float)):
        parts.append(f"chaos from {fmt(summary['chaos_lr'])}")
    if isinstance(summary.get("diverged_lr"), (int, float)):
        parts.append(f"divergence from {fmt(summary['diverged_lr'])}")
    return ", ".join(parts) + "."


def phase(runs: Runs, stem: str) -> str:
    s = runs.get(stem, "summary")
    outside = (f"{int(runs.number(stem, 'summary.converged_outside'))} of "
               f"{int(runs.number(stem, 'summary.cells_outside'))} cells outside the local boundary converged")
    inside = s.get("converged_inside_fraction")
    inside = f", {inside:.0%} of those inside" if isinstance(inside, (int, float)) else ""
    return (f"{s.get('optimizer')}: {outside}{inside}; lowest C − C* at "
            f"η = {fmt(runs.number(stem, 'summary.best_lr'))}, "
            f"{s.get('hparam')} = {fmt(runs.number(stem, 'summary.best_hparam'))}.")


RACERS = (NEWTON, ADAM, MOMENTUM, GD_SLOW, GD_BOUNCE)


def race(runs: Runs) -> str:
    ends = sorted((gap(runs, stem), label(runs, stem), int(runs.number(stem, "summary.steps"))) for stem in RACERS)
    return "C − C* at the end, best first: " + "; ".join(f"{name} {fmt(g)} ({n} steps)" for g, name, n in ends) + "."


# ----------------------------------------------------------------------------- MNIST


def mnist_curves(runs: Runs) -> str:
    lrs = runs.numbers(MNIST, "history.lr")
    best, at = runs.number(MNIST, "summary.best_test_error"), int(runs.number(MNIST, "summary.best_epoch"))
    return (f"Test error {pct(runs.number(MNIST, 'summary.test_error'))} after "
            f"{int(runs.number(MNIST, 'summary.epochs'))} epochs (best {pct(best)} at epoch {at}); the step went "
            f"from {lrs[0]:.3g} to {lrs[-1]:.3g}, annealed over the last "
            f"{runs.number(MNIST, 'config.anneal_fraction'):.0%} of training.")


def weights(runs: Runs) -> str:
    epochs = [int(e) for e in runs.numbers(MNIST, "figures.weights.epochs")]
    errors = runs.numbers(MNIST, "history.test_error")
    shown = ", ".join(f"{pct(errors[e - 1])} after epoch {e}" for e in epochs if 1 <= e <= len(errors))
    return f"W1 is drawn after epochs {', '.join(map(str, epochs))}; the test error meanwhile: {shown}."


def sparsity(runs: Runs) -> str:
    dead = runs.numbers(MNIST, "analysis.dead_units")
    active = runs.numbers(MNIST, "analysis.active_fraction")
    hidden = runs.numbers(MNIST, "config.hidden")
    if not len(dead) == len(active) == len(hidden):
        raise NotMeasured(f"the run of {MNIST}.toml has dead units of {len(dead)} layers "
                          f"but {len(hidden)} hidden layers")
    layers = "; ".join(f"layer {i}: a unit is active on {active[i - 1]:.1%} of the test images on average, "
                       f"{int(d)} of {int(h)} units ({d / h:.1%}) never are" for i, (d, h) in
                       enumerate(zip(dead, hidden), 1))
    return layers[0].upper() + layers[1:] + "."


# ----------------------------------------------------------------------------- signals


def signal_lines(runs: Runs) -> list[Mapping[str, Any]]:
    """The run's ReLU lines (the lecture's networks; a line from before --activation has none: ReLU)."""
    lines = runs.get(SIGNALS, "summary.lines")
    if isinstance(lines, list):
        lines = [line for line in lines if not isinstance(line, Mapping) or line.get("activation", "relu") == "relu"]
    if not isinstance(lines, list) or not lines:
        raise NotMeasured(f"the run of {SIGNALS}.toml has no summary.lines")
    return lines


def signals_forward(runs: Runs) -> str:
    depth, width = int(runs.number(SIGNALS, "summary.depth")), int(runs.number(SIGNALS, "summary.width"))
    factors = ", ".join(f"{line['init']}×{line['init_scale']:g} {fmt(line['forward_factor'])} "
                        f"(theory {fmt(line['theory_factor'])})" for line in signal_lines(runs))
    return f"Activation std multiplied per layer, {depth} hidden layers of {width}: {factors}."


def signals_depth(runs: Runs) -> str:
    depth = int(runs.number(SIGNALS, "summary.depth"))
    ratios = "; ".join(f"{line['init']}×{line['init_scale']:g} {line['activation_std_last_over_first']:.3g} and "
                       f"{line['grad_norm_first_over_last']:.3g}" for line in signal_lines(runs))
    return (f"Across the {depth} hidden layers (activation std, last layer over first; gradient norm, first "
            f"over last): {ratios}.")


INDEX_RUNS = ("mnist-newton-index", "mnist-saddle-free-newton-index", "mnist-gd-index", "mnist-adam-index")


def network_index(runs: Runs) -> str:
    """Each --hessian-index run's count of negative Hessian eigenvalues before the first step and after the last."""
    parts = []
    for stem in INDEX_RUNS:
        start = runs.number(stem, "analysis.hessian_index.initial.hessian_negative_count")
        end = runs.numbers(stem, "history.hessian_negative_count")[-1]
        parts.append(f"{runs.get(stem, 'config.optimizer')} {int(start)} → {int(end)} "
                     f"(training loss {fmt(runs.number(stem, 'summary.final_loss'))})")
    hidden = runs.get(INDEX_RUNS[0], "config.hidden")
    return (f"Negative eigenvalues of the exact Hessian, before the first step → after the last epoch, of a "
            f"784-{'-'.join(map(str, hidden))}-10 ReLU network on {runs.get(INDEX_RUNS[0], 'config.train_subset')} "
            f"MNIST images: {'; '.join(parts)}.")
