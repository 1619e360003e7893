"""Where a sweep's configurations are recorded: a run folder each, or one table for the whole sweep.

    folders  SWEEP_DIR/RUN_ID/metrics.json (+ params.npz), exactly as `optlab run` writes it, plus
             sweep_id; rewritten after every epoch, as a single run's is (RunRecord's lifecycle)
    table    SWEEP_DIR/runs.npz (optlab.results.table): the same records in one file, written when
             the sweep starts (every configuration "running"), after each compiled program, and
             when it ends or stops (interrupted, failed), so that it always tells the truth

`auto` takes folders up to FOLDERS_UP_TO configurations and the table beyond: past a few hundred
configurations, per-folder files (three fsynced writes and ~14 KB of JSON for a 100-step tiny run)
cost more than the compiled program and the disk more than the numbers are worth.

Per-configuration figures: none by default (`figures=None`), all as they run (`"all"`), or the best
K afterwards (an int, drawn from the records by the experiment's `Sweeping.draw`). In a table
sweep a configuration's figures go to SWEEP_DIR/RUN_ID/ (a folder of PNGs only), which is where
`optlab report` looks for them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from optlab import results
from optlab.config import RunConfig
from optlab.errors import ConfigError
from optlab.results import table
from optlab.runs.record import RunRecord

LAYOUTS = ("auto", "folders", "table")
FOLDERS_UP_TO = 256  # `optlab sweep --help` names it too


def layout_for(layout: str, count: int) -> str:
    """`folders` or `table` for a sweep of `count` configurations (ConfigError naming --layout otherwise)."""
    if layout not in LAYOUTS:
        raise ConfigError(f"--layout {layout}: choose from {', '.join(LAYOUTS)}")
    if layout == "auto":
        return "folders" if count <= FOLDERS_UP_TO else "table"
    return layout


def parse_figures(raw: str | int | None) -> str | int | None:
    """--figures: None (none), "all", or K > 0 (the best K); ConfigError naming the value otherwise."""
    if raw is None or raw in ("none", 0, "0"):
        return None
    if raw == "all":
        return "all"
    try:
        k = int(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"--figures {raw}: give all, none, or a number K (the best K configurations)") from None
    if k < 0:
        raise ConfigError(f"--figures {raw}: K must be positive")
    return k or None


class Store:
    """The sweep's records and where they go; `sweep_dir` None: this process writes nothing."""

    def __init__(self, sweep_dir: Path | None, layout: str, configs: Sequence[RunConfig], run_ids: Sequence[str],
                 sweep_id: str, figures: str | int | None) -> None:
        self.sweep_dir, self.layout, self.figures = sweep_dir, layout, figures
        folders = layout == "folders" and sweep_dir is not None
        self.dirs = [results.create_run_dir(sweep_dir / rid) if folders else None for rid in run_ids]
        environment = results.environment()
        self.records = [RunRecord.create(d, cfg, rid, sweep_id=sweep_id, environment=environment)
                        for d, cfg, rid in zip(self.dirs, configs, run_ids)]
        self.params: list[dict | None] = [None] * len(configs)
        self.flush()

    @property
    def table_path(self) -> Path | None:
        return self.sweep_dir / table.TABLE_FILE if self.sweep_dir is not None and self.layout == "table" else None

    def figure_dir(self, i: int) -> Path | None:
        """Where configuration i's figures go (made on demand); None: this process writes nothing."""
        if self.sweep_dir is None:
            return None
        if self.dirs[i] is not None:
            return self.dirs[i]
        folder = self.sweep_dir / self.records[i].record["run_id"]
        folder.mkdir(exist_ok=True)
        return folder

    def job_dirs(self, indices: Sequence[int]) -> list[Path | None]:
        """The folders a chunk's job draws figures into: only with --figures all."""
        return [self.figure_dir(i) if self.figures == "all" else None for i in indices]

    def save_progress(self, i: int, history: dict, summary: dict, analysis: dict | None = None) -> None:
        """Configuration i so far: its metrics.json is rewritten (folders); the table is rewritten per program."""
        self.records[i].save_progress(history, summary, analysis)

    def finish(self, i: int, result) -> None:
        self.records[i].finish(result)
        if self.layout == "table":
            self.params[i] = results.flat_params(result.params)

    def stop(self, i: int, error: BaseException) -> None:
        """Mark a configuration that did not finish interrupted or failed (its folder, or the table in memory)."""
        record = self.records[i]
        if self.layout == "folders":
            record.stop(error)
        elif isinstance(error, KeyboardInterrupt):
            record.record = record.record | {"status": "interrupted"}
        else:
            record.record = record.record | {"status": "failed", "error": f"{type(error).__name__}: {error}"}

    def flush(self) -> None:
        """Write the table (nothing to do for folders: each record writes itself)."""
        if self.table_path is not None:
            table.write_table(self.table_path, [r.record for r in self.records], self.params)

    def draw_best(self, configs: Sequence[RunConfig], ranked: Sequence[int], draw) -> None:
        """--figures K: the figures of the first K configurations of `ranked`, drawn from their records."""
        if not isinstance(self.figures, int) or self.sweep_dir is None:
            return
        for i in ranked[: self.figures]:
            record = self.records[i]
            record.record = results.upgraded(record.record | {"figures": draw(self.figure_dir(i), configs[i],
                                                                               record.record)})
            record.write()
