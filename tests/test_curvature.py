"""Gauss–Newton and Fisher products against dense matrices, and the spectrum report of a trained network with
dead pixels against its dense float64 Hessian; optlab's Lanczos, SLQ and Hutchinson against matfree's."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import matfree.decomp
import matfree.funm
import matfree.stochtrace
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from optlab.curvature import analysis, hvp, lanczos, spectrum
from optlab.problems import mlp
from test_lanczos import columns, small_mlp  # tests/ is on sys.path (pytest rootdir insertion)

CLASSES, BORDER, NOISE, LR = 4, 5, 100, 0.0005  # the outer 5 pixels of every image are black, as MNIST's are


def bordered_digits(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (n, 28, 28) MNIST-like images: a faint bar whose row is the label in strong noise inside a black
    border, and a fifth of the labels wrong: a problem the network cannot fit, so curvature stays mixed."""
    rng = np.random.default_rng(seed)
    labels = np.resize(np.arange(CLASSES, dtype=np.uint8), n)
    images = np.zeros((n, 28, 28), np.uint8)
    images[:, BORDER:-BORDER, BORDER:-BORDER] = rng.integers(0, NOISE, (n, 28 - 2 * BORDER, 28 - 2 * BORDER))
    for c in range(CLASSES):
        images[labels == c, 6 + 4 * c: 8 + 4 * c, BORDER:-BORDER] = 200
    wrong = rng.random(n) < 0.2
    labels[wrong] = rng.integers(0, CLASSES, wrong.sum())
    return images, labels


def trained(hidden: int, steps: int = 150, n: int = 200):
    """A 784-hidden-4 ReLU network trained by full-batch Adam on bordered digits (float32), and its batch."""
    images, labels = bordered_digits(n)
    batch = (jnp.asarray(images), jnp.asarray(labels))
    params = mlp.init(jax.random.key(0), (784, hidden, CLASSES))
    tx = optax.adam(LR)
    loss = lambda p: mlp.loss(p, batch, jax.random.key(0))

    @jax.jit
    def run(params):
        def step(carry, _):
            p, s = carry
            updates, s = tx.update(jax.grad(loss)(p), s)
            return (optax.apply_updates(p, updates), s), None

        return jax.lax.scan(step, (params, tx.init(params)), None, length=steps)[0][0]

    return run(params), batch


def dense_eigenvalues(params, batch) -> np.ndarray:
    """The float64 Hessian's eigenvalues at the same (float32) parameters: the truth to compare with."""
    with jax.enable_x64(True):
        p64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
        h = hvp.dense_hessian(lambda p: mlp.loss(p, batch, jax.random.key(0)), p64)
        return np.linalg.eigvalsh(np.asarray(h))


@pytest.fixture(scope="module")
def network():
    """784-2-4: 1,582 parameters, past EXACT_LIMIT (Lanczos), with 2·(784 − 18²) exactly flat directions."""
    params, batch = trained(hidden=2)
    loss = hvp.bind_data(mlp.loss, batch, jax.random.key(0))
    report = analysis.hessian_spectrum(loss, params, k=5, probes=20)
    return params, batch, loss, report, dense_eigenvalues(params, batch)


@pytest.mark.slow
def test_negative_and_zero_shares_match_the_dense_hessian_of_a_network_with_dead_pixels(network):
    params, batch, loss, report, exact = network
    assert report["method"] == "lanczos" and report["n_params"] == 1582
    tol = report["zero_tol"]
    assert tol == pytest.approx(1e-4 * exact[-1], rel=1e-3)
    dead = 2 * (784 - (28 - 2 * BORDER) ** 2)
    assert np.sum(np.abs(exact) <= 1e-12 * exact[-1]) >= dead  # the black border's weights: exact zeros
    true_negative, true_zero = np.mean(exact < -tol), np.mean(np.abs(exact) <= tol)
    assert 0 < true_negative < 0.1 and true_zero > 0.3
    assert abs(report["negative_fraction"] - true_negative) <= max(3 * report["negative_fraction_stderr"], 0.01)
    assert report["zero_fraction"] == pytest.approx(true_zero, abs=0.05)
    # the share counted by sign, as before: the zero cluster's rounding errors make it several times too large
    assert np.mean(exact < 0) > 2 * true_negative + 0.1


