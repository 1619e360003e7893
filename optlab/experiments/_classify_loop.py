"""The classifier's host epoch loop, one for a single run and a sweep's chunk alike (private to classify).

`EpochLoop` runs a `Program` of n configurations (n = 1: a single run) epoch by epoch: it times,
evaluates, records each configuration's row in its `Log` (stopping a configuration at divergence),
measures `--analyze` epochs (`Curvature`), reports progress, saves progress and, for a single run,
checkpoints (`Checkpoints`). What the programs are is optlab.experiments._classify_train's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from optlab import plots, results
from optlab.core import checkpoint, devices
from optlab.curvature import analysis
from optlab.experiments.contract import RunContext
from optlab.problems import mlp

CHECKPOINT_SECONDS = 5.0  # default checkpoint interval: at most this much training is lost to a kill
SNAPSHOT_EPOCHS = (1, 2, 3, 4, 5, 10)  # and the last: the lecture's first-layer weight figures
HISTORY_KEYS = ("epoch", "train_loss", "train_error", "test_loss", "test_error", "minibatch_loss", "lr", "epoch_time_s")


@dataclass
class Log:
    """One configuration's epochs: the history, weight snapshots, summary and status.

    A single run keeps one; a sweep keeps one per configuration, and stops writing to it
    once that configuration has diverged while the others go on.
    """

    cfg: object
    history: dict = field(default_factory=lambda: {k: [] for k in HISTORY_KEYS})
    snapshots: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    status: str = "completed"

    @property
    def live(self) -> bool:
        return self.status == "completed"

    def record(self, row: tuple, first_layer, compile_time: float, train_time: float) -> None:
        """Add one epoch's row (HISTORY_KEYS order); `first_layer` is a callable giving W1 when a snapshot is due."""
        for key, value in zip(HISTORY_KEYS, row):
            self.history[key].append(_shortest(value))
        e = int(row[0])
        if not np.isfinite(self.history["minibatch_loss"][-1]) or not np.isfinite(self.history["train_loss"][-1]):
            self.status = "diverged"
            self.summary["diverged_at_epoch"] = e
            return
        if e in SNAPSHOT_EPOCHS or e == self.cfg.epochs:
            self.snapshots[e] = np.asarray(first_layer())
        self.summary = self.summary | _summary(self.history, self.cfg, compile_time, train_time, self.summary)


@dataclass
class Program:
    """n configurations' compiled epoch and evaluation, as the host loop sees them.

    epoch(state) -> (state, minibatch_loss, lr, train metrics, test metrics): one device call, the
    metrics those of the new parameters;  evaluate(params) -> (train metrics, test metrics), for a
    run with no epoch left to train
    rows(arrays) -> host arrays with a leading axis of n;  params(state) -> the parameters, fetched
    when needed (a single run keeps them on the device);  lane(params or host tree, i) -> configuration i's
    """

    n: int
    epoch: Callable[[Any], tuple]
    evaluate: Callable[[Any], tuple[dict, dict]]
    rows: Callable[[Any], Any]
    params: Callable[[Any], Any]
    lane: Callable[[Any, int], Any]


class Checkpoints:
    """When to save the training state, and how to pick a run up again from the last save.

    Every `--checkpoint-every` epochs, or by default whenever CHECKPOINT_SECONDS have passed
    since the last save: every epoch for slow epochs, every few for fast ones. metrics.json is
    always written before the checkpoint, so it never lags behind it.
    """

    def __init__(self, cfg, ctx: RunContext) -> None:
        self.cfg, self.ctx, self.last = cfg, ctx, time.perf_counter()

    def maybe_save(self, epoch: int, state, log: Log, train_time: float) -> None:
        every = self.cfg.checkpoint_every
        due = epoch % every == 0 if every else time.perf_counter() - self.last >= CHECKPOINT_SECONDS
        if due and epoch < self.cfg.epochs:  # a finished run saves params.npz instead
            extras = {f"snapshot/{k}": v for k, v in log.snapshots.items()} | {"train_time": np.asarray(train_time)}
            self.ctx.save_checkpoint(epoch, state, extras)
            self.last = time.perf_counter()

    def restore(self, log: Log, curvature: Curvature, template) -> tuple[int, object, float]:
        """(first epoch to run, state, training seconds so far) from the checkpoint; fills `log`.

        optlab run --resume has checked the file already (`check_resume`), before rewriting the
        record; it is checked again here as it is read for good.
        """
        saved, previous = checkpoint.read(self.ctx.run_dir), self.ctx.resume_from
        check_resume(saved, previous, self.cfg, template)
        epoch, state = saved.epoch, checkpoint.restore(saved, template)
        log.history = {k: list(previous["history"].get(k, []))[:epoch] for k in HISTORY_KEYS}
        log.snapshots = {int(k.removeprefix("snapshot/")): v for k, v in saved.extras.items()
                         if k.startswith("snapshot/")}
        log.summary = previous["summary"]
        curvature.rows = [r for r in previous["analysis"].get("hessian_over_training", []) if r["epoch"] <= epoch]
        return epoch + 1, state, float(saved.extras["train_time"])


