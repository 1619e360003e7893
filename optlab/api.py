"""The Python API: `optlab.run`, `optlab.sweep`, `optlab.load`, `optlab.compare`, on the CLI's code path.

    import optlab
    r = optlab.run("tiny", optimizer="newton", steps=20, run_dir="results/newton")
    r.status, r.summary["final_loss"], r.figures["loss"]

Keyword arguments are RunConfig's field names (`optlab run --help` lists the settings; `optimizer=` is
the field behind `--opt`); their values go through the same layers, parsers and checks as the command
line's (optlab.runs.resolve), so a bad one raises the same optlab error (ConfigError, DataError, ...)
with the same message, the keyword named as `lr=` where the CLI says `--lr`. Nothing prints unless
`progress=True`. A run that diverges is a result (its `status` says so), not an exception.

This module imports no JAX: `run` and `sweep` import the runner when called, `load` and `compare`
only read files.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from optlab.errors import ResultsError
from optlab.results import read_metrics
from optlab.runs.folder import Run, load

if TYPE_CHECKING:
    import pandas

    from optlab.sweep.call import SweepResult

__all__ = ["Run", "compare", "load", "run", "sweep"]


def run(target: str | os.PathLike, *, plugins: Sequence[str | os.PathLike] = (), progress: bool = False,
        overwrite: bool = False, **settings: Any) -> Run:
    """Run one experiment as `optlab run TARGET --KEY VALUE ...` does, and return its Run.

    `target`: an experiment (`optlab list`) or an experiment file FILE.toml (keywords win over it).
    `plugins`: plug-in files to load first, as `--plugin FILE.py` (each once per process).
    The run goes to `out`/RUN_ID (default results/) or exactly `run_dir`; `overwrite=True` replaces
    an existing `run_dir` (--overwrite). The run's notes (the CLI's `note:` lines) are issued as
    warnings and kept on `Run.notes`.
    """
    from optlab.runs import resolve, runner, sources  # imports the experiments, and runner JAX: only now

    load_plugins(plugins)
    cfg = resolve.resolve([sources.target_layer(target), sources.keyword_layer(settings)])
    try:
        outcome = runner.run(cfg, quiet=not progress, overwrite=overwrite)
    except ResultsError as e:  # the flag named as the keyword, as for every setting
        if "(pass --overwrite" not in str(e):
            raise
        raise ResultsError(str(e).replace("(pass --overwrite", "(pass overwrite=True")) from None
    for note in outcome.notes:
        warnings.warn(note, stacklevel=2)
    return Run(outcome.run_dir, read_metrics(outcome.run_dir), tuple(outcome.notes))  # the file's dict, as written


def sweep(target: str | os.PathLike, *, plugins: Sequence[str | os.PathLike] = (), best: str | None = None,
          chunk: int | None = None, progress: bool = False, **settings: Any) -> SweepResult:
    """Train a grid as `optlab sweep` does; see optlab.sweep.call.sweep. Returns a SweepResult.

    `plugins`: plug-in files to load first, as `--plugin FILE.py`."""
    from optlab.sweep.call import sweep as run_sweep

    load_plugins(plugins)
    return run_sweep(target, best=best, chunk=chunk, progress=progress, **settings)


def load_plugins(paths: Sequence[str | os.PathLike]) -> None:
    """Load plug-in files as `--plugin` does; a bad one raises its one-line ConfigError naming `plugins=`."""
    from optlab import plugins

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    plugins.load_files(paths, "plugins=")


def compare(paths: Any, *, group_by_seed: bool = False, sort: str | None = None,
            descending: bool = False) -> list[dict[str, Any]] | pandas.DataFrame:
    """The rows `optlab compare PATHS --format json` prints: a pandas DataFrame if pandas imports, else dicts.

    `paths`: a folder, a Run or a SweepResult, or a list of them (every run folder below is read). Each row is
    the CLI's JSON record: run, path, experiment, optimizer, lr, lr_schedule, seed, status, the summary
    numbers and the run's config; with `group_by_seed=True`, one row per configuration whose numbers
    are {"mean", "std", "n"} over its seeds. Unreadable folders are skipped with a warning (the CLI's
    `skipped` line); no run at all raises ResultsError with the CLI's message.
    """
    from optlab.reporting import compare as cmp
    from optlab.reporting.tables import machine_record

    if isinstance(paths, (str, os.PathLike)) or hasattr(paths, "path"):
        paths = [paths]
    folders = [os.fspath(p.path if hasattr(p, "path") else p) for p in paths]
    if sort is not None:
        cmp.sort_column(sort)
    runs, skipped = cmp.load_runs(folders)
    for s in skipped:
        warnings.warn(f"skipped {s.path}: {s.reason}", stacklevel=2)
    if not runs:
        raise ResultsError(f"no runs found in {', '.join(map(str, folders))}")
    rows = cmp.make_rows(runs)
    rows = cmp.group_by_seed(rows) if group_by_seed else rows
    records = [machine_record(r, with_config=True) for r in cmp.sort_rows(rows, sort, descending)]
    try:
        import pandas
    except ImportError:
        return records
    return pandas.DataFrame(records)
