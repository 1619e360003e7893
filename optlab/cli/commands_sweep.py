"""`optlab sweep`: a grid of runs as one compiled program per group, with one progress bar."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from optlab import config
from optlab.cli.app import app
from optlab.cli.options import SettingsCommand, completer, plugin_option, with_settings
from optlab.errors import ConfigError

stdout = Console(highlight=False)
stderr = Console(stderr=True, highlight=False)


@app.command("sweep", cls=SettingsCommand)
@with_settings("sweep")
def sweep_command(
    target: str = typer.Argument(..., metavar="EXPERIMENT|FILE.toml", autocompletion=completer("experiment"),
                                 help="an experiment, or a file with a \\[sweep] table"),
    settings: dict | None = None,  # becomes --opt NAME,…, --lr FLOAT,…, …: one option per setting (optlab.config)
    sets: list[str] = typer.Option([], "--set", metavar="KEY=VALUES",
                                   help="any setting as a grid, e.g. --set lr_decay=0.1,0.01"),
    best: str | None = typer.Option(None, "--best", metavar="METRIC",
                                    help="write the best configuration as best.toml (test_error, final_loss, …)"),
    chunk: int | None = typer.Option(None, "--chunk", min=1, metavar="N",
                                     help="at most N configurations per program \\[default: what fits in memory]"),
    coordinator: str | None = typer.Option(None, "--coordinator", metavar="HOST:PORT",
                                           help="multi-host: process 0's address"),
    num_processes: int | None = typer.Option(None, "--num-processes", min=1, metavar="N",
                                             help="multi-host: number of processes"),
    process_id: int | None = typer.Option(None, "--process-id", min=0, metavar="I",
                                          help="multi-host: this process's rank"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress output"),
    plugin: list[str] = plugin_option(),
) -> None:
    """Train every combination of the listed values; array-valued settings share one compiled program.

    Each configuration gets a run folder with metrics.json (as optlab run writes it, plus
    sweep_id) under OUT/SWEEP_ID/, with summary.csv, summary.json and heatmap.png beside them.
    The sweep folder's path is the last line printed on stdout.
    """
    from optlab import sweep
    from optlab.core import devices
    from optlab.sweep import sources

    devices.initialize(coordinator, num_processes, process_id)
    flags = dict(settings or {})
    base, file_grid = sources.target_layers(target)
    grid_layers = [*file_grid, config.Layer(dict(_split_set(s) for s in sets), "set"), config.Layer(flags, "flag")]
    plan = sweep.build(base, grid_layers)
    bar = SweepBar(quiet or not devices.is_writer())
    outcome = sweep.run(plan, Path(plan.configs[0].out), bar, best=best, max_lanes=chunk)
    for notice in outcome.notices:
        stderr.print(f"[yellow]note:[/] {notice}")
    if outcome.sweep_dir is None:
        return
    if not quiet:
        stdout.print(summary_table(outcome.rows, plan.grid, bar.metric, outcome.best))
        if len(plan.varied) > 2:
            stdout.print("heatmap.png: the first two varied settings other than seed; the rest averaged over")
    print(outcome.sweep_dir)


def _split_set(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects key=values, got {item!r}")
    return key.strip().replace("-", "_"), value.strip()


def summary_table(rows: Sequence[dict], grid: dict, metric: str, best: dict | None) -> Table:
    """One line per configuration: the settings that vary, its status and its final metric."""
    varied = [k for k, v in grid.items() if len(v) > 1]
    table = Table(title=f"sweep: {len(rows)} configurations, final {metric}", title_justify="left")
    for name in ("run", *varied, "status", metric):
        table.add_column(name, justify="right" if name in (*varied, metric) else "left")
    for r in rows:
        value = r.get(metric)
        shown = "—" if value is None or r["status"] != "completed" else (
            f"{100 * value:.2f}%" if "error" in metric else f"{value:.6g}")
        failed = "red" if r["status"] != "completed" else None
        style = "bold green" if best and r["run_id"] == best["run_id"] else failed
        table.add_row(r["run_id"], *(_cell(r[k]) for k in varied), r["status"], shown, style=style)
    if best:
        table.caption = f"best by {metric}: {best['run_id']} → best.toml"
    return table


def _cell(value) -> str:
    if isinstance(value, list):
        return "-".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


class SweepBar:
    """One bar for the whole sweep: configurations × epochs done, and the best metric so far."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet, self.metric, self.best, self.done = quiet, "", float("inf"), 0
        self.bar = None

    def start(self, total: int, description: str, metric: str) -> None:
        self.metric, self.total = metric, total
        if self.quiet:
            return
        if sys.stderr.isatty():
            self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=stderr)
            self.bar.start()
            self.task = self.bar.add_task(description, total=total, info="compiling…")

    def advance(self, count: int, summaries: Sequence[dict]) -> None:
        self.done += count
        values = [s[self.metric] for s in summaries if s.get(self.metric) is not None]
        self.best = min([self.best, *values])
        info = f"best {self.metric} {self.best:.4g}" if values or self.best < float("inf") else ""
        if self.bar is not None:
            self.bar.update(self.task, completed=self.done, info=info)
        elif not self.quiet:
            print(f"sweep {self.done}/{self.total} config-epochs  {info}", file=sys.stderr, flush=True)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