def check_resume(saved: checkpoint.Checkpoint, record: dict, cfg, template) -> None:
    """Whether the run of `record` can continue from `saved`, as `Checkpoints.restore` reads it: its epoch
    one metrics.json holds, every leaf shaped like `template` (a state, or its jax.eval_shape), and the
    extras `maybe_save` writes (the training seconds, W1 snapshots of epochs up to the checkpoint's)."""
    checkpoint.check_epoch(saved, record["history"].get("epoch", []), cfg.epochs)
    checkpoint.check_layout(saved, template)
    train_time = saved.extras.get("train_time")
    if train_time is None:
        raise saved.damaged("no 'extra/train_time'")
    if train_time.shape != () or not np.isfinite(train_time) or train_time < 0:
        shown = train_time.tolist() if train_time.shape == () else f"of shape {train_time.shape}"
        raise saved.damaged(f"'extra/train_time' is {train_time.dtype} {shown}, not seconds")
    w1 = template.params[0]["w"]
    for name, value in saved.extras.items():
        epoch = name.removeprefix("snapshot/")
        if name.startswith("snapshot/") and not (epoch.isdigit() and 1 <= int(epoch) <= saved.epoch
                                                 and value.shape == w1.shape):
            raise saved.damaged(f"'extra/{name}' of shape {value.shape} is not a W1 snapshot of epochs "
                                f"1..{saved.epoch} (shape {w1.shape})")


class Curvature:
    """`--analyze EPOCHS`: the Hessian's spectrum after chosen epochs, on a fixed data subset.

    λmax against the step size shows the "edge of stability": gradient descent on a quadratic
    is stable only while η < 2/λmax.
    """

    SUBSET = 1000

    def __init__(self, cfg, images, labels) -> None:
        self.epochs, self.rows = set(cfg.analyze or ()), []
        self.loss = partial(mlp.loss, weight_decay=cfg.weight_decay)  # clean: no noise, no dropout
        n = min(self.SUBSET, len(labels))
        self.batch = (images[:n], labels[:n])
        self.description = f"the first {n:,} {cfg.experiment} training images, clean loss"

    def measure(self, epoch: int, params: Callable[[], Any], lr: float) -> None:
        """After `epoch`, if it is one of --analyze's: `params()` gives the parameters (fetched only then)."""
        if epoch in self.epochs:
            spectrum = analysis.analyze_params(self.loss, params(), self.batch, self.description)
            self.rows.append({"epoch": epoch, "lr": lr, **spectrum})

    def analysis(self) -> dict:
        return {"hessian_over_training": self.rows} if self.epochs else {}

    def figure(self, run_dir) -> dict[str, dict]:
        if not self.rows or run_dir is None:
            return {}
        epochs = [r["epoch"] for r in self.rows]
        plots.edge_of_stability(run_dir / "edge_of_stability.png", epochs,
                                [r["lambda_max"] for r in self.rows], [r["lr"] for r in self.rows],
                                title="curvature over training")
        return {"edge_of_stability": results.figure_entry(
            "edge_of_stability.png", f"the Hessian's largest eigenvalue λmax against 2/η after {epochs_text(epochs)}, "
            f"on {self.description}", epochs=epochs, measured_on=self.description)}


