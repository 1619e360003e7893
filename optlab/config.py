"""RunConfig: every setting of one run, resolved and validated before anything runs.

Settings come in layers, later ones winning:
    the field defaults < the experiment's defaults < a TOML file < `--set key=value` < flags.
Each raw value is parsed by its field's parser; a bad one raises ConfigError naming where
it came from (`--lr`, `--set lr`, `lr in FILE.toml`) and what was wrong.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from optlab.errors import ConfigError

# ---- parsers: raw value (str from the command line, or a TOML value) -> typed value -------


def _number(raw: Any, kind: type) -> Any:
    if isinstance(raw, bool):
        raise ValueError
    if isinstance(raw, str):
        raw = raw.strip().replace("_", "")
    value = kind(raw)
    if kind is int and isinstance(raw, float) and not raw.is_integer():
        raise ValueError
    return value


def checked(kind: type, test: Callable[[Any], bool], wants: str) -> Callable[[Any], Any]:
    def parse(raw: Any) -> Any:
        try:
            value = _number(raw, kind)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"must be {wants}") from None
        if not test(value):
            raise ValueError(f"must be {wants}")
        return value

    parse.wants = wants  # type: ignore[attr-defined]
    return parse


positive = checked(float, lambda v: math.isfinite(v) and v > 0, "a positive finite number")
non_negative = checked(float, lambda v: math.isfinite(v) and v >= 0, "a finite number ≥ 0")
fraction = checked(float, lambda v: 0 < v <= 1, "a number in (0, 1]")
open_fraction = checked(float, lambda v: 0 < v < 1, "a number strictly between 0 and 1")
unit_interval = checked(float, lambda v: 0 <= v < 1, "a number in [0, 1)")
seed_int = checked(int, lambda v: 0 <= v < 2**32, "an integer in [0, 2³²)")


def count(limit: int) -> Callable[[Any], int]:
    return checked(int, lambda v: 1 <= v <= limit, f"an integer from 1 to {limit:,}")


def name(raw: Any) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError("must be a non-empty name")
    return raw.strip()


def optional_path(raw: Any) -> str | None:
    if raw is None or (isinstance(raw, str) and raw.strip() == ""):
        return None
    if not isinstance(raw, str):
        raise ValueError("must be a path")
    return raw


def number_list(item: Callable[[Any], Any], length: int | None, wants: str) -> Callable[[Any], tuple]:
    def parse(raw: Any) -> tuple:
        items = raw.split(",") if isinstance(raw, str) else raw
        if not isinstance(items, (list, tuple)) or (length is not None and len(items) != length) or not items:
            raise ValueError(f"must be {wants}")
        try:
            return tuple(item(x) for x in items)
        except ValueError:
            raise ValueError(f"must be {wants}") from None

    return parse


def int_range(raw: Any, low: int, high: int) -> tuple[int, ...]:
    """`5`, `2,5,10` or `2..20` (inclusive) -> a tuple of integers in [low, high]."""
    wants = f"integers from {low} to {high:,}: a list 2,5,10 or a range 2..20"
    text = ",".join(map(str, raw)) if isinstance(raw, (list, tuple)) else str(raw)
    first, dots, last = text.partition("..")
    try:
        values = tuple(range(int(first), int(last) + 1)) if dots else tuple(_number(x, int) for x in text.split(","))
    except (TypeError, ValueError):
        raise ValueError(f"must be {wants}") from None
    if not values or not all(low <= v <= high for v in values):
        raise ValueError(f"must be {wants}")
    return values


finite = checked(float, math.isfinite, "a finite number")
start_point = number_list(finite, 2, "two finite numbers W1,W2 (e.g. --start 0.5,2)")
layer_sizes = number_list(count(100_000), None, "comma-separated positive layer widths (e.g. --hidden 225,225)")


def optional_positive(raw: Any) -> float | None:
    """None (unset) or a positive finite number: for settings whose absence means "off"."""
    return None if raw is None else positive(raw)


def boolean(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("true", "on", "yes", "1"):
        return True
    if text in ("false", "off", "no", "0"):
        return False
    raise ValueError("must be true or false")


# ---- the config -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunConfig:
    """One run. Field metadata: `parse` (raw -> value) and `help` (shown by `optlab run --help`)."""

    experiment: str = field(default="tiny", metadata={"parse": name, "help": "what to optimize"})
    optimizer: str = field(default="gd", metadata={"parse": name, "help": "optimizer name (optlab list)"})
    lr: float | None = field(default=None, metadata={"parse": positive, "help": "step size η (default: per optimizer)"})
    lr_schedule: str = field(default="constant", metadata={"parse": name, "help": "learning-rate schedule"})
    anneal_fraction: float = field(default=0.5, metadata={"parse": fraction, "help": "anneal: part of the run spent decaying"})
    lr_decay: float = field(default=0.1, metadata={"parse": open_fraction, "help": "step/exponential/inverse-time: final factor"})
    momentum: float = field(default=0.9, metadata={"parse": unit_interval, "help": "momentum α of momentum/nesterov"})
    seed: int = field(default=0, metadata={"parse": seed_int, "help": "random seed"})
    grad_noise: float = field(default=0.0, metadata={"parse": non_negative, "help": "σ of N(0, σ²) noise added to gradients"})
    # second-order optimizers
    damping: float | None = field(default=None, metadata={"parse": optional_positive, "help": "λ in H + λI: newton/saddle-free (default none), hessian-free's initial λ (default 1)"})
    line_search: bool = field(default=False, metadata={"parse": boolean, "help": "newton/saddle-free: backtrack η, η/2, … until C decreases (Armijo)"})
    cg_iters: int = field(default=10, metadata={"parse": count(10_000), "help": "hessian-free: conjugate-gradient steps per update"})
    # the tiny 2-weight problem
    steps: int = field(default=100, metadata={"parse": count(100_000), "help": "number of updates"})
    start: tuple[float, float] = field(default=(0.5, 1.5), metadata={"parse": start_point, "help": "starting point W1,W2"})
    # networks trained on a dataset
    epochs: int = field(default=50, metadata={"parse": count(100_000), "help": "passes over the training set"})
    batch_size: int = field(default=100, metadata={"parse": count(10_000_000), "help": "minibatch size"})
    hidden: tuple[int, ...] = field(default=(225, 225), metadata={"parse": layer_sizes, "help": "hidden layer widths"})
    init: str = field(default="he", metadata={"parse": name, "help": "weight initialisation"})
    init_scale: float = field(default=1.0, metadata={"parse": positive, "help": "multiplies the init's standard deviation"})
    input_noise: float = field(default=0.0, metadata={"parse": non_negative, "help": "σ of Gaussian noise added to inputs in training"})
    dropout: float = field(default=0.0, metadata={"parse": unit_interval, "help": "dropout probability on hidden units"})
    weight_decay: float = field(default=0.0, metadata={"parse": non_negative, "help": "L2 penalty (λ/2)‖W‖² on the weights"})
    target_error: float = field(default=0.012, metadata={"parse": fraction, "help": "test error for time_to_target_s"})
    train_subset: int | None = field(default=None, metadata={"parse": count(10_000_000), "help": "train on the first N images only"})
    data_parallel: bool = field(default=False, metadata={"parse": boolean, "help": "split each minibatch over all devices (gradients all-reduced by XLA)"})
    checkpoint_every: int | None = field(default=None, metadata={"parse": count(100_000), "help": "save a checkpoint every N epochs (default: whenever 5 s have passed)"})
    analyze: tuple[int, ...] | None = field(default=None, metadata={"parse": number_list(count(100_000), None, "comma-separated epochs (e.g. --analyze 1,10,50)"), "help": "Hessian spectrum after these epochs"})
    data_dir: str | None = field(default=None, metadata={"parse": optional_path, "help": "folder with the dataset files"})
    # the signals experiment (its --init and --init-scale take lists)
    depth: tuple[int, ...] = field(default=(2, 5, 10, 20), metadata={"parse": lambda raw: int_range(raw, 1, 1000), "help": "signals: network depths, a list or a range A..B"})
    width: int = field(default=256, metadata={"parse": count(100_000), "help": "signals: width of every hidden layer"})
    # where results go
    out: str = field(default="results", metadata={"parse": name, "help": "results root folder"})
    run_dir: str | None = field(default=None, metadata={"parse": optional_path, "help": "exact output folder"})

    def to_dict(self, keys: Iterable[str] | None = None) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        return data if keys is None else {k: data[k] for k in keys}


FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(RunConfig)}
# Settings of every experiment, then those of every experiment that trains (an optimizer and its
# step size); each experiment lists the rest that apply to it.
BASE_FIELDS = ("experiment", "seed", "out", "run_dir")
TRAINING_FIELDS = ("optimizer", "lr", "lr_schedule", "anneal_fraction", "lr_decay", "momentum", "grad_noise",
                   "damping", "line_search", "cg_iters")


def applicable(experiment) -> tuple[str, ...]:
    """The settings that apply to an experiment (an `experiments.Experiment`), in field order."""
    names = set(BASE_FIELDS + (TRAINING_FIELDS if experiment.trains else ()) + tuple(experiment.fields))
    return tuple(k for k in FIELDS if k in names)


@dataclass(frozen=True)
class Layer:
    """Raw settings from one source; `label(key)` says where a value came from, for errors."""

    values: Mapping[str, Any]
    source: str  # "flag", "set", or a file name

    def label(self, key: str) -> str:
        if self.source == "flag":
            return "--opt" if key == "optimizer" else "--" + key.replace("_", "-")
        if self.source == "set":
            return f"--set {key}"
        return f"{key} in {self.source}"


def parse_sets(items: Iterable[str]) -> Layer:
    """`--set key=value` pairs; keys may use - or _."""
    values = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r}")
        values[key.strip().replace("-", "_")] = value.strip()
    return Layer(values, "set")


def read_toml(path: Path) -> Layer:
    """An experiment file: flat `key = value` settings (the names of `optlab run --help`).

    A `[sweep]` table, if present, is for `optlab sweep` and is left out here.
    """
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory, not a TOML file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror or e}") from None
    data.pop("sweep", None)  # a grid for `optlab sweep`; a plain run uses the base settings
    tables = [k for k, v in data.items() if isinstance(v, dict)]
    if tables:
        raise ConfigError(f"config file {path}: unexpected table [{tables[0]}] (settings are flat key = value lines)")
    return Layer({k.replace("-", "_"): v for k, v in data.items()}, Path(path).name)


def suggest(key: str, known: Iterable[str]) -> str:
    import difflib

    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f"{key!r}" + (f"; did you mean {close[0]!r}?" if close else " (optlab run --help lists them)")
