"""The input noise's draws (optlab.problems.noise): the table against the standard library's normal
distribution function, every level equally likely, the halves of a hash independent, and the documented
moments and Kolmogorov distance. The noise as the loss adds it is tested in tests/test_mlp.py."""

from __future__ import annotations

import math
import statistics

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optlab.problems import mlp, noise

PHI = statistics.NormalDist().cdf
LEVELS = noise.LEVELS


def levels_of(z: np.ndarray) -> np.ndarray:
    """Each draw's level k (its index in the quantile table); fails unless every draw is a table value."""
    table = noise.quantiles()
    k = np.searchsorted(table, z)
    assert np.array_equal(table[np.minimum(k, LEVELS - 1)], z), "a draw that is not a table value"
    return k


def test_the_table_is_the_normal_quantiles_at_the_level_midpoints():
    """Φ(q_k) = (k + ½)/2¹⁶ to float32 rounding of q_k (Φ from the standard library, erf-based), and the
    distribution function of the draws is within 2⁻¹⁷ of Φ everywhere, as the module docstring says."""
    q = noise.quantiles().astype(np.float64)
    assert q.dtype == np.float64 and q.shape == (LEVELS,) and np.all(np.diff(q) > 0)
    cdf = np.array([0.5 * (1 + math.erf(v / math.sqrt(2))) for v in q])
    k = np.arange(LEVELS)
    assert np.max(np.abs(cdf - (k + 0.5) / LEVELS)) < 3e-8
    kolmogorov = max(np.max(np.abs(k / LEVELS - cdf)), np.max(np.abs((k + 1) / LEVELS - cdf)))
    assert 2**-17 <= kolmogorov < 2**-17 + 3e-8
    np.testing.assert_allclose(q, -q[::-1], atol=1e-6)  # symmetric
    assert abs(np.mean(q**2) - (1 - 2.0e-5)) < 1e-6 and abs(np.mean(q**4) - 2.9991) < 1e-4
    assert q[-1] == pytest.approx(statistics.NormalDist().inv_cdf(1 - 2**-17), abs=1e-6)
    assert q[-1] == pytest.approx(4.32, abs=0.005)


def test_every_level_is_equally_likely():
    """6.5 million draws, ~100 per level: Pearson's χ² over the 65,536 levels within 6 standard deviations
    of its mean (k − 1 degrees of freedom: mean k − 1, variance 2(k − 1)); and no level is missing."""
    z = np.asarray(noise.normal(jax.random.key(3), (100, LEVELS)))
    counts = np.bincount(levels_of(z).ravel(), minlength=LEVELS)
    expected = z.size / LEVELS
    chi2 = float(np.sum((counts - expected) ** 2) / expected)
    assert abs(chi2 - (LEVELS - 1)) < 6 * math.sqrt(2 * (LEVELS - 1)), chi2
    assert counts.min() > 0


def test_draws_match_the_standard_normal_in_distribution_and_moments():
    """2 million draws against N(0, 1): the Kolmogorov–Smirnov statistic below its 10⁻⁶ critical value,
    mean, variance and fourth moment within 5 standard errors, and the 3σ tails at 2(1 − Φ(3))."""
    z = np.sort(np.asarray(noise.normal(jax.random.key(4), (2_000_000,)), np.float64))
    n = z.size
    values, first = np.unique(z, return_index=True)
    cdf = np.array([PHI(v) for v in values])
    after = np.append(first[1:], n) / n
    assert max(np.max(np.abs(after - cdf)), np.max(np.abs(first / n - cdf))) < math.sqrt(-math.log(0.5e-6) / (2 * n))
    assert abs(z.mean()) < 5 / math.sqrt(n)
    assert abs(z.var() - 1) < 5 * math.sqrt(2 / n)
    assert abs(np.mean(z**4) - 3) < 5 * math.sqrt(96 / n)  # Var(z⁴) = 105 − 9
    tail = 2 * (1 - PHI(3))
    assert abs(np.mean(np.abs(z) > 3) - tail) < 5 * math.sqrt(tail * (1 - tail) / n)


