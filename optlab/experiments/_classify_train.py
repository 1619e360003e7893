"""Training the image classifier (optlab.experiments.classify): its compiled programs and the one host epoch loop.

Private to classify, imported only when there is training to do (it imports JAX). A single run
and a sweep's chunk are the same loop (`EpochLoop`) over a `Program` of n configurations: the
single run's program is the un-vmapped epoch with its state buffers donated (n = 1, optionally
data parallel), a sweep's is the vmapped one over the lane axis. The loop times, evaluates,
records (`Log`), stops a configuration at divergence, measures `--analyze` epochs (`Curvature`),
saves progress and checkpoints (`Checkpoints`, single runs only), then `finish` draws the figures.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from optlab import plots
from optlab.core import devices, optimizers, schedules
from optlab.core.engine import TrainState, epoch_fn, init_state
from optlab.curvature import analysis
from optlab.errors import ResultsError
from optlab.experiments import RunContext, RunResult
from optlab.problems import mlp
from optlab.runs import checkpoint

CHECKPOINT_SECONDS = 5.0  # default checkpoint interval: at most this much training is lost to a kill
SNAPSHOT_EPOCHS = (1, 2, 3, 4, 5, 10)  # and the last: the lecture's first-layer weight figures
HISTORY_KEYS = ("epoch", "train_loss", "train_error", "test_loss", "test_error", "minibatch_loss", "lr", "epoch_time_s")


@dataclass
class Data:
    train_images: jax.Array  # uint8 on the device
    train_labels: jax.Array
    test_images: jax.Array
    test_labels: jax.Array


def make_tx_for(cfg, total_steps: int):
    def make_tx(hp, key):
        schedule = schedules.build(cfg.lr_schedule, hp["lr"], total_steps, cfg)
        noise = hp["grad_noise"] if cfg.grad_noise > 0 else None
        return optimizers.build(cfg.optimizer, schedule, hp, noise, key)

    return make_tx


def hyperparams(cfg) -> dict:
    """The run's array-valued settings: float32 hyperparameters and the uint32 seed."""
    hp = optimizers.hyperparams(cfg, jnp.float32)
    hp |= {k: jnp.asarray(getattr(cfg, k), jnp.float32) for k in ("input_noise", "weight_decay", "init_scale")}
    return hp | {"seed": jnp.asarray(cfg.seed, jnp.uint32)}


def loss_for(cfg, hp: dict):
    """The training loss `loss(params, batch, key)`: mlp.loss with σ (input noise) and λ (weight
    decay) read from `hp`, so that they may be traced. Whether each term is in the program at
    all is static, decided by `cfg` (a sweep groups zero and non-zero values apart).
    """
    return partial(mlp.loss, dropout=cfg.dropout,
                   input_noise=hp["input_noise"] if cfg.input_noise > 0 else 0.0,
                   weight_decay=hp["weight_decay"] if cfg.weight_decay > 0 else 0.0)


