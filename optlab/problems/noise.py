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
from the key, as in jax.random, so distinct keys give independent draws and a key always the same ones:
draws 2i and 2i + 1 are the high and low halves of word i of `threefry_2x32(key, 0 … m − 1)`.

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

LEVELS = 2**16
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))  # Threefry-2x32's, alternating every four rounds
_QUARTERS = np.array([48, 32, 16, 0], np.uint64)  # a packed pair's 16-bit levels, first word's high half first


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
    with jax.enable_x64(True):
        pairs = threefry_pairs(jax.random.key_data(key), -(-size // 2))
        levels = jax.lax.platform_dependent(pairs, cpu=_quarters_stored, default=_quarters)
    # levels[2p + h, i] is half h of word i + p·n (n = pairs.size); the draws take the words in order
    levels = levels.reshape(2, 2, -1).transpose(0, 2, 1).reshape(-1)
    return jnp.asarray(quantiles())[levels[:size].reshape(shape)].astype(dtype)


def threefry_pairs(key_data: jax.Array, m: int) -> jax.Array:
    """`jax.extend.random.threefry_2x32(key_data, 0 … m − 1)` with words i and i + n of its m in one uint64,
    word i in the high half (n = ⌈m/2⌉; call under `jax.enable_x64`).

    Threefry-2x32 with 20 rounds (Salmon et al., SC'11), the hash jax.random uses, hashes the counter pair
    (i, i + n) into those two words; for odd m, jax pairs the last counter with 0, and so does this. Written
    out because jax's `threefry_2x32` hands back the two words of a hash as separate arrays, and on the
    CPU, where it runs the rounds as a loop, XLA computes each of them by repeating all the rounds: one
    64-bit lane holds both, so that each hash is computed once (tests/test_noise.py: equal bit for bit).
    """
    n = -(-m // 2)
    count = jax.lax.iota(jnp.uint32, n)
    x = [count, jnp.where(count + n < m, count + n, jnp.uint32(0))]
    k = [key_data[0], key_data[1], key_data[0] ^ key_data[1] ^ jnp.uint32(0x1BD11BDA)]
    x = [x[0] + k[0], x[1] + k[1]]
    for block in range(5):
        for r in _ROTATIONS[block % 2]:
            x[0] = x[0] + x[1]
            x[1] = ((x[1] << r) | (x[1] >> (32 - r))) ^ x[0]
        x = [x[0] + k[(block + 1) % 3], x[1] + k[(block + 2) % 3] + jnp.uint32(block + 1)]
    return (x[0].astype(jnp.uint64) << 32) | x[1].astype(jnp.uint64)


def _quarters(pairs: jax.Array) -> jax.Array:
    """The 16-bit levels of each packed pair, uint32[4, n]: row q holds bits 48 − 16q … 63 − 16q."""
    return ((pairs >> jnp.asarray(_QUARTERS)[:, None]) & 0xFFFF).astype(jnp.uint32)


def _quarters_stored(pairs: jax.Array) -> jax.Array:
    """`_quarters`, one row at a time: a loop makes XLA:CPU store the hashes before it splits them, instead
    of fusing all twenty rounds into the computation of each of the four levels."""
    return jax.lax.map(lambda shift: ((pairs >> shift) & 0xFFFF).astype(jnp.uint32), jnp.asarray(_QUARTERS))


def _is_threefry(key: jax.Array) -> bool:
    return jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and str(jax.random.key_impl(key)) == "threefry2x32"
