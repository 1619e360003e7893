"""`optlab.sweep(...)` from Python: the same grid, programs and folders as `optlab sweep`, returned as objects.

    s = optlab.sweep("tiny", optimizer="gd", lr=[0.1, 0.2, 0.3], steps=50, out="results")
    s.rows          # one dict per configuration: varied settings, status, summary numbers, config, path
    s.best()        # the Run with the lowest final metric

The `optlab.sweep` package is itself callable (see its __init__), so that `optlab.sweep(...)` works
whether or not the package was imported before; calling it calls `sweep` here.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optlab.errors import ConfigError
from optlab.experiments import EXPERIMENTS
from optlab.runs.folder import Run, load
from optlab.sweep.execute import run as run_plan
from optlab.sweep.grid import build
from optlab.sweep.sources import keyword_grid, target_layers
from optlab.sweep.summary import pick_best


def sweep(target: str | os.PathLike, *, best: str | None = None, chunk: int | None = None,
          progress: bool = False, **settings: Any) -> SweepResult:
    """Train every combination of the keywords' alternatives, as `optlab sweep TARGET ...` does.

    `target` is an experiment or a FILE.toml (its [sweep] table is a grid, as on the command line);
    each keyword is a RunConfig field with a list of alternatives or one value (sources.keyword_grid):
    `lr=[0.1, 0.2]`, `seed=range(3)`, `hidden=[(32,), (225, 225)]`. `best` (a metric name) also
    writes best.toml, `chunk` caps the configurations per compiled program (--best, --chunk).
    Bad input raises ConfigError with the command line's message before any folder is made.
    """
    base, file_grid = target_layers(target)
    plan = build(base, [*file_grid, keyword_grid(settings)])
    experiment = plan.configs[0].experiment
    if best is not None:
        _check_metric(experiment, best)
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise ConfigError(f"chunk= must be a positive integer, got {chunk!r}")
    bar = _Lines() if progress else _Silent()
    outcome = run_plan(plan, Path(plan.configs[0].out), bar, best=best, max_lanes=chunk)
    return SweepResult(outcome.sweep_dir, experiment, outcome.rows, plan.varied, bar.metric, outcome.notices)


def _check_metric(experiment: str, metric: str) -> None:
    known = EXPERIMENTS[experiment].metrics
    if metric not in known:
        raise ConfigError(f"best={metric!r}: unknown metric for {experiment}; choose from {', '.join(known)}")


@dataclass(frozen=True, repr=False)
class SweepResult:
    """A finished sweep: its folder, one row per configuration (summary.json's, plus config), and its runs."""

    path: Path | None  # None on a process that writes nothing (multi-host, rank > 0)
    experiment: str
    rows: list[dict]
    varied: list[str]  # the settings with more than one alternative
    metric: str  # the experiment's main metric, or `best`'s
    notes: Sequence[str] = field(default=(), compare=False)

    @property
    def runs(self) -> list[Run]:
        """Every configuration's Run, read from its folder (in the order of the rows)."""
        return [load(row["path"]) for row in self.rows if row.get("path")]

    def best(self, metric: str | None = None) -> Run | None:
        """The run with the lowest `metric` (default: the sweep's); ties go to the lower mean over seeds.

        None when no configuration completed with a finite value.
        """
        metric = metric or self.metric
        _check_metric(self.experiment, metric)
        row = pick_best(self.rows, metric)
        return load(row["path"]) if row and row.get("path") else None

    def __repr__(self) -> str:
        done = sum(r["status"] == "completed" for r in self.rows)
        return (f"<SweepResult {self.path.name if self.path else '(not written here)'}: {len(self.rows)} "
                f"configurations ({done} completed), varying {', '.join(self.varied) or 'nothing'}>")


class _Silent:
    """optlab.sweep's default: no progress (the interface is optlab.sweep.execute's `progress`)."""

    metric = ""

    def start(self, total: int, description: str, metric: str) -> None:
        self.metric = metric

    def advance(self, count: int, summaries: Sequence[Mapping[str, Any]]) -> None: ...

    def stop(self) -> None: ...


class _Lines(_Silent):
    """progress=True: one line on stderr per step of progress, as `optlab sweep` prints when not on a terminal."""

    def start(self, total: int, description: str, metric: str) -> None:
        self.metric, self.total, self.done, self.best = metric, total, 0, float("inf")

    def advance(self, count: int, summaries: Sequence[Mapping[str, Any]]) -> None:
        self.done += count
        values = [s[self.metric] for s in summaries if s.get(self.metric) is not None]
        self.best = min([self.best, *values])
        info = f"  best {self.metric} {self.best:.4g}" if self.best < float("inf") else ""
        print(f"sweep {self.done}/{self.total} config-epochs{info}", file=sys.stderr, flush=True)

