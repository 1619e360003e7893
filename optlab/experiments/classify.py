"""Image classification with a ReLU MLP (the lecture's MNIST network), one compiled call per epoch."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from optlab import plots
from optlab.core import devices, optimizers, schedules
from optlab.core.engine import TrainState, epoch_fn, init_state
from optlab.curvature import analysis
from optlab.data import datasets
from optlab.errors import ConfigError, ResultsError
from optlab.experiments import EXPERIMENTS, Experiment, RunContext, RunResult
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


def prepare(cfg):
    return partial(_train, cfg, *validate(cfg))


def validate(cfg, dataset: datasets.Dataset | None = None) -> tuple:
    """Check the run against its data and load it (unless given): (dataset, n_train, layer sizes), or a ConfigError."""
    spec = datasets.DATASETS[cfg.experiment]
    sizes = (int(np.prod(spec.image_shape)), *cfg.hidden, spec.classes)
    optimizers.check_size(cfg.optimizer, mlp.param_count(sizes), 4)  # before any download
    dataset = dataset or datasets.load(cfg.experiment, cfg.data_dir)
    available = len(dataset.train_images)
    n_train = cfg.train_subset or available
    if n_train > available:
        raise ConfigError(f"--train-subset {n_train:,} is more than the {available:,} training images")
    if cfg.batch_size > n_train:
        raise ConfigError(f"--batch-size {cfg.batch_size:,} is larger than the training set ({n_train:,} images)")
    if cfg.data_parallel and cfg.batch_size % len(jax.devices()):
        n = len(jax.devices())
        raise ConfigError(f"--batch-size {cfg.batch_size:,} does not split evenly over {n} devices (--data-parallel): use a multiple of {n}")
    return dataset, n_train, sizes


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


def _train(cfg, dataset, n_train: int, sizes, ctx: RunContext) -> RunResult:
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

    log, saver, curvature = Log(cfg), Checkpoints(cfg, ctx), Curvature(cfg, data)
    first, state, train_time = saver.restore(log, curvature, state) if ctx.resume_from else (1, state, 0.0)
    state = place(state)  # a restored state comes back on the default device
    if split:
        log.summary["data_parallel_devices"] = split.size
    ctx.progress.start(cfg.epochs, f"{cfg.experiment} {cfg.optimizer} epoch")
    for e in range(first, cfg.epochs + 1):
        t0 = time.perf_counter()
        state, minibatch_loss, lr = jax.block_until_ready(epoch(state, hp, data.train_images, data.train_labels))
        epoch_time = time.perf_counter() - t0
        train, test = evaluate_train(state.params, data.train_images, data.train_labels), evaluate(state.params, data.test_images, data.test_labels)
        train_time += time.perf_counter() - t0
        row = (e, train["loss"], train["error"], test["loss"], test["error"], minibatch_loss, lr, epoch_time)
        log.record(row, lambda: state.params[0]["w"], compile_time, train_time)
        if not log.live:
            break
        curvature.measure(e, state.params, log.history["lr"][-1])
        ctx.progress.advance(e, {"loss": log.history["train_loss"][-1], "test_error": log.history["test_error"][-1],
                                 "lr": log.history["lr"][-1], "samples_per_s": n_train / epoch_time})
        ctx.save_progress(log.history, log.summary, curvature.analysis())
        saver.maybe_save(e, state, log, train_time)
    ctx.progress.stop()

    test = evaluate(state.params, data.test_images, data.test_labels)
    result = finish(ctx.run_dir, log, state.params, test["active"], len(dataset.test_images))
    result.analysis |= curvature.analysis()
    result.figures |= curvature.figure(ctx.run_dir)
    return result


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

    def __init__(self, cfg, data: Data) -> None:
        self.epochs, self.rows = set(cfg.analyze or ()), []
        self.loss = partial(mlp.loss, weight_decay=cfg.weight_decay)  # clean: no noise, no dropout
        n = min(self.SUBSET, len(data.train_labels))
        self.batch = (data.train_images[:n], data.train_labels[:n])
        self.description = f"the first {n:,} {cfg.experiment} training images, clean loss"

    def measure(self, epoch: int, params, lr: float) -> None:
        if epoch in self.epochs:
            spectrum = analysis.analyze_params(self.loss, params, self.batch, self.description)
            self.rows.append({"epoch": epoch, "lr": lr, **spectrum})

    def analysis(self) -> dict:
        return {"hessian_over_training": self.rows} if self.epochs else {}

    def figure(self, run_dir) -> dict[str, str]:
        if not self.rows:
            return {}
        plots.edge_of_stability(run_dir / "edge_of_stability.png", [r["epoch"] for r in self.rows],
                                [r["lambda_max"] for r in self.rows], [r["lr"] for r in self.rows],
                                title="curvature over training")
        return {"edge_of_stability": "edge_of_stability.png"}


def finish(run_dir, log: Log, params, active, n_test: int) -> RunResult:
    """The analysis (dead units from the test-set activity `active`) and the figures of one configuration."""
    active = [np.asarray(a) for a in active]
    cfg = log.cfg
    analysis = {
        "dead_units": [int(np.sum(a == 0)) for a in active],
        "active_fraction": [float(a.mean()) for a in active],
        "activity_measured_on": f"{cfg.experiment} test set ({n_test:,} images)",
    }
    figures = _figures(run_dir, cfg, log.history, log.snapshots, active, analysis["dead_units"]) if run_dir else {}
    return RunResult(log.status, log.history, log.summary, analysis, figures, params)


def lane_bytes(cfg, n_train: int, n_test: int, sizes) -> int:
    """A rough upper bound on the device memory one configuration of a sweep needs (float32):
    parameters with optimizer state and gradients, a minibatch's activations, and the
    activations of evaluating the larger of the training and test sets at once."""
    width = sum(sizes[1:])
    return 4 * (6 * mlp.param_count(sizes) + 4 * cfg.batch_size * width + 2 * max(n_train, n_test) * width)


def run_lanes(cfgs, dataset, n_train: int, sizes, lanes, run_dirs, progress, save_progress=None) -> list[RunResult]:
    """Train configurations that differ only in array-valued settings (sweep.ARRAY_KEYS) as one vmapped program over `lanes`.

    The same pure pieces as a single run (initial_state, train_epoch, mlp.evaluate, Log, finish),
    vmapped over the configuration axis. A lane whose loss turns non-finite keeps computing NaN
    (lanes never mix, so it harms no other), but its Log stops and its parameters are kept as
    they were at that epoch, as a single run would have stopped there.
    """
    from optlab.core.devices import lane, to_host

    cfg = cfgs[0]  # the group shares every setting that shapes the program
    images, labels, test_images, test_labels = lanes.replicate(
        (dataset.train_images[:n_train], dataset.train_labels[:n_train], dataset.test_images, dataset.test_labels))
    hp = lanes.stack([to_host(hyperparams(c)) for c in cfgs])
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

    logs, kept, train_time = [Log(c) for c in cfgs], [None] * len(cfgs), 0.0
    for e in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        state, minibatch_loss, lr = jax.block_until_ready(epoch(state, hp, images, labels))
        epoch_time = time.perf_counter() - t0
        train, test = evaluate_train(state.params, images, labels), evaluate_test(state.params, test_images, test_labels)
        rows = to_host((train["loss"], train["error"], test["loss"], test["error"], minibatch_loss, lr))
        train_time += time.perf_counter() - t0
        first_layer = _lazy(lambda: to_host(state.params[0]["w"]))
        done = 0
        for i, log in enumerate(logs):
            if not log.live:
                continue
            log.record((e, *(r[i] for r in rows), epoch_time), lambda i=i: first_layer()[i], compile_time, train_time)
            done += 1 if log.live else cfg.epochs - e + 1
            if not log.live:  # keep what a single run would end with: these params, this test activity
                kept[i] = (lane(to_host(state.params), i), lane(to_host(test["active"]), i))
        progress.advance(done, [log.summary for log in logs])
        for i, log in enumerate(logs):
            if save_progress and log.history["epoch"] and log.history["epoch"][-1] == e:
                save_progress(i, log.history, log.summary)  # each configuration's metrics.json, every epoch
        if not any(log.live for log in logs):
            break
    params, active = to_host(state.params), to_host(test["active"])
    kept = [k or (lane(params, i), lane(active, i)) for i, k in enumerate(kept)]
    return [finish(d, log, p, a, len(dataset.test_images)) for d, log, (p, a) in zip(run_dirs, logs, kept)]


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


def check(settings: dict) -> None:
    mlp.INITS.entry(settings.get("init", "he"))


NETWORK_FIELDS = ("epochs", "batch_size", "hidden", "init", "init_scale", "input_noise", "dropout",
                  "weight_decay", "target_error", "train_subset", "data_parallel", "checkpoint_every", "analyze",
                  "data_dir")
# The lecture's example model: Adam at 1e-3 annealed over the second half, with Gaussian input
# noise σ = 0.3, which takes the 784-225-225-10 network to about 1% test error in 50 epochs.
LECTURE_DEFAULTS = {"optimizer": "adam", "lr_schedule": "anneal", "input_noise": 0.3}
# Fashion-MNIST's garments are less forgiving of pixel noise than digits: the same network without
# it reaches about 90.3% test accuracy in 20 epochs, with σ = 0.3 about 89.3%.
FASHION_DEFAULTS = {"optimizer": "adam", "lr_schedule": "anneal", "input_noise": 0.0}
NETWORK_LRS = {"gd": 0.1, "momentum": 0.01, "nesterov": 0.01, "adagrad": 0.01, "adadelta": 1.0, "rmsprop": 1e-3, "adam": 1e-3}

for _name, _help, _defaults in (
    ("mnist", "MNIST digits with the lecture's 784-225-225-10 ReLU network (--hidden changes it)", LECTURE_DEFAULTS),
    ("fashion-mnist", "Fashion-MNIST clothing images with the same network", FASHION_DEFAULTS),
):
    EXPERIMENTS.register(_name, _help, Experiment(prepare, NETWORK_FIELDS, _defaults, NETWORK_LRS, check, resumable=True))
