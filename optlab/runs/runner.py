"""Run one experiment: resolve, prepare, create the run folder, train, write results.

The run folder is created only after the experiment has validated its input and loaded
its data, so bad input never leaves a folder behind. From then on metrics.json always
exists and is valid: status "running" (rewritten after every epoch), then "completed",
"diverged", "interrupted" or "failed".
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from optlab import config, interrupts, plugins, results
from optlab.config import RunConfig
from optlab.core import checkpoint, compile_cache
from optlab.errors import DataError, Interrupted, ResultsError
from optlab.experiments import EXPERIMENTS, Progress, RunContext
from optlab.runs import progress, resolve
from optlab.runs.record import RunRecord


@dataclass
class RunOutcome:
    run_dir: Path
    status: str
    record: dict
    notes: list[str] = field(default_factory=list)


def run(cfg: RunConfig, quiet: bool = False, overwrite: bool = False, bar: Progress | None = None) -> RunOutcome:
    """Run `cfg` into a new folder (OUT/RUN_ID, or exactly --run-dir)."""
    experiment = EXPERIMENTS[cfg.experiment]
    compile_cache.enable()
    job = experiment.prepare(cfg)
    name = f"{cfg.experiment}-{cfg.optimizer}" if experiment.trains else cfg.experiment
    run_id = Path(cfg.run_dir).name if cfg.run_dir else results.new_run_id(name)
    # A signal while the folder and its first record are made is noted, not raised half-way (which could
    # leave a folder without metrics.json); _execute's first safe point then records the run interrupted.
    with interrupts.deferred():
        run_dir = results.create_run_dir(Path(cfg.run_dir) if cfg.run_dir else Path(cfg.out) / run_id, overwrite)
        record = RunRecord.create(run_dir, cfg, run_id)
    return _execute(job, record, bar or progress.for_terminal(quiet), resume=False)


def resume(run_dir: Path, quiet: bool = False, bar: Progress | None = None, data_dir: str | None = None) -> RunOutcome:
    """Continue an interrupted or killed run from its last checkpoint, in its own folder.

    The settings come from the run's metrics.json, so the result is the one the uninterrupted
    run would have given. Where the data are is not a setting of the run: `data_dir`
    (--data-dir) says where they are now; without it the recorded folder is used while it is
    there, else the usual lookup ($OPTLAB_DATA, the cache, …). Everything that can refuse (the
    settings, the data, the checkpoint against the record) does so before metrics.json is
    rewritten as running, so a refused resume leaves the folder as it was.
    """
    run_dir = Path(run_dir)
    compile_cache.enable()
    results.claim_run_dir(run_dir)  # a second resume of this folder fails here, naming it
    try:
        job, record = _resumable(run_dir, data_dir)
    except BaseException:
        results.release_run_dir(run_dir)  # a refused resume leaves the folder as it was, lock file and all
        raise
    return _execute(job, RunRecord(run_dir, record).write(), bar or progress.for_terminal(quiet), resume=True)


def _resumable(run_dir: Path, data_dir: str | None) -> tuple:
    """(the prepared job, its record marked running), or the error that refuses this resume."""
    record = results.read_metrics(run_dir)
    if record["status"] == "completed":
        raise ResultsError(f"{run_dir}: the run has completed; there is nothing to resume")
    plugins.check_recorded(record["environment"].get("plugins", []), run_dir)  # the same code, or one line
    settings = {k: v for k, v in record["config"].items() if v is not None}  # None: the default
    cfg, gone = _relocated(settings, run_dir, data_dir)
    experiment = EXPERIMENTS[cfg.experiment]
    if not experiment.resumable:
        raise ResultsError(f"{run_dir}: a {cfg.experiment} run is one compiled program with no checkpoints; "
                           "run it again")
    job = _prepare_resumed(experiment, cfg, run_dir, gone)
    _check_checkpoint(job, run_dir, record)
    if "data_dir" in record["config"]:
        record["config"]["data_dir"] = cfg.data_dir  # where the data are now: given, recorded, or the usual lookup
    record.pop("error", None)
    record.update(status="running", environment=results.environment())
    return job, record


@interrupts.deferring  # signals stop the run at its safe points (optlab.interrupts)
def _execute(job, record: RunRecord, bar: Progress, resume: bool) -> RunOutcome:
    """Run the job, keeping metrics.json valid and truthful whatever happens."""
    run_dir = record.run_dir

    def save_progress(history: dict, summary: dict, analysis: dict | None = None) -> None:
        interrupts.check()  # safe point: a signal during an epoch keeps the record of the one before
        record.save_progress(history, summary, analysis)

    def save_checkpoint(epoch: int, state, extras: dict) -> None:
        checkpoint.save(run_dir, epoch, state, extras)
        interrupts.check()  # safe point: the record and the checkpoint hold the same epochs

    previous = record.record if resume else None
    received: list[int] = []  # bound even if the signal comes before the `with`
    try:
        with _sigterm_as_keyboard_interrupt() as received:
            interrupts.check()  # a signal that came while the folder was made
            outcome = job(RunContext(run_dir, bar, save_progress, save_checkpoint, previous))
            interrupts.check()  # the signal JAX swallowed; and the final writes stay inside the try
            record.finish(outcome)
    except KeyboardInterrupt as e:
        sigterm = received or interrupts.received() == signal.SIGTERM
        name, code = ("SIGTERM", 143) if sigterm else ("interrupted (Ctrl-C)", 130)
        record.stop(e, exit_code=code)
        raise Interrupted(f"{name}: the run stopped; what it finished is in {run_dir} "
                          f"(continue with: optlab run --resume {run_dir})", code) from None
    except BaseException as e:
        record.stop(e)  # if even this write fails, one error says both
        raise
    finally:
        results.release_run_dir(run_dir)  # end this process's claim on the folder
    return RunOutcome(run_dir, outcome.status, record.record, outcome.notes)


@contextmanager
def _sigterm_as_keyboard_interrupt() -> Iterator[list]:
    """Let SIGTERM (a scheduler or `kill`) stop a run the way Ctrl-C does, so both are recorded.

    Python runs the handler between bytecodes, so the compiled epoch in flight finishes first.
    Yields a list that is non-empty once SIGTERM arrived.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread() or interrupts.installed():
        yield received  # signal handlers can only be set from the main thread; optlab.interrupts' stay
        return

    def handler(signum, frame):
        received.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_file(path: Path, results_root: Path, quiet: bool = True) -> RunOutcome:
    """Run one experiment file into a new folder under `results_root`."""
    layers = [config.read_toml(path), config.Layer({"out": str(results_root)}, "flag")]
    return run(resolve.resolve(layers), quiet=quiet)


