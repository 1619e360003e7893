"""What the input noise costs an epoch: optlab's default σ = 0.3 epoch and its σ = 0 epoch against the
hand-fused no-noise reference, as ratios; prints JSON.

The variants are those of benchmarks/epoch_speed.py (the lecture network 784-225-225-10, Adam at η = 1e-3
with the anneal schedule, minibatches of 100, synthetic MNIST-shaped uint8 data):

  noisy     `optlab run mnist` as it runs by default: σ = 0.3, fresh N(0, σ²) per pixel per step
  unhashed  a measuring device, not noise: the same epoch with the table's levels taken from a counter
            instead of threefry, so that only the lookups and the adding cost (`lookups_share`)
  clean     the same with `--input-noise 0`
  fused     the hand-fused reference: one jitted lax.scan with optax.adam, no noise, nothing else

Each variant compiles in a warm-up epoch; then `--repeats` × `--epochs` epochs of each are timed round-robin
(who goes first rotating), and reported are the median epoch times and the medians of slot-by-slot ratios.
`noise_share` is (noisy − clean) / noisy: the fraction of the default epoch that the noise costs;
`lookups_share` is (unhashed − clean) / unhashed, what any draw through the table costs before its bits.

Beside the epochs, an epoch's draws alone (one jitted lax.scan of 600 draws of 100 × 784, summed) are timed
round-robin with them, for three generators: `jax.random.normal` (what optlab drew before), optlab's
`noise.normal` (four 16-bit quantiles per threefry hash), and the threefry words `noise.normal` needs with
no normal made of them: jax's threefry_2x32 as XLA:CPU compiles it, which computes the rounds of a hash
once for each of its two words (README, Speed: "The input noise").

    python benchmarks/noise_speed.py                    # 60,000 images
    python benchmarks/noise_speed.py --n-train 10000 --epochs 3 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.random import threefry_2x32

sys.path.insert(0, str(Path(__file__).resolve().parent))
from epoch_speed import SIZES, fused_variant, optlab_variant, timed  # noqa: E402
from optlab.problems import mlp, noise  # noqa: E402


def draws_epoch(draw, steps: int, shape: tuple[int, int]):
    """One epoch's draws alone: `steps` draws of `shape` in one lax.scan, each reduced so none is elided."""

    @jax.jit
    def epoch(key):
        def body(total, k):
            return total + draw(k, shape).sum(), None

        return jax.lax.scan(body, jnp.float32(0), jax.random.split(key, steps))[0]

    key = jax.random.key(0)
    return lambda: epoch(key).block_until_ready()


def unhashed_levels(key, shape, dtype=jnp.float32):
    """noise.normal's table looked up at levels that cost nothing to make (a Weyl sequence from the key):
    not noise, only the price of the lookups."""
    size = math.prod(shape)
    levels = (jax.lax.iota(jnp.uint32, size) * jnp.uint32(2654435761) + jax.random.key_data(key)[0]) >> 16
    return jnp.asarray(noise.quantiles())[levels.reshape(shape)].astype(dtype)


def compiled_with(draw, run_epoch):
    """`run_epoch`, compiled (by one call) while mlp's input noise is drawn by `draw` instead of noise.normal."""
    saved, noise.normal = noise.normal, draw
    try:
        run_epoch()
    finally:
        noise.normal = saved
    return run_epoch


