"""`optlab run` and `optlab list`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from optlab import config
from optlab.cli.app import app
from optlab.cli.options import SettingsCommand, completer, plugin_option, with_settings
from optlab.errors import ConfigError

EXIT_DIVERGED = 1
stdout = Console(highlight=False)
stderr = Console(stderr=True, highlight=False)


@app.command("run", cls=SettingsCommand)
@with_settings("run")
def run_command(
    target: str | None = typer.Argument(None, metavar="EXPERIMENT|FILE.toml", show_default=False,
                                        help="an experiment (optlab list) or an experiment file",
                                        autocompletion=completer("experiment")),
    settings: dict | None = None,  # becomes --opt, --lr, … : one option per setting (optlab.config)
    config_file: Path | None = typer.Option(None, "--config", metavar="FILE.toml",
                                            help="settings file (flags win over it)"),
    sets: list[str] = typer.Option([], "--set", metavar="KEY=VALUE",
                                   help="any setting, e.g. --set anneal_fraction=0.3 (repeatable)"),
    resume: Path | None = typer.Option(None, "--resume", metavar="RUN_DIR", show_default=False,
                                       help="continue an interrupted run from its last checkpoint "
                                            "(with --data-dir if its data have moved)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing --run-dir"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress output"),
    plugin: list[str] = plugin_option(),
) -> None:
    """Run one experiment and write its folder: metrics.json, figures, params.npz.

    The run folder's path is the last line printed on stdout.
    """
    from optlab.runs import resolve, runner, sources  # imports the experiments and JAX: only now that there is work

    flags = dict(settings or {})
    if resume is not None:
        data_dir = flags.pop("data_dir", None)  # where the data are now: not a setting of the run
        if target is not None or flags or sets or config_file is not None:
            raise ConfigError("--resume takes the run's own settings; give no experiment, file or other settings "
                              "with it (only --data-dir, if its data have moved)")
        if overwrite:  # it would be silently ignored
            raise ConfigError(f"--resume continues {resume} in place; --overwrite cannot be given with it")
        outcome = runner.resume(resume, quiet=quiet, data_dir=data_dir)
    elif target is None:
        raise ConfigError("missing EXPERIMENT or FILE.toml (see optlab list), or --resume RUN_DIR")
    else:
        layers = [sources.target_layer(target)]
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


def summary_line(record: dict) -> str:
    """The run's one line, as its experiment words it (experiments.Experiment.summary_line)."""
    from optlab.experiments import EXPERIMENTS

    return EXPERIMENTS[record["experiment"]].summary_line(record)


@app.command("list")
def list_command(plugin: list[str] = plugin_option()) -> None:
    """Show every registered experiment, optimizer, schedule and initialisation (with the plug-ins').

    An optimizer's own settings (a plug-in factory's keywords, `--set KEY=VALUE`) are listed with
    their defaults; what a plug-in registered is marked with its file.
    """
    from rich.markup import escape

    from optlab import plugins
    from optlab.core.optimizers import OPTIMIZERS
    from optlab.core.schedules import SCHEDULES
    from optlab.experiments import EXPERIMENTS
    from optlab.problems.inits import INITS

    for title, registry in (("experiments", EXPERIMENTS), ("optimizers", OPTIMIZERS),
                            ("schedules (--lr-schedule)", SCHEDULES), ("initialisations (--init)", INITS)):
        table = Table(title=title, title_justify="left", show_header=False, box=None, padding=(0, 2))
        for entry in registry:
            text = escape(entry.help)
            own = getattr(entry.value, "settings", ())
            if registry is OPTIMIZERS and own:
                text += escape(f"; settings (--set KEY=VALUE): {', '.join(s.shown() for s in own)}")
            source = plugins.origin(registry, entry.name)
            table.add_row(f"[bold]{entry.name}[/]", text + (f" [dim]\\[plug-in {escape(source)}][/]" if source else ""))
        stdout.print(table, soft_wrap=True)
        stdout.print()
