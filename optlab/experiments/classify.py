"""Image classification with a ReLU MLP (the lecture's MNIST network), one compiled call per epoch."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from optlab import datasets, optimizers, plots, schedules
from optlab.engine import epoch_fn, init_state
from optlab.errors import ConfigError
from optlab.experiments import EXPERIMENTS, Experiment, RunContext, RunResult
from optlab.problems import mlp

SNAPSHOT_EPOCHS = (1, 2, 3, 4, 5, 10)  # and the last: the lecture's first-layer weight figures
HISTORY_KEYS = ("epoch", "train_loss", "train_error", "test_loss", "test_error", "minibatch_loss", "lr", "epoch_time_s")


@dataclass
class Data:
    train_images: jax.Array  # uint8 on the device
    train_labels: jax.Array
    test_images: jax.Array
    test_labels: jax.Array


def prepare(cfg):
    dataset = datasets.load(cfg.experiment, cfg.data_dir)
    available = len(dataset.train_images)
    n_train = cfg.train_subset or available
    if n_train > available:
        raise ConfigError(f"--train-subset {n_train:,} is more than the {available:,} training images")
    if cfg.batch_size > n_train:
        raise ConfigError(f"--batch-size {cfg.batch_size:,} is larger than the training set ({n_train:,} images)")
    sizes = (int(np.prod(dataset.train_images.shape[1:])), *cfg.hidden, 10)
    optimizers.check_size(cfg.optimizer, mlp.param_count(sizes), 4)
    return partial(_train, cfg, dataset, n_train, sizes)


def make_tx_for(cfg, total_steps: int):
    def make_tx(hp, key):
        schedule = schedules.build(cfg.lr_schedule, hp["lr"], total_steps, cfg)
        noise = hp["grad_noise"] if cfg.grad_noise > 0 else None
        return optimizers.build(cfg.optimizer, schedule, hp, noise, key)

    return make_tx


def _train(cfg, dataset, n_train: int, sizes, ctx: RunContext) -> RunResult:
    data = Data(*(jax.device_put(a) for a in (
        dataset.train_images[:n_train], dataset.train_labels[:n_train], dataset.test_images, dataset.test_labels)))
    loss = partial(mlp.loss, input_noise=cfg.input_noise, dropout=cfg.dropout, weight_decay=cfg.weight_decay)
    make_tx = make_tx_for(cfg, cfg.epochs * (n_train // cfg.batch_size))
    hp = {k: jnp.asarray(getattr(cfg, k), jnp.float32) for k in ("lr", "momentum", "grad_noise")}
    init_key, train_key = jax.random.split(jax.random.key(cfg.seed))
    state = init_state(make_tx, mlp.init(init_key, sizes, cfg.init, cfg.init_scale), hp, train_key)

    begin = time.perf_counter()
    epoch = epoch_fn(loss, make_tx, n_train, cfg.batch_size).lower(state, hp, data.train_images, data.train_labels).compile()
    evaluate = jax.jit(mlp.evaluate).lower(state.params, data.test_images, data.test_labels).compile()
    evaluate_train = jax.jit(mlp.evaluate).lower(state.params, data.train_images, data.train_labels).compile()
    compile_time = time.perf_counter() - begin

    history: dict[str, list] = {k: [] for k in HISTORY_KEYS}
    snapshots, summary, status, train_time = {}, {}, "completed", 0.0
    ctx.progress.start(cfg.epochs, f"{cfg.experiment} {cfg.optimizer}")
    for e in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        state, minibatch_loss, lr = jax.block_until_ready(epoch(state, hp, data.train_images, data.train_labels))
        epoch_time = time.perf_counter() - t0
        train, test = evaluate_train(state.params, data.train_images, data.train_labels), evaluate(state.params, data.test_images, data.test_labels)
        train_time += time.perf_counter() - t0
        row = (e, train["loss"], train["error"], test["loss"], test["error"], minibatch_loss, lr, epoch_time)
        for key, value in zip(HISTORY_KEYS, row):
            history[key].append(float(value))
        if not np.isfinite(history["minibatch_loss"][-1]) or not np.isfinite(history["train_loss"][-1]):
            status = "diverged"
            summary["diverged_at_epoch"] = e
            break
        if e in SNAPSHOT_EPOCHS or e == cfg.epochs:
            snapshots[e] = np.asarray(state.params[0]["w"])
        summary = _summary(history, cfg, compile_time, train_time, summary)
        ctx.progress.advance(e, {"loss": history["train_loss"][-1], "test_error": history["test_error"][-1],
                                 "lr": history["lr"][-1], "samples_per_s": n_train / epoch_time})
        ctx.checkpoint(history, summary)
    ctx.progress.stop()

    test = evaluate(state.params, data.test_images, data.test_labels)
    active = [np.asarray(a) for a in test["active"]]
    analysis = {
        "dead_units": [int(np.sum(a == 0)) for a in active],
        "active_fraction": [float(a.mean()) for a in active],
        "activity_measured_on": f"{cfg.experiment} test set ({len(dataset.test_images):,} images)",
    }
    figures = _figures(ctx, cfg, history, snapshots, active, analysis["dead_units"])
    return RunResult(status, history, summary, analysis, figures, state.params)


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


def _figures(ctx, cfg, history, snapshots, active, dead) -> dict[str, str]:
    figures = {"learning_curves": "learning_curves.png", "sparsity": "sparsity.png"}
    title = f"{cfg.experiment} {'-'.join(map(str, cfg.hidden))} {cfg.optimizer} η={cfg.lr:g} {cfg.lr_schedule}"
    if history["epoch"]:
        plots.learning_curves(ctx.run_dir / figures["learning_curves"], history, title=title)
    else:
        figures.pop("learning_curves")
    if snapshots:
        side = int(round(np.sqrt(snapshots[min(snapshots)].shape[1])))
        plots.weight_tiles(ctx.run_dir / "weights.png", snapshots, image_shape=(side, side),
                           title=f"first-layer weights W1 ({snapshots[min(snapshots)].shape[0]} units)")
        figures["weights"] = "weights.png"
    plots.sparsity(ctx.run_dir / figures["sparsity"], active, dead, title="how often each hidden unit is active (test set)")
    return figures


def check(settings: dict) -> None:
    mlp.INITS.entry(settings.get("init", "he"))


NETWORK_FIELDS = ("epochs", "batch_size", "hidden", "init", "init_scale", "input_noise", "dropout",
                  "weight_decay", "target_error", "train_subset", "data_dir")
# The lecture's example model: Adam at 1e-3 annealed over the second half, with Gaussian input
# noise σ = 0.3, which takes the 784-225-225-10 network to about 1% test error in 50 epochs.
LECTURE_DEFAULTS = {"optimizer": "adam", "lr_schedule": "anneal", "input_noise": 0.3}
NETWORK_LRS = {"gd": 0.1, "momentum": 0.01, "nesterov": 0.01, "adagrad": 0.01, "adadelta": 1.0, "rmsprop": 1e-3, "adam": 1e-3}

for _name, _help in (
    ("mnist", "MNIST digits with the lecture's 784-225-225-10 ReLU network (--hidden changes it)"),
    ("fashion-mnist", "Fashion-MNIST clothing images with the same network"),
):
    EXPERIMENTS.register(_name, _help, Experiment(prepare, NETWORK_FIELDS, LECTURE_DEFAULTS, NETWORK_LRS, check))
