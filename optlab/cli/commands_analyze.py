"""`optlab analyze RUN_DIR`: the Hessian at a finished run's saved parameters, added to its metrics.json."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from optlab import config, plots, results
from optlab.cli.app import app
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


@app.command("analyze")
def analyze_command(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="a run folder with metrics.json and params.npz"),
    k: str | None = _opt("--k", "INT", "extreme eigenvalues at each end (default: 20)"),
    subset: str | None = _opt("--subset", "INT", "networks: training images the loss is taken on (default: 1000)"),
    probes: str | None = _opt("--probes", "INT", "networks: random vectors for the trace and density (default: 10)"),
    seed: str | None = _opt("--seed", "INT", "seed of the random start and probe vectors (default: 0)"),
    data_dir: str | None = _opt("--data-dir", "DIR", "networks: dataset folder (default: the run's)"),
) -> None:
    """The Hessian at a run's final parameters: extreme eigenvalues, trace, spectral density.

    Extreme eigenvalues by Lanczos (exact for small problems), the trace by Hutchinson, the
    density by stochastic Lanczos quadrature, and each layer's own curvature; stored under
    `analysis.hessian` in the run's metrics.json, with a spectral_density.png figure.
    """
    from optlab.experiments import EXPERIMENTS, AnalyzeOptions

    options = AnalyzeOptions(k=_parse("--k", k, config.count(10**9), None),
                             subset=_parse("--subset", subset, config.count(10**7), 1000),
                             probes=_parse("--probes", probes, config.count(10_000), 10),
                             seed=_parse("--seed", seed, config.seed_int, 0), data_dir=data_dir)
    record = results.read_metrics(run_dir)
    saved = results.load_params(run_dir)
    analyze = EXPERIMENTS[record["experiment"]].analyze
    if analyze is None:
        raise ConfigError(f"{run_dir}: a {record['experiment']!r} run has no trained parameters to analyze")
    report = analyze(record, saved, options)
    density = report["density"]
    plots.spectral_density(run_dir / "spectral_density.png", density["eigenvalue"], density["density"],
                           report["top_eigenvalues"], title=f"Hessian spectrum ({report['data']})")
    record["analysis"] = {**record["analysis"], "hessian": report}
    record["figures"] = {**record["figures"], "spectral_density": results.figure_entry(
        "spectral_density.png", f"the Hessian's eigenvalue density at the run's final parameters ({report['method']}), "
        f"its top eigenvalues marked; data: {report['data']}", measured_on=report["data"])}
    results.write_metrics(run_dir, record)  # a schema-1 record is rewritten as schema 2 (results.upgraded)
    stdout.print(f"{record['run_id']}: λmax {report['lambda_max']:.4g}, λmin {report['lambda_min']:.4g}, "
                 f"tr H {report['trace']:.4g}, {100 * report['negative_fraction']:.1f}% negative eigenvalues "
                 f"({report['method']}, {report['n_params']:,} parameters)")
    print(run_dir)
