"""`optlab landscape RUN_DIR`: the loss along the initial-to-final line and on two planes, added to metrics.json."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer
from rich.console import Console

from optlab import parsers, plots, results
from optlab.cli.app import app
from optlab.cli.commands_analyze import _opt, _parse
from optlab.errors import ConfigError, ResultsError

stdout = Console(highlight=False)


def _at_least(low: int, limit: int):
    """A parser for an integer in low..limit."""
    parse = parsers.count(limit)

    def parser(raw: str) -> int:
        value = parse(raw)
        if value < low:
            raise ValueError(f"must be at least {low}")
        return value

    return parser


def _span(raw: str) -> float:
    value = float(raw)
    if not 0 < value < float("inf"):
        raise ValueError("must be a positive number")
    return value


@app.command("landscape")
def landscape_command(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="a network's run folder (metrics.json, params.npz, "
                                   "params_init.npz, trajectory.npz)"),
    subset: str | None = _opt("--subset", "INT", "training images the loss is taken on (default: 1000)"),
    points: str | None = _opt("--points", "INT", "values of α from 0 to 1 on the line, plus a quarter of that "
                              "beyond each end (default: 41)"),
    resolution: str | None = _opt("--resolution", "INT", "grid points per side of each plane (default: 21)"),
    span: str | None = _opt("--span", "FLOAT", "the random plane covers ±SPAN in filter-normalised units "
                            "(default: 1)"),
    seed: str | None = _opt("--seed", "INT", "seed of the random directions (default: 0)"),
    data_dir: str | None = _opt("--data-dir", "DIR", "dataset folder (default: the run's)"),
) -> None:
    """The loss landscape around a finished network run.

    The line from the initial to the final parameters, C((1 − α) θ₀ + α θ*) (Goodfellow et al.,
    2015); a plane through θ* along two random filter-normalised directions (Li et al., 2018);
    and the training path projected on its own first two principal directions, with the loss on
    that plane. Stored under `analysis.landscape` in the run's metrics.json, drawn as
    landscape_1d.png and landscape_2d.png.
    """
    from optlab.experiments import EXPERIMENTS, LandscapeOptions

    options = LandscapeOptions(subset=_parse("--subset", subset, parsers.count(10**7), 1000),
                               points=_parse("--points", points, _at_least(2, 100_000), 41),
                               resolution=_parse("--resolution", resolution, _at_least(2, 1000), 21),
                               span=_parse("--span", span, _span, 1.0),
                               seed=_parse("--seed", seed, parsers.seed_int, 0), data_dir=data_dir)
    record = results.read_metrics(run_dir)
    landscape = EXPERIMENTS[record["experiment"]].landscape
    if landscape is None:
        raise ConfigError(f"{run_dir}: a {record['experiment']!r} run has no network trajectory to draw a "
                          "landscape of")
    saved = _saved(run_dir)
    _check_trajectory(run_dir, saved)
    report = landscape(record, saved, options)
    report |= {"subset": options.subset, "points": options.points, "resolution": options.resolution}
    record["analysis"] = {**record["analysis"], "landscape": report}
    record["figures"] = {**record["figures"], **_figures(run_dir, record["run_id"], report)}
    results.write_metrics(run_dir, record)
    stdout.print(_line(record["run_id"], report))
    print(run_dir)


def _saved(run_dir: Path) -> dict:
    """The run's initial and final parameters and its trajectory; a ResultsError naming what is missing."""
    final = results.load_params(run_dir)
    try:
        initial = results.load_params(run_dir, results.INITIAL_PARAMS_FILE)
        epochs, trajectory = results.load_trajectory(run_dir)
    except ResultsError as e:
        raise ResultsError(f"{e} (a sweep's configurations keep no trajectory, nor do runs from before optlab "
                           "saved one: run it again with optlab run)") from None
    return {"initial": initial, "final": final, "epochs": epochs, "trajectory": trajectory}


def _check_trajectory(run_dir: Path, saved: dict) -> None:
    """Refuse, in one line, a path too short for a plane or parameters that are not finite (a diverged run)."""
    from optlab.curvature.landscape import MIN_MOVING

    if len(saved["epochs"]) < MIN_MOVING + 1:
        raise ConfigError(f"{run_dir}: the trajectory holds {len(saved['epochs'])} snapshots; its principal plane "
                          f"needs {MIN_MOVING + 1} (a run of at least {MIN_MOVING} epochs)")
    arrays = [saved["trajectory"], *saved["initial"].values(), *saved["final"].values()]
    if not all(np.all(np.isfinite(a)) for a in arrays):
        raise ConfigError(f"{run_dir}: the saved parameters are not all finite (a diverged run has no landscape)")


def _figures(run_dir: Path, run_id: str, report: dict) -> dict:
    line, data = report["interpolation"], report["data"]
    plots.interpolation_curve(run_dir / "landscape_1d.png", line["alpha"], line["loss"], line.get("error"),
                              title=f"{run_id}: from the initial to the final parameters\n({data})")
    plots.landscape_planes(run_dir / "landscape_2d.png", report["random_plane"], report["trajectory_plane"],
                           title=f"{run_id}: the loss around the final parameters\n({data})")
    epochs = report["trajectory_plane"]["path"]["epoch"]
    return {
        "landscape_1d": results.figure_entry(
            "landscape_1d.png", "the loss and error along (1 − α) θ₀ + α θ*, initial to final parameters "
            f"(Goodfellow et al., 2015), on {data}", measured_on=data),
        "landscape_2d": results.figure_entry(
            "landscape_2d.png", "the loss on a plane through the final parameters along two random "
            "filter-normalised directions (Li et al., 2018), and on the plane of the training path's first two "
            f"principal directions with the path after epochs {epochs[0]}..{epochs[-1]} projected on it, on {data}",
            measured_on=data, epochs=epochs),
    }


def _line(run_id: str, report: dict) -> str:
    """One line: the endpoints, the line's highest point between them, the path's explained variance."""
    line = report["interpolation"]
    inside = [loss for a, loss in zip(line["alpha"], line["loss"]) if 0 <= a <= 1 and loss is not None]
    bump = max(inside) - max(report["initial"]["loss"], report["final"]["loss"]) if inside else float("nan")
    explained = report["trajectory_plane"]["explained_variance"]
    if all(b <= a for a, b in zip(inside, inside[1:])):
        shape = "falls monotonically along the line"
    elif bump > 0:
        shape = f"rises {bump:.3g} above its higher end on the way"
    else:
        shape = "is not monotone along the line, never above its ends"
    return (f"{run_id} landscape: loss {report['initial']['loss']:.4g} (initial) → {report['final']['loss']:.4g} "
            f"(final); it {shape}; the path's first two principal directions explain "
            f"{100 * explained[0]:.1f}% + {100 * explained[1]:.1f}% of it")