def threefry_hashes_only(key, shape):
    """The threefry words noise.normal draws for `shape`, turned into floats but into no normal."""
    words = threefry_2x32(jax.random.key_data(key), jax.lax.iota(jnp.uint32, -(-math.prod(shape) // 2)))
    return (words >> 16).astype(jnp.float32) + (words & 0xFFFF).astype(jnp.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=60_000)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per variant per round (default 3)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of --epochs (default 3)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--sigma", type=float, default=0.3, help="the noisy variant's σ (default 0.3, the lecture's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.n_train < args.batch_size or min(args.epochs, args.repeats, args.batch_size) < 1 or args.sigma <= 0:
        parser.error("need --n-train ≥ --batch-size ≥ 1, --epochs, --repeats ≥ 1 and --sigma > 0")

    rng = np.random.default_rng(args.seed)
    images = jax.device_put(rng.integers(0, 256, (args.n_train, 28, 28), dtype=np.uint8))
    labels = jax.device_put(rng.integers(0, 10, args.n_train).astype(np.uint8))

    def fresh_params():  # each variant its own copy: they donate their buffers
        return mlp.init(jax.random.key(args.seed), SIZES, "he")

    total = 1 + args.epochs * args.repeats
    common = (images, labels)

    def noisy():  # one epoch more in its schedule: compiled_with runs one
        return optlab_variant(*common, fresh_params(), args.n_train, args.batch_size, 1e-3, total + 1, args.seed,
                              input_noise=args.sigma)[0]

    variants = {
        "noisy": noisy(),
        "unhashed": compiled_with(unhashed_levels, noisy()),
        "clean": optlab_variant(*common, fresh_params(), args.n_train, args.batch_size, 1e-3, total, args.seed)[0],
        "fused": fused_variant(*common, fresh_params(), args.n_train, args.batch_size, 1e-3, args.seed),
    }
    steps, draw_shape = args.n_train // args.batch_size, (args.batch_size, 784)
    variants |= {
        "draws_jax_random_normal": draws_epoch(jax.random.normal, steps, draw_shape),
        "draws_optlab_noise_normal": draws_epoch(noise.normal, steps, draw_shape),
        "draws_threefry_hashes_only": draws_epoch(threefry_hashes_only, steps, draw_shape),
    }
    first = {name: timed(run)[0] for name, run in variants.items()}  # compiles
    times: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for slot in range(args.epochs * args.repeats):
        for name in names[slot % len(names):] + names[: slot % len(names)]:
            times[name].append(timed(variants[name])[0])

    median = {name: statistics.median(ts) for name, ts in times.items()}

    def paired(a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(times[a], times[b]))

    def share(a: str) -> float:
        return statistics.median((n - c) / n for n, c in zip(times[a], times["clean"]))

    noise_share = share("noisy")
    report = {
        "benchmark": "noise_speed",
        "backend": jax.default_backend(),
        "device_kind": jax.devices()[0].device_kind,
        "jax": jax.__version__,
        "prng": jax.config.jax_default_prng_impl,
        "threefry_partitionable": bool(jax.config.jax_threefry_partitionable),
        "network": "-".join(map(str, SIZES)),
        "n_train": args.n_train,
        "batch_size": args.batch_size,
        "sigma": args.sigma,
        "normals_per_epoch": (args.n_train // args.batch_size) * args.batch_size * 784,
        "timed_epochs_per_variant": args.epochs * args.repeats,
        "epoch_s": {name: round(t, 4) for name, t in median.items()},
        "first_epoch_s": {name: round(t, 3) for name, t in first.items()},
        "all_epoch_s": {name: [round(t, 4) for t in ts] for name, ts in times.items()},
        "ratio_noisy_over_fused": round(paired("noisy", "fused"), 3),
        "ratio_clean_over_fused": round(paired("clean", "fused"), 3),
        "ratio_noisy_over_clean": round(paired("noisy", "clean"), 3),
        "noise_share_of_noisy_epoch": round(noise_share, 3),
        "lookups_share_of_unhashed_epoch": round(share("unhashed"), 3),
        "draws_share_of_clean_epoch": {name.removeprefix("draws_"): round(paired(name, "clean"), 3)
                                       for name in variants if name.startswith("draws_")},
        "bar_noisy_within_15pct_of_fused": paired("noisy", "fused") <= 1.15,
        "bar_noise_at_most_10pct_of_epoch": noise_share <= 0.10,
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
