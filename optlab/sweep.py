"""`optlab sweep`: a grid of configurations trained as few compiled programs as possible.

    optlab sweep mnist --opt adam --lr 1e-4,3e-4,1e-3 --seed 0..4

Each setting takes a list ("1e-4,3e-4"; an integer range "0..4" is 0,1,2,3,4; list-valued
settings such as --hidden separate their alternatives with ";": "32;225,225"), or the same
under a `[sweep]` table of an experiment file. Every combination is one configuration, resolved
and validated like `optlab run` would. Configurations that differ only in array-valued
settings (ARRAY_KEYS: learning rate, momentum, noise, weight decay, init scale, seed) form a
group: one program, `jax.vmap` of the single run's own step functions over the configuration
axis, sharded over every device (optlab.devices). Anything else (optimizer, hidden sizes,
batch size, schedule, …) and whether each noise/decay term is present at all (a static branch,
as in a single run) splits the grid into groups. A group too large for memory runs in chunks.

Results: OUT/SWEEP_ID/RUN_ID/metrics.json per configuration, exactly as `optlab run` writes it
plus `sweep_id` (so `optlab compare OUT/SWEEP_ID` works), and OUT/SWEEP_ID/summary.{csv,json},
heatmap.png, and with --best METRIC, best.toml (runnable with `optlab run best.toml`): those
are optlab.sweep_summary's.
"""

from __future__ import annotations

import itertools
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from optlab import config, devices, results
from optlab.config import Layer, RunConfig
from optlab.errors import ConfigError
from optlab.sweep_summary import pick_best, summary_rows, write_outputs

ARRAY_KEYS = ("lr", "momentum", "grad_noise", "input_noise", "weight_decay", "init_scale", "seed")
PRESENCE_KEYS = ("grad_noise", "input_noise", "weight_decay")  # zero leaves the term out of the program
FIXED_KEYS = ("experiment", "out", "run_dir", "data_dir")  # one value per sweep
LIST_VALUED = ("hidden", "start")  # alternatives separated by ";"
INT_KEYS = ("seed", "steps", "epochs", "batch_size", "train_subset")  # may use ranges a..b
MAX_CONFIGS = 10_000
NETWORK_METRICS = ("test_error", "best_test_error", "final_loss")
METRICS = {"tiny": ("final_loss",), "mnist": NETWORK_METRICS, "fashion-mnist": NETWORK_METRICS}  # --best choices


# ---------------------------------------------------------------------------- the grid


def parse_values(key: str, raw: Any, label: str) -> list:
    """One setting's alternatives: a string "a,b", "0..4", "32;64,64", a TOML list, or one value."""
    if isinstance(raw, list):
        if not raw:
            raise ConfigError(f"{label}: empty list of values")
        return [x for v in raw for x in _range_or_value(key, v, label)]
    if not isinstance(raw, str):
        return _range_or_value(key, raw, label)
    sep = ";" if key in LIST_VALUED else ","
    items = [item.strip() for item in raw.split(sep)]
    if not raw.strip() or any(not item for item in items):
        raise ConfigError(f"{label} {raw!r}: empty value in the list (write values as a{sep}b{sep}c)")
    return [x for item in items for x in _range_or_value(key, item, label)]


def _range_or_value(key: str, item: Any, label: str) -> list:
    if key in LIST_VALUED and not isinstance(item, (str, list)):
        return [[item]]  # hidden = [32, 64] in a file: two one-layer networks
    if not isinstance(item, str) or ".." not in item:
        return [item]
    start, _, end = item.partition("..")
    if key not in INT_KEYS:
        raise ConfigError(f"{label} {item!r}: ranges a..b are for integer settings ({', '.join(INT_KEYS)}); list the values")
    try:
        lo, hi = int(start), int(end)
    except ValueError:
        raise ConfigError(f"{label} {item!r}: a range needs two integers, e.g. 0..4") from None
    if lo > hi:
        raise ConfigError(f"{label} {item!r}: empty range (the start is after the end)")
    return [str(i) for i in range(lo, hi + 1)]


@dataclass(frozen=True)
class Sweep:
    """The grid (setting -> raw alternatives, in order) over base layers, and every configuration."""

    grid: dict[str, list]
    configs: list[RunConfig]
    labels: dict[str, str] = field(default_factory=dict)  # setting -> how the user named it

    @property
    def columns(self) -> list[str]:
        """The grid's settings worth a column (not where results go)."""
        return [k for k in self.grid if k not in FIXED_KEYS]

    @property
    def varied(self) -> list[str]:
        return [k for k, v in self.grid.items() if len(v) > 1]


