"""The input noise's Gaussian draws: N(0, 1) at a quarter of `jax.random.normal`'s hashing.

`jax.random.normal` spends one threefry2x32 hash, 64 random bits, on every float32 number and turns it
into a normal with the inverse error function. Input noise needs many numbers (the lecture's
network: 100 × 784 a step, 47 million an epoch) and little resolution, so `normal` takes four 16-bit
uniforms from each hash and maps each through a table of the standard normal's quantiles:

    z = Φ⁻¹((k + ½) / 2¹⁶),   k ~ uniform on {0, …, 2¹⁶ − 1}

The draws are the standard normal quantised to 2¹⁶ equally likely values: symmetric (mean 0),
variance 1 − 2.0·10⁻⁵, fourth moment 2.9991 (3 for N(0, 1)), largest |z| = Φ⁻¹(1 − 2⁻¹⁷) = 4.32, and
their distribution function everywhere within 2⁻¹⁷ ≈ 7.6·10⁻⁶ of Φ, so a Kolmogorov–Smirnov test needs
~10¹⁰ draws to tell them from N(0, 1) (the lecture's 50 epochs draw 2.4·10⁹). The bits are threefry2x32's
from the key, as in jax.random, so distinct keys give independent draws and a key always the same ones.

Written here because no library draws normals this way: jax.random has no low-resolution normal, and
bfloat16 or float16 draws keep only 7 or 10 bits of the uniform (tails cut at 2.7σ or 3.3σ). Keys of other
implementations (`jax_default_prng_impl`) fall back to `jax.random.normal`.
"""

from __future__ import annotations

import functools
import math
import statistics

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.random import threefry_2x32

LEVELS = 2**16


@functools.cache
def quantiles() -> np.ndarray:
    """Φ⁻¹((k + ½) / 2¹⁶) for k = 0 … 2¹⁶ − 1, computed once in float64 (the standard library's
    Wichura AS241, good to 1e-16) and rounded to float32."""
    inverse = statistics.NormalDist().inv_cdf
    return np.array([inverse((k + 0.5) / LEVELS) for k in range(LEVELS)], dtype=np.float32)


def normal(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """Standard normal draws of `shape` from a typed `key`, quantised to 2¹⁶ levels (module docstring)."""
    if not _is_threefry(key):
        return jax.random.normal(key, shape, dtype)
    size = math.prod(shape)
    words = threefry_2x32(jax.random.key_data(key), jax.lax.iota(jnp.uint32, -(-size // 2)))
    levels = jnp.stack([words >> 16, words & 0xFFFF], axis=-1).reshape(-1)[:size]  # an odd size drops one
    return jnp.asarray(quantiles())[levels.reshape(shape)].astype(dtype)


def _is_threefry(key: jax.Array) -> bool:
    return jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and str(jax.random.key_impl(key)) == "threefry2x32"