def test_the_four_draws_of_one_hash_are_independent():
    """A hash gives words i and i + m/2 of the m words, each split into its high and low 16 bits (draws
    2i and 2i + 1). For each pair of the four draws of a hash: a 16 × 16 contingency table of their
    levels' top four bits has Pearson's χ² within 6 standard deviations of independence (225 degrees of
    freedom), and their correlation is within 5 standard errors of 0."""
    m = 2**20  # words
    z = np.asarray(noise.normal(jax.random.key(5), (2 * m,)))
    k = levels_of(z)
    hi, lo = k[0::2], k[1::2]  # the two halves of each word
    quads = [hi[: m // 2], lo[: m // 2], hi[m // 2:], lo[m // 2:]]
    draws = [z[0::2][: m // 2], z[1::2][: m // 2], z[0::2][m // 2:], z[1::2][m // 2:]]
    for a in range(4):
        for b in range(a + 1, 4):
            table = np.zeros((16, 16))
            np.add.at(table, (quads[a] >> 12, quads[b] >> 12), 1)
            expected = np.outer(table.sum(1), table.sum(0)) / table.sum()
            chi2 = float(np.sum((table - expected) ** 2 / expected))
            assert abs(chi2 - 225) < 6 * math.sqrt(2 * 225), (a, b, chi2)
            r = np.corrcoef(draws[a], draws[b])[0, 1]
            assert abs(r) < 5 / math.sqrt(m // 2), (a, b, r)


@pytest.mark.parametrize("size", [1, 2, 3, 5, 6, 99, 100, 78_400])
def test_the_levels_are_the_halves_of_threefry_words(size):
    """Draws 2i and 2i + 1 are the levels given by the high and the low 16 bits of word i of the key's
    threefry2x32 stream (jax.extend.random.threefry_2x32 over the counters 0 … m − 1, m = ⌈size/2⌉), each
    bit used once; odd m and odd sizes included."""
    from jax.extend.random import threefry_2x32

    key = jax.random.key(10)
    words = np.asarray(threefry_2x32(jax.random.key_data(key), jnp.arange(-(-size // 2), dtype=jnp.uint32)))
    k = levels_of(np.asarray(noise.normal(key, (size,))))
    np.testing.assert_array_equal(k[0::2], words >> 16)
    np.testing.assert_array_equal(k[1::2], (words & 0xFFFF)[: size // 2])


def test_a_key_always_gives_the_same_draws_and_other_keys_others():
    key, other = jax.random.split(jax.random.key(6))
    a, b = np.asarray(noise.normal(key, (50, 784))), np.asarray(noise.normal(key, (50, 784)))
    c = np.asarray(noise.normal(other, (50, 784)))
    assert np.array_equal(a, b)
    assert abs(np.corrcoef(a.ravel(), c.ravel())[0, 1]) < 5 / math.sqrt(a.size)
    # under vmap (a sweep's lanes) each lane draws what its key draws alone
    keys = jax.random.split(key, 3)
    lanes = np.asarray(jax.vmap(lambda k: noise.normal(k, (4, 7)))(keys))
    np.testing.assert_array_equal(lanes, np.stack([np.asarray(noise.normal(k, (4, 7))) for k in keys]))


@pytest.mark.parametrize("shape", [(1,), (7,), (3, 5), (2, 3, 3), (100, 784)])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_any_shape_and_dtype_odd_sizes_included(shape, dtype):
    z = noise.normal(jax.random.key(7), shape, dtype)
    assert z.shape == shape and z.dtype == dtype
    assert np.all(np.isfinite(np.asarray(z, np.float32)))
    if dtype == jnp.float32:
        levels_of(np.asarray(z))
        # an odd size draws the first values of the next even size
        longer = np.asarray(noise.normal(jax.random.key(7), (math.prod(shape) + 1,)))
        if math.prod(shape) % 2:
            np.testing.assert_array_equal(np.asarray(z).ravel(), longer[:-1])


def test_keys_of_another_implementation_draw_with_jax_random_normal():
    key = jax.random.key(8, impl="rbg")
    np.testing.assert_array_equal(np.asarray(noise.normal(key, (3, 4))), np.asarray(jax.random.normal(key, (3, 4))))


def test_the_loss_adds_sigma_times_these_draws(monkeypatch):
    """mlp.loss's noisy input is the clean pixels plus σ·noise.normal(its noise key): zero images, so the
    network's input is σ·z exactly."""
    sigma, key = 0.3, jax.random.key(9)
    images, labels = np.zeros((5, 28, 28), np.uint8), np.zeros(5, np.uint8)
    seen = []

    def capture(params, x, *args, **kwargs):
        seen.append(np.asarray(x))
        return jnp.zeros((x.shape[0], 10)), []

    monkeypatch.setattr(mlp, "forward", capture)
    mlp.loss(None, (images, labels), key, input_noise=sigma)
    noise_key, _ = jax.random.split(key)
    np.testing.assert_allclose(seen[0], sigma * np.asarray(noise.normal(noise_key, (5, 784))), rtol=1e-6)