def _relocated(settings: dict, run_dir: Path, data_dir: str | None) -> tuple[RunConfig, str | None]:
    """The resumed run's settings with its data folder where the data are now, and the recorded folder
    if it is gone (then the usual lookup applies, not an error about a --data-dir nobody typed)."""
    recorded = settings.get("data_dir")
    gone = recorded if data_dir is None and recorded and not Path(recorded).expanduser().is_dir() else None
    layers = [config.Layer({k: v for k, v in settings.items() if k != "data_dir" or not gone},
                           f"metrics.json of {run_dir}")]
    if data_dir is not None:
        layers.append(config.Layer({"data_dir": data_dir}, "flag"))
    return resolve.resolve(layers), gone


def _prepare_resumed(experiment, cfg: RunConfig, run_dir: Path, gone: str | None):
    """`experiment.prepare(cfg)`; data found nowhere first says that the run's own folder is gone."""
    try:
        return experiment.prepare(cfg)
    except DataError as e:
        if gone is None:
            raise
        raise DataError(f"this run's data folder {gone} no longer exists (give the files' new place with "
                        f"--resume {run_dir} --data-dir DIR), and looking elsewhere: {e}") from None


def _check_checkpoint(job, run_dir: Path, record: dict) -> None:
    """The checkpoint, read and checked against the record by the experiment's job (its `check_resume`, if it
    has one), before anything is written: a damaged file is one line and the folder stays as it was."""
    saved = checkpoint.read(run_dir)
    check = getattr(job, "check_resume", None)
    if check is not None:
        check(saved, record)
