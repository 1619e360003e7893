"""An epoch with its evaluation, before and after folding the evaluation into the compiled epoch; prints JSON.

What `optlab run mnist --opt adam --lr-schedule anneal` (the lecture command: 784-225-225-10, Adam,
batch 100, input noise σ = 0.3) does each epoch, timed from the call until the row's numbers are on
the host, both variants in one process, interleaved epoch by epoch:

  separate  the training epoch (`train_epoch`, jitted), then `mlp.evaluate` of the whole training set
            and of the whole test set, each its own jitted call (optlab before the fold)
  folded    `train_epoch_evaluated`: the epoch and both evaluations, chunked, in one jitted call
            (what `optlab run` runs now)

and then the evaluation alone, of the same parameters: `mlp.evaluate` of each whole set against
`_classify_train.evaluate` (chunks of EVAL_CHUNK images), 2 × --epochs times each, interleaved.

Data: real MNIST when $OPTLAB_DATA holds it, else synthetic uint8 images of the same shape.

    python benchmarks/eval_speed.py --epochs 3
    python benchmarks/eval_speed.py --n-train 10000 --epochs 2      # smaller
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import jax
import numpy as np

from optlab import config
from optlab.data import datasets
from optlab.experiments import _classify_train as train
from optlab.problems import mlp
from optlab.runs import resolve

SIZES = (784, 225, 225, 10)


def load(n_train: int, n_test: int):
    root = os.environ.get(datasets.ENV_VAR)
    if root:
        d = datasets.load("mnist", root)
        return (d.train_images[:n_train], d.train_labels[:n_train], d.test_images[:n_test], d.test_labels[:n_test],
                "MNIST")
    rng = np.random.default_rng(0)
    return (rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8), rng.integers(0, 10, n_train, dtype=np.uint8),
            rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8), rng.integers(0, 10, n_test, dtype=np.uint8),
            "synthetic")


def variants(cfg, sets, n_train: int) -> dict:
    """Each variant: a callable running one epoch and fetching its row (train/test loss and error) to the host."""
    x, y, tx, ty = sets
    hp = train.hyperparams(cfg)
    epoch = jax.jit(train.train_epoch(cfg, n_train), donate_argnums=0)
    evaluate = jax.jit(mlp.evaluate)
    folded = jax.jit(train.train_epoch_evaluated(cfg, n_train), donate_argnums=0)
    states = {"separate": train.initial_state(cfg, SIZES, n_train, hp),
              "folded": train.initial_state(cfg, SIZES, n_train, hp)}

    def separate():
        states["separate"], loss, lr = jax.block_until_ready(epoch(states["separate"], hp, x, y))
        a, b = evaluate(states["separate"].params, x, y), evaluate(states["separate"].params, tx, ty)
        return [float(v) for v in (a["loss"], a["error"], b["loss"], b["error"], loss, lr)]

    def fold():
        states["folded"], loss, lr, a, b = folded(states["folded"], hp, x, y, tx, ty)
        return [float(v) for v in (a["loss"], a["error"], b["loss"], b["error"], loss, lr)]

    return {"separate": separate, "folded": fold}


def evaluation_only(sets, params, repeats: int) -> dict:
    """The evaluation alone, of the same parameters: both sets at once each (before) against chunked (now)."""
    x, y, tx, ty = sets
    whole, chunked = jax.jit(mlp.evaluate), jax.jit(train.evaluate)
    runs = {"whole": lambda: [whole(params, x, y), whole(params, tx, ty)],
            "chunked": lambda: [chunked(params, x, y), chunked(params, tx, ty)]}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():
        jax.block_until_ready(run())  # compiles
    for slot in range(repeats):
        for name in list(runs)[slot % 2:] + list(runs)[: slot % 2]:
            begin = time.perf_counter()
            jax.block_until_ready(runs[name]())
            times[name].append(time.perf_counter() - begin)
    median = {name: statistics.median(t) for name, t in times.items()}
    return {"evaluation_only_s": {k: round(v, 4) for k, v in median.items()},
            "ratio_chunked_over_whole": round(median["chunked"] / median["whole"], 3),
            "paired_ratio_chunked_over_whole": round(statistics.median(
                a / b for a, b in zip(times["chunked"], times["whole"])), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=60_000)
    parser.add_argument("--n-test", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per variant (default 3)")
    args = parser.parse_args()
    x, y, tx, ty, source = load(args.n_train, args.n_test)
    sets = jax.device_put((x, y, tx, ty))
    cfg = resolve.resolve([config.Layer({"experiment": "mnist", "optimizer": "adam", "lr_schedule": "anneal",
                                         "epochs": 1 + args.epochs}, "flag")])
    runs = variants(cfg, sets, len(y))
    first = {name: run() for name, run in runs.items()}  # compiles; both give epoch 1's row
    times: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for slot in range(args.epochs):
        for name in names[slot % 2:] + names[: slot % 2]:  # who goes first alternates
            begin = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - begin)
    median = {name: statistics.median(t) for name, t in times.items()}
    params = mlp.init(jax.random.key(0), SIZES)
    evaluation = evaluation_only(sets, params, 2 * args.epochs)
    device = jax.devices()[0]
    print(json.dumps({
        "benchmark": "eval_speed",
        "device": f"{device.platform} {device.device_kind}",
        "jax": jax.__version__,
        "data": source, "n_train": len(y), "n_test": len(ty),
        "run": f"optlab run mnist --opt adam --lr-schedule anneal (σ = {cfg.input_noise:g}, batch {cfg.batch_size})",
        "eval_chunk": train.EVAL_CHUNK,
        "epoch_with_evaluation_s": {name: round(t, 4) for name, t in median.items()},
        "all_s": {name: [round(t, 4) for t in ts] for name, ts in times.items()},
        "ratio_folded_over_separate": round(median["folded"] / median["separate"], 3),
        "paired_ratio_folded_over_separate": round(statistics.median(
            a / b for a, b in zip(times["folded"], times["separate"])), 3),
        **evaluation,
        "first_epoch_row": first,
        "first_epoch_row_note": "train loss, train error, test loss, test error, minibatch loss, lr of epoch 1: "
                                "equal up to float32 rounding",
    }, indent=1))


if __name__ == "__main__":
    main()
