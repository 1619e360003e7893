"""A sweep's grid: each setting's alternatives, every configuration, and the groups that share a program."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from optlab import config
from optlab.config import Layer, RunConfig
from optlab.errors import ConfigError
from optlab.runs import resolve

FIXED_KEYS = ("experiment", "out", "run_dir", "data_dir")  # one value per sweep
LIST_VALUED = ("hidden", "start")  # alternatives separated by ";"
INT_KEYS = ("seed", "steps", "epochs", "batch_size", "train_subset")  # may use ranges a..b
MAX_CONFIGS = 10_000




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
        cfg = resolve.resolve([*base, *(Layer({k: v}, _source(labels[k])) for k, v in zip(grid, combo))])
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
    """Configurations with equal keys share one compiled program: they differ at most in the values of
    their experiment's array settings, not in whether its presence settings are zero (experiments.Sweeping)."""
    array, presence = array_keys(cfg.experiment)
    static = {k: v for k, v in cfg.to_dict().items() if k not in array and k not in ("out", "run_dir")}
    return tuple(sorted(static.items())) + tuple((k, getattr(cfg, k) > 0) for k in presence)


def array_keys(experiment: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The experiment's (array settings, presence settings); none for one that cannot be swept."""
    from optlab.experiments import EXPERIMENTS

    sweeping = EXPERIMENTS[experiment].sweep
    return (sweeping.array_keys, sweeping.presence_keys) if sweeping else ((), ())


def groups(configs: Sequence[RunConfig]) -> list[list[int]]:
    """Indices of the configurations in each group, in order of first appearance."""
    out: dict[tuple, list[int]] = {}
    for i, cfg in enumerate(configs):
        out.setdefault(group_key(cfg), []).append(i)
    return list(out.values())


