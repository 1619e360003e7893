"""RunConfig: every setting of one run, resolved and validated before anything runs.

Settings come in layers, later ones winning:
    the field defaults < the experiment's defaults < a TOML file < `--set key=value` < flags.
Each raw value is parsed by its field's parser (optlab.parsers); a bad one raises ConfigError naming where
it came from (`--lr`, `--set lr`, `lr in FILE.toml`) and what was wrong.

A setting is declared once, by `setting(...)` on its RunConfig field (a `Setting`: parser, help,
metavar, flag, how a sweep lists its alternatives, the commands that offer it, the registry its
names come from). `optlab.cli.options` makes the options of `optlab run` and `optlab sweep` from
these declarations, TOML keys and `--set` are the field names, and `optlab.sweep.grid` reads the
sweep's rules from them: nothing else lists the settings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tomllib

from optlab.errors import ConfigError
from optlab.parsers import (
    boolean,
    count,
    finite,
    fraction,
    int_range,
    layer_sizes,
    name,
    non_negative,
    number_list,
    one_of,
    open_fraction,
    optional_path,
    optional_positive,
    positive,
    seed_int,
    setting_pairs,
    start_point,
    unit_interval,
)

if TYPE_CHECKING:
    from optlab.registry import Registry

# ---- the declaration of a setting ---------------------------------------------------------------

GRID_KINDS = ("values", "ints", "lists", "fixed")


@dataclass(frozen=True)
class Setting:
    """How one RunConfig field is given: the one declaration its flags, TOML key, `--set` and help come from.

    `grid` says how `optlab sweep` reads its alternatives: "values" a,b,c; "ints" also integer ranges
    a..b; "lists" (a tuple-valued setting) alternatives separated by ";"; "fixed" one value per sweep.
    `choices` names the Registry ("module:NAME", imported only when a list or completion is needed:
    config stays a leaf) whose names the value is one of.
    """

    parse: Callable[[Any], Any]
    help: str
    metavar: str | None = None  # None: a switch (--data-parallel), given without a value
    flag: str | None = None  # the option when it is not --field-name
    grid: str = "values"
    sweep_metavar: str | None = None  # when the one derived from metavar and grid does not read well
    commands: tuple[str, ...] = ("run", "sweep")  # the commands that offer it as an option
    choices: str | None = None

    def __post_init__(self) -> None:
        if self.grid not in GRID_KINDS:
            raise ValueError(f"grid must be one of {GRID_KINDS}, got {self.grid!r}")

    def metavar_for(self, command: str) -> str | None:
        """`FLOAT` for `optlab run`; for `optlab sweep` its alternatives: `FLOAT,…`, `INT,…|A..B`, `W1,W2;…`."""
        if command != "sweep" or self.metavar is None or self.grid == "fixed":
            return self.metavar
        return self.sweep_metavar or self.metavar + {"values": ",…", "ints": ",…|A..B", "lists": ";…"}[self.grid]


def setting(default: Any, parse: Callable[[Any], Any], help: str, metavar: str | None = None, **how: Any) -> Any:
    """A RunConfig field with its Setting (see there for `how`: flag, grid, sweep_metavar, commands, choices)."""
    return field(default=default, metadata={"setting": Setting(parse, help, metavar, **how)})


def choices(spec: Setting) -> Registry | None:
    """The Registry a setting's value is a name from, or None."""
    if spec.choices is None:
        return None
    import importlib

    module, _, attr = spec.choices.partition(":")
    return getattr(importlib.import_module(module), attr)


