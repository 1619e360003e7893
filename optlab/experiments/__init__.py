"""The experiment registry. An experiment turns a RunConfig into a job in two phases:

    prepare(cfg) -> job        validate, load data, build the problem; may raise an
                               OptlabError; nothing has been written yet
    job(ctx) -> RunResult      train and analyse, writing figures into ctx.run_dir

so that bad input never leaves a run folder behind.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from optlab.registry import Registry

if TYPE_CHECKING:
    from optlab.config import RunConfig


class Progress(Protocol):
    def start(self, total: int, description: str) -> None: ...
    def advance(self, completed: int, metrics: Mapping[str, float]) -> None: ...
    def stop(self) -> None: ...


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
    figures: dict[str, str]
    params: Any
    notes: list[str] = field(default_factory=list)  # things the user should be told


Job = Callable[[RunContext], RunResult]


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


EXPERIMENTS: Registry[Experiment] = Registry("experiment")

from optlab.experiments import classify, signals, tiny  # noqa: E402,F401  (they register themselves)
