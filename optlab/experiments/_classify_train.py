"""Training the image classifier (optlab.experiments.classify): its compiled programs (private to classify).

Imported only when there is training to do (it imports JAX). A single run's program is the
un-vmapped epoch with its state buffers donated (optionally data parallel), a sweep chunk's is the
same epoch vmapped over the lane axis; both run in the one host loop, _classify_loop.EpochLoop.
Each epoch's program also evaluates the new parameters on the training and test sets
(`train_epoch_evaluated`): one device call per epoch returns the state and every metric of its row.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from optlab import plots, results
from optlab.core import devices, optimizers, schedules
from optlab.core.engine import TrainState, epoch_fn, evaluate_in_chunks, init_state
from optlab.curvature.layers import Network
from optlab.data import datasets
from optlab.errors import ConfigError
from optlab.experiments._classify_loop import Checkpoints, Curvature, EpochLoop, Log, Program, epochs_text
from optlab.experiments.contract import RunContext, RunResult
from optlab.problems import mlp


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
        return optimizers.build(cfg.optimizer, schedule, hp, noise, key, cfg.optimizer_settings,
                                static=optimizers.static_settings(cfg), network=network_for(cfg, hp))

    return make_tx


def network_for(cfg, hp: dict) -> Network:
    """`loss_for`'s loss split as C(θ) = mean ℓ(f(θ; x), y) + R(θ), for hessian-free's Gauss–Newton and kfac."""
    noise = hp["input_noise"] if cfg.input_noise > 0 else 0.0
    decay = partial(mlp.penalty, weight_decay=hp["weight_decay"]) if cfg.weight_decay > 0 else None
    network = mlp.network(cfg)
    forward = partial(mlp.outputs, dropout=cfg.dropout, input_noise=noise, model=network["model"],
                      activation=network["activation"])
    losses = partial(mlp.example_losses, objective=network["objective"])
    # K-FAC's Fisher draws targets from the model's p(y | z): the softmax's, for cross-entropy (classify.check
    # refuses kfac with another loss)
    return Network(forward, losses, decay, lambda z, key: jax.random.categorical(key, z))


def hyperparams(cfg) -> dict:
    """The run's array-valued settings: float32 hyperparameters and the uint32 seed."""
    hp = optimizers.hyperparams(cfg, jnp.float32)
    hp |= {k: jnp.asarray(getattr(cfg, k), jnp.float32) for k in ("input_noise", "weight_decay", "init_scale")}
    return hp | {"seed": jnp.asarray(cfg.seed, jnp.uint32)}


def loss_for(cfg, hp: dict):
    """The training loss `loss(params, batch, key)`: mlp.loss of the run's model, activation and objective
    with σ (input noise) and λ (weight decay) read from `hp`, so that they may be traced. Whether each
    term is in the program at all is static, decided by `cfg` (a sweep groups zero and non-zero values apart).
    """
    return partial(mlp.loss, dropout=cfg.dropout, **mlp.network(cfg),
                   input_noise=hp["input_noise"] if cfg.input_noise > 0 else 0.0,
                   weight_decay=hp["weight_decay"] if cfg.weight_decay > 0 else 0.0)


def evaluate_for(cfg):
    """`evaluate(params, images, labels)` (below: in chunks) of the run's model, activation and objective."""
    return partial(evaluate, **mlp.network(cfg))


