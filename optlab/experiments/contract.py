"""The Experiment contract and the registry: see optlab.experiments for what each hook means."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from optlab.errors import ConfigError
from optlab.registry import Registry

if TYPE_CHECKING:
    from optlab.config import RunConfig
    from optlab.core.devices import Lanes


class Progress(Protocol):
    """A single run's progress: `advance` gets the units done so far and the latest metrics."""

    def start(self, total: int, description: str) -> None: ...
    def advance(self, completed: int, metrics: Mapping[str, float]) -> None: ...
    def stop(self) -> None: ...


class SweepProgress(Protocol):
    """A sweep's progress: `advance` gets the units done since the last call and the lanes' summaries."""

    def advance(self, count: int, summaries: Sequence[Mapping[str, Any]]) -> None: ...


@dataclass
class RunContext:
    run_dir: Path
    progress: Progress
    save_progress: Callable[..., None]  # (history, summary, analysis=None) so far -> rewrite metrics.json
    save_checkpoint: Callable[[int, Any, dict], None] = lambda epoch, state, extras: None  # -> checkpoint.npz
    resume_from: dict | None = None  # the interrupted run's record, when resuming


@dataclass
class RunResult:
    status: str  # "completed" or "diverged"
    history: dict
    summary: dict
    analysis: dict
    # name -> results.figure_entry(file, caption, **what it holds), e.g. weights: epochs=[1, 2, 3]; a bare
    # file name (the schema-1 form older plug-ins return) is still accepted and recorded as {"path": name}
    figures: dict[str, dict | str]
    params: Any
    notes: list[str] = field(default_factory=list)  # things the user should be told


Job = Callable[[RunContext], RunResult]
# (i, history, summary, analysis) of the i-th configuration of a chunk so far -> its metrics.json
SaveLane = Callable[[int, dict, dict, dict], None]
# (configurations, lanes, their run folders (None: not this process's to write), progress, save) -> results
LanesJob = Callable[["Sequence[RunConfig]", "Lanes", "Sequence[Path | None]", SweepProgress, SaveLane], list[RunResult]]


@dataclass(frozen=True)
class SweepProgram:
    """One group's program: how to run a chunk of its configurations, and the device bytes one needs."""

    run: LanesJob
    lane_bytes: int


@dataclass(frozen=True)
class Sweeping:
    """How an experiment runs as a sweep: configurations that differ only in `array_keys` are one program.

    prepare(cfg, cache) -> SweepProgram   validate a group (cfg is its first configuration) and build
                                          its program; raise ConfigError for what a sweep cannot do.
                                          `cache` is shared by the groups of one sweep (loaded data).
    units(cfg) -> int                     progress units of one configuration (its epochs, or 1).
    array_keys                            settings that are arrays in the compiled program (traced);
                                          "optimizer_settings": the optimizer's own real-valued ones.
    presence_keys                         array settings whose zero-ness is a static branch: zero and
                                          non-zero values are different programs.
    """

    prepare: Callable[[RunConfig, dict], SweepProgram]
    units: Callable[[RunConfig], int] = lambda cfg: 1
    array_keys: tuple[str, ...] = ("seed",)
    presence_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class AnalyzeOptions:
    """`optlab analyze`'s options, as given (None: the experiment's default)."""

    k: int | None = None
    subset: int = 1000
    probes: int = 10
    seed: int = 0
    data_dir: str | None = None
    max_order: int | None = None  # Lanczos steps at most (None: optlab.curvature.lanczos.DEFAULT_MAX_ORDER)
    curvature: str = "hessian"  # which matrix this call reports: "hessian", or "ggn" (Gauss–Newton)

    def k_for(self, n: int) -> int:
        """Eigenvalues at each end for a Hessian of n parameters: --k (at most n), by default 20."""
        if self.k is not None and self.k > n:
            raise ConfigError(f"--k {self.k:,} is more than the {n:,} parameters of this run "
                              "(a Hessian has n eigenvalues)")
        return min(self.k or 20, n)


def default_summary_line(record: dict) -> str:
    """`EXPERIMENT OPTIMIZER η=LR SCHEDULE: STATUS, loss L`: for experiments that give no line of their own."""
    summary, cfg = record["summary"], record["config"]
    head = training_head(record) if "optimizer" in cfg else str(record["experiment"])
    loss = summary.get("final_loss")
    return f"{head}: {record['status']}" + (f", loss {loss:.6g}" if isinstance(loss, (int, float)) else "")


def training_head(record: dict) -> str:
    """`tiny gd η=0.25 constant`: the start of a training run's summary line."""
    cfg = record["config"]
    return f"{record['experiment']} {cfg['optimizer']} η={cfg['lr']:g} {cfg['lr_schedule']}"


Analyze = Callable[[dict, "Mapping[str, Any]", AnalyzeOptions], dict]
Overlays = Callable[[Sequence[tuple[str, dict]], Path], list[tuple[Path, str]]]


@dataclass(frozen=True)
class Experiment:
    prepare: Callable[[RunConfig], Job]
    fields: tuple[str, ...]  # its own settings, besides config.BASE_FIELDS (and TRAINING_FIELDS if it trains)
    defaults: Mapping[str, Any] = field(default_factory=dict)
    default_lrs: Mapping[str, float] = field(default_factory=dict)  # per optimizer, overriding its own
    check: Callable[[dict], None] = lambda settings: None  # cross-field checks on the merged settings
    parsers: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict)  # per-field parsers overriding config's
    resumable: bool = False  # saves checkpoints and can continue with `optlab run --resume`
    trains: bool = True  # has an optimizer and a learning rate (config.TRAINING_FIELDS apply)
    sweep: Sweeping | None = None
    metrics: tuple[str, ...] = ("final_loss",)
    analyze: Analyze | None = None
    summary_line: Callable[[dict], str] = default_summary_line
    overlays: Overlays | None = None


EXPERIMENTS: Registry[Experiment] = Registry("experiment")


def experiment(name: str, help: str | None = None, **hooks: Any) -> Callable:
    """Register an experiment (`optlab.experiment`): decorate its `prepare(cfg) -> job` with the other
    hooks as keywords (fields=..., defaults=..., sweep=..., ...: see Experiment), or an Experiment itself.

        @optlab.experiment("bowl", help="a quadratic bowl", fields=("steps", "start"))
        def prepare(cfg):
            return lambda ctx: optlab.RunResult(...)

    Settings it names that are not optlab's, or a `prepare` that does not take one argument, are refused
    with a ConfigError when its file loads.
    """
    from optlab import config

    def decorate(value):
        spec = value if isinstance(value, Experiment) else Experiment(prepare=value, **hooks)
        unknown = [k for k in (*spec.fields, *spec.defaults) if k not in config.FIELDS]
        if unknown:
            raise ConfigError(f"experiment {name!r}: {unknown[0]!r} is not one of optlab's settings "
                              "(its fields and defaults name RunConfig fields: optlab run --help)")
        try:
            inspect.signature(spec.prepare).bind(None)
        except (TypeError, ValueError):
            raise ConfigError(f"experiment {name!r}: its prepare must take one argument, the RunConfig") from None
        line = help if help is not None else (inspect.getdoc(spec.prepare) or name).splitlines()[0]
        EXPERIMENTS.register(name, line, spec)
        return value

    return decorate
