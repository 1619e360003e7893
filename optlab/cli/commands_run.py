"""`optlab run` and `optlab list`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from optlab import config
from optlab.cli.app import app
from optlab.errors import ConfigError
from optlab.runs import resolve, runner

EXIT_DIVERGED = 1
stdout = Console(highlight=False)
stderr = Console(stderr=True, highlight=False)


def _opt(*names: str, metavar: str, help: str):
    return typer.Option(None, *names, metavar=metavar, help=help, show_default=False)


@app.command("run")
def run_command(
    target: str | None = typer.Argument(None, metavar="EXPERIMENT|FILE.toml", help="an experiment (optlab list) or an experiment file", show_default=False),
    opt: str | None = _opt("--opt", metavar="NAME", help="optimizer: gd, momentum, nesterov, newton, saddle-free-newton, hessian-free, adagrad, adadelta, rmsprop, adam"),
    lr: str | None = _opt("--lr", metavar="FLOAT", help="step size η (default: per optimizer and experiment)"),
    lr_schedule: str | None = _opt("--lr-schedule", metavar="NAME", help="constant, anneal, step, exponential, cosine, inverse-time"),
    momentum: str | None = _opt("--momentum", metavar="FLOAT", help="momentum α for momentum/nesterov (default: 0.9)"),
    steps: str | None = _opt("--steps", metavar="INT", help="tiny: number of updates (default: 100)"),
    start: str | None = _opt("--start", metavar="W1,W2", help="tiny: starting point (default: 0.5,1.5)"),
    epochs: str | None = _opt("--epochs", metavar="INT", help="networks: passes over the training set (default: 50)"),
    batch_size: str | None = _opt("--batch-size", metavar="INT", help="networks: minibatch size (default: 100)"),
    hidden: str | None = _opt("--hidden", metavar="N,N,…", help="networks: hidden layer widths (default: 225,225)"),
    init: str | None = _opt("--init", metavar="NAME", help="networks: glorot, he or normal (default: he)"),
    init_scale: str | None = _opt("--init-scale", metavar="FLOAT", help="networks: multiplies the init's std (default: 1)"),
    input_noise: str | None = _opt("--input-noise", metavar="SIGMA", help="networks: Gaussian input noise in training (default: mnist 0.3, fashion-mnist 0)"),
    dropout: str | None = _opt("--dropout", metavar="P", help="networks: dropout on hidden units (default: 0)"),
    weight_decay: str | None = _opt("--weight-decay", metavar="FLOAT", help="networks: L2 penalty λ (default: 0)"),
    train_subset: str | None = _opt("--train-subset", metavar="N", help="networks: train on the first N images only"),
    data_parallel: bool | None = typer.Option(None, "--data-parallel", help="networks: split each minibatch over all devices; the batch size must divide evenly", show_default=False),
    target_error: str | None = _opt("--target-error", metavar="FRACTION", help="networks: test error for time_to_target_s (default: 0.012)"),
    checkpoint_every: str | None = _opt("--checkpoint-every", metavar="N", help="networks: checkpoint every N epochs (default: whenever 5 s have passed)"),
    analyze: str | None = _opt("--analyze", metavar="EPOCHS", help="networks: Hessian spectrum (Lanczos) after these epochs, e.g. 1,10,50"),
    data_dir: str | None = _opt("--data-dir", metavar="DIR", help="networks: folder holding the dataset files"),
    grad_noise: str | None = _opt("--grad-noise", metavar="SIGMA", help="add N(0, σ²) to every gradient (default: 0)"),
    damping: str | None = _opt("--damping", metavar="λ", help="newton, saddle-free-newton: H + λI (default: none); hessian-free: initial λ (default: 1)"),
    line_search: bool | None = typer.Option(None, "--line-search", help="newton, saddle-free-newton: halve η until the loss decreases (Armijo)", show_default=False),
    cg_iters: str | None = _opt("--cg-iters", metavar="INT", help="hessian-free: conjugate-gradient steps per update (default: 10)"),
    depth: str | None = _opt("--depth", metavar="N|A..B", help="signals: network depths, e.g. 2..20 or 5,10,20"),
    width: str | None = _opt("--width", metavar="INT", help="signals: hidden layer width (default: 256)"),
    seed: str | None = _opt("--seed", metavar="INT", help="random seed (default: 0)"),
    out: str | None = _opt("--out", metavar="DIR", help="results root; each run gets its own folder (default: results)"),
    run_dir: str | None = _opt("--run-dir", metavar="DIR", help="write this run exactly here"),
    config_file: Path | None = typer.Option(None, "--config", metavar="FILE.toml", help="settings file (flags win over it)"),
    sets: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", help="any setting, e.g. --set anneal_fraction=0.3 (repeatable)"),
    resume: Path | None = typer.Option(None, "--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint", show_default=False),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing --run-dir"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress output"),
) -> None:
    """Run one experiment and write its folder: metrics.json, figures, params.npz.

    The run folder's path is the last line printed on stdout.
    """
    flags = {k: v for k, v in locals().items() if v is not None and k in config.FIELDS}
    if opt is not None:
        flags["optimizer"] = opt
    if resume is not None:
        if target is not None or flags or sets or config_file is not None:
            raise ConfigError("--resume takes the run's own settings; give no experiment, file or other settings with it")
        if overwrite:  # [writeside] it would be silently ignored
            raise ConfigError(f"--resume continues {resume} in place; --overwrite cannot be given with it")
        outcome = runner.resume(resume, quiet=quiet)
    elif target is None:
        raise ConfigError("missing EXPERIMENT or FILE.toml (see optlab list), or --resume RUN_DIR")
    else:
        layers = [_target_layer(target)]
        if config_file is not None:
            layers.append(config.read_toml(config_file))
        layers += [config.parse_sets(sets), config.Layer(flags, "flag")]
        outcome = runner.run(resolve.resolve(layers), quiet=quiet, overwrite=overwrite)
    for note in outcome.notes:
        stderr.print(f"[yellow]note:[/] {note}", soft_wrap=True)
    if not quiet:
        stdout.print(summary_line(outcome.record), soft_wrap=True)
    print(outcome.run_dir)
    if outcome.status != "completed":
        raise typer.Exit(EXIT_DIVERGED)


def _target_layer(target: str) -> config.Layer:
    if target.endswith(".toml") or Path(target).is_file():
        return config.read_toml(Path(target))
    return config.Layer({"experiment": target}, "argument")


def summary_line(record: dict) -> str:
    cfg, summary, analysis = record["config"], record["summary"], record["analysis"]
    if "lines" in summary:  # signals: the per-layer factor of each init, measured and in theory
        factors = ", ".join(f"{l['init']}×{l['init_scale']:g} {l['forward_factor']:.3g} (theory {l['theory_factor']:.3g})"
                            for l in summary["lines"])
        return f"signals, {summary['depth']} layers: activation std × per layer: {factors}"
    head = f"{record['experiment']} {cfg['optimizer']} η={cfg['lr']:g} {cfg['lr_schedule']}"
    if record["status"] == "diverged":
        where = summary.get("diverged_at_step", summary.get("diverged_at_epoch"))
        return f"[red]{head}: diverged[/] (the loss blew up at {'step' if 'steps' in cfg else 'epoch'} {where})"
    if "test_error" in summary:
        return (f"{head}: test error {100 * summary['test_error']:.2f}% (best {100 * summary['best_test_error']:.2f}% "
                f"at epoch {summary['best_epoch']}), {summary['epochs']} epochs in {summary['wall_time_s']:.1f} s")
    return (f"{head}: loss {summary['final_loss']:.6g} after {summary['steps']} steps, |∇C| = {analysis['grad_norm']:.2g}, "
            f"{analysis['critical_point']}" + (", oscillating" if summary.get("oscillating") else ""))


@app.command("list")
def list_command() -> None:
    """Show every registered experiment, optimizer, schedule and initialisation."""
    from optlab.core.optimizers import OPTIMIZERS
    from optlab.core.schedules import SCHEDULES
    from optlab.experiments import EXPERIMENTS
    from optlab.problems.mlp import INITS

    for title, registry in (("experiments", EXPERIMENTS), ("optimizers", OPTIMIZERS),
                            ("schedules (--lr-schedule)", SCHEDULES), ("initialisations (--init)", INITS)):
        table = Table(title=title, title_justify="left", show_header=False, box=None, padding=(0, 2))
        for entry in registry:
            table.add_row(f"[bold]{entry.name}[/]", entry.help)
        stdout.print(table)
        stdout.print()
