"""Image classification with a ReLU MLP (the lecture's MNIST network), one compiled call per epoch.

The network is `--model` (optlab.problems.models) with `--activation` between its layers, trained on
`--loss` (optlab.problems.losses); by default the lecture's ReLU MLP on cross-entropy.

One experiment per registered dataset (optlab.data.datasets.DATASETS), named after it: the built-in
IDX datasets, and each one a plug-in registers with `@optlab.dataset` (made as it registers). The
training itself (JAX) is in the private `_classify_train` (the compiled programs) and
`_classify_loop` (the host epoch loop), imported when there is work to do; their public pieces
(hyperparams, initial_state, train_epoch, make_tx_for, run_lanes, Log, …) are reachable here too,
as `classify.NAME`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from optlab.config import FIELDS
from optlab.data import datasets
from optlab.errors import ConfigError, ResultsError
from optlab.experiments.contract import (
    EXPERIMENTS,
    AnalyzeOptions,
    Experiment,
    RunContext,
    RunResult,
    Sweeping,
    SweepProgram,
    training_head,
)


def _training():
    """The JAX half of this experiment (its compiled programs and host loop), imported on first use."""
    import optlab.experiments._classify_train as training

    return training


def prepare(cfg) -> SingleRun:
    """A single run, refused in one line if it cannot fit in device memory: as far as the settings
    tell (weights, a minibatch) before any data is loaded, in full once the data are known, and
    always before the run folder is made, so that nothing tries to allocate what is not there."""
    _training().check_fits(cfg, layer_sizes(cfg), cfg.train_subset or cfg.batch_size, 1)
    dataset, n_train, sizes = validate(cfg)
    _training().check_fits(cfg, sizes, n_train, len(dataset.test_images))
    return SingleRun(cfg, dataset, n_train, sizes)


@dataclass(frozen=True, eq=False)  # holds arrays: compared and hashed by identity
class SingleRun:
    """`prepare`'s job: a validated run with its data, trained when called with its RunContext.

    `check_resume` is what `optlab run --resume` asks before it touches the run's record: whether
    this run can continue from its checkpoint (optlab.runs.runner.resume).
    """

    cfg: Any
    dataset: datasets.Dataset
    n_train: int
    sizes: tuple[int, ...]

    def __call__(self, ctx: RunContext) -> RunResult:
        return _training().run_one(self.cfg, self.dataset, self.n_train, self.sizes, ctx)

    def check_resume(self, saved, record: dict) -> None:
        """A ResultsError if checkpoint `saved` (optlab.core.checkpoint.Checkpoint) does not continue `record`."""
        from optlab.experiments._classify_loop import check_resume

        template = _training().state_layout(self.cfg, self.sizes, self.n_train)  # shapes only, no allocation
        check_resume(saved, record, self.cfg, template)


def layer_sizes(cfg) -> tuple[int, ...]:
    """The network's layer widths, input to classes; a ConfigError for an optimizer that cannot train that many
    weights (Newton's dense Hessian), before any download."""
    from optlab.core import optimizers
    from optlab.problems import mlp

    spec = datasets.DATASETS[cfg.experiment]  # the experiment is named after its dataset
    shape = datasets.image_shape(cfg.experiment, cfg.data_dir)  # a plug-in's: loaded (once) to know it
    sizes = (int(np.prod(shape)), *cfg.hidden, spec.classes)
    n_params = mlp.param_count(sizes, cfg.model)
    optimizers.check_size(cfg.optimizer, n_params, 4)
    if cfg.hessian_index and n_params > optimizers.MAX_DENSE_PARAMS:
        raise ConfigError(f"--hessian-index forms the dense Hessian: {n_params:,} parameters are more "
                          f"than its {optimizers.MAX_DENSE_PARAMS:,} (use fewer --hidden units, or --analyze)")
    return sizes


def validate(cfg, dataset: datasets.Dataset | None = None) -> tuple:
    """Check the run against its data and load it (unless given): (dataset, n_train, layer sizes), or a ConfigError."""
    import jax

    sizes = layer_sizes(cfg)
    dataset = dataset or datasets.load(cfg.experiment, cfg.data_dir)
    available = len(dataset.train_images)
    n_train = cfg.train_subset or available
    if n_train > available:
        raise ConfigError(f"--train-subset {n_train:,} is more than the {available:,} training images")
    if cfg.batch_size > n_train:
        raise ConfigError(f"--batch-size {cfg.batch_size:,} is larger than the training set ({n_train:,} images)")
    if cfg.data_parallel and cfg.batch_size % len(jax.devices()):
        n = len(jax.devices())
        raise ConfigError(f"--batch-size {cfg.batch_size:,} does not split evenly over {n} devices (--data-parallel): "
                          f"use a multiple of {n}")
    return dataset, n_train, sizes


# ---- as a sweep -----------------------------------------------------------------------------


def _sweep_program(cfg, cache: dict) -> SweepProgram:
    """Validate a group against its data (loaded once per dataset and folder) and size its lanes."""
    if cfg.checkpoint_every is not None:
        raise ConfigError(f"checkpoint_every {cfg.checkpoint_every} is for single runs: a sweep is not resumable "
                          "(leave it out, or run the configuration alone with optlab run)")
    source = (cfg.experiment, cfg.data_dir)
    dataset, n_train, sizes = validate(cfg, cache.get(source))
    cache[source] = dataset
    per_lane = _training().lane_bytes(cfg, n_train, len(dataset.test_images), sizes)
    return SweepProgram(partial(_run_lanes, dataset, n_train, sizes), per_lane)


def _run_lanes(dataset, n_train, sizes, cfgs, lanes, run_dirs, progress, save_progress) -> list[RunResult]:
    return _training().run_lanes(cfgs, dataset, n_train, sizes, lanes, run_dirs, progress, save_progress)


SWEEPING = Sweeping(
    _sweep_program, units=lambda cfg: cfg.epochs,
    array_keys=("lr", "momentum", "grad_noise", "input_noise", "weight_decay", "init_scale", "seed",
                "optimizer_settings"),
    presence_keys=("grad_noise", "input_noise", "weight_decay"),  # zero leaves the term out of the program
)


# ---- optlab analyze, optlab run's summary line ------------------------------------------------


def _layers(saved: Mapping[str, np.ndarray]) -> list[dict]:
    """params.npz keys "0/w", "0/b", "1/w", … back into the network's list of layers."""
    import jax.numpy as jnp

    count = len({k.split("/")[0] for k in saved})
    try:
        return [{"w": jnp.asarray(saved[f"{i}/w"]), "b": jnp.asarray(saved[f"{i}/b"])} for i in range(count)]
    except KeyError as e:
        raise ResultsError(f"params.npz does not hold a network's layers (no {e.args[0]})") from None


def analyze(record: dict, saved: Mapping[str, Any], options: AnalyzeOptions) -> dict:
    """Lanczos, Hutchinson and SLQ on the clean training loss of the first `options.subset` images:
    of its Hessian, or of its Gauss–Newton matrix (outputs f of the run's model, L its --loss, weight decay whole)."""
    import jax.numpy as jnp
    from jax.tree_util import Partial

    from optlab.curvature import analysis
    from optlab.problems import mlp

    cfg = record["config"]
    params = _layers(saved)
    k = options.k_for(sum(int(np.size(a)) for a in saved.values()))
    data = datasets.load(record["experiment"], options.data_dir or cfg.get("data_dir"))
    if options.subset > len(data.train_images):
        raise ConfigError(f"--subset {options.subset:,} is more than the {len(data.train_images):,} training images")
    images, labels = jnp.asarray(data.train_images[: options.subset]), jnp.asarray(data.train_labels[: options.subset])
    weight_decay = float(cfg.get("weight_decay") or 0.0)
    described = f"the first {options.subset:,} {record['experiment']} training images, clean loss"
    spectrum = {"k": k, "probes": options.probes, "seed": options.seed, "max_order": options.max_order}
    network = mlp.network(cfg)
    if options.curvature == "ggn":
        model = Partial(partial(_logits, network), mlp.pixels(images))
        output_loss = Partial(partial(_output_loss, network["objective"]), labels)
        regulariser = Partial(_weight_decay, weight_decay) if weight_decay else None
        return {"data": described, **analysis.ggn_spectrum(model, output_loss, params, regulariser=regulariser,
                                                           **spectrum)}
    loss = partial(mlp.loss, weight_decay=weight_decay, **network)  # clean: no noise, no dropout
    return analysis.analyze_params(loss, params, (images, labels), described, **spectrum)


def landscape(record: dict, saved: Mapping[str, Any], options) -> dict:
    """optlab.curvature.landscape's three views of the clean training loss (and error) of the first
    `options.subset` training images: weight decay included, no input noise, no dropout."""
    import jax.numpy as jnp

    from optlab.curvature import landscape as views
    from optlab.problems import mlp

    cfg = record["config"]
    data = datasets.load(record["experiment"], options.data_dir or cfg.get("data_dir"))
    if options.subset > len(data.train_images):
        raise ConfigError(f"--subset {options.subset:,} is more than the {len(data.train_images):,} training images")
    images, labels = jnp.asarray(data.train_images[: options.subset]), jnp.asarray(data.train_labels[: options.subset])
    evaluate = partial(_loss_and_error, float(cfg.get("weight_decay") or 0.0), mlp.network(cfg), images, labels)
    report = views.landscape(evaluate, _layers(saved["initial"]), _layers(saved["final"]), saved["epochs"],
                             saved["trajectory"], points=options.points, resolution=options.resolution,
                             span=options.span, seed=options.seed)
    return {"data": f"the first {options.subset:,} {record['experiment']} training images, clean loss", **report}


def _loss_and_error(weight_decay: float, network: dict, images, labels, params) -> dict:
    """The clean training loss (mlp.loss without noise or dropout, with weight decay) and the error rate."""
    import jax
    import jax.numpy as jnp

    from optlab.problems import mlp

    outputs, _ = mlp.forward(params, mlp.pixels(images), model=network["model"], activation=network["activation"])
    error = jnp.mean(jnp.argmax(outputs, axis=-1) != labels.astype(jnp.int32))
    loss = mlp.loss(params, (images, labels), jax.random.key(0), weight_decay=weight_decay, **network)
    return {"loss": loss, "error": error}


def _logits(network, x, params):
    from optlab.problems import mlp

    return mlp.forward(params, x, model=network["model"], activation=network["activation"])[0]


def _output_loss(objective, labels, outputs):
    from optlab.problems.losses import LOSSES

    return LOSSES[objective](outputs, labels.astype("int32")).mean()


def _weight_decay(weight_decay, params):
    return 0.5 * weight_decay * sum((layer["w"] ** 2).sum() for layer in params)


def summary_line(record: dict) -> str:
    summary = record["summary"]
    head = training_head(record)
    if record["status"] == "diverged":
        return f"[red]{head}: diverged[/] (the loss blew up at epoch {summary.get('diverged_at_epoch')})"
    return (f"{head}: test error {100 * summary['test_error']:.2f}% (best {100 * summary['best_test_error']:.2f}% "
            f"at epoch {summary['best_epoch']}), {summary['epochs']} epochs in {summary['wall_time_s']:.1f} s")


def check(settings: dict) -> None:
    """Cross-field checks: the init's, model's, activation's and loss's names (kfac: cross-entropy only), and
    `--analyze` epochs within the run (past its end they would silently never be measured)."""
    from optlab.problems import activations, inits, losses, models

    inits.INITS.entry(settings.get("init", FIELDS["init"].default))
    models.MODELS.entry(settings.get("model", FIELDS["model"].default))
    activations.ACTIVATIONS.entry(settings.get("activation", FIELDS["activation"].default))
    loss = losses.LOSSES.entry(settings.get("loss", FIELDS["loss"].default)).name
    if settings.get("optimizer") == "kfac" and loss != "cross-entropy":
        raise ConfigError(f"--opt kfac draws its Fisher's targets from the softmax: it needs --loss cross-entropy, "
                          f"not {loss!r}")
    epochs = settings.get("epochs", FIELDS["epochs"].default)
    late = [e for e in settings.get("analyze") or () if e > epochs]
    if late:
        shown = ",".join(map(str, settings["analyze"]))
        raise ConfigError(f"--analyze {shown}: epoch {late[0]} is past the run's end (--epochs {epochs})")


# ---- one experiment per dataset ----------------------------------------------------------------

NETWORK_FIELDS = ("epochs", "batch_size", "hidden", "model", "activation", "loss", "init", "init_scale",
                  "input_noise", "dropout", "weight_decay", "target_error", "train_subset", "data_parallel",
                  "checkpoint_every", "analyze", "hessian_index", "data_dir", "curvature", "curvature_batch",
                  "inverse_every")
NETWORK_DEFAULTS = {"optimizer": "adam", "lr_schedule": "anneal", "input_noise": 0.0}
DATASET_DEFAULTS = {
    # The lecture's example model: Adam at 1e-3 annealed over the second half, with Gaussian input
    # noise σ = 0.3, which takes the 784-225-225-10 network to about 1% test error in 50 epochs.
    "mnist": NETWORK_DEFAULTS | {"input_noise": 0.3},
    # Fashion-MNIST's garments are less forgiving of pixel noise than digits: the same network without
    # it reaches about 90.3% test accuracy in 20 epochs, with σ = 0.3 about 89.3%.
    "fashion-mnist": NETWORK_DEFAULTS,
}
NETWORK_LRS = {"gd": 0.1, "momentum": 0.01, "nesterov": 0.01, "adagrad": 0.01, "adadelta": 1.0, "rmsprop": 1e-3,
               "adam": 1e-3}
NETWORK_METRICS = ("test_error", "best_test_error", "final_loss")


def experiment_for(name: str) -> Experiment:
    """The classification experiment on dataset `name`: its defaults, and every hook."""
    return Experiment(prepare, NETWORK_FIELDS, DATASET_DEFAULTS.get(name, NETWORK_DEFAULTS), NETWORK_LRS, check,
                      resumable=True, sweep=SWEEPING, metrics=NETWORK_METRICS, analyze=analyze, landscape=landscape,
                      summary_line=summary_line)


def _dataset_added(entry) -> None:
    """Register the experiment of a dataset: each built-in one now, a plug-in's as `@optlab.dataset` registers it."""
    EXPERIMENTS.register(entry.name, f"{entry.help}; a classifier, by default a ReLU MLP (--hidden, --model, "
                         "--activation, --loss)", experiment_for(entry.name))


def _dataset_removed(name: str) -> None:
    if name in EXPERIMENTS:
        EXPERIMENTS.unregister(name)


for _entry in datasets.DATASETS:
    _dataset_added(_entry)
datasets.DATASETS.watch(_dataset_added, _dataset_removed)

_TRAINING = ("Data", "Log", "Checkpoints", "Curvature", "EpochLoop", "Program", "hyperparams", "initial_state",
             "train_epoch", "make_tx_for", "loss_for", "total_steps", "run_lanes", "run_one", "lane_bytes", "finish")


def __getattr__(name: str):
    """The training pieces (`classify.hyperparams`, `classify.Log`, …), importing JAX only when asked."""
    if name in _TRAINING:
        return getattr(_training(), name)  # _classify_train also holds _classify_loop's Log, EpochLoop, …
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
