"""Curvature-vector products against dense matrices, and Lanczos on them against a dense eigendecomposition."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optlab.curvature import hvp, lanczos
from optlab.problems import mlp, tiny
from tiny_by_hand import hessian  # tests/ is on sys.path (pytest rootdir insertion)

SIZES = (16, 16, 4)  # 17·16 + 17·4 = 340 parameters: small enough for a dense Hessian


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def small_mlp(seed: int = 0, sizes=SIZES):
    """A ReLU network at a random point, with its loss on 64 fixed examples."""
    key_params, key_x, key_y = jax.random.split(jax.random.key(seed), 3)
    params = jax.tree.map(lambda a: a.astype(jnp.float64), mlp.init(key_params, sizes))
    params = [{"w": layer["w"], "b": layer["b"] + 0.1} for layer in params]  # biases keep the ReLUs mixed
    images = jax.random.randint(key_x, (64, sizes[0]), 0, 256).astype(jnp.uint8)
    labels = jax.random.randint(key_y, (64,), 0, sizes[-1])
    return params, lambda p: mlp.loss(p, (images, labels), jax.random.key(0))


def columns(op: hvp.Operator) -> np.ndarray:
    """The operator's matrix, A e_j for every unit vector e_j."""
    return np.asarray(jax.jit(jax.vmap(lambda mv, v: mv(v), (None, 0), 1))(op.matvec, jnp.eye(op.n, dtype=op.dtype)))


def test_dense_hessian_is_the_tiny_models_hand_written_hessian_in_ravel_order():
    w = np.array([0.3, -1.2])
    np.testing.assert_allclose(hvp.dense_hessian(tiny.loss, jnp.asarray(w)), hessian(w), rtol=1e-14)
    # a pytree: ravel_pytree orders a dict's leaves by key, so "a" (w1) is row 0 whatever the insertion order
    params = {"b": jnp.asarray(w[1]), "a": jnp.asarray(w[0])}
    np.testing.assert_allclose(hvp.dense_hessian(lambda p: tiny.loss(jnp.stack([p["a"], p["b"]])), params),
                               hessian(w), rtol=1e-14)


def test_hessian_vector_products_match_the_dense_hessian():
    params, loss = small_mlp(sizes=(6, 5, 3))
    op = hvp.hessian_operator(loss, params)
    exact = hvp.dense_hessian(loss, params)  # jax.hessian of the flattened loss
    assert op.n == 7 * 5 + 6 * 3
    np.testing.assert_allclose(columns(op), exact, atol=1e-7)  # the inputs are float32 pixels


def test_gauss_newton_products_match_dense_jt_h_j():
    """G = Jᵀ H_L J with J = ∂z/∂θ dense (jax.jacfwd) and H_L the softmax cross-entropy Hessian by hand:
    for the mean over B examples, the block of example b is (diag(p_b) − p_b p_bᵀ) / B."""
    sizes, batch = (6, 5, 3), 4
    params, _ = small_mlp(sizes=sizes)
    x = jax.random.uniform(jax.random.key(5), (batch, sizes[0]), jnp.float64)
    labels = jnp.asarray([0, 2, 1, 2])

    def model(p):
        return mlp.forward(p, x)[0]

    def output_loss(z):
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(z), labels[:, None], axis=1))

    flat, unravel = jax.flatten_util.ravel_pytree(params)
    j = np.asarray(jax.jacfwd(lambda f: model(unravel(f)))(flat)).reshape(batch * sizes[-1], flat.size)
    p = np.asarray(jax.nn.softmax(model(params)))
    h_loss = np.zeros((batch * sizes[-1],) * 2)
    for b in range(batch):
        block = slice(b * sizes[-1], (b + 1) * sizes[-1])
        h_loss[block, block] = (np.diag(p[b]) - np.outer(p[b], p[b])) / batch
    expected = j.T @ h_loss @ j

    op = hvp.ggn_operator(model, output_loss, params)
    assert op.n == flat.size
    g = columns(op)
    np.testing.assert_allclose(g, expected, rtol=1e-10, atol=1e-13)
    v = jax.random.normal(jax.random.key(6), (flat.size,), jnp.float64)
    np.testing.assert_allclose(jax.jit(lambda mv, v: mv(v))(op.matvec, v), expected @ np.asarray(v), rtol=1e-10)
    np.testing.assert_allclose(jax.flatten_util.ravel_pytree(hvp.ggn_vp(model, output_loss, params, unravel(v)))[0],
                               expected @ np.asarray(v), rtol=1e-10)
    assert np.linalg.eigvalsh(g).min() > -1e-12  # positive semi-definite, as L is convex
    hessian_of_c = np.asarray(hvp.dense_hessian(lambda q: output_loss(model(q)), params))
    assert np.abs(hessian_of_c - g).max() > 1e-3  # and not the Hessian: f's own curvature is dropped


def test_extreme_eigenvalues_agree_with_dense_to_1e_4_relative():
    params, loss = small_mlp()
    op = hvp.hessian_operator(loss, params)
    dense = np.linalg.eigvalsh(np.asarray(hvp.dense_hessian(loss, params)))
    ext = lanczos.extreme_eigenvalues(op.matvec, op.n, 5, jax.random.key(1), jnp.float64, order=80)
    bottom, top = ext.bottom, ext.top
    assert len(bottom) == len(top) == 5 and ext.order == 80  # converged at the first order tried
    assert dense[0] < 0 < dense[-1]  # a random point of a ReLU net: indefinite, so both ends matter
    np.testing.assert_allclose(top[0], dense[-1], rtol=1e-4)
    np.testing.assert_allclose(bottom[0], dense[0], rtol=1e-4)
    np.testing.assert_allclose(top[:3], dense[::-1][:3], rtol=1e-4)


def test_full_order_lanczos_reproduces_every_eigenvalue():
    """n steps with full reorthogonalisation: T is similar to A, so all eigenvalues come back."""
    a = jax.random.normal(jax.random.key(2), (30, 30), jnp.float64)
    a = (a + a.T) / 2
    t = lanczos.lanczos(lambda v: a @ v, jnp.ones(30, jnp.float64), 30)
    values, _ = lanczos.ritz(t)
    np.testing.assert_allclose(values, np.linalg.eigvalsh(np.asarray(a)), atol=1e-10)
    np.testing.assert_allclose(t.vectors @ t.vectors.T, np.eye(30), atol=1e-10)  # the basis stayed orthonormal


def test_an_invariant_subspace_restarts_instead_of_dividing_by_zero():
    """diag(1, 2, 3, 3, …): from e₁ the Krylov space is 1-dimensional and β₁ = 0 at once."""
    a = jnp.diag(jnp.asarray([1.0, 2.0, 3.0, 3.0, 5.0], jnp.float64))
    t = lanczos.lanczos(lambda v: a @ v, jnp.eye(5, dtype=jnp.float64)[0], 5)
    values, _ = lanczos.ritz(t)
    assert np.all(np.isfinite(values))
    assert float(t.betas[0]) == 0.0
    np.testing.assert_allclose(values, [1, 2, 3, 3, 5], atol=1e-10)


def test_more_eigenvalues_than_parameters_is_refused():
    with pytest.raises(ValueError, match="asked for 6 eigenvalues of a 5 × 5 matrix"):
        lanczos.extreme_eigenvalues(lambda v: v, 5, 6, jax.random.key(0))