def total_steps(cfg, n_train: int) -> int:
    return cfg.epochs * (n_train // cfg.batch_size)


def initial_state(cfg, sizes, n_train: int, hp: dict) -> TrainState:
    """Parameters from the seed in `hp` and the init scaled by hp["init_scale"], and the optimizer state."""
    init_key, train_key = jax.random.split(jax.random.key(hp["seed"]))
    # Compiled, as it is inside a sweep's program: eager and compiled sampling differ in the last bit.
    init = partial(mlp.init, model=cfg.model)
    params = jax.jit(init, static_argnums=(1, 2))(init_key, tuple(sizes), cfg.init, hp["init_scale"])
    return init_state(make_tx_for(cfg, total_steps(cfg, n_train)), params, hp, train_key)


def check_fits(cfg, sizes, n_train: int, n_test: int) -> None:
    """Refuse a single run that cannot fit, as `optlab sweep` refuses one configuration (optlab.sweep.plan, in
    the same words): one line before anything is allocated, not XLA's RESOURCE_EXHAUSTED once it has begun."""
    need, budget, count = lane_bytes(cfg, n_train, n_test, sizes), devices.memory_budget(), len(jax.devices())
    if need * count > budget:
        raise ConfigError(f"one configuration needs ~{need / 1e9:.1f} GB per device, more than the "
                          f"~{budget / 1e9:.1f} GB free; use fewer hidden units or a smaller --train-subset")


def state_layout(cfg, sizes, n_train: int):
    """A single run's initial state as shapes and dtypes only (jax.eval_shape: nothing is computed or
    allocated), to check a checkpoint against before a resumed run touches anything."""
    return jax.eval_shape(lambda: initial_state(cfg, sizes, n_train, hyperparams(cfg)))


def train_epoch(cfg, n_train: int, batch_sharding=None):
    """`epoch(state, hp, images, labels)`: engine.epoch_fn with the loss built from `hp`; jit or vmap it.

    `batch_sharding` splits each minibatch over devices (data parallel; see devices.DataParallel).
    """
    make_tx = make_tx_for(cfg, total_steps(cfg, n_train))

    def epoch(state, hp, images, labels):
        return epoch_fn(loss_for(cfg, hp), make_tx, n_train, cfg.batch_size, batch_sharding)(state, hp, images, labels)

    return epoch


EVAL_CHUNK = 2000  # images per chunk of the clean evaluation (engine.evaluate_in_chunks): ~2× faster on a CPU


def evaluate(params, images, labels, **network) -> dict:
    """mlp.evaluate over a whole set (clean loss, error, hidden activity), EVAL_CHUNK images at a time;
    `network` the keywords of mlp.network(cfg) (model, activation, objective; default the ReLU MLP's).

    The error and the active fractions are counts over n: each chunk's is turned back into its
    exact count (mean × size, rounded), so that the whole set's is the count / n that evaluating
    all at once gives, to the last bit; the loss is a float sum, equal to float32 rounding.
    """
    return evaluate_in_chunks(partial(_totals, **network), params, images, labels, EVAL_CHUNK)


def _totals(params, images, labels, **network) -> dict:
    """mlp.evaluate's means times the number of images: the summed loss, the mistakes, each unit's active count."""
    means, n = mlp.evaluate(params, images, labels, **network), labels.shape[0]
    return {"loss": means["loss"] * n, "error": jnp.round(means["error"] * n),
            "active": [jnp.round(a * n) for a in means["active"]]}


def train_epoch_evaluated(cfg, n_train: int, batch_sharding=None):
    """`epoch(state, hp, images, labels, test_images, test_labels) -> (state, minibatch loss, lr, train, test)`.

    train_epoch, then `evaluate` of the new parameters on the training set (loss and error; its
    activity is not needed and XLA leaves it out) and on the test set, in the same program: one
    call per epoch instead of three, and the host fetches the row's numbers in one transfer.
    """
    epoch, evaluate = train_epoch(cfg, n_train, batch_sharding), evaluate_for(cfg)

    def evaluated(state, hp, images, labels, test_images, test_labels):
        state, minibatch_loss, lr = epoch(state, hp, images, labels)
        train = evaluate(state.params, images, labels)
        train = {"loss": train["loss"], "error": train["error"]}
        return state, minibatch_loss, lr, train, evaluate(state.params, test_images, test_labels)

    return evaluated


def run_one(cfg, dataset, n_train: int, sizes, ctx: RunContext) -> RunResult:
    """A single run: the un-vmapped epoch, its state buffers donated, optionally data parallel; resumable."""
    # Data parallel: everything replicated over the devices but each minibatch, split along its batch axis.
    split = devices.DataParallel.over() if cfg.data_parallel else None
    place = split.replicate if split else jax.device_put
    data = Data(*place((
        dataset.train_images[:n_train], dataset.train_labels[:n_train], dataset.test_images, dataset.test_labels)))
    hp = hyperparams(cfg)
    hp, state = place((hp, initial_state(cfg, sizes, n_train, hp)))

    sets = (data.train_images, data.train_labels, data.test_images, data.test_labels)
    begin = time.perf_counter()
    epoch = jax.jit(train_epoch_evaluated(cfg, n_train, split and split.batch), donate_argnums=0,
                    **({"out_shardings": split.replicated} if split else {}))
    epoch = epoch.lower(state, hp, *sets).compile()
    compile_time = time.perf_counter() - begin

    program = Program(
        1, lambda state: epoch(state, hp, *sets), _evaluator(jax.jit(evaluate_for(cfg)), *sets),
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

    The same pure pieces as a single run (initial_state, train_epoch_evaluated) and the same
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
    sets = (images, labels, test_images, test_labels)
    # No donation: a constant schedule keeps hp["lr"] itself in the optimizer state.
    epoch = jax.jit(jax.vmap(train_epoch_evaluated(cfg, n_train), in_axes=(0, 0, None, None, None, None)),
                    out_shardings=lanes.sharded).lower(state, hp, *sets).compile()
    compile_time = time.perf_counter() - begin

    evaluate_lanes = jax.jit(jax.vmap(evaluate_for(cfg), in_axes=(0, None, None)), out_shardings=lanes.sharded)
    program = Program(len(cfgs), lambda state: epoch(state, hp, *sets), _evaluator(evaluate_lanes, *sets),
                      devices.to_host, lambda state: devices.to_host(state.params), devices.lane)
    logs = [Log(c, keeps_path=False) for c in cfgs]
    curvatures = [Curvature(c, images, labels) for c in cfgs]

    def save(i: int, log: Log, curvature: Curvature) -> None:
        if save_progress:
            save_progress(i, log.history, log.summary, curvature.analysis())  # each configuration's, every epoch

    loop = EpochLoop(program, logs, curvatures, compile_time,
                     lambda e, done, epoch_time: progress.advance(done, [log.summary for log in logs]), save)
    kept = loop.run(state)
    n_test = len(dataset.test_images)
    return [finish(d, log, c, p, a, n_test) for d, log, c, (p, a) in zip(run_dirs, logs, curvatures, kept)]


def _evaluator(evaluate, images, labels, test_images, test_labels):
    """Program.evaluate: (train, test) metrics of given parameters, apart from an epoch (compiled when first used)."""
    return lambda params: (evaluate(params, images, labels), evaluate(params, test_images, test_labels))


def finish(run_dir, log: Log, curvature: Curvature, params, active, n_test: int) -> RunResult:
    """The analysis (dead units from the test-set activity `active`, --analyze's curvature) and the figures."""
    active = [np.asarray(a) for a in active]
    cfg = log.cfg
    report = {
        "dead_units": [int(np.sum(a == 0)) for a in active],
        "active_fraction": [float(a.mean()) for a in active],
        "activity_measured_on": f"{cfg.experiment} test set ({n_test:,} images)",
    } | curvature.analysis()
    figures = _figures(run_dir, cfg, log.history, log.snapshots, active, report["dead_units"],
                       report["activity_measured_on"]) if run_dir else {}
    if run_dir and 0 in log.trajectory:
        save_trajectory(run_dir, log.trajectory, params)
    return RunResult(log.status, log.history, log.summary, report, figures | curvature.figure(run_dir), params)


def save_trajectory(run_dir, trajectory: dict, params) -> None:
    """params_init.npz (the parameters before the first step, laid out as params.npz) and, when the run kept
    its path (single runs do, a sweep's configurations do not), trajectory.npz (every kept snapshot, flat),
    for `optlab landscape`."""
    from jax.flatten_util import ravel_pytree

    unravel = ravel_pytree(params)[1]
    results.save_params(run_dir, unravel(trajectory[0]), results.INITIAL_PARAMS_FILE)
    epochs = sorted(trajectory)
    if len(epochs) > 1:
        results.save_trajectory(run_dir, epochs, np.stack([trajectory[e] for e in epochs]))


def lane_bytes(cfg, n_train: int, n_test: int, sizes) -> int:
    """A rough upper bound on the device memory one configuration of a sweep needs (float32):
    parameters with optimizer state and gradients, a minibatch's activations, and the
    activations of evaluating the larger of the training and test sets at once."""
    width = sum(sizes[1:])
    return 4 * (6 * mlp.param_count(sizes, cfg.model) + 4 * cfg.batch_size * width + 2 * max(n_train, n_test) * width)


def _figures(run_dir, cfg, history, snapshots, active, dead, measured_on: str) -> dict[str, dict]:
    """The run's figures and what each holds: the weights entry lists exactly the epochs it draws."""
    title = f"{cfg.experiment} {_network_label(cfg)} {cfg.optimizer} η={cfg.lr:g} {cfg.lr_schedule}"
    last, figures = int((history["epoch"] or [0])[-1]), {}  # the history keeps epochs as floats
    if history["epoch"]:
        plots.learning_curves(run_dir / "learning_curves.png", history, title=title)
        figures["learning_curves"] = results.figure_entry(
            "learning_curves.png", f"training and test loss and error, and the learning rate, over {last} epochs")
    if active:  # a model without hidden layers (linear) has no units to be active
        plots.sparsity(run_dir / "sparsity.png", active, dead, title="how often each hidden unit is active (test set)")
        figures["sparsity"] = results.figure_entry(
            "sparsity.png", f"per hidden layer, how often each unit is active (h > 0) on the {measured_on}, after "
            f"epoch {last}; dead units in red", epoch=last, measured_on=measured_on)
    shape = datasets.image_shape(cfg.experiment, cfg.data_dir)
    if snapshots and len(shape) == 2:  # weights as pictures only where the inputs are 2-D images
        drawn, units = sorted(snapshots), snapshots[min(snapshots)].shape[0]
        plots.weight_tiles(run_dir / "weights.png", snapshots, image_shape=shape,
                           title=f"first-layer weights W1 ({units} units)")
        figures["weights"] = results.figure_entry(
            "weights.png", f"first-layer weights W1 of the {units} hidden units as images, after {epochs_text(drawn)}",
            epochs=drawn)
    return figures


def _network_label(cfg) -> str:
    """"784-225-225-10"-like hidden widths, with the model, activation and loss where they are not the defaults."""
    from optlab.config import FIELDS

    parts = ["-".join(map(str, cfg.hidden))] if cfg.model == FIELDS["model"].default else [cfg.model]
    return " ".join(parts + [getattr(cfg, k) for k in ("activation", "loss") if getattr(cfg, k) != FIELDS[k].default])