@dataclass
class EpochLoop:
    """The one host loop over epochs, for a single run (n = 1) and a sweep's chunk alike.

    Per epoch: run the compiled epoch (which evaluates too), record every live configuration's row
    (a configuration whose loss turns non-finite stops there, keeping that epoch's parameters and
    test activity, as a single run stops), measure --analyze epochs, report progress, save each
    recorded configuration's progress, checkpoint (single runs), and stop once none is live.

    report(epoch, units done this epoch, epoch seconds)   progress
    save(i, log, curvature)                                metrics.json of configuration i so far
    """

    program: Program
    logs: list[Log]
    curvatures: list[Curvature]
    compile_time: float
    report: Callable[[int, int, float], None]
    save: Callable[[int, Log, Curvature], None]
    saver: Checkpoints | None = None

    def run(self, state, first: int = 1, train_time: float = 0.0) -> list[tuple[Any, Any]]:
        """Train from epoch `first`; each configuration's (final host params, host test activity)."""
        kept: list = [None] * self.program.n
        epochs, test = self.logs[0].cfg.epochs, None
        for e in range(first, epochs + 1):
            t0 = time.perf_counter()
            state, minibatch_loss, lr, train, test = self.program.epoch(state)
            rows = self.program.rows((train["loss"], train["error"], test["loss"], test["error"], minibatch_loss, lr))
            epoch_time = time.perf_counter() - t0  # training and evaluation: one call, its numbers on the host
            train_time += time.perf_counter() - t0
            params = _lazy(lambda state=state: self.program.params(state))
            done = self._record(e, rows, epoch_time, train_time, params, kept, test)
            self._measure(e, params)
            self.report(e, done, epoch_time)
            for i in self._recorded(e):
                self.save(i, self.logs[i], self.curvatures[i])
            if self.saver and self.logs[0].live:
                self.saver.maybe_save(e, state, self.logs[0], train_time)
            if not any(log.live for log in self.logs):
                break
        if test is None:  # nothing left to train (a resumed run at its end)
            test = self.program.evaluate(state.params)[1]
        host, active = self.program.params(state), devices.to_host(test["active"])
        return [k or (self.program.lane(host, i), self.program.lane(active, i)) for i, k in enumerate(kept)]

    def _record(self, e: int, rows, epoch_time: float, train_time: float, params, kept: list, test) -> int:
        """Add epoch e's row to every live log; the progress units this epoch completes."""
        done = 0
        for i, log in enumerate(self.logs):
            if not log.live:
                continue
            log.record((e, *(r[i] for r in rows), epoch_time), lambda i=i: self.program.lane(params(), i)[0]["w"],
                       self.compile_time, train_time)
            done += 1 if log.live else log.cfg.epochs - e + 1
            if not log.live:  # keep what a single run would end with: these params, this test activity
                kept[i] = (self.program.lane(params(), i), self.program.lane(devices.to_host(test["active"]), i))
        return done

    def _measure(self, e: int, params: Callable[[], Any]) -> None:
        """--analyze: each live configuration's curvature after epoch e (if it is one of its epochs)."""
        for i in self._recorded(e):
            if self.logs[i].live:
                lr = self.logs[i].history["lr"][-1]
                self.curvatures[i].measure(e, lambda i=i: self.program.lane(params(), i), lr)

    def _recorded(self, e: int) -> list[int]:
        return [i for i, log in enumerate(self.logs) if log.history["epoch"] and log.history["epoch"][-1] == e]


def epochs_text(epochs) -> str:
    """"epoch 3" or "epochs 1, 2, 3": which epochs a figure holds, for its caption."""
    return f"epoch{'s' * (len(epochs) != 1)} {', '.join(map(str, epochs))}"


def _shortest(value) -> float:
    """A float32 number as the shortest decimal that reads back to it: 0.0113, not 0.011299999430775642."""
    value = np.asarray(value)
    return float(str(value)) if value.dtype == np.float32 else float(value)


def _lazy(compute):
    """`compute()` on the first call only (a transfer that most epochs never need)."""
    cache = []

    def get():
        if not cache:
            cache.append(compute())
        return cache[0]

    return get


def _summary(history: dict, cfg, compile_time: float, train_time: float, previous: dict) -> dict:
    test_error = history["test_error"]
    target = previous.get("time_to_target_s")
    if target is None and test_error[-1] <= cfg.target_error:
        target = train_time
    return {
        "final_loss": history["train_loss"][-1],
        "epochs": len(history["epoch"]),
        "test_error": test_error[-1],
        "best_test_error": min(test_error),
        "best_epoch": int(np.argmin(test_error)) + 1,
        "time_to_target_s": target,
        "target_error": cfg.target_error,
        "wall_time_s": compile_time + train_time,
        "compile_time_s": compile_time,
        "epoch_time_s": float(np.median(history["epoch_time_s"])),
    }


