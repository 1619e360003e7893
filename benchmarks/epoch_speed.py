"""Epoch time of optlab's engine against a naive per-step loop and a hand-fused reference; prints JSON.

All three train the lecture network 784-225-225-10 (ReLU, softmax cross-entropy) with Adam at
η = 1e-3 in minibatches of 100 on synthetic MNIST-shaped data (uint8 28×28 images, 10 classes):

  optlab  `engine.epoch_fn` with `mlp.loss` and `classify.make_tx_for`: exactly what
          `optlab run mnist --input-noise 0` runs (Adam through optax.inject_hyperparams,
          the anneal schedule, the shuffle and the per-step keys inside one jitted lax.scan)
  naive   a jitted train step called from a Python loop, each batch sliced from numpy on the
          host and transferred per step (as the Flax/optax MNIST examples do)
  fused   the same model, loss and optax.adam as one jitted lax.scan over the epoch, nothing else

Each variant runs one warm-up epoch (compiling), then `--repeats` × `--epochs` timed epochs,
interleaved epoch by epoch (optlab, naive, fused, then naive, fused, optlab, …) so that machine
noise hits them alike. An epoch is timed from the call to `jax.block_until_ready` of its result.
Reported: the median epoch time of each, their ratios, and the median of epoch-by-epoch ratios.

    python benchmarks/epoch_speed.py                  # 60,000 images
    python benchmarks/epoch_speed.py --n-train 10000 --epochs 5 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optlab import config
from optlab.core import engine
from optlab.experiments import classify
from optlab.problems import mlp
from optlab.runs import resolve

SIZES = (784, 225, 225, 10)


def reference_loss(params, images, labels):
    """The lecture network written out: pixels in [0, 1], ReLU layers, mean softmax cross-entropy."""
    x = images.reshape(images.shape[0], -1).astype(jnp.float32) / 255.0
    for layer in params[:-1]:
        x = jax.nn.relu(x @ layer["w"].T + layer["b"])
    logits = x @ params[-1]["w"].T + params[-1]["b"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels.astype(jnp.int32)).mean()


def optlab_variant(images, labels, params, n_train: int, batch_size: int, lr: float, total_epochs: int, seed: int,
                   input_noise: float = 0.0):
    """What a single run builds (_classify_train.run_one) for `optlab run mnist --opt adam --lr LR --input-noise σ`."""
    cfg = resolve.resolve([config.Layer({"experiment": "mnist", "optimizer": "adam", "lr": lr,
                                        "input_noise": input_noise,
                                        "batch_size": batch_size, "epochs": total_epochs, "seed": seed}, "flag")])
    hp = {k: jnp.asarray(getattr(cfg, k), jnp.float32) for k in ("lr", "momentum", "grad_noise", "input_noise")}
    # as _classify_train.loss_for: σ traced from hp when it is non-zero, the term left out when it is 0
    loss = partial(mlp.loss, input_noise=hp["input_noise"] if cfg.input_noise > 0 else 0.0, dropout=cfg.dropout,
                   weight_decay=cfg.weight_decay)
    make_tx = classify.make_tx_for(cfg, cfg.epochs * (n_train // cfg.batch_size))
    state = engine.init_state(make_tx, params, hp, jax.random.key(seed))
    epoch = engine.epoch_fn(loss, make_tx, n_train, cfg.batch_size)

    def run_epoch():
        nonlocal state
        state, mean_loss, _ = jax.block_until_ready(epoch(state, hp, images, labels))
        return float(mean_loss)

    def params():
        return state.params

    return run_epoch, params, cfg


def evaluation_time(evaluate, params, sets, repeats: int) -> float:
    """What `optlab run` adds after each epoch: clean loss/error/activity on the training and test sets."""
    jax.block_until_ready([evaluate(params, *s) for s in sets])  # compiles
    times = []
    for _ in range(repeats):
        begin = time.perf_counter()
        jax.block_until_ready([evaluate(params, *s) for s in sets])
        times.append(time.perf_counter() - begin)
    return statistics.median(times)


def naive_variant(images_np, labels_np, params, n_train: int, batch_size: int, lr: float, seed: int):
    tx = optax.adam(lr)
    opt_state = tx.init(params)

    @jax.jit
    def train_step(params, opt_state, x, y):
        value, grads = jax.value_and_grad(reference_loss)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    rng = np.random.default_rng(seed)
    n_batches = n_train // batch_size

    def run_epoch():
        nonlocal params, opt_state
        order = rng.permutation(n_train)
        losses = []
        for i in range(n_batches):
            idx = order[i * batch_size:(i + 1) * batch_size]
            x, y = jnp.asarray(images_np[idx]), jnp.asarray(labels_np[idx])
            params, opt_state, value = train_step(params, opt_state, x, y)
            losses.append(value)  # kept on the device; fetched once per epoch
        jax.block_until_ready((params, opt_state, losses))
        return float(jnp.mean(jnp.stack(losses)))

    return run_epoch


def fused_variant(images, labels, params, n_train: int, batch_size: int, lr: float, seed: int):
    tx = optax.adam(lr)
    n_batches = n_train // batch_size

    @partial(jax.jit, donate_argnums=(0, 1))
    def epoch(params, opt_state, key):
        key, shuffle_key = jax.random.split(key)
        order = jax.random.permutation(shuffle_key, n_train)[: n_batches * batch_size].reshape(n_batches, batch_size)

        def step(carry, idx):
            params, opt_state = carry
            value, grads = jax.value_and_grad(reference_loss)(params, images[idx], labels[idx])
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), value

        (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), order)
        return params, opt_state, key, losses.mean()

    carry = (params, tx.init(params), jax.random.key(seed))

    def run_epoch():
        nonlocal carry
        *new, mean_loss = jax.block_until_ready(epoch(*carry))
        carry = tuple(new)
        return float(mean_loss)

    return run_epoch


def timed(run_epoch) -> tuple[float, float]:
    begin = time.perf_counter()
    mean_loss = run_epoch()  # each run_epoch blocks until its results are ready
    return time.perf_counter() - begin, mean_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=60_000, help="synthetic training images (default 60,000)")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per variant per round (default 3)")
    parser.add_argument("--repeats", type=int, default=2, help="rounds of --epochs (default 2)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.n_train < args.batch_size or min(args.epochs, args.repeats, args.batch_size) < 1:
        parser.error("need --n-train ≥ --batch-size ≥ 1 and --epochs, --repeats ≥ 1")

    rng = np.random.default_rng(args.seed)
    images_np = rng.integers(0, 256, (args.n_train, 28, 28), dtype=np.uint8)
    labels_np = rng.integers(0, 10, args.n_train).astype(np.uint8)
    images, labels = jax.device_put(images_np), jax.device_put(labels_np)

    def fresh_params():  # each variant gets its own copy: two of them donate their buffers
        return mlp.init(jax.random.key(args.seed), SIZES, "he")

    total_epochs = 1 + args.epochs * args.repeats
    run_optlab, optlab_params, cfg = optlab_variant(images, labels, fresh_params(), args.n_train, args.batch_size,
                                                    args.lr, total_epochs, args.seed)
    variants = {
        "optlab": run_optlab,
        "naive": naive_variant(images_np, labels_np, fresh_params(), args.n_train, args.batch_size, args.lr, args.seed),
        "fused": fused_variant(images, labels, fresh_params(), args.n_train, args.batch_size, args.lr, args.seed),
    }
    first_epoch = {name: timed(run) for name, run in variants.items()}  # compiles
    times: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for slot in range(args.repeats * args.epochs):
        # one epoch of each variant per slot, who goes first rotating: neighbours see the same machine load
        for name in names[slot % len(names):] + names[: slot % len(names)]:
            times[name].append(timed(variants[name])[0])

    test_images = jax.device_put(rng.integers(0, 256, (10_000, 28, 28), dtype=np.uint8))
    test_labels = jax.device_put(rng.integers(0, 10, 10_000).astype(np.uint8))
    eval_s = evaluation_time(jax.jit(mlp.evaluate), optlab_params(),
                             [(images, labels), (test_images, test_labels)], args.repeats)

    samples = (args.n_train // args.batch_size) * args.batch_size
    median = {name: statistics.median(ts) for name, ts in times.items()}
    device = jax.devices()[0]

    def paired(a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(times[a], times[b]))

    report = {
        "benchmark": "epoch_speed",
        "device_kind": device.device_kind,
        "backend": jax.default_backend(),
        "jax": jax.__version__,
        "optax": optax.__version__,
        "network": "-".join(map(str, SIZES)),
        "parameters": mlp.param_count(SIZES),
        "optimizer": f"adam lr={args.lr:g} (optlab: {cfg.lr_schedule} schedule via inject_hyperparams)",
        "n_train": args.n_train,
        "batch_size": args.batch_size,
        "steps_per_epoch": args.n_train // args.batch_size,
        "timed_epochs_per_variant": args.epochs * args.repeats,
        "epoch_s": {name: round(t, 4) for name, t in median.items()},
        "samples_per_s": {name: round(samples / t) for name, t in median.items()},
        "first_epoch_s": {name: round(t, 3) for name, (t, _) in first_epoch.items()},
        "first_epoch_mean_loss": {name: round(loss, 4) for name, (_, loss) in first_epoch.items()},
        "first_epoch_note": "first_epoch_s includes compiling; its mean loss shows the variants do the same work",
        "all_epoch_s": {name: [round(t, 4) for t in ts] for name, ts in times.items()},
        "ratio_optlab_over_fused": round(median["optlab"] / median["fused"], 3),
        "ratio_naive_over_optlab": round(median["naive"] / median["optlab"], 3),
        # the same ratios slot by slot (epochs run back to back), then the median: steadier under load
        "paired_ratio_optlab_over_fused": round(paired("optlab", "fused"), 3),
        "paired_ratio_naive_over_optlab": round(paired("naive", "optlab"), 3),
        "optlab_run_eval_s": round(eval_s, 4),
        "optlab_run_eval_note": "not in epoch_s: `optlab run` evaluates the training set and a 10,000-image "
                                "test set after each epoch; this is that cost",
        "bar_optlab_within_15pct_of_fused": median["optlab"] <= 1.15 * median["fused"],
        "bar_optlab_faster_than_naive": median["optlab"] < median["naive"],
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
