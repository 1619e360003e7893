"""Where a sweep's settings come from besides flags and `--set`: its first argument and Python keywords.

`optlab sweep TARGET` and `optlab.sweep(TARGET, ...)` read TARGET the same way: an experiment's name, or
an experiment file whose flat settings are the base and whose `[sweep]` table is a grid layer. From
Python, each keyword is a setting's alternatives (see `keyword_grid`), one Layer of source "keyword"
(errors name `lr=` where the command line names `--lr`, optlab.runs.sources).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import tomllib

from optlab import config
from optlab.config import Layer
from optlab.errors import ConfigError
from optlab.runs import sources
from optlab.sweep.grid import MAX_CONFIGS


def target_layers(target: str | os.PathLike) -> tuple[list[Layer], list[Layer]]:
    """Base layers (the experiment, or the file's flat settings) and the file's [sweep] table, if any."""
    text = os.fspath(target)
    if not (text.endswith(".toml") or Path(text).is_file()):
        return [Layer({"experiment": text}, "argument")], []
    path = Path(text)
    base = config.read_toml(path)
    table = tomllib.loads(path.read_text(encoding="utf-8")).get("sweep", {})
    if not isinstance(table, dict):
        raise ConfigError(f"config file {path}: sweep must be a table [sweep]")
    return [base], [Layer({k.replace("-", "_"): v for k, v in table.items()}, path.name)] if table else []


def keyword_grid(values: Mapping[str, Any]) -> Layer:
    """Python keywords as a grid layer: a list, tuple, range or array lists a setting's alternatives.

    `lr=[0.1, 0.2]` and `lr="0.1,0.2"` (the command line's spelling) are two alternatives, `lr=0.1` one.
    For a tuple-valued setting (hidden, start, depth, analyze) a tuple is one value: `hidden=(225, 225)`
    is one network, `hidden=[(32,), (225, 225)]` two. A range of step 1 is passed as "A..B", so that the
    grid counts it before expanding it (`seed=range(10**12)` is refused at once, as `--seed 0..999999999999`).
    """
    sources.check_names(values)
    return Layer({key: _alternatives(key, value) for key, value in values.items()}, sources.KEYWORD)


def _alternatives(key: str, value: Any) -> Any:
    if isinstance(value, range) and value.step == 1:
        return f"{value.start}..{value.stop - 1}"
    if isinstance(value, range) and len(value) > MAX_CONFIGS:
        raise ConfigError(f"{key}={value!r}: {len(value):,} values; a grid has at most {MAX_CONFIGS:,} configurations")
    lists = key in config.SETTINGS and config.SETTINGS[key].grid == "lists"  # one value is itself a list
    if lists and isinstance(value, tuple):
        return [list(value)]
    if isinstance(value, (str, Mapping, os.PathLike)) or not isinstance(value, Iterable):
        return sources.plain(value)
    return [list(v) if lists and isinstance(v, tuple) else sources.plain(v) for v in value]
