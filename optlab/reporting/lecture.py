"""The lecture, in its order: which experiment files each section runs, the claim, and how to measure it.

`optlab reproduce lecture` runs the experiment files and then lays out one page section by section
(optlab.reporting.lecture_page). A section is declared once, here: its title, the experiment files
(by stem: "tiny-newton" is experiments/tiny-newton.toml) whose runs it reads, the lecture's claim in
one sentence, and `measures`: small functions that read the numbers from those runs' metrics.json
and say them in a sentence. Nothing is hard-coded: 2/λmax is 2 over the largest Hessian eigenvalue
that the Newton run recorded at the minimum, the period at η = 0.35 is read from the bifurcation
run's analysis, and so on. A measure whose run is missing, failed or lacks a key raises
NotMeasured, and the page prints "not measured: <why>" in its place.

This module reads records only (plain dicts); it imports no JAX and knows no experiment's code.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from optlab.reporting.readings import NotMeasured, Runs, coordinate, finite, fmt, pct

__all__ = ["NotMeasured", "PARTS", "Runs", "SECTIONS", "Section", "files", "fmt", "measured", "pct", "sections"]

CONVERGED_GRAD = 1e-8  # |∇C| below this counts as "at machine precision" for Newton's step count
ADAM_CLOSE = 1e-3  # C − C* below this counts as "at the minimum" for Adam's step count
TAIL = 20  # the last steps over which the noisy run's jitter is measured


Measure = Callable[[Runs], str]


@dataclass(frozen=True)
class Section:
    """One section of the lecture's page.

    files: experiment-file stems this section runs and reads; figures: (stem, figure name) pairs
    drawn under it, from each run's metrics.json "figures"; overlay: stems whose runs are drawn
    together (compare's overlays: one landscape, the race GIF).
    """

    key: str
    part: str
    title: str
    files: tuple[str, ...]
    claim: str
    measures: tuple[Measure, ...]
    figures: tuple[tuple[str, str], ...] = ()
    overlay: tuple[str, ...] = ()


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


# ----------------------------------------------------------------------------- the lecture

PARTS = {"tiny": "The tiny model", "mnist": "MNIST", "saddles": "Critical points and saddles",
         "signals": "Signals through depth"}

SECTIONS: tuple[Section, ...] = (
    Section("landscape", "tiny", "The landscape", (NEWTON,),
            "C(w1, w2) = (w1·w2 − 1.5)² + 0.04(w1² + w2²) has a saddle at the origin and two minima at "
            "w1 = w2 = ±√1.46, in a valley 36 times steeper across (λ = 5.84) than along it (λ = 0.16).",
            (landscape,), figures=((NEWTON, "landscape"),)),
    Section("gd-slow", "tiny", "Gradient descent, step 0.25", (GD_SLOW, NEWTON),
            "Gradient descent is stable for steps below 2/λmax = 0.342, but at 0.25 the error along the shallow "
            "valley only shrinks by 1 − 0.25·0.16 = 0.96 per step: too slow.",
            (stable_limit, gd_slow), figures=((GD_SLOW, "landscape"), (GD_SLOW, "loss"))),
    Section("gd-bounce", "tiny", "Gradient descent, step 0.35", (GD_BOUNCE, NEWTON, BIF_GD),
            "GD is stable only below 2/λmax = 0.342; at 0.35 it ends in a period-2 bounce across the valley.",
            (stable_limit, gd_bounce, bounce_period), figures=((GD_BOUNCE, "landscape"), (GD_BOUNCE, "loss"))),
    Section("newton", "tiny", "Newton's method and its saddle", (NEWTON, SADDLE),
            "Newton's method θ ← θ − H⁻¹∇C converges quadratically, to machine precision in a handful of steps, "
            "but it solves ∇C = 0 and is drawn to a saddle as readily as to a minimum.",
            (newton_fast, newton_saddle), figures=((NEWTON, "loss"), (SADDLE, "landscape"))),
    Section("momentum", "tiny", "Momentum", (MOMENTUM, GD_SLOW, NEWTON),
            "Momentum (v ← αv − η∇C, θ ← θ + v, α = 0.9) builds up speed along the shallow valley, where its "
            "effective step is η/(1 − α) = 10η.",
            (momentum,), figures=((MOMENTUM, "landscape"), (MOMENTUM, "loss"))),
    Section("noisy-momentum", "tiny", "Momentum with noisy gradients", (NOISY, MOMENTUM, NEWTON),
            "With noisy gradients, as minibatches give, the velocity averages the noise out, but the iterate "
            "keeps jittering around the minimum.",
            (noisy,), figures=((NOISY, "landscape"), (NOISY, "loss"))),
    Section("adam", "tiny", "Adam", (ADAM, NEWTON),
            "Adam divides each weight's step by a running RMS of its gradient, so the shallow and the steep "
            "direction move at a similar pace whatever their curvature.",
            (adam,), figures=((ADAM, "landscape"), (ADAM, "loss"))),
    Section("bifurcation", "tiny", "The bifurcation diagram", (BIF_GD, BIF_MOMENTUM),
            "Past 2/λmax the attractor of gradient descent doubles its period again and again into chaos, as the "
            "logistic map does; momentum α = 0.2 moves the first doubling out to 2(1 + α)/λmax = 0.411.",
            (lambda runs: cascade(runs, BIF_GD), lambda runs: cascade(runs, BIF_MOMENTUM)),
            figures=((BIF_GD, "bifurcation"), (BIF_MOMENTUM, "bifurcation"))),
    Section("phase-diagrams", "tiny", "Phase diagrams of momentum", (PHASE_MOMENTUM, PHASE_NESTEROV),
            "No heavy-ball run converges outside the local boundary ηλmax < 2(1 + α); Nesterov's boundary "
            "ηλmax < (2 + 2α)/(1 + 2α) bends the other way.",
            (lambda runs: phase(runs, PHASE_MOMENTUM), lambda runs: phase(runs, PHASE_NESTEROV)),
            figures=((PHASE_MOMENTUM, "phase_diagram"), (PHASE_NESTEROV, "phase_diagram"))),
    Section("animations", "tiny", "The optimizers race", RACERS,
            "Raced from the same start over the same landscape, each optimizer shows its character: Newton jumps, "
            "Adam and momentum sweep along the valley, GD 0.25 creeps and GD 0.35 bounces across it.",
            (race,), overlay=RACERS),
    Section("mnist-curves", "mnist", "Learning curves with the annealed step", (MNIST,),
            "The 784-225-225-10 ReLU network trained by Adam on minibatches of 100, its step annealed to zero over "
            "the second half, reaches about 1% test error after 50 epochs.",
            (mnist_curves,), figures=((MNIST, "learning_curves"),)),
    Section("mnist-weights", "mnist", "The first-layer weights", (MNIST,),
            "The first layer's weights start as noise and within the first epochs become localised stroke "
            "detectors, which later epochs only sharpen.",
            (weights,), figures=((MNIST, "weights"),)),
    Section("mnist-sparsity", "mnist", "Sparsity and dead units", (MNIST,),
            "ReLU units are sparse, each active on a fraction of the images, and some never fire at all: dead units.",
            (sparsity,), figures=((MNIST, "sparsity"),)),
    Section("saddles", "saddles", "The Hessian at a saddle, and saddle-free Newton", (SADDLE, SFN, NEWTON),
            "A critical point's kind is the signs of the Hessian's eigenvalues; at a saddle some are negative, and "
            "saddle-free Newton, dividing by |H| instead of H, is repelled where Newton is attracted.",
            (lambda runs: (f"At Newton's end point {end_point(runs, SADDLE)} the Hessian's eigenvalues are "
                           f"{eigen_text(runs, SADDLE)}: a {runs.get(SADDLE, 'analysis.critical_point')}."),
             lambda runs: (f"Saddle-free Newton from {start_point(runs, SFN)} ends at {end_point(runs, SFN)}, "
                           f"C − C* = {fmt(gap(runs, SFN))}, a {runs.get(SFN, 'analysis.critical_point')} with "
                           f"eigenvalues {eigen_text(runs, SFN)}.")),
            figures=((SADDLE, "landscape"), (SFN, "landscape"))),
    Section("network-saddles", "saddles", "Saddles of a real network", INDEX_RUNS,
            "On a network too, Newton's method is held where the Hessian has negative eigenvalues, while "
            "saddle-free Newton escapes them (Dauphin et al., 2014).",
            (network_index,)),
    Section("signals", "signals", "Exploding and vanishing signals", (SIGNALS,),
            "Each ReLU layer multiplies the signal's scale by s·√(g/2) (He et al., 2015): He's init (g = 2) at "
            "scale 1 keeps it, every other choice makes activations and gradients explode or vanish exponentially "
            "with depth.",
            (signals_forward, signals_depth), figures=((SIGNALS, "signals"),)),
)


def sections(only: Sequence[str] = ()) -> list[Section]:
    """The lecture's sections in order, or those of the parts named in `only` (still in order)."""
    return [s for s in SECTIONS if not only or s.part in only]


def files(chosen: Sequence[Section]) -> list[str]:
    """The experiment-file stems the sections read, each once, in the lecture's order."""
    return list(dict.fromkeys(stem for s in chosen for stem in s.files))


def measured(section: Section, runs: Runs) -> list[tuple[bool, str]]:
    """Each measure's sentence, (True, text); or (False, "not measured: why") where it cannot be read.

    A record that is not shaped as expected (a hand-edited file, an older optlab) must not stop the
    page, so the errors reading one can raise are caught too and named.
    """
    out = []
    for measure in section.measures:
        try:
            out.append((True, measure(runs)))
        except NotMeasured as e:
            out.append((False, f"not measured: {e}."))
        except (KeyError, IndexError, TypeError, ValueError, ZeroDivisionError) as e:
            out.append((False, f"not measured: a run's metrics.json is not as this section reads it "
                               f"({type(e).__name__}: {e})."))
    return out