# ---- the config -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunConfig:
    """One run. Each field's metadata["setting"] (a Setting, made by `setting()`) is its whole declaration;
    which experiments use it is theirs to say (Experiment.fields, see `applicable`)."""

    experiment: str = setting("", name, "what to optimize (every run names one)", "EXPERIMENT", grid="fixed",
                              commands=(), choices="optlab.experiments:EXPERIMENTS")
    optimizer: str = setting("gd", name, "optimizer", "NAME", flag="--opt", choices="optlab.core.optimizers:OPTIMIZERS")
    lr: float | None = setting(None, positive, "step size η (default: per optimizer and experiment)", "FLOAT")
    lr_schedule: str = setting("constant", name, "learning-rate schedule", "NAME",
                               choices="optlab.core.schedules:SCHEDULES")
    anneal_fraction: float = setting(0.5, fraction, "anneal: the part of the run spent decaying", "FRACTION")
    lr_decay: float = setting(0.1, open_fraction, "step, exponential, inverse-time: η's final factor", "FACTOR")
    momentum: float = setting(0.9, unit_interval, "momentum α of momentum and nesterov", "FLOAT")
    # a plug-in optimizer's own keywords (b1=0.9, …): given as `--set b1=0.95` or `b1 = 0.95` in a TOML file,
    # recorded as {"b1": 0.95, ...}; optlab.core.optimizers.OwnSetting says how each is read
    optimizer_settings: tuple[tuple[str, Any], ...] = setting(
        (), setting_pairs, "the optimizer's own settings (a plug-in factory's keywords), given as --set KEY=VALUE",
        "KEY=VALUE", grid="fixed", commands=())
    seed: int = setting(0, seed_int, "random seed", "INT", grid="ints")
    grad_noise: float = setting(0.0, non_negative, "σ of N(0, σ²) noise added to every gradient", "SIGMA")
    # second-order optimizers
    damping: float | None = setting(
        None, optional_positive, "λ in H + λI: newton, saddle-free-newton (default: none); "
        "hessian-free's initial λ (default: 1); kfac's factored Tikhonov λ (default: 0.3)", "λ")
    line_search: bool = setting(False, boolean, "newton, saddle-free-newton: halve η until the loss decreases (Armijo)")
    cg_iters: int = setting(50, count(10_000), "hessian-free: at most this many conjugate-gradient steps per "
                            "update (fewer when Martens' relative-progress rule stops it)", "INT", grid="ints")
    # second-order optimizers on networks (the classify experiments)
    curvature: str = setting("ggn", one_of("ggn", "hessian"), "hessian-free: the curvature CG solves with, ggn "
                             "(Gauss–Newton, positive semi-definite: Martens') or hessian", "ggn|hessian")
    curvature_batch: int | None = setting(None, count(10_000_000), "hessian-free, kfac: curvature products / "
                                          "factor statistics on the first N examples of each minibatch (default: "
                                          "all)", "N")
    inverse_every: int = setting(20, count(100_000), "kfac: recompute the Kronecker factors' inverses every N "
                                 "steps", "N")
    # the tiny 2-weight problem
    steps: int = setting(100, count(100_000), "number of updates", "INT", grid="ints")
    start: tuple[float, float] = setting((0.5, 1.5), start_point, "starting point W1,W2", "W1,W2", grid="lists")
    animate: bool = setting(False, boolean, "also write trajectory.gif: the iterate moving over the landscape, the "
                            "loss curve filling in (a few seconds more; single runs only)", commands=("run",))
    # networks trained on a dataset
    epochs: int = setting(50, count(100_000), "passes over the training set", "INT", grid="ints")
    batch_size: int = setting(100, count(10_000_000), "minibatch size", "INT", grid="ints")
    hidden: tuple[int, ...] = setting((225, 225), layer_sizes, "hidden layer widths", "N,N,…", grid="lists",
                                      sweep_metavar="N,N;…")
    init: str = setting("he", name, "weight initialisation", "NAME", choices="optlab.problems.inits:INITS")
    init_scale: float = setting(1.0, positive, "multiplies the init's standard deviation", "FLOAT")
    model: str = setting("mlp", name, "the network: a pair of functions init, apply (optlab.problems.models)",
                         "NAME", choices="optlab.problems.models:MODELS")
    activation: str = setting("relu", name, "the hidden units' nonlinearity φ", "NAME",
                              choices="optlab.problems.activations:ACTIVATIONS")
    loss: str = setting("cross-entropy", name, "the training objective on the network's outputs", "NAME",
                        choices="optlab.problems.losses:LOSSES")
    input_noise: float = setting(0.0, non_negative, "σ of Gaussian noise added to the inputs in training", "SIGMA")
    dropout: float = setting(0.0, unit_interval, "dropout probability on hidden units", "P")
    weight_decay: float = setting(0.0, non_negative, "L2 penalty (λ/2)‖W‖² on the weights", "FLOAT")
    target_error: float = setting(0.012, fraction, "test error for time_to_target_s", "FRACTION")
    train_subset: int | None = setting(None, count(10_000_000), "train on the first N images only", "N", grid="ints")
    data_parallel: bool = setting(False, boolean, "split each minibatch over all devices (gradients all-reduced by "
                                  "XLA); the batch size must divide evenly", commands=("run",))
    checkpoint_every: int | None = setting(None, count(100_000), "checkpoint every N epochs (default: whenever 5 s "
                                           "have passed)", "N", commands=("run",))
    analyze: tuple[int, ...] | None = setting(
        None, number_list(count(100_000), None, "comma-separated epochs (e.g. --analyze 1,10,50)"),
        "Hessian spectrum (Lanczos) after these epochs, e.g. 1,10,50", "EPOCHS", grid="lists", commands=("run",))
    hessian_index: bool = setting(False, boolean, "after every epoch, the exact Hessian's share of negative "
                                  "eigenvalues (its index) on the first 1,000 training images; networks of up to "
                                  "4,096 parameters")
    data_dir: str | None = setting(None, optional_path, "folder holding the dataset files", "DIR", grid="fixed")
    # the signals experiment (its --init, --init-scale and --activation take lists)
    depth: tuple[int, ...] = setting((2, 5, 10, 20), lambda raw: int_range(raw, 1, 1000),
                                     "network depths, a list or a range A..B", "N|A..B", grid="lists")
    width: int = setting(256, count(100_000), "width of every hidden layer", "INT", grid="ints")
    # where results go
    out: str = setting("results", name, "results root: a run gets its own folder in it, a sweep OUT/SWEEP_ID/",
                       "DIR", grid="fixed")
    run_dir: str | None = setting(None, optional_path, "write this run exactly here", "DIR", grid="fixed",
                                  commands=("run",))
    # the dynamics experiments: a grid of step sizes (bifurcation, phase-diagram) and of one hyperparameter
    lr_min: float = setting(0.2, positive, "the grid's smallest step size η", "FLOAT",
                            grid="fixed", commands=("run",))
    lr_max: float = setting(0.7, positive, "the grid's largest step size η", "FLOAT",
                            grid="fixed", commands=("run",))
    lr_count: int = setting(1000, count(100_000), "step sizes in the grid, evenly spaced",
                            "INT", grid="fixed", commands=("run",))
    hparam: str = setting("momentum", name, "the optimizer's hyperparameter on the y axis (a setting "
                          "the optimizer takes, e.g. momentum)", "NAME", grid="fixed", commands=("run",))
    hparam_min: float = setting(0.0, finite, "the hyperparameter's smallest value", "FLOAT",
                                grid="fixed", commands=("run",))
    hparam_max: float = setting(0.99, finite, "the hyperparameter's largest value", "FLOAT",
                                grid="fixed", commands=("run",))
    hparam_count: int = setting(100, count(10_000), "hyperparameter values in the grid, evenly spaced",
                                "INT", grid="fixed", commands=("run",))

    def to_dict(self, keys: Iterable[str] | None = None) -> dict[str, Any]:
        """The fields as plain data (metrics.json's config); the optimizer's own settings as a {name: value} table."""
        # Every field holds an immutable value (the dataclass is frozen and hashable), so a shallow dict is what
        # dataclasses.asdict's deep copy gives, at a tenth of its cost (a sweep asks twice per configuration).
        data = {k: getattr(self, k) for k in (FIELDS if keys is None else keys)}
        if "optimizer_settings" in data:
            data["optimizer_settings"] = dict(self.optimizer_settings)
        return data

    def __getattr__(self, key: str) -> Any:
        """An optimizer's own setting reads like a field (cfg.b1), for the sweep's columns and labels."""
        own = self.__dict__.get("optimizer_settings", ())
        for own_key, value in own:
            if own_key == key:
                return value
        raise AttributeError(key)


FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(RunConfig)}
SETTINGS: dict[str, Setting] = {k: f.metadata["setting"] for k, f in FIELDS.items()}
# Settings of every experiment, then those of every experiment that trains (an optimizer and its
# step size); each experiment lists the rest that apply to it.
BASE_FIELDS = ("experiment", "seed", "out", "run_dir")
TRAINING_FIELDS = ("optimizer", "lr", "lr_schedule", "anneal_fraction", "lr_decay", "momentum", "grad_noise",
                   "damping", "line_search", "cg_iters")


def applicable(experiment) -> tuple[str, ...]:
    """The settings that apply to an experiment (an `experiments.Experiment`), in field order; where an
    optimizer applies, so do its own settings (optimizer_settings)."""
    names = set(BASE_FIELDS + (TRAINING_FIELDS if experiment.trains else ()) + tuple(experiment.fields))
    names |= {"optimizer_settings"} if "optimizer" in names else set()
    return tuple(k for k in FIELDS if k in names)


@dataclass(frozen=True)
class Layer:
    """Raw settings from one source; `label(key)` says where a value came from, for errors."""

    values: Mapping[str, Any]
    source: str  # "flag", "set", "keyword" (Python keyword arguments: optlab.api), or a file name
    plugins: tuple[str, ...] = ()  # plug-in files the source names (a TOML's plugins = [...]), as absolute paths

    def label(self, key: str) -> str:
        if self.source == "flag":
            return flag(key)
        if self.source == "keyword":
            return f"{key}="
        if self.source == "set":
            return f"--set {key}"
        return f"{key} in {self.source}"


def flag(key: str) -> str:
    """The command-line option of a setting: `--lr`, `--batch-size`, `--opt`."""
    spec = SETTINGS.get(key)
    return (spec and spec.flag) or "--" + key.replace("_", "-")


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

    A `[sweep]` table, if present, is for `optlab sweep` and is left out here. `plugins = ["file.py"]`
    names plug-in files (relative to the TOML file's folder): they are the Layer's `plugins`, loaded by
    optlab.runs.resolve before the settings are read.
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
    plugins = _plugin_paths(data.pop("plugins", []), Path(path))
    return Layer({k.replace("-", "_"): v for k, v in data.items()}, Path(path).name, plugins)


def _plugin_paths(raw: Any, path: Path) -> tuple[str, ...]:
    """A TOML's `plugins`: a list of paths, each relative to the file's own folder."""
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(p, str) and p.strip() for p in raw):
        raise ConfigError(f"plugins in {path.name} must be a list of plug-in files, "
                          'e.g. plugins = ["my_optimizers.py"]')
    return tuple(str((path.parent / Path(p).expanduser()).resolve()) for p in raw)


def suggest(key: str, known: Iterable[str]) -> str:
    import difflib

    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f"{key!r}" + (f"; did you mean {close[0]!r}?" if close else " (optlab run --help lists them)")
