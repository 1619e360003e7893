"""Where a run's settings come from besides flags, `--set` and `--config`: its first argument and Python keywords.

`optlab run TARGET` and `optlab.run(TARGET, ...)` read TARGET the same way (an experiment name, or an
experiment file FILE.toml). The Python API (optlab.api) gives every other setting as a keyword argument
named like RunConfig's field (`optimizer="newton"`, `lr=0.1`, `run_dir=path`): they form one Layer whose
source is "keyword", so an error names the keyword as the user wrote it (`lr= must be a positive finite
number, got '-1'`) where the command line names the flag (`--lr ...`); the rest of the message is the same.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from optlab import config
from optlab.config import Layer
from optlab.errors import ConfigError

KEYWORD = "keyword"  # the Layer source of Python keyword arguments (config.Layer.label: `lr=`)


def target_layer(target: str | os.PathLike) -> Layer:
    """The first argument: an experiment file (FILE.toml, or any existing file) or an experiment's name."""
    text = os.fspath(target)
    if text.endswith(".toml") or Path(text).is_file():
        return config.read_toml(Path(text))
    return Layer({"experiment": text}, "argument")


def keyword_layer(values: Mapping[str, Any]) -> Layer:
    """Python keyword arguments as raw settings: paths as text, ranges as lists; the parsers do the rest.

    A keyword spelled like a flag rather than a field (`opt=` for `optimizer=`) is refused with the field's name.
    """
    check_names(values)
    return Layer({key: plain(value) for key, value in values.items()}, KEYWORD)


def check_names(values: Mapping[str, Any]) -> None:
    """Refuse a keyword that is a flag's spelling of another setting (`opt` -> `optimizer`), naming both."""
    by_flag = {config.flag(key): key for key in config.SETTINGS}
    for key in values:
        field = by_flag.get("--" + key.replace("_", "-"))
        if key not in config.FIELDS and field is not None:
            raise ConfigError(f"{key}=: unknown setting {key!r}; the keyword is {field}= "
                              f"({config.flag(field)} on the command line)")


def plain(value: Any) -> Any:
    """A Python value as the settings' parsers read it: os.PathLike -> str, range -> list (of ints)."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, range):
        return list(value)
    return value
