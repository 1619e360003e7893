"""optlab.problems.mlp and the epoch engine on it: the maths checked against formulas written out.

Gradients against central finite differences in float64, the loss against a numpy softmax
cross-entropy, init statistics against their formulas, inverted dropout, `evaluate`, one
`engine.epoch_fn` against a hand-written loop over the same shuffle, and the input noise's statistics.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optlab.core import engine, optimizers
from optlab.problems import mlp

KEY = jax.random.key(0)


def random_images(seed: int, n: int, shape=(2, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


def random_params(seed: int, sizes, bias_scale: float = 0.1) -> list[dict]:
    """He-scaled weights plus non-zero biases (so bias terms are exercised), drawn by numpy: no compiling."""
    rng = np.random.default_rng(seed)
    return [{"w": jnp.asarray(rng.standard_normal((b, a)) * np.sqrt(2 / a), jnp.float32),
             "b": jnp.asarray(bias_scale * rng.standard_normal(b), jnp.float32)}
            for a, b in zip(sizes[:-1], sizes[1:])]


# One compiled program per shape instead of dozens of op-by-op compilations.
loss_and_grad = jax.jit(jax.value_and_grad(mlp.loss))


def np_forward(params, images) -> tuple[np.ndarray, list[np.ndarray]]:
    x = images.reshape(len(images), -1).astype(np.float64) / 255.0
    hidden = []
    for layer in params[:-1]:
        x = np.maximum(x @ np.asarray(layer["w"], np.float64).T + np.asarray(layer["b"], np.float64), 0.0)
        hidden.append(x)
    return x @ np.asarray(params[-1]["w"], np.float64).T + np.asarray(params[-1]["b"], np.float64), hidden


def np_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_softmax[np.arange(len(labels)), labels].mean())


# ---- loss and gradients ------------------------------------------------------------------------


def test_gradient_matches_central_finite_differences_in_float64():
    sizes, decay, h = (6, 5, 4, 3), 0.07, 1e-6
    images = random_images(1, 7)
    labels = np.array([0, 1, 2, 0, 1, 2, 1], np.uint8)
    with jax.enable_x64(True):
        params = jax.tree.map(lambda a: a.astype(jnp.float64), random_params(2, sizes))
        batch = (jnp.asarray(images), jnp.asarray(labels))

        @jax.jit
        def f(p):
            return mlp.loss(p, batch, KEY, weight_decay=decay)

        grads = jax.jit(jax.grad(f))(params)
        rng = np.random.default_rng(3)
        checked = 0
        for i, (layer, glayer) in enumerate(zip(params, grads)):
            for name in ("w", "b"):
                value, grad = np.asarray(layer[name]), np.asarray(glayer[name])
                for flat in rng.choice(value.size, size=min(4, value.size), replace=False):
                    idx = np.unravel_index(flat, value.shape)

                    def at(delta, value=value, idx=idx, i=i, name=name):  # bound now, not at the loop's end
                        moved = [dict(p) for p in params]
                        shifted = value.copy()
                        shifted[idx] += delta
                        moved[i][name] = jnp.asarray(shifted)
                        return float(f(moved))

                    numeric = (at(h) - at(-h)) / (2 * h)
                    analytic = float(grad[idx])
                    assert abs(numeric - analytic) <= 1e-6 * max(abs(analytic), 1e-3), (i, name, idx, numeric, analytic)
                    checked += 1
        assert checked == 4 * 5 + 3  # distinct coordinates: 4 of every w and b, all 3 of the last bias
        # the weight-decay term really is in the gradient: with λ the W-gradient differs by exactly λW
        plain = jax.jit(jax.grad(lambda p: mlp.loss(p, batch, KEY)))(params)
        np.testing.assert_allclose(np.asarray(grads[1]["w"] - plain[1]["w"]), decay * np.asarray(params[1]["w"]),
                                   rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(np.asarray(grads[1]["b"]), np.asarray(plain[1]["b"]), rtol=1e-12, atol=1e-15)


def test_loss_equals_numpy_cross_entropy_plus_half_lambda_squared_weights():
    sizes, decay = (6, 5, 4, 3), 0.3
    params = random_params(4, sizes)
    images, labels = random_images(5, 9), np.random.default_rng(6).integers(0, 3, 9).astype(np.uint8)
    logits, _ = np_forward(params, images)
    # weights only, not biases
    penalty = 0.5 * decay * sum(float(np.sum(np.asarray(p["w"], np.float64) ** 2)) for p in params)
    expected = np_cross_entropy(logits, labels) + penalty
    loss = jax.jit(mlp.loss, static_argnames="weight_decay")
    got = float(loss(params, (jnp.asarray(images), jnp.asarray(labels)), KEY, weight_decay=decay))
    assert got == pytest.approx(expected, rel=1e-5)
    assert penalty > 0.1 * expected  # the penalty is a real part of what was compared
    no_decay = float(loss(params, (jnp.asarray(images), jnp.asarray(labels)), KEY))
    assert no_decay == pytest.approx(np_cross_entropy(logits, labels), rel=1e-5)


def test_one_layer_logits_are_x_w_transpose_plus_b():
    rng = np.random.default_rng(7)
    w, b = rng.standard_normal((4, 6)).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    images = random_images(8, 5)
    x = images.reshape(5, -1).astype(np.float64) / 255.0
    logits, hidden = mlp.forward([{"w": jnp.asarray(w), "b": jnp.asarray(b)}], mlp.pixels(jnp.asarray(images)))
    assert hidden == []
    np.testing.assert_allclose(np.asarray(logits), x @ w.T.astype(np.float64) + b, rtol=1e-5, atol=1e-6)


def test_stable_log_softmax_survives_logits_of_ten_thousand():
    params = [{"w": jnp.zeros((3, 6)), "b": jnp.array([1e4, 0.0, -1e4])}]  # logits = b exactly
    images = random_images(9, 2)
    batch = (jnp.asarray(images), jnp.array([1, 0], jnp.uint8))
    value, grads = loss_and_grad(params, batch, KEY)
    # label 1 costs logsumexp - 0 = 1e4 (+ e^-1e4); label 0 costs ~e^-1e4 = 0: the mean is 5000
    assert float(value) == pytest.approx(5000.0, rel=1e-6)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    # d mean / d b = mean(softmax - onehot) = ([1,0,0]-[0,1,0] + [1,0,0]-[1,0,0]) / 2
    np.testing.assert_allclose(np.asarray(grads[0]["b"]), [0.5, -0.5, 0.0], atol=1e-6)


# ---- initialisation ------------------------------------------------------------------------------


@pytest.mark.parametrize("name, formula", [
    ("glorot", lambda fan_in, fan_out: math.sqrt(2 / (fan_in + fan_out))),
    ("he", lambda fan_in, fan_out: math.sqrt(2 / fan_in)),
    ("normal", lambda fan_in, fan_out: 0.01),
])
@pytest.mark.parametrize("scale", [1.0, 2.5])
def test_init_std_matches_formula_times_scale(name, formula, scale):
    sizes = (1500, 700, 10)
    params = mlp.init(jax.random.key(11), sizes, name, scale)
    w = np.asarray(params[0]["w"], np.float64)
    assert w.shape == (700, 1500)
    expected = scale * formula(1500, 700)
    # 1.05M samples: the std estimate's own relative error is ~0.07%, so 1% is a generous bound
    assert w.std() == pytest.approx(expected, rel=0.01)
    assert abs(w.mean()) < 0.01 * expected
    assert all(np.all(np.asarray(p["b"]) == 0) for p in params)


def test_init_shapes_are_fan_out_by_fan_in_and_param_count_of_the_lecture_network():
    sizes = (784, 225, 225, 10)
    params = mlp.init(jax.random.key(0), sizes)
    assert [p["w"].shape for p in params] == [(225, 784), (225, 225), (10, 225)]
    assert [p["b"].shape for p in params] == [(225,), (225,), (10,)]
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params))
    assert sum(leaf.size for leaf in jax.tree.leaves(params)) == 229_735
    assert mlp.param_count(sizes) == 229_735
    # different layers get different keys: W2 is not a copy of part of W1's random stream
    assert not np.allclose(np.asarray(params[1]["w"])[:, :10], np.asarray(params[0]["w"])[:, :10])


# ---- dropout and evaluate ------------------------------------------------------------------------


@pytest.mark.parametrize("p", [0.5, 0.2])
def test_inverted_dropout_zeroes_p_of_units_and_keeps_the_mean(p):
    """With an identity output layer the logits are the dropped-out hidden layer itself."""
    width, n = 256, 400
    rng = np.random.default_rng(12)
    w1 = rng.standard_normal((width, 6)).astype(np.float32)
    params = [{"w": jnp.asarray(w1), "b": jnp.full(width, 0.5)}, {"w": jnp.eye(width), "b": jnp.zeros(width)}]
    x = jnp.asarray(rng.random((n, 6)), jnp.float32)
    out, (hidden,) = mlp.forward(params, x, dropout=p, key=jax.random.key(13))
    out, hidden = np.asarray(out), np.asarray(hidden)
    positive = hidden > 0
    assert positive.mean() > 0.5  # enough live units for the statistics below
    dropped = (out == 0) & positive
    # ~ 60,000 live units: the dropped fraction is within 0.01 of p with overwhelming probability
    assert dropped.sum() / positive.sum() == pytest.approx(p, abs=0.01)
    kept = positive & ~dropped
    np.testing.assert_allclose(out[kept], hidden[kept] / (1 - p), rtol=1e-5)  # survivors scaled by 1/(1-p)
    assert out.mean() == pytest.approx(hidden.mean(), rel=0.02)  # so the mean activation is preserved
    # no dropout: the same network gives the hidden layer unchanged
    clean, _ = mlp.forward(params, x)
    np.testing.assert_allclose(np.asarray(clean), hidden, rtol=1e-6)


def test_evaluate_loss_error_and_active_fractions_match_numpy():
    sizes = (6, 8, 5, 4)
    params = random_params(14, sizes, bias_scale=0.3)
    images = random_images(15, 50)
    logits, hidden = np_forward(params, images)
    labels = np.random.default_rng(16).integers(0, 4, 50).astype(np.uint8)
    labels[:20] = logits[:20].argmax(axis=1)  # some right, most of the rest wrong
    result = jax.jit(mlp.evaluate)(params, jnp.asarray(images), jnp.asarray(labels))
    expected_error = float(np.mean(logits.argmax(axis=1) != labels))
    assert 0.2 < expected_error < 0.9
    assert float(result["error"]) == pytest.approx(expected_error, abs=1e-7)
    assert float(result["loss"]) == pytest.approx(np_cross_entropy(logits, labels), rel=1e-5)
    assert len(result["active"]) == 2
    for got, h in zip(result["active"], hidden):
        np.testing.assert_allclose(np.asarray(got), (h > 0).mean(axis=0), atol=1e-7)
    fractions = np.concatenate([np.asarray(a) for a in result["active"]])
    assert 0 < fractions.mean() < 1  # neither all dead nor all active: the comparison had something to see


# ---- the engine on the MLP --------------------------------------------------------------------


def gd_make_tx(hp, key):
    return optimizers.build("gd", optax.constant_schedule(hp["lr"]), hp)


def small_problem(n: int, seed: int = 20):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 4, 4), dtype=np.uint8)
    labels = rng.integers(0, 3, n).astype(np.uint8)
    params = random_params(seed, (16, 7, 3))
    return jnp.asarray(images), jnp.asarray(labels), params


def copy_tree(tree):
    return jax.tree.map(jnp.copy, tree)  # epoch_fn donates its state: keep our own copy


def count_of(opt_state) -> int:
    return int(opt_state.count)  # optax.inject_hyperparams counts the updates it has made


def test_epoch_with_one_full_batch_is_one_gradient_step():
    n, lr = 60, 0.3
    images, labels, params = small_problem(n)
    hp = {"lr": jnp.float32(lr)}
    expected_loss, expected_grad = loss_and_grad(params, (images, labels), KEY)
    expected = jax.tree.map(lambda p, g: p - lr * g, params, expected_grad)

    state = engine.init_state(gd_make_tx, copy_tree(params), hp, jax.random.key(21))
    state, mean_loss, last_lr = engine.epoch_fn(mlp.loss, gd_make_tx, n, n)(state, hp, images, labels)
    for got, want in zip(jax.tree.leaves(state.params), jax.tree.leaves(expected)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)
    moved = sum(float(jnp.sum(jnp.abs(g))) for g in jax.tree.leaves(expected_grad))
    assert moved > 1e-2  # the step was not a no-op
    assert float(mean_loss) == pytest.approx(float(expected_loss), rel=1e-5)  # the loss at the starting point
    assert float(last_lr) == pytest.approx(lr)
    assert count_of(state.opt_state) == 1


def test_epoch_with_several_batches_matches_a_hand_loop_over_the_same_shuffle():
    n, batch_size, lr = 50, 8, 0.2  # 6 full batches; the last 2 images of the shuffle are dropped
    images, labels, params = small_problem(n, seed=22)
    hp = {"lr": jnp.float32(lr)}
    state = engine.init_state(gd_make_tx, copy_tree(params), hp, jax.random.key(23))
    start_key = state.key

    # what epoch_fn does with the key: (next key, shuffle key, per-step keys)
    next_key, shuffle_key, _ = jax.random.split(start_key, 3)
    order = np.asarray(jax.random.permutation(shuffle_key, n))[: (n // batch_size) * batch_size]
    expected, losses = params, []
    for idx in order.reshape(n // batch_size, batch_size):
        value, grads = loss_and_grad(expected, (images[idx], labels[idx]), KEY)
        expected = jax.tree.map(lambda p, g: p - lr * g, expected, grads)
        losses.append(float(value))

    epoch = engine.epoch_fn(mlp.loss, gd_make_tx, n, batch_size)
    state, mean_loss, _ = epoch(state, hp, images, labels)
    assert count_of(state.opt_state) == n // batch_size == 6
    for got, want in zip(jax.tree.leaves(state.params), jax.tree.leaves(expected)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-6)
    assert float(mean_loss) == pytest.approx(np.mean(losses), rel=1e-5)
    assert np.array_equal(jax.random.key_data(state.key), jax.random.key_data(next_key))
    # a different shuffle would have ended elsewhere: the order above is what was really used
    other = params
    for idx in np.arange(48).reshape(6, 8):
        other = jax.tree.map(lambda p, g: p - lr * g, other, loss_and_grad(other, (images[idx], labels[idx]), KEY)[1])
    assert not np.allclose(np.asarray(other[0]["w"]), np.asarray(state.params[0]["w"]), rtol=1e-4, atol=1e-6)
    # a second epoch continues the count
    state, _, _ = epoch(state, hp, images, labels)
    assert count_of(state.opt_state) == 12


# ---- input noise ---------------------------------------------------------------------------------


def test_input_noise_is_fresh_normal_per_pixel_per_step(monkeypatch):
    """The noise the loss adds is N(0, σ²) per pixel, uncorrelated between steps and between pixels.

    Zero images, so the network's input is σ·z exactly; the steps' keys are split from one key as the epoch
    splits them. Every tolerance is 5 standard errors of its statistic under the hypothesis, from the sample
    size n: the mean's σ/√n, the variance's σ²·√(2/n), a correlation coefficient's 1/√n.
    """
    sigma, steps, batch, dim = 0.3, 8, 100, 784
    seen = []

    def capture(params, x, dropout=0.0, key=None, **network):
        seen.append(np.asarray(x, np.float64))
        return jnp.zeros((x.shape[0], 10)), []

    monkeypatch.setattr(mlp, "forward", capture)
    images, labels = np.zeros((batch, 28, 28), np.uint8), np.zeros(batch, np.uint8)
    for key in jax.random.split(KEY, steps):
        mlp.loss(None, (images, labels), key, input_noise=sigma)
    z = np.stack(seen)  # (steps, batch, pixels)
    assert z.shape == (steps, batch, dim)

    n = z.size
    assert abs(z.mean()) < 5 * sigma / math.sqrt(n)
    assert abs(z.var() - sigma**2) < 5 * sigma**2 * math.sqrt(2 / n)

    def corr(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
        a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
        return float(a @ b / math.sqrt((a @ a) * (b @ b))), a.size

    for t in range(steps - 1):  # step t against step t + 1, pixel by pixel
        r, m = corr(z[t], z[t + 1])
        assert abs(r) < 5 / math.sqrt(m), (t, r)
    for a, b in [(z[..., :-1], z[..., 1:]),  # neighbouring pixels of one image
                 (z[..., :-28], z[..., 28:]),  # the pixel below
                 (z[:, :-1], z[:, 1:])]:  # the same pixel of the next image in the batch
        r, m = corr(a, b)
        assert abs(r) < 5 / math.sqrt(m), r
    # no pixel has an offset of its own: each of the 784 pixel means over its 800 draws within 5.5 standard
    # errors (Bonferroni: the chance that any of 784 exceeds it by chance is 784 · 2Φ(−5.5) ≈ 3e-5)
    assert np.all(np.abs(z.mean(axis=(0, 1))) < 5.5 * sigma / math.sqrt(steps * batch))
