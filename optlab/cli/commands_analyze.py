"""`optlab analyze RUN_DIR`: the Hessian at a finished run's saved parameters, added to its metrics.json."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import typer
from rich.console import Console

from optlab import parsers, plots, results
from optlab.cli.app import app
from optlab.cli.options import plugin_option
from optlab.errors import ConfigError

stdout = Console(highlight=False)


def _parse(flag: str, raw: str | None, parser, default):
    if raw is None:
        return default
    try:
        return parser(raw)
    except ValueError as e:
        raise ConfigError(f"{flag} {e}, got {raw!r}") from None


def _opt(name: str, metavar: str, help: str):
    return typer.Option(None, name, metavar=metavar, help=help, show_default=False)


_TITLES = {"hessian": "Hessian", "ggn": "Gauss–Newton"}
CURVATURES = {"hessian": ("hessian",), "ggn": ("ggn",), "both": ("hessian", "ggn")}


def _curvature(raw: str) -> tuple[str, ...]:
    if raw not in CURVATURES:
        raise ValueError(f"must be one of {', '.join(CURVATURES)}")
    return CURVATURES[raw]


@app.command("analyze")
def analyze_command(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="a run folder with metrics.json and params.npz"),
    k: str | None = _opt("--k", "INT", "extreme eigenvalues at each end (default: 20)"),
    subset: str | None = _opt("--subset", "INT", "networks: training images the loss is taken on (default: 1000)"),
    probes: str | None = _opt("--probes", "INT", "networks: random vectors for the trace and density (default: 10)"),
    seed: str | None = _opt("--seed", "INT", "seed of the random start and probe vectors (default: 0)"),
    data_dir: str | None = _opt("--data-dir", "DIR", "networks: dataset folder (default: the run's)"),
    max_order: str | None = _opt("--max-order", "INT", "networks: Lanczos steps at most while the k eigenvalues "
                                 "at each end converge (default: 640; memory: steps × parameters numbers)"),
    curvature: str | None = _opt("--curvature", "WHICH", "hessian, ggn (Gauss–Newton Jᵀ H_loss J) or both "
                                 "(default: hessian)"),
    plugin: list[str] = plugin_option(),
) -> None:
    """The Hessian at a run's final parameters: extreme eigenvalues, trace, spectral density.

    Extreme eigenvalues by Lanczos (exact for small problems), grown until the k at each end
    converge and listed only when they have, each with its residual; the trace by Hutchinson,
    the density by stochastic Lanczos quadrature, the shares of negative and of zero eigenvalues
    (|λ| ≤ 1e-4·λmax counts as zero), and each layer's own curvature; stored under
    `analysis.hessian` (`analysis.ggn` for the Gauss–Newton matrix) in the run's metrics.json,
    with a spectral_density.png figure.
    """
    from optlab.experiments import EXPERIMENTS, AnalyzeOptions

    options = AnalyzeOptions(k=_parse("--k", k, parsers.count(10**9), None),
                             subset=_parse("--subset", subset, parsers.count(10**7), 1000),
                             probes=_parse("--probes", probes, parsers.count(10_000), 10),
                             seed=_parse("--seed", seed, parsers.seed_int, 0), data_dir=data_dir,
                             max_order=_parse("--max-order", max_order, parsers.count(10**6), None))
    which = _parse("--curvature", curvature, _curvature, ("hessian",))
    record = results.read_metrics(run_dir)
    saved = results.load_params(run_dir)
    analyze = EXPERIMENTS[record["experiment"]].analyze
    if analyze is None:
        raise ConfigError(f"{run_dir}: a {record['experiment']!r} run has no trained parameters to analyze")
    reports = {name: _report(analyze, record, saved, replace(options, curvature=name)) for name in which}
    name, report = next(iter(reports.items()))
    density = report["density"]
    plots.spectral_density(run_dir / "spectral_density.png", density["eigenvalue"], density["density"],
                           report["top_eigenvalues"], title=f"{_TITLES[name]} spectrum ({report['data']})",
                           **_panels(reports))
    record["analysis"] = {**record["analysis"], **reports}
    shown = " and the Gauss–Newton matrix's" if len(reports) > 1 else ""
    record["figures"] = {**record["figures"], "spectral_density": results.figure_entry(
        "spectral_density.png", f"the {_TITLES[name]}'s eigenvalue density at the run's final parameters{shown} "
        f"({report['method']}), its top eigenvalues marked, the negative side apart; data: {report['data']}",
        measured_on=report["data"], curvature=list(reports))}
    results.write_metrics(run_dir, record)  # a schema-1 record is rewritten as schema 2 (results.upgraded)
    for name, r in reports.items():
        stdout.print(_line(record["run_id"], name, r))
    print(run_dir)


def _report(analyze, record: dict, saved, options) -> dict:
    """The experiment's report of options.curvature, refused in the user's words if it gave another matrix's."""
    report = analyze(record, saved, options)
    if report.get("curvature", "hessian") != options.curvature:
        raise ConfigError(f"--curvature {options.curvature}: a {record['experiment']!r} run reports only its "
                          f"{report.get('curvature', 'hessian')}")
    return report


def _panels(reports: dict) -> dict:
    """The figure's extras: the negative side on its own scale, and the GGN's density beside the Hessian's."""
    main = next(iter(reports.values()))
    extras = {"sigma": main["density"].get("sigma"), "negative": main.get("negative_density")}
    if len(reports) > 1:
        ggn = reports["ggn"]["density"]
        extras["other"] = ("Gauss–Newton", ggn["eigenvalue"], ggn["density"])
    return extras


def _number(value) -> str:
    return "–" if value is None else f"{value:.4g}"


def _line(run_id: str, name: str, r: dict) -> str:
    """One line per matrix: its extremes, trace and shares, and what did not converge."""
    line = (f"{run_id} {name}: λmax {_number(r['lambda_max'])}, λmin {_number(r['lambda_min'])}, "
            f"tr {r['trace']:.4g}, {100 * r['negative_fraction']:.2f}% negative eigenvalues")
    if "zero_fraction" in r:
        line += f" and {100 * r['zero_fraction']:.1f}% zero (|λ| ≤ {r['zero_tol']:.2g})"
    line += f" ({r['method']}, {r['n_params']:,} parameters)"
    k = r.get("k", 0)
    short = [f"only {len(r[f'{end}_eigenvalues'])} of the {end} {k}" for end in ("bottom", "top")
             if len(r[f"{end}_eigenvalues"]) < k]
    if short:
        line += f"; {' and '.join(short)} converged in {r['lanczos_order']} Lanczos steps (raise --max-order)"
    return line
