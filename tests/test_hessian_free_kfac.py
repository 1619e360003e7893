"""Martens' Hessian-free and K-FAC against independent computations: finite differences, dense solves,
per-example gradients and factors written out by hand in NumPy."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

from optlab import config
from optlab.cli import app
from optlab.core import kfac, optimizers, schedules, second_order
from optlab.core.engine import epoch_fn, init_state
from optlab.curvature import layers
from optlab.curvature.hvp import ggn_operator
from optlab.experiments._classify_train import loss_for, network_for
from optlab.problems import mlp
from optlab.runs import resolve

SIZES = (6, 4, 3)  # a two-layer network small enough for finite differences over every weight


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def small_problem(n: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    params = [{"w": jnp.asarray(rng.normal(size=(o, i))), "b": jnp.asarray(rng.normal(size=o) * 0.3)}
              for i, o in zip(SIZES[:-1], SIZES[1:])]
    images = jnp.asarray(rng.integers(0, 256, (n, SIZES[0])).astype(np.uint8))
    labels = jnp.asarray(rng.integers(0, SIZES[-1], n).astype(np.uint8))
    return params, (images, labels)


def network(targets=None, weight_decay: float = 0.0) -> layers.Network:
    """The classifier's split loss; `targets` fixes K-FAC's "sampled" targets so NumPy can follow them."""
    sample = (lambda z, key: jax.random.categorical(key, z)) if targets is None else (lambda z, key: targets)
    reg = None if weight_decay == 0 else (lambda p: mlp.penalty(p, weight_decay))
    return layers.Network(mlp.outputs, mlp.example_losses, reg, sample)


def by_hand(params, batch, targets):
    """NumPy forward and backward: inputs a₀ = x, a₁ = relu(s₁); gₗ = ∂ℓᵢ/∂sₗ for the given targets."""
    w1, b1, w2, b2 = (np.asarray(params[i][k]) for i in (0, 1) for k in ("w", "b"))
    x = (np.asarray(batch[0]).astype(np.float32) / np.float32(255)).astype(np.float64)  # mlp.pixels' float32
    s1 = x @ w1.T + b1
    a1 = np.maximum(s1, 0)
    z = a1 @ w2.T + b2
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    g2 = p - np.eye(SIZES[-1])[np.asarray(targets)]
    g1 = (g2 @ w2) * (s1 > 0)
    return [x, a1], [g1, g2], p


def test_ggn_product_matches_finite_differences_of_the_network(x64):
    params, batch = small_problem()
    net = network(weight_decay=0.1)
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    key = jax.random.key(0)
    op = ggn_operator(net.outputs(batch, key), net.output_loss(batch), params, net.regulariser)

    def z_of(x):
        return np.asarray(mlp.outputs(unravel(jnp.asarray(x)), batch, key)[0])

    eps, n = 1e-6, flat.size
    jac = np.stack([(z_of(flat + eps * e) - z_of(flat - eps * e)) / (2 * eps) for e in np.eye(n)], -1)  # N×K×n
    _, _, p = by_hand(params, batch, batch[1])
    middle = np.stack([np.diag(q) - np.outer(q, q) for q in p]) / len(p)  # ∇²_z of the mean cross-entropy
    decay = np.diag(jax.flatten_util.ravel_pytree([{"w": jnp.full_like(p["w"], 0.1), "b": jnp.zeros_like(p["b"])}
                                                   for p in params])[0])  # ∇²R, in ravel's order
    g = np.einsum("ikn,ikl,ilm->nm", jac, middle, jac) + decay
    v = np.random.default_rng(1).normal(size=n)
    np.testing.assert_allclose(op.matvec(jnp.asarray(v)), g @ v, rtol=1e-6, atol=1e-9)


def test_preconditioned_cg_matches_a_dense_solve(x64):
    a = jax.random.normal(jax.random.key(0), (12, 12), jnp.float64)
    spd, b = a @ a.T + 0.1 * jnp.eye(12), jnp.arange(12.0) - 4
    m = jnp.linspace(0.5, 3.0, 12)
    path = second_order.preconditioned_cg(lambda v: spd @ v, b, jnp.zeros(12), 60, m, tol=1e-12, progress=False)
    np.testing.assert_allclose(path.x, np.linalg.solve(spd, b), rtol=1e-8)
    # the saved iterates are the iterations ⌈1.3ʲ⌉ reached, then the last
    steps = int(path.steps)
    expected = [i for i in second_order.SAVE_AT if i < steps] + [steps]
    np.testing.assert_array_equal(path.iteration[: int(path.count)], expected)


def numpy_pcg(a, b, m, max_iters):
    """Preconditioned CG with Martens' relative-progress stop, in NumPy: (the iterates, the stopping iteration)."""
    x = np.zeros_like(b)
    r = b - a @ x
    y = r / m
    p, ry, phis, xs = y, r @ y, [0.0], [x]
    for i in range(1, max_iters + 1):
        ap = a @ p
        alpha = ry / (p @ ap)
        x, r = x + alpha * p, r - alpha * ap
        y = r / m
        p, ry = y + (r @ y) / ry * p, r @ y
        phis.append(0.5 * x @ a @ x - b @ x)
        xs.append(x)
        k = max(10, i // 10)
        if i > k and phis[i] < 0 and (phis[i] - phis[i - k]) / phis[i] < k * second_order.PROGRESS_EPS:
            return xs, i
    return xs, max_iters


def test_cg_stops_by_martens_relative_progress_rule(x64):
    # an ill-conditioned system: progress slows long before the residual is small
    spectrum = np.logspace(0, 2, 400)
    b = np.random.default_rng(0).normal(size=400)
    xs, stop = numpy_pcg(np.diag(spectrum), b, np.ones(400), 300)
    assert 10 < stop < 300  # the rule, not the cap, stopped it
    path = second_order.preconditioned_cg(lambda v: jnp.asarray(spectrum) * v, jnp.asarray(b), jnp.zeros(400), 300,
                                          None, tol=0.0)
    assert int(path.steps) == stop
    np.testing.assert_allclose(path.x, xs[stop], rtol=1e-6, atol=1e-9)


def test_backtracking_keeps_going_back_while_the_loss_drops():
    saved = jnp.arange(6.0)[:, None] * jnp.ones((6, 2))
    path = second_order.CGPath(saved[3], saved, jnp.asarray([1, 2, 3, 5, 0, 0]), jnp.asarray(4), jnp.asarray(5))
    losses = jnp.asarray([5.0, 3.0, 4.0, 6.0, 0.0, 0.0])  # rows 3 → 2 → 1 lower, row 0 higher: stop at 1
    p, value, iteration = second_order.backtrack(path, lambda x: losses[x[0].astype(int)])
    np.testing.assert_array_equal(p, saved[1])
    assert float(value) == 3.0 and int(iteration) == 2


def test_fisher_diagonal_is_the_mean_of_squared_per_example_gradients(x64):
    params, batch = small_problem()
    net, key = network(), jax.random.key(0)

    def one(params, image, label):
        return mlp.loss(params, (image[None], label[None]), key)

    per_example = jax.vmap(jax.grad(one), in_axes=(None, 0, 0))(params, *batch)
    expected = jax.tree.map(lambda g: jnp.mean(g**2, axis=0), per_example)
    got = layers.fisher_diagonal(net, params, batch, key)
    for e, g in zip(jax.tree.leaves(expected), jax.tree.leaves(got)):
        np.testing.assert_allclose(g, e, rtol=1e-6, atol=1e-12)  # float32 pixels summed in other orders


def test_kronecker_factors_of_a_two_layer_network_by_hand(x64):
    params, batch = small_problem()
    targets = jnp.asarray([2, 0, 1, 1, 0])
    a_factors, g_factors = kfac.kronecker_factors(network(targets), params, batch, jax.random.key(0))
    inputs, grads, _ = by_hand(params, batch, targets)
    for a, g, a_hat, g_hat in zip(inputs, grads, a_factors, g_factors):
        bar = np.hstack([a, np.ones((len(a), 1))])
        # the input layer's A is float32 (mlp.pixels): agreement to float32's precision
        np.testing.assert_allclose(a_hat, bar.T @ bar / len(a), rtol=1e-6)
        np.testing.assert_allclose(g_hat, g.T @ g / len(g), rtol=1e-6, atol=1e-12)


def test_kfac_preconditions_each_layer_by_its_damped_factors(x64):
    params, batch = small_problem()
    targets, damping = jnp.asarray([2, 0, 1, 1, 0]), 0.01
    tx = kfac.scale_by_kfac(network(targets), damping)
    grads = jax.grad(mlp.loss)(params, batch, jax.random.key(0))
    out, state = tx.update(grads, tx.init(params), params, batch=batch, key=jax.random.key(0))
    inputs, back, _ = by_hand(params, batch, targets)
    for a, g, grad, step in zip(inputs, back, grads, out):
        bar = np.hstack([a, np.ones((len(a), 1))])
        big_a, big_g = bar.T @ bar / len(a), g.T @ g / len(g)
        pi = math.sqrt((np.trace(big_a) / len(big_a)) / (np.trace(big_g) / len(big_g)))
        whole = np.hstack([grad["w"], grad["b"][:, None]])
        expected = np.linalg.solve(big_g + math.sqrt(damping) / pi * np.eye(len(big_g)),
                                   whole) @ np.linalg.inv(big_a + pi * math.sqrt(damping) * np.eye(len(big_a)))
        np.testing.assert_allclose(np.hstack([step["w"], step["b"][:, None]]), expected, rtol=1e-5, atol=1e-10)
    assert int(state.count) == 1


def classifier_run(optimizer: str, epochs: int = 3, **settings):
    from test_classify import bars  # the bar images in the MNIST layout

    images, labels = bars(240, np.random.default_rng(0))
    data = jax.device_put(images), jax.device_put(labels)
    cfg = resolve.resolve([config.Layer({"experiment": "mnist", "optimizer": optimizer, "hidden": "32",
                                        "batch_size": "60", "lr_schedule": "constant", **settings}, "flag")])
    hp = optimizers.hyperparams(cfg, jnp.float32) | {"input_noise": 0.0, "weight_decay": 0.0}

    def make_tx(hp, key):
        return optimizers.build(optimizer, schedules.build("constant", hp["lr"], 100, cfg), hp, None, key,
                                cfg.optimizer_settings, static=optimizers.static_settings(cfg),
                                network=network_for(cfg, hp))

    params = mlp.init(jax.random.key(0), (784, 32, 4))
    before = float(mlp.evaluate(params, *data)["loss"])
    state = init_state(make_tx, params, hp, jax.random.key(1))
    epoch = epoch_fn(loss_for(cfg, hp), make_tx, 240, 60)
    for _ in range(epochs):
        state, _, _ = epoch(state, hp, *data)
    return before, mlp.evaluate(state.params, *data), state


@pytest.mark.slow
@pytest.mark.parametrize("curvature", ["ggn", "hessian"])
def test_hessian_free_on_a_curvature_minibatch_fits_a_small_classifier(curvature):
    before, after, state = classifier_run("hessian-free", curvature=curvature, curvature_batch="20", cg_iters="20")
    assert before == pytest.approx(math.log(4), abs=0.3)
    assert float(after["loss"]) < 0.1 * before and float(after["error"]) == 0.0


@pytest.mark.slow
def test_kfac_fits_a_small_classifier():
    before, after, _ = classifier_run("kfac", lr="0.05")
    assert float(after["loss"]) < 0.1 * before and float(after["error"]) == 0.0


def test_a_bad_curvature_is_one_line_exit_2(tmp_path):
    result = CliRunner().invoke(app, ["run", "mnist", "--opt", "hessian-free", "--curvature", "fisher",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.strip() == "error: --curvature must be one of ggn, hessian, got 'fisher'"
    assert not any(tmp_path.iterdir())


def test_kfac_on_the_tiny_problem_is_one_line_exit_2(tmp_path):
    result = CliRunner().invoke(app, ["run", "tiny", "--opt", "kfac", "--out", str(tmp_path)])
    assert result.exit_code == 2
    expected = "error: --opt kfac needs a network of dense layers: use it on a dataset's classifier (optlab list)"
    assert result.output.strip() == expected
    assert not any(tmp_path.iterdir())


def test_kfac_with_a_loss_other_than_cross_entropy_is_one_line_exit_2(tmp_path):
    result = CliRunner().invoke(app, ["run", "mnist", "--opt", "kfac", "--loss", "squared-error",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.strip() == ("error: --opt kfac draws its Fisher's targets from the softmax: it needs "
                                     "--loss cross-entropy, not 'squared-error'")
    assert not any(tmp_path.iterdir())
