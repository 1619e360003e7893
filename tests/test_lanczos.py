"""Lanczos on Hessian-vector products against a dense eigendecomposition of the same Hessian."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optlab.curvature import hvp, lanczos
from optlab.problems import mlp

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


def test_hessian_vector_products_match_the_dense_hessian():
    params, loss = small_mlp(sizes=(6, 5, 3))
    op = hvp.hessian_operator(loss, params)
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    exact = jax.hessian(lambda x: loss(unravel(x)))(flat)
    assert op.n == 7 * 5 + 6 * 3
    np.testing.assert_allclose(hvp.dense(op), exact, atol=1e-7)  # the inputs are float32 pixels


def test_extreme_eigenvalues_agree_with_dense_to_1e_4_relative():
    params, loss = small_mlp()
    op = hvp.hessian_operator(loss, params)
    dense = np.linalg.eigvalsh(np.asarray(hvp.dense(op)))
    bottom, top = lanczos.extreme_eigenvalues(op.matvec, op.n, 5, jax.random.key(1), jnp.float64, order=80)
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
