"""`optlab analyze RUN_DIR`: the Hessian at a finished run's saved parameters, added to its metrics.json."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import typer
from rich.console import Console

from optlab import config, plots, results
from optlab.cli.app import app
from optlab.curvature import analysis
from optlab.data import datasets
from optlab.errors import ConfigError, ResultsError
from optlab.problems import mlp, tiny

stdout = Console(highlight=False)
NETWORK_EXPERIMENTS = ("mnist", "fashion-mnist")


def _parse(flag: str, raw: str | None, parser, default):
    if raw is None:
        return default
    try:
        return parser(raw)
    except ValueError as e:
        raise ConfigError(f"{flag} {e}, got {raw!r}") from None


def _layers(saved: dict[str, np.ndarray]) -> list[dict]:
    """params.npz keys "0/w", "0/b", "1/w", … back into the network's list of layers."""
    count = len({k.split("/")[0] for k in saved})
    try:
        return [{"w": jnp.asarray(saved[f"{i}/w"]), "b": jnp.asarray(saved[f"{i}/b"])} for i in range(count)]
    except KeyError as e:
        raise ResultsError(f"params.npz does not hold a network's layers (no {e.args[0]})") from None


def _check_k(k: int | None, n: int) -> int:
    if k is not None and k > n:
        raise ConfigError(f"--k {k:,} is more than the {n:,} parameters of this run (a Hessian has n eigenvalues)")
    return min(k or 20, n)


def analyze_tiny(record: dict, saved: dict, k: int | None) -> dict:
    with jax.enable_x64(True):
        w = jnp.asarray(saved["w"], jnp.float64)
        report = analysis.hessian_spectrum(tiny.loss, w, k=_check_k(k, w.size))
        report["critical_points"] = [{"kind": kind, "at": list(p)}
                                     for kind, p in analysis.find_critical_points(tiny.loss, (-3, 3, -3, 3))]
    return {"data": "none: the tiny problem is its own single data point", **report}


def analyze_network(record: dict, saved: dict, k: int | None, subset: int, probes: int, seed: int,
                    data_dir: str | None) -> dict:
    cfg = record["config"]
    params = _layers(saved)
    k = _check_k(k, sum(int(np.size(a)) for a in saved.values()))
    data = datasets.load(record["experiment"], data_dir or cfg.get("data_dir"))
    if subset > len(data.train_images):
        raise ConfigError(f"--subset {subset:,} is more than the {len(data.train_images):,} training images")
    batch = (jnp.asarray(data.train_images[:subset]), jnp.asarray(data.train_labels[:subset]))
    loss = partial(mlp.loss, weight_decay=float(cfg.get("weight_decay") or 0.0))  # clean: no noise, no dropout
    described = f"the first {subset:,} {record['experiment']} training images, clean loss"
    return analysis.analyze_params(loss, params, batch, described, k=k, probes=probes, seed=seed)


@app.command("analyze")
def analyze_command(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="a run folder with metrics.json and params.npz"),
    k: str | None = typer.Option(None, "--k", metavar="INT", help="extreme eigenvalues at each end (default: 20)", show_default=False),
    subset: str | None = typer.Option(None, "--subset", metavar="INT", help="networks: training images the loss is taken on (default: 1000)", show_default=False),
    probes: str | None = typer.Option(None, "--probes", metavar="INT", help="networks: random vectors for the trace and the density (default: 10)", show_default=False),
    seed: str | None = typer.Option(None, "--seed", metavar="INT", help="seed of the random start and probe vectors (default: 0)", show_default=False),
    data_dir: str | None = typer.Option(None, "--data-dir", metavar="DIR", help="networks: dataset folder (default: the run's)", show_default=False),
) -> None:
    """The Hessian at a run's final parameters: extreme eigenvalues, trace, spectral density.

    Extreme eigenvalues by Lanczos (exact for small problems), the trace by Hutchinson, the
    density by stochastic Lanczos quadrature, and each layer's own curvature; stored under
    `analysis.hessian` in the run's metrics.json, with a spectral_density.png figure.
    """
    k_value = _parse("--k", k, config.count(10**9), None)
    subset_value = _parse("--subset", subset, config.count(10**7), 1000)
    probes_value = _parse("--probes", probes, config.count(10_000), 10)
    seed_value = _parse("--seed", seed, config.seed_int, 0)
    record = results.read_metrics(run_dir)
    saved = results.load_params(run_dir)
    if record["experiment"] == "tiny":
        report = analyze_tiny(record, saved, k_value)
    elif record["experiment"] in NETWORK_EXPERIMENTS:
        report = analyze_network(record, saved, k_value, subset_value, probes_value, seed_value, data_dir)
    else:
        raise ConfigError(f"{run_dir}: a {record['experiment']!r} run has no trained parameters to analyze")
    plots.spectral_density(run_dir / "spectral_density.png", report["density"]["eigenvalue"], report["density"]["density"],
                           report["top_eigenvalues"], title=f"Hessian spectrum ({report['data']})")
    record["analysis"] = {**record["analysis"], "hessian": report}
    record["figures"] = {**record["figures"], "spectral_density": "spectral_density.png"}
    results.write_metrics(run_dir, record)
    stdout.print(f"{record['run_id']}: λmax {report['lambda_max']:.4g}, λmin {report['lambda_min']:.4g}, "
                 f"tr H {report['trace']:.4g}, {100 * report['negative_fraction']:.1f}% negative eigenvalues "
                 f"({report['method']}, {report['n_params']:,} parameters)")
    print(run_dir)
