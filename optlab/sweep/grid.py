"""A sweep's grid: each setting's alternatives, every configuration, and the groups that share a program."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from optlab import config
from optlab.config import Layer, RunConfig
from optlab.errors import ConfigError
from optlab.runs import resolve

MAX_CONFIGS = 10_000


def _kind(key: str) -> str:
    """How a sweep reads the setting's alternatives (its Setting's `grid`): values, ints, lists or fixed."""
    spec = config.SETTINGS.get(key)
    return spec.grid if spec else "values"


def parse_values(key: str, raw: Any, label: str) -> list:
    """One setting's alternatives: a string "a,b", "0..4", "32;64,64", a TOML list, or one value."""
    return _expand(alternatives(key, raw, label))


def alternatives(key: str, raw: Any, label: str) -> list[list | range]:
    """`parse_values` before expansion: lists of values and integer ranges (kept as ranges, so that a
    range as long as 0..4294967295 is counted, and refused, without ever being written out)."""
    if isinstance(raw, list):
        if not raw:
            raise ConfigError(f"{label}: empty list of values")
        return [_range_or_value(key, v, label) for v in raw]
    if not isinstance(raw, str):
        return [_range_or_value(key, raw, label)]
    sep = ";" if _kind(key) == "lists" else ","
    items = [item.strip() for item in raw.split(sep)]
    if not raw.strip() or any(not item for item in items):
        raise ConfigError(f"{label} {raw!r}: empty value in the list (write values as a{sep}b{sep}c)")
    return [_range_or_value(key, item, label) for item in items]


def count(chunks: Sequence[list | range]) -> int:
    """How many alternatives `chunks` hold, without expanding a range (len() overflows past 2⁶³)."""
    return sum(c.stop - c.start if isinstance(c, range) else len(c) for c in chunks)


def _expand(chunks: Sequence[list | range]) -> list:
    return [x for c in chunks for x in (map(str, c) if isinstance(c, range) else c)]


def _range_or_value(key: str, item: Any, label: str) -> list | range:
    if _kind(key) == "lists" and not isinstance(item, (str, list)):
        return [[item]]  # hidden = [32, 64] in a file: two one-layer networks
    if not isinstance(item, str) or ".." not in item:
        return [item]
    start, _, end = item.partition("..")
    if _kind(key) != "ints":
        ints = ", ".join(k for k in config.SETTINGS if _kind(k) == "ints")
        raise ConfigError(f"{label} {item!r}: ranges a..b are for integer settings ({ints}); list the values")
    try:
        lo, hi = int(start), int(end)
    except ValueError:
        raise ConfigError(f"{label} {item!r}: a range needs two integers, e.g. 0..4") from None
    if lo > hi:
        raise ConfigError(f"{label} {item!r}: empty range (the start is after the end)")
    return range(lo, hi + 1)


@dataclass(frozen=True)
class Sweep:
    """The grid (setting -> raw alternatives, in order) over base layers, and every configuration."""

    grid: dict[str, list]
    configs: list[RunConfig]
    labels: dict[str, str] = field(default_factory=dict)  # setting -> how the user named it

    @property
    def columns(self) -> list[str]:
        """The grid's settings worth a column (not where results go)."""
        return [k for k in self.grid if _kind(k) != "fixed"]

    @property
    def varied(self) -> list[str]:
        return [k for k, v in self.grid.items() if len(v) > 1]


def build(base: Sequence[Layer], grid_layers: Sequence[Layer]) -> Sweep:
    """Parse the grid layers (later ones win per setting), count the grid, and resolve every combination.

    The grid is counted before any range is expanded: a grid past MAX_CONFIGS is refused at once.
    """
    chunks: dict[str, list] = {}
    labels: dict[str, str] = {}
    sources: dict[str, str] = {}
    for layer in grid_layers:
        for key, raw in layer.values.items():
            key = key.replace("-", "_")  # a key that is no field may be the optimizer's own: resolve() says
            labels[key], sources[key] = layer.label(key), layer.source
            chunks[key] = alternatives(key, raw, labels[key])
            if _kind(key) == "fixed" and count(chunks[key]) > 1:
                raise ConfigError(f"{labels[key]} takes one value in a sweep, got {count(chunks[key]):,}")
    sizes = {k: count(v) for k, v in chunks.items()}
    total = math.prod(sizes.values())
    if total > MAX_CONFIGS:
        varied = " × ".join(f"{labels[k]} {n:,}" for k, n in sizes.items() if n > 1)
        raise ConfigError(f"the grid has {total:,} configurations ({varied}); the limit is {MAX_CONFIGS:,}")
    grid = {k: _expand(v) for k, v in chunks.items()}
    configs, seen = [], {}
    for combo in itertools.product(*grid.values()):
        cfg = resolve.resolve([*base, *(Layer({k: v}, sources[k]) for k, v in zip(grid, combo))])
        if getattr(cfg, "data_parallel", False):
            raise ConfigError("data_parallel is for single runs: a sweep shards its configurations over the devices "
                              "instead")
        if cfg in seen:
            raise ConfigError(f"the grid lists the same configuration twice ({_describe(dict(zip(grid, combo)))})")
        seen[cfg] = True
        configs.append(cfg)
    return Sweep(grid, configs, labels)


def _describe(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())


def group_key(cfg: RunConfig) -> tuple:
    """Configurations with equal keys share one compiled program: they differ at most in the values of
    their experiment's array settings, not in whether its presence settings are zero (experiments.Sweeping)."""
    from optlab.core.optimizers import traced

    array, presence = array_keys(cfg.experiment)
    static = {k: v for k, v in cfg.to_dict().items() if k not in array and k not in ("out", "run_dir")}
    # The optimizer's own settings: its real-valued ones are arrays where the experiment says they are
    # (array_keys holds optimizer_settings); their names, and the others' values, shape the program.
    own = "optimizer_settings" in array
    static["optimizer_settings"] = tuple((k, None if own and traced(v) else v) for k, v in cfg.optimizer_settings)
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