@pytest.mark.slow
def test_reported_extremes_are_converged_and_within_their_residuals_of_the_dense_eigenvalues(network):
    params, batch, loss, report, exact = network
    assert len(report["top_eigenvalues"]) == len(report["bottom_eigenvalues"]) == 5  # the order grew until they did
    assert report["lanczos_order"] >= lanczos.default_order(1582, 5)
    slack = 1e-5 * exact[-1]  # float32 products
    for end, truth in (("top", exact[::-1]), ("bottom", exact)):
        values, residuals = np.array(report[f"{end}_eigenvalues"]), np.array(report[f"{end}_residuals"])
        assert np.all(residuals <= report["residual_tol"])
        assert np.all(np.abs(values - truth[: len(values)]) <= residuals + slack)
    assert report["lambda_min"] == pytest.approx(exact[0], rel=1e-3)


@pytest.mark.slow
def test_a_small_budget_reports_fewer_eigenvalues_never_unconverged_ones(network):
    params, batch, loss, report, exact = network
    op = hvp.hessian_operator(loss, params)
    ext = lanczos.extreme_eigenvalues(op.matvec, op.n, 10, jax.random.key(0), op.dtype, order=12, max_order=12)
    assert ext.order == 12 and len(ext.bottom) < 10  # 12 steps do not resolve the bottom 10
    assert np.all(np.abs(ext.bottom - exact[: len(ext.bottom)]) <= ext.bottom_residuals + 1e-5 * exact[-1])


@pytest.mark.slow
def test_the_negative_panel_holds_the_negative_fraction_and_nothing_from_zero(network):
    params, batch, loss, report, exact = network
    neg = report["negative_density"]
    x, phi = np.array(neg["eigenvalue"]), np.array(neg["density"])
    assert x.max() == pytest.approx(-report["zero_tol"]) and neg["sigma"] < report["zero_tol"] * 100
    assert np.sum(phi) * (x[1] - x[0]) == pytest.approx(report["negative_fraction"], rel=0.1)
    main = report["density"]
    assert main["sigma"] == pytest.approx(0.01 * (main["eigenvalue"][-1] - main["eigenvalue"][0]) / 1.1, rel=1e-6)


@pytest.mark.slow
def test_exact_path_counts_the_zero_cluster_as_zero():
    params, batch = trained(hidden=1)  # 793 parameters: diagonalised exactly
    exact = dense_eigenvalues(params, batch)
    report = analysis.hessian_spectrum(hvp.bind_data(mlp.loss, batch, jax.random.key(0)), params, k=5)
    assert report["method"] == "exact"
    tol = report["zero_tol"]
    assert report["negative_fraction"] == pytest.approx(np.mean(exact < -tol), abs=2 / 793)
    assert report["zero_fraction"] == pytest.approx(np.mean(np.abs(exact) <= tol), abs=2 / 793)
    assert report["negative_fraction"] < 0.5 * np.mean(exact < 0)  # by sign alone, roundoff zeros count
    assert max(report["bottom_residuals"]) < 1e-5 * report["lambda_max"]


# ---- Gauss–Newton and Fisher against dense matrices ------------------------------------------


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _classifier(sizes=(6, 5, 3), batch=8, seed=5):
    params, _ = small_mlp(sizes=sizes)
    x = jax.random.uniform(jax.random.key(seed), (batch, sizes[0]), jnp.float64)
    labels = jax.random.randint(jax.random.key(seed + 1), (batch,), 0, sizes[-1])
    return params, x, labels


def test_gauss_newton_with_weight_decay_is_jt_h_j_plus_the_decay(x64):
    params, x, labels = _classifier()
    model = lambda p: mlp.forward(p, x)[0]
    output_loss = lambda z: optax.softmax_cross_entropy_with_integer_labels(z, labels).mean()
    decay = lambda p: 0.5 * 0.3 * sum(jnp.sum(layer["w"] ** 2) for layer in p)
    flat, unravel = ravel_pytree(params)
    j = np.asarray(jax.jacfwd(lambda f: model(unravel(f)).ravel())(flat))  # (B·C, n)
    h_loss = np.asarray(jax.hessian(lambda z: output_loss(z.reshape(x.shape[0], -1)))(model(params).ravel()))
    is_weight = ravel_pytree([{"w": jnp.ones_like(a["w"]), "b": jnp.zeros_like(a["b"])} for a in params])[0]
    expected = j.T @ h_loss @ j + 0.3 * np.diag(np.asarray(is_weight))
    op = hvp.ggn_operator(model, output_loss, params, decay)
    np.testing.assert_allclose(columns(op), expected, rtol=1e-10, atol=1e-13)
    report = analysis.ggn_spectrum(model, output_loss, params, regulariser=decay, k=3)
    np.testing.assert_allclose(report["top_eigenvalues"], np.linalg.eigvalsh(expected)[::-1][:3], rtol=1e-10)
    assert report["curvature"] == "ggn" and report["negative_fraction"] == 0.0  # PSD