def build(base: Sequence[Layer], grid_layers: Sequence[Layer]) -> Sweep:
    """Parse the grid layers (later ones win per setting) and resolve every combination."""
    grid: dict[str, list] = {}
    labels: dict[str, str] = {}
    for layer in grid_layers:
        for key, raw in layer.values.items():
            key = key.replace("-", "_")
            if key not in config.FIELDS:
                raise ConfigError(f"{layer.label(key)}: unknown setting {key!r} (optlab run --help lists them)")
            grid[key], labels[key] = parse_values(key, raw, layer.label(key)), layer.label(key)
            if key in FIXED_KEYS and len(grid[key]) > 1:
                raise ConfigError(f"{labels[key]} takes one value in a sweep, got {len(grid[key])}")
    total = int(np.prod([len(v) for v in grid.values()])) if grid else 1
    if total > MAX_CONFIGS:
        sizes = " × ".join(f"{labels[k]} {len(v)}" for k, v in grid.items() if len(v) > 1)
        raise ConfigError(f"the grid has {total:,} configurations ({sizes}); the limit is {MAX_CONFIGS:,}")
    configs, seen = [], {}
    for combo in itertools.product(*grid.values()):
        cfg = config.resolve([*base, *(Layer({k: v}, _source(labels[k])) for k, v in zip(grid, combo))])
        if getattr(cfg, "data_parallel", False):
            raise ConfigError("data_parallel is for single runs: a sweep shards its configurations over the devices instead")
        if cfg in seen:
            raise ConfigError(f"the grid lists the same configuration twice ({_describe(dict(zip(grid, combo)))})")
        seen[cfg] = True
        configs.append(cfg)
    return Sweep(grid, configs, labels)


def _source(label: str) -> str:
    return "flag" if label.startswith("--") else label.split(" in ", 1)[1]


def _describe(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())


def group_key(cfg: RunConfig) -> tuple:
    """Configurations with equal keys share one compiled program."""
    static = {k: v for k, v in cfg.to_dict().items() if k not in ARRAY_KEYS and k not in ("out", "run_dir")}
    return tuple(sorted(static.items())) + tuple((k, getattr(cfg, k) > 0) for k in PRESENCE_KEYS)


def groups(configs: Sequence[RunConfig]) -> list[list[int]]:
    """Indices of the configurations in each group, in order of first appearance."""
    out: dict[tuple, list[int]] = {}
    for i, cfg in enumerate(configs):
        out.setdefault(group_key(cfg), []).append(i)
    return list(out.values())


# ---------------------------------------------------------------------------- planning


@dataclass
class Chunk:
    """Configurations (indices into the sweep) run as one program, and how to run them."""

    indices: list[int]
    job: Any  # (cfgs, lanes, run_dirs, progress) -> list[RunResult]


def plan(sweep: Sweep, max_lanes: int | None = None, notices: list[str] | None = None) -> list[Chunk]:
    """Validate every group against its data and split it into chunks that fit in memory.

    Raises ConfigError before anything is written (unsupported combinations, data problems).
    """
    from functools import partial

    from optlab.experiments import classify, tiny

    notices = [] if notices is None else notices
    chunks, loaded = [], {}
    device_count = len(__import__("jax").devices())
    budget = devices.memory_budget()
    for members in groups(sweep.configs):
        cfg = sweep.configs[members[0]]
        if cfg.experiment == "tiny":
            tiny.prepare(cfg)
            job, per_lane = tiny.run_lanes, tiny.LANE_BYTES
        elif cfg.experiment in METRICS:
            source = (cfg.experiment, cfg.data_dir)
            dataset, n_train, sizes = classify.validate(cfg, loaded.get(source))
            loaded[source] = dataset
            job = partial(_classify_job, dataset, n_train, sizes)
            per_lane = classify.lane_bytes(cfg, n_train, len(dataset.test_images), sizes)
        else:
            raise ConfigError(f"experiment {cfg.experiment!r} cannot be swept yet")
        # The most lanes that fit, a multiple of the device count so that every device gets a share.
        fit = max_lanes or max(device_count, budget // per_lane // device_count * device_count)
        if per_lane * device_count > budget and not max_lanes:
            raise ConfigError(f"one configuration needs ~{per_lane / 1e9:.1f} GB per device, more than the "
                              f"~{budget / 1e9:.1f} GB free; use fewer hidden units or a smaller --train-subset")
        if len(members) > fit:
            notices.append(f"{len(members)} configurations ({_group_name(sweep, cfg)}) are more than fit at once "
                           f"(~{per_lane * len(members) / 1e9:.2f} GB, ~{budget / 1e9:.1f} GB free); running them "
                           f"in {-(-len(members) // fit)} chunks of up to {fit}")
        chunks += [Chunk(members[i: i + fit], job) for i in range(0, len(members), fit)]
    return chunks


def _classify_job(dataset, n_train, sizes, cfgs, lanes, run_dirs, progress, save_progress):
    from optlab.experiments import classify

    return classify.run_lanes(cfgs, dataset, n_train, sizes, lanes, run_dirs, progress, save_progress)


def _group_name(sweep: Sweep, cfg: RunConfig) -> str:
    shaping = [k for k in sweep.varied if k not in ARRAY_KEYS]
    return _describe({k: getattr(cfg, k) for k in shaping}) or f"{cfg.experiment} {cfg.optimizer}"


# ---------------------------------------------------------------------------- running


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
            "experiment": cfg.experiment, "config": config.relevant(cfg), "environment": results.environment(),
            "history": {}, "summary": {}, "analysis": {}, "figures": {}, "sweep_id": sweep_id}
