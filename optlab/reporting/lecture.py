"""The lecture, in its order: which experiment files each section runs, the claim, and how to measure it.

`optlab reproduce lecture` runs the experiment files and then lays out one page section by section
(optlab.reporting.lecture_page). A section is declared once, here: its title, the experiment files
(by stem: "tiny-newton" is experiments/tiny-newton.toml) whose runs it reads, the lecture's claim in
one sentence, and `measures`: small functions (optlab.reporting.lecture_measures) that read the
numbers from those runs' metrics.json and say them in a sentence. Nothing is hard-coded: 2/λmax is
2 over the largest Hessian eigenvalue that the Newton run recorded at the minimum, the period at
η = 0.35 is read from the bifurcation run's analysis, and so on. A measure whose run is missing,
failed or lacks a key raises NotMeasured, and the page prints "not measured: <why>" in its place.

This module reads records only (plain dicts); it imports no JAX and knows no experiment's code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from optlab.reporting.lecture_measures import (
    ADAM,
    BIF_GD,
    BIF_MOMENTUM,
    GD_BOUNCE,
    GD_SLOW,
    INDEX_RUNS,
    MNIST,
    MOMENTUM,
    NEWTON,
    NOISY,
    PHASE_MOMENTUM,
    PHASE_NESTEROV,
    RACERS,
    SADDLE,
    SFN,
    SIGNALS,
    adam,
    bounce_period,
    cascade,
    eigen_text,
    end_point,
    gap,
    gd_bounce,
    gd_slow,
    landscape,
    mnist_curves,
    momentum,
    network_index,
    newton_fast,
    newton_saddle,
    noisy,
    phase,
    race,
    signals_depth,
    signals_forward,
    sparsity,
    stable_limit,
    start_point,
    weights,
)
from optlab.reporting.readings import NotMeasured, Runs, fmt, pct

__all__ = ["NotMeasured", "PARTS", "Runs", "SECTIONS", "Section", "files", "fmt", "measured", "pct", "sections"]

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
