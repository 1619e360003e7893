"""Running a sweep: create the folders (process 0 only), train chunk by chunk, write the summaries."""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from optlab import results
from optlab.config import RunConfig
from optlab.core import compile_cache, devices
from optlab.errors import ConfigError
from optlab.experiments import EXPERIMENTS
from optlab.sweep.grid import Sweep
from optlab.sweep.plan import Chunk, plan
from optlab.sweep.store import Store, layout_for, parse_figures
from optlab.sweep.summary import pick_best, ranked, summary_rows, write_outputs


@dataclass
class Outcome:
    sweep_dir: Path | None
    sweep_id: str
    rows: list[dict]
    best: dict | None = None
    notices: list[str] = field(default_factory=list)
    layout: str = "folders"  # or "table": every configuration in SWEEP_DIR/runs.npz (optlab.sweep.store)


def run(sweep: Sweep, out: Path, progress, best: str | None = None, max_lanes: int | None = None,
        devices_: Sequence | None = None, layout: str = "auto", figures: str | int | None = None) -> Outcome:
    """Plan, create the folders (process 0 only), train chunk by chunk, and write the summaries.

    `layout`: "folders", "table" or "auto" (optlab.sweep.store); `figures`: None (no per-configuration
    figures), "all", or K (the best K by the --best metric, drawn afterwards).
    """
    experiment = sweep.configs[0].experiment
    compile_cache.enable()
    metric = _check_metric(experiment, best)
    figures = _check_figures(experiment, parse_figures(figures))
    layout = layout_for(layout, len(sweep.configs))
    notices: list[str] = []
    chunks = plan(sweep, max_lanes, notices)
    sweep_id = f"sweep-{experiment}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    writer = devices.is_writer()
    sweep_dir = results.create_run_dir(Path(out) / sweep_id) if writer else None
    run_ids = [_run_id(i, cfg, sweep) for i, cfg in enumerate(sweep.configs)]
    kept = Store(sweep_dir, layout, sweep.configs, run_ids, sweep_id, figures)
    progress.start(sum(_units(c) for c in sweep.configs), f"sweep of {len(sweep.configs)}", metric)
    finished: set[int] = set()
    try:
        for chunk in chunks:
            _run_chunk(chunk, sweep, kept, devices_, progress, finished)
            kept.flush()
    except BaseException as e:
        for i in range(len(kept.records)):
            if i not in finished:
                kept.stop(i, e)
        kept.flush()
        raise
    finally:
        progress.stop()
    rows = summary_rows(sweep, [r.record for r in kept.records], kept.dirs)
    if isinstance(figures, int):
        kept.draw_best(sweep.configs, ranked(rows, metric), EXPERIMENTS[experiment].sweep.draw)
        kept.flush()
    outcome = Outcome(sweep_dir, sweep_id, rows, notices=notices, layout=layout)
    if best:
        outcome.best = pick_best(rows, metric)
    if sweep_dir:
        write_outputs(sweep_dir, sweep, rows, metric, outcome.best, layout)
    return outcome


def _run_chunk(chunk: Chunk, sweep: Sweep, kept: Store, devices_, progress, finished: set[int]) -> None:
    """One program's configurations: metrics.json after every epoch (as a single run does), then their results."""
    cfgs = [sweep.configs[i] for i in chunk.indices]
    lanes = devices.Lanes.over(len(cfgs), devices_)

    def save_progress(j: int, history: dict, summary: dict, analysis: dict | None = None) -> None:
        kept.save_progress(chunk.indices[j], history, summary, analysis)

    for i, result in zip(chunk.indices, chunk.job(cfgs, lanes, kept.job_dirs(chunk.indices), progress,
                                                  save_progress)):
        kept.finish(i, result)
        finished.add(i)


def _check_figures(experiment: str, figures: str | int | None) -> str | int | None:
    """--figures K needs the experiment's `Sweeping.draw` (figures from a finished record)."""
    sweeping = EXPERIMENTS[experiment].sweep
    if isinstance(figures, int) and sweeping is not None and sweeping.draw is None:
        raise ConfigError(f"--figures {figures}: {experiment} draws its figures only while a configuration runs; "
                          "use --figures all, or rerun the best with optlab run best.toml")
    return figures


def _units(cfg: RunConfig) -> int:
    return EXPERIMENTS[cfg.experiment].sweep.units(cfg)


def _check_metric(experiment: str, best: str | None) -> str:
    known = EXPERIMENTS[experiment].metrics
    if best is not None and best not in known:
        raise ConfigError(f"--best {best}: unknown metric for {experiment}; choose from {', '.join(known)}")
    return best or known[0]


def _run_id(i: int, cfg: RunConfig, sweep: Sweep) -> str:
    parts = [f"{i:03d}", cfg.experiment, cfg.optimizer]
    for key in sweep.varied:
        value = getattr(cfg, key)
        if isinstance(value, tuple):
            value = "x".join(map(str, value))
        elif isinstance(value, float):
            value = f"{value:g}"
        if key != "optimizer":
            parts.append(f"{key.replace('_', '')}{value}")
    return "-".join(str(p) for p in parts)
