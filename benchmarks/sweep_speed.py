"""What a sweep of 8 configurations costs against one configuration (or 8 run in a row); prints JSON.

Every variant is what `optlab sweep` / `optlab run` compile: `tiny.run_fn` and
`classify.train_epoch` (the engine's programs), alone under `jax.jit` or vmapped over a lane
axis of 8 configurations (different learning rates and seeds) under `jax.jit`, sharded over the
local devices exactly as optlab.core.devices lays out a sweep. Compilation is left out: each program
is compiled and run once first, then timed `--repeats` times, single and sweep interleaved so
that machine noise hits both alike; reported are medians and their ratios, measured in one process.

  tiny     the 2-weight problem, --tiny-steps updates with momentum: sweep of 8 vs one config (bar ≤ 3×)
  narrow   MLP 784-32-10, one epoch of Adam in batches of 100: sweep of 8 vs one config (bar ≤ 3×)
  lecture  MLP 784-225-225-10, one epoch: sweep of 8 vs 8 single configs in a row (bar ≤ 1.1×)

Data: real MNIST when $OPTLAB_DATA or ../shared/data (relative to the repository) holds it,
else synthetic uint8 images; the first --n-train images are used.

    python benchmarks/sweep_speed.py --n-train 10000 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from functools import partial
from pathlib import Path

import jax
import numpy as np

from optlab import config
from optlab.core import devices
from optlab.data import datasets
from optlab.experiments import classify, tiny
from optlab.problems import tiny as tiny_problem
from optlab.runs import resolve

LANES = 8
LRS = (1e-4, 3e-4, 1e-3, 3e-3)


def timed(fn) -> float:
    begin = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - begin


def median_ratio(single, sweep, repeats: int, singles_per_round: int = 1) -> dict:
    """Compile-free medians: `single` run `singles_per_round` times in a row vs `sweep` once, interleaved."""
    timed(single), timed(sweep)  # compile and warm up
    a, b = [], []
    for _ in range(repeats):
        a.append(sum(timed(single) for _ in range(singles_per_round)))
        b.append(timed(sweep))
    return {"single_s": statistics.median(a), "sweep_s": statistics.median(b),
            "ratio": statistics.median(b) / statistics.median(a)}


def wall_ratio(make_single, make_sweep, repeats: int) -> dict:
    """Wall time including compilation (what `optlab run` and `optlab sweep` cost): `make_*()` builds a
    fresh program (so it compiles again) and returns a callable that runs it."""
    a, b = [], []
    for _ in range(repeats):
        a.append(timed(lambda: make_single()()))
        b.append(timed(lambda: make_sweep()()))
    return {"wall_single_s": statistics.median(a), "wall_sweep_s": statistics.median(b),
            "wall_ratio": statistics.median(b) / statistics.median(a)}


def tiny_case(steps: int, repeats: int) -> dict:
    cfgs = [resolve.resolve([config.Layer({"experiment": "tiny", "optimizer": "momentum", "steps": steps,
                                          "lr": 0.01 * (i + 1), "seed": i}, "flag")]) for i in range(LANES)]
    with jax.enable_x64(True):
        params, hp1, key = tiny_problem.init(cfgs[0].start), tiny.hyperparams(cfgs[0]), jax.random.key(0)
        lanes = devices.Lanes.over(LANES)
        hp = lanes.stack([devices.to_host(tiny.hyperparams(c)) for c in cfgs])

        def single():
            run = tiny.run_fn(cfgs[0])
            return lambda: run(params, hp1, key)

        def sweep():
            run = tiny.run_fn(cfgs[0])
            program = jax.jit(jax.vmap(lambda h: run(params, h, jax.random.key(h["seed"]))),
                              out_shardings=lanes.sharded)
            return lambda: program(hp)

        result = wall_ratio(single, sweep, repeats) | median_ratio(single(), sweep(), repeats)
    return {"case": f"tiny, {steps} momentum steps", "compared_with": "one config", "bar": 3.0, **result}


def trainer(epoch, state, hp, x, y, epochs: int):
    """A callable that trains `epochs` more epochs from where the last call stopped."""
    def train():
        nonlocal state
        for _ in range(epochs):
            state = epoch(state, hp, x, y)[0]
        return state

    return train


def network_case(name: str, hidden: tuple, images, labels, repeats: int, in_a_row: int, epochs: int) -> dict:
    n_train = len(images)
    cfgs = [resolve.resolve([config.Layer({"experiment": "mnist", "optimizer": "adam", "hidden": list(hidden),
                                          "lr": LRS[i % len(LRS)], "seed": i, "input_noise": 0, "epochs": epochs,
                                          "lr_schedule": "constant"}, "flag")]) for i in range(LANES)]
    cfg, sizes = cfgs[0], (784, *hidden, 10)
    lanes = devices.Lanes.over(LANES)
    x, y = lanes.replicate((images, labels))
    hp1 = jax.tree.map(np.asarray, classify.hyperparams(cfg))
    hp = lanes.stack([devices.to_host(classify.hyperparams(c)) for c in cfgs])

    def single():
        state, epoch = classify.initial_state(cfg, sizes, n_train, hp1), jax.jit(classify.train_epoch(cfg, n_train))
        return trainer(epoch, state, hp1, x, y, epochs)

    def sweep():
        state = jax.jit(jax.vmap(partial(classify.initial_state, cfg, sizes, n_train)), out_shardings=lanes.sharded)(hp)
        epoch = jax.jit(jax.vmap(classify.train_epoch(cfg, n_train), in_axes=(0, 0, None, None)),
                        out_shardings=lanes.sharded)
        return trainer(epoch, state, hp, x, y, epochs)

    result = median_ratio(single(), sweep(), repeats, in_a_row)
    if in_a_row == 1:
        result |= wall_ratio(single, sweep, repeats)
    return {"case": f"{name} MLP {'-'.join(map(str, sizes))}, {epochs} epoch(s) of {n_train:,} images, Adam, batch 100",
            "compared_with": "one config" if in_a_row == 1 else f"{in_a_row} configs in a row",
            "bar": 3.0 if in_a_row == 1 else 1.1, **result}


def load_images(n_train: int) -> tuple[np.ndarray, np.ndarray, str]:
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    for root in (os.environ.get(datasets.ENV_VAR), shared):
        if root and (Path(root) / "mnist").is_dir():
            data = datasets.load("mnist", root)
            return data.train_images[:n_train], data.train_labels[:n_train], f"MNIST ({root})"
    rng = np.random.default_rng(0)
    return (rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
            rng.integers(0, 10, n_train, dtype=np.uint8), "synthetic")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=60_000)
    parser.add_argument("--lecture-n-train", type=int, default=10_000,
                        help="images for the (slow) lecture-network case")
    parser.add_argument("--tiny-steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    images, labels, source = load_images(max(args.n_train, args.lecture_n_train))
    cases = [
        tiny_case(args.tiny_steps, args.repeats),
        network_case("narrow", (32,), images[: args.n_train], labels[: args.n_train], args.repeats, 1, args.epochs),
        network_case("lecture", (225, 225), images[: args.lecture_n_train], labels[: args.lecture_n_train],
                     args.repeats, LANES, args.epochs),
    ]
    for case in cases:  # the bar applies to wall time where it is measured (what a user waits for)
        case["passes"] = case.get("wall_ratio", case["ratio"]) <= case["bar"]
    device = jax.devices()[0]
    print(json.dumps({"device": f"{device.platform} {device.device_kind}", "device_count": jax.device_count(),
                      "cpu_count": os.cpu_count(), "data": source, "lanes": LANES, "repeats": args.repeats,
                      "cases": cases}, indent=1))


if __name__ == "__main__":
    main()
