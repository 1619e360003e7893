"""Running a sweep: create the folders (process 0 only), train chunk by chunk, write the summaries."""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from optlab import results
from optlab.config import RunConfig
from optlab.core import devices
from optlab.errors import ConfigError
from optlab.runs import resolve
from optlab.sweep.grid import METRICS, NETWORK_METRICS, Sweep
from optlab.sweep.plan import plan
from optlab.sweep.summary import pick_best, summary_rows, write_outputs


@dataclass
class Outcome:
    sweep_dir: Path | None
    sweep_id: str
    rows: list[dict]
    best: dict | None = None
    notices: list[str] = field(default_factory=list)


def run(sweep: Sweep, out: Path, progress, best: str | None = None, max_lanes: int | None = None,
        devices_: Sequence | None = None) -> Outcome:
    """Plan, create the folders (process 0 only), train chunk by chunk, and write the summaries."""
    experiment = sweep.configs[0].experiment
    metric = _check_metric(experiment, best)
    notices: list[str] = []
    chunks = plan(sweep, max_lanes, notices)
    sweep_id = f"sweep-{experiment}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    writer = devices.is_writer()
    sweep_dir = results.create_run_dir(Path(out) / sweep_id) if writer else None
    run_ids = [_run_id(i, cfg, sweep) for i, cfg in enumerate(sweep.configs)]
    records = [_record(cfg, rid, sweep_id) for cfg, rid in zip(sweep.configs, run_ids)]
    dirs = [results.create_run_dir(sweep_dir / rid) if writer else None for rid in run_ids]
    for d, record in zip(dirs, records):
        if d:
            results.write_metrics(d, record)
    progress.start(sum(_units(c) for c in sweep.configs), f"sweep of {len(sweep.configs)}", metric)
    finished: set[int] = set()
    try:
        for chunk in chunks:
            cfgs = [sweep.configs[i] for i in chunk.indices]
            lanes = devices.Lanes.over(len(cfgs), devices_)
            def save_progress(j: int, history: dict, summary: dict, chunk=chunk) -> None:
                i = chunk.indices[j]  # as a single run does: metrics.json after every epoch, from copies
                records[i].update(history={k: list(v) for k, v in history.items()}, summary=dict(summary))
                if dirs[i]:
                    results.write_metrics(dirs[i], records[i])

            job_dirs = [dirs[i] for i in chunk.indices]
            for i, outcome in zip(chunk.indices, chunk.job(cfgs, lanes, job_dirs, progress, save_progress)):
                records[i].update(status=outcome.status, history=outcome.history, summary=outcome.summary,
                                  analysis=outcome.analysis, figures=outcome.figures)
                if dirs[i]:
                    results.save_params(dirs[i], outcome.params)
                    results.write_metrics(dirs[i], records[i])
                finished.add(i)
    except BaseException as e:
        status = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
        for i, d in enumerate(dirs):
            if d and i not in finished:
                results.write_metrics(d, records[i] | {"status": status})
        raise
    finally:
        progress.stop()
    rows = summary_rows(sweep, records, dirs)
    outcome = Outcome(sweep_dir, sweep_id, rows, notices=notices)
    if best:
        outcome.best = pick_best(rows, metric)
    if sweep_dir:
        write_outputs(sweep_dir, sweep, rows, metric, outcome.best)
    return outcome


def _units(cfg: RunConfig) -> int:
    return 1 if cfg.experiment == "tiny" else cfg.epochs


def _check_metric(experiment: str, best: str | None) -> str:
    known = METRICS.get(experiment, NETWORK_METRICS)
    if best is not None and best not in known:
        raise ConfigError(f"--best {best}: unknown metric for {experiment}; choose from {', '.join(known)}")
    return best or known[0]


def _run_id(i: int, cfg: RunConfig, sweep: Sweep) -> str:
    parts = [f"{i:03d}", cfg.experiment, cfg.optimizer]
    for key in sweep.varied:
        value = getattr(cfg, key)
        value = "x".join(map(str, value)) if isinstance(value, tuple) else f"{value:g}" if isinstance(value, float) else value
        if key != "optimizer":
            parts.append(f"{key.replace('_', '')}{value}")
    return "-".join(str(p) for p in parts)


def _record(cfg: RunConfig, run_id: str, sweep_id: str) -> dict:
    """What runner.run writes for a run, plus sweep_id."""
    return {"schema_version": results.SCHEMA_VERSION, "run_id": run_id, "status": "running",
            "experiment": cfg.experiment, "config": resolve.relevant(cfg), "environment": results.environment(),
            "history": {}, "summary": {}, "analysis": {}, "figures": {}, "sweep_id": sweep_id}
