"""Seconds per epoch of hessian-free (Gauss–Newton, Hessian) and kfac against Adam, in one process; prints JSON.

Each optimizer's compiled epoch (the one `optlab run mnist` runs, input noise 0) is timed on the same
training images, the optimizers taking turns round after round, so that a load on the machine that
comes and goes falls on all of them alike. Reported: each one's median epoch time and its ratio to
Adam's. The settings are the README's (hessian-free: minibatch 500, curvature minibatch 100, at most
50 CG steps, initial λ 0.1; kfac: minibatch 500, η 0.1, λ 0.3; Adam: minibatch 100, η 10⁻³). The data are
found as `optlab run` finds them ($OPTLAB_DATA, …).

    python benchmarks/second_order_epoch.py [--repeats 3] [--train-subset 10000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

RUNS = {
    "adam": {"optimizer": "adam", "lr": "0.001", "batch_size": "100"},
    "hessian-free ggn": {"optimizer": "hessian-free", "batch_size": "500", "curvature_batch": "100",
                         "cg_iters": "50", "damping": "0.1", "curvature": "ggn"},
    "hessian-free hessian": {"optimizer": "hessian-free", "batch_size": "500", "curvature_batch": "100",
                             "cg_iters": "50", "damping": "0.1", "curvature": "hessian"},
    "kfac": {"optimizer": "kfac", "lr": "0.1", "batch_size": "500", "damping": "0.3"},
}


def compiled_epoch(settings: dict, dataset, n_train: int):
    import jax

    from optlab import config
    from optlab.experiments import _classify_train as train
    from optlab.runs import resolve

    cfg = resolve.resolve([config.Layer({"experiment": "mnist", "input_noise": "0", "lr_schedule": "constant",
                                         "train_subset": str(n_train), **settings}, "flag")])
    hp = train.hyperparams(cfg)
    state = train.initial_state(cfg, (784, *cfg.hidden, 10), n_train, hp)
    images, labels = jax.device_put((dataset.train_images[:n_train], dataset.train_labels[:n_train]))
    epoch = jax.jit(train.train_epoch(cfg, n_train)).lower(state, hp, images, labels).compile()
    holder = [state]

    def run() -> float:
        begin = time.perf_counter()
        holder[0], loss, _ = epoch(holder[0], hp, images, labels)
        loss.block_until_ready()
        return time.perf_counter() - begin

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-subset", type=int, default=10_000)
    args = parser.parse_args()
    from optlab.data import datasets

    dataset = datasets.load("mnist")
    epochs = {name: compiled_epoch(settings, dataset, args.train_subset) for name, settings in RUNS.items()}
    times: dict[str, list[float]] = {name: [] for name in RUNS}
    for _ in range(args.repeats):
        for name, run in epochs.items():
            times[name].append(run())
    median = {name: statistics.median(t) for name, t in times.items()}
    print(json.dumps({
        "train_images": args.train_subset, "repeats": args.repeats, "settings": RUNS,
        "epoch_s": {k: round(v, 3) for k, v in median.items()},
        "ratio_to_adam": {k: round(v / median["adam"], 2) for k, v in median.items()},
    }, indent=2))


if __name__ == "__main__":
    main()