def test_empirical_fisher_is_the_mean_outer_product_of_per_example_gradients(x64):
    params, x, labels = _classifier()

    def example_losses(p):
        return optax.softmax_cross_entropy_with_integer_labels(mlp.forward(p, x)[0], labels)

    def one(p, xi, yi):
        return optax.softmax_cross_entropy_with_integer_labels(mlp.forward(p, xi[None])[0], yi[None])[0]

    grads = jax.vmap(jax.grad(one), (None, 0, 0))(params, x, labels)  # per-example gradients by vmap
    g = np.asarray(jax.vmap(lambda t: ravel_pytree(t)[0])(grads))  # (N, n)
    expected = g.T @ g / len(g)
    op = hvp.fisher_operator(example_losses, params)
    np.testing.assert_allclose(columns(op), expected, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(g.mean(axis=0), ravel_pytree(jax.grad(lambda p: example_losses(p).mean())(params))[0],
                               rtol=1e-10, atol=1e-14)  # they are the loss's gradient's terms
    assert np.linalg.matrix_rank(expected) <= len(g)  # rank at most N, unlike the Hessian


# ---- against matfree -------------------------------------------------------------------------


def test_lanczos_tridiagonal_and_ritz_values_match_matfree(x64):
    a = jax.random.normal(jax.random.key(7), (60, 60), jnp.float64)
    a = a @ a.T / 60 - 0.5 * jnp.eye(60)
    v = jax.random.normal(jax.random.key(8), (60,), jnp.float64)
    matvec = lambda u: a @ u
    ours = lanczos.lanczos(matvec, v, 20)
    theirs = matfree.decomp.tridiag_sym(20)(matvec, v)
    np.testing.assert_allclose(lanczos.tridiagonal_matrix(ours), theirs.J_small, atol=1e-10)
    np.testing.assert_allclose(np.abs(ours.vectors), np.abs(theirs.Q_tall.T if theirs.Q_tall.shape[0] == 60
                                                             else theirs.Q_tall), atol=1e-8)
    # the residual direction: matfree's is β_m v_{m+1}
    np.testing.assert_allclose(ours.betas[-1] * ours.next, theirs.residual, atol=1e-8)


def test_ritz_residuals_are_the_explicit_residuals_and_extending_equals_running_longer(x64):
    a = np.asarray(jax.random.normal(jax.random.key(9), (50, 50), jnp.float64))
    a = (a + a.T) / 2
    v = jnp.ones(50, jnp.float64)
    t = lanczos.lanczos(lambda u: a @ u, v, 15)
    values, s = lanczos.ritz(t)
    y = np.asarray(t.vectors.T @ s)  # Ritz vectors as columns
    explicit = np.linalg.norm(a @ y - y * np.asarray(values), axis=0)
    np.testing.assert_allclose(lanczos.ritz_residuals(t, s), explicit, rtol=1e-6, atol=1e-10)
    longer = lanczos.extend(lambda u: a @ u, t, 30)
    once = lanczos.lanczos(lambda u: a @ u, v, 30)
    np.testing.assert_allclose(lanczos.tridiagonal_matrix(longer), lanczos.tridiagonal_matrix(once), atol=1e-10)


def test_slq_quadrature_and_hutchinson_match_matfree(x64):
    params, loss = small_mlp(sizes=(8, 6, 3))
    op = hvp.hessian_operator(loss, params)
    matvec = jax.jit(lambda u: op.matvec(u))
    key = jax.random.key(11)
    # one probe: vᵀ exp(A/‖A‖) v by our quadrature against matfree's Lanczos matrix-function product
    q = spectrum.slq(op.matvec, op.n, 25, 1, key, op.dtype)
    start = jax.random.normal(jax.random.split(key, 1)[0], (op.n,), op.dtype)
    scale = float(np.abs(q.nodes).max())
    ours = float(np.sum(q.weights[0] * np.exp(q.nodes[0] / scale))) * float(start @ start)
    funm = matfree.funm.funm_lanczos_sym(matfree.funm.dense_funm_sym_eigh(lambda s: jnp.exp(s / scale)),
                                         matfree.decomp.tridiag_sym(25))
    assert ours == pytest.approx(float(start @ funm(matvec, start)), rel=1e-8)
    # Hutchinson: the same Rademacher draws give the same estimate
    estimate, _ = spectrum.hutchinson_trace(op.matvec, op.n, 30, key, op.dtype)
    theirs = matfree.stochtrace.estimator_monte_carlo(
        matfree.stochtrace.monte_carlo_trace(),
        matfree.stochtrace.sampler_signs(jnp.zeros(op.n, op.dtype), num=30))(matvec, key)
    assert estimate == pytest.approx(float(theirs), rel=1e-6)  # the MLP takes float32 pixels