def total_steps(cfg, n_train: int) -> int:
    return cfg.epochs * (n_train // cfg.batch_size)


def initial_state(cfg, sizes, n_train: int, hp: dict) -> TrainState:
    """Parameters from the seed in `hp` and the init scaled by hp["init_scale"], and the optimizer state."""
    init_key, train_key = jax.random.split(jax.random.key(hp["seed"]))
    # Compiled, as it is inside a sweep's program: eager and compiled sampling differ in the last bit.
    params = jax.jit(mlp.init, static_argnums=(1, 2))(init_key, tuple(sizes), cfg.init, hp["init_scale"])
    return init_state(make_tx_for(cfg, total_steps(cfg, n_train)), params, hp, train_key)


def train_epoch(cfg, n_train: int, batch_sharding=None):
    """`epoch(state, hp, images, labels)`: engine.epoch_fn with the loss built from `hp`; jit or vmap it.

    `batch_sharding` splits each minibatch over devices (data parallel; see devices.DataParallel).
    """
    make_tx = make_tx_for(cfg, total_steps(cfg, n_train))

    def epoch(state, hp, images, labels):
        return epoch_fn(loss_for(cfg, hp), make_tx, n_train, cfg.batch_size, batch_sharding)(state, hp, images, labels)

    return epoch


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

    epoch(state) -> (state, minibatch_loss, lr);  evaluate(params) -> (train metrics, test metrics)
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
        """(first epoch to run, state, training seconds so far) from the checkpoint; fills `log`."""
        epoch, state, extras = checkpoint.load(self.ctx.run_dir, template)
        previous = self.ctx.resume_from
        log.history = {k: list(previous["history"].get(k, []))[:epoch] for k in HISTORY_KEYS}
        if len(log.history["epoch"]) != epoch:
            raise ResultsError(f"{self.ctx.run_dir}: metrics.json holds fewer epochs than its checkpoint ({epoch})")
        log.snapshots = {int(k.removeprefix("snapshot/")): v for k, v in extras.items() if k.startswith("snapshot/")}
        log.summary = previous["summary"]
        curvature.rows = [r for r in previous["analysis"].get("hessian_over_training", []) if r["epoch"] <= epoch]
        return epoch + 1, state, float(extras["train_time"])


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

    def figure(self, run_dir) -> dict[str, str]:
        if not self.rows or run_dir is None:
            return {}
        plots.edge_of_stability(run_dir / "edge_of_stability.png", [r["epoch"] for r in self.rows],
                                [r["lambda_max"] for r in self.rows], [r["lr"] for r in self.rows],
                                title="curvature over training")
        return {"edge_of_stability": "edge_of_stability.png"}


@dataclass
class EpochLoop:
    """The one host loop over epochs, for a single run (n = 1) and a sweep's chunk alike.

    Per epoch: run the compiled epoch and the evaluations, record every live configuration's row
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
            state, minibatch_loss, lr = jax.block_until_ready(self.program.epoch(state))
            epoch_time = time.perf_counter() - t0
            train, test = self.program.evaluate(state.params)
            rows = self.program.rows((train["loss"], train["error"], test["loss"], test["error"], minibatch_loss, lr))
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


def run_one(cfg, dataset, n_train: int, sizes, ctx: RunContext) -> RunResult:
    """A single run: the un-vmapped epoch, its state buffers donated, optionally data parallel; resumable."""
    # Data parallel: everything replicated over the devices but each minibatch, split along its batch axis.
    split = devices.DataParallel.over() if cfg.data_parallel else None
    place = split.replicate if split else jax.device_put
    data = Data(*place((
        dataset.train_images[:n_train], dataset.train_labels[:n_train], dataset.test_images, dataset.test_labels)))
    hp = hyperparams(cfg)
    hp, state = place((hp, initial_state(cfg, sizes, n_train, hp)))

    begin = time.perf_counter()
    epoch = jax.jit(train_epoch(cfg, n_train, split and split.batch), donate_argnums=0,
                    **({"out_shardings": split.replicated} if split else {}))
    epoch = epoch.lower(state, hp, data.train_images, data.train_labels).compile()
    evaluate = jax.jit(mlp.evaluate).lower(state.params, data.test_images, data.test_labels).compile()
    evaluate_train = jax.jit(mlp.evaluate).lower(state.params, data.train_images, data.train_labels).compile()
    compile_time = time.perf_counter() - begin

    program = Program(
        1, lambda state: epoch(state, hp, data.train_images, data.train_labels),
        lambda p: (evaluate_train(p, data.train_images, data.train_labels),
                   evaluate(p, data.test_images, data.test_labels)),
        lambda arrays: [np.asarray(a)[None] for a in arrays], lambda state: state.params, lambda tree, i: tree)
    log, saver, curvature = Log(cfg), Checkpoints(cfg, ctx), Curvature(cfg, data.train_images, data.train_labels)
    first, state, train_time = saver.restore(log, curvature, state) if ctx.resume_from else (1, state, 0.0)
    state = place(state)  # a restored state comes back on the default device
    if split:
        log.summary["data_parallel_devices"] = split.size

    def report(e: int, done: int, epoch_time: float) -> None:
        if log.live:
            ctx.progress.advance(e, {"loss": log.history["train_loss"][-1], "test_error": log.history["test_error"][-1],
                                     "lr": log.history["lr"][-1], "samples_per_s": n_train / epoch_time})

    def save(i: int, log: Log, curvature: Curvature) -> None:
        ctx.save_progress(log.history, log.summary, curvature.analysis())

    ctx.progress.start(cfg.epochs, f"{cfg.experiment} {cfg.optimizer} epoch")
    loop = EpochLoop(program, [log], [curvature], compile_time, report, save, saver)
    [(params, active)] = loop.run(state, first, train_time)
    ctx.progress.stop()
    return finish(ctx.run_dir, log, curvature, params, active, len(dataset.test_images))


def run_lanes(cfgs, dataset, n_train: int, sizes, lanes, run_dirs, progress, save_progress=None) -> list[RunResult]:
    """Train configurations that differ only in array-valued settings (classify.SWEEPING) as one vmapped program.

    The same pure pieces as a single run (initial_state, train_epoch, mlp.evaluate) and the same
    EpochLoop, vmapped over the configuration axis sharded over `lanes`. A lane whose loss turns
    non-finite keeps computing NaN (lanes never mix, so it harms no other), but its Log stops and
    its parameters are kept as they were at that epoch, as a single run would have stopped there.
    """
    cfg = cfgs[0]  # the group shares every setting that shapes the program
    images, labels, test_images, test_labels = lanes.replicate(
        (dataset.train_images[:n_train], dataset.train_labels[:n_train], dataset.test_images, dataset.test_labels))
    hp = lanes.stack([devices.to_host(hyperparams(c)) for c in cfgs])
    begin = time.perf_counter()
    # Every output keeps the lane axis sharded, so that each epoch's state matches the compiled input.
    state = jax.jit(jax.vmap(partial(initial_state, cfg, sizes, n_train)), out_shardings=lanes.sharded)(hp)
    # No donation: a constant schedule keeps hp["lr"] itself in the optimizer state.
    epoch = jax.jit(jax.vmap(train_epoch(cfg, n_train), in_axes=(0, 0, None, None)),
                    out_shardings=lanes.sharded).lower(state, hp, images, labels).compile()
    evaluate = jax.jit(jax.vmap(mlp.evaluate, in_axes=(0, None, None)), out_shardings=lanes.sharded)
    evaluate_train = evaluate.lower(state.params, images, labels).compile()
    evaluate_test = evaluate.lower(state.params, test_images, test_labels).compile()
    compile_time = time.perf_counter() - begin

    program = Program(len(cfgs), lambda state: epoch(state, hp, images, labels),
                      lambda p: (evaluate_train(p, images, labels), evaluate_test(p, test_images, test_labels)),
                      devices.to_host, lambda state: devices.to_host(state.params), devices.lane)
    logs = [Log(c) for c in cfgs]
    curvatures = [Curvature(c, images, labels) for c in cfgs]

    def save(i: int, log: Log, curvature: Curvature) -> None:
        if save_progress:
            save_progress(i, log.history, log.summary, curvature.analysis())  # each configuration's, every epoch

    loop = EpochLoop(program, logs, curvatures, compile_time,
                     lambda e, done, epoch_time: progress.advance(done, [log.summary for log in logs]), save)
    kept = loop.run(state)
    n_test = len(dataset.test_images)
    return [finish(d, log, c, p, a, n_test) for d, log, c, (p, a) in zip(run_dirs, logs, curvatures, kept)]


def finish(run_dir, log: Log, curvature: Curvature, params, active, n_test: int) -> RunResult:
    """The analysis (dead units from the test-set activity `active`, --analyze's curvature) and the figures."""
    active = [np.asarray(a) for a in active]
    cfg = log.cfg
    report = {
        "dead_units": [int(np.sum(a == 0)) for a in active],
        "active_fraction": [float(a.mean()) for a in active],
        "activity_measured_on": f"{cfg.experiment} test set ({n_test:,} images)",
    } | curvature.analysis()
    figures = _figures(run_dir, cfg, log.history, log.snapshots, active, report["dead_units"]) if run_dir else {}
    return RunResult(log.status, log.history, log.summary, report, figures | curvature.figure(run_dir), params)


def lane_bytes(cfg, n_train: int, n_test: int, sizes) -> int:
    """A rough upper bound on the device memory one configuration of a sweep needs (float32):
    parameters with optimizer state and gradients, a minibatch's activations, and the
    activations of evaluating the larger of the training and test sets at once."""
    width = sum(sizes[1:])
    return 4 * (6 * mlp.param_count(sizes) + 4 * cfg.batch_size * width + 2 * max(n_train, n_test) * width)


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


def _figures(run_dir, cfg, history, snapshots, active, dead) -> dict[str, str]:
    figures = {"learning_curves": "learning_curves.png", "sparsity": "sparsity.png"}
    title = f"{cfg.experiment} {'-'.join(map(str, cfg.hidden))} {cfg.optimizer} η={cfg.lr:g} {cfg.lr_schedule}"
    if history["epoch"]:
        plots.learning_curves(run_dir / figures["learning_curves"], history, title=title)
    else:
        figures.pop("learning_curves")
    if snapshots:
        side = int(round(np.sqrt(snapshots[min(snapshots)].shape[1])))
        plots.weight_tiles(run_dir / "weights.png", snapshots, image_shape=(side, side),
                           title=f"first-layer weights W1 ({snapshots[min(snapshots)].shape[0]} units)")
        figures["weights"] = "weights.png"
    plots.sparsity(run_dir / figures["sparsity"], active, dead, title="how often each hidden unit is active (test set)")
    return figures


