"""Hutchinson's trace and stochastic Lanczos quadrature against the exact spectrum of a small MLP's Hessian."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optlab.curvature import analysis, hvp, spectrum
from test_lanczos import small_mlp  # tests/ is on sys.path (pytest rootdir insertion)


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


@pytest.fixture(scope="module")
def hessian():
    with jax.enable_x64(True):
        params, loss = small_mlp()
        return hvp.hessian_operator(loss, params), np.asarray(hvp.dense_hessian(loss, params))


def test_hutchinson_trace_is_within_its_statistical_error(hessian):
    op, h = hessian
    probes = 200
    # one Rademacher sample vᵀHv has variance 2(‖H‖_F² − Σ H_ii²)
    sigma = np.sqrt(2 * (np.sum(h**2) - np.sum(np.diag(h) ** 2)) / probes)
    estimate, stderr = spectrum.hutchinson_trace(op.matvec, op.n, probes, jax.random.key(3), jnp.float64)
    assert abs(estimate - np.trace(h)) < 4 * sigma
    assert 0.7 * sigma < stderr < 1.3 * sigma  # the reported error is the statistical one
    assert sigma < 0.2 * np.sum(np.abs(np.linalg.eigvalsh(h)))  # and small enough for the test to mean something


def test_slq_density_is_a_density_with_the_right_negative_share(hessian):
    op, h = hessian
    exact = np.linalg.eigvalsh(h)
    q = spectrum.slq(op.matvec, op.n, 120, 20, jax.random.key(4), jnp.float64)  # 60 steps leave zero unresolved
    np.testing.assert_allclose(q.weights.sum(axis=1), 1.0, atol=1e-10)
    d = spectrum.density(q)
    grid, phi = np.array(d["eigenvalue"]), np.array(d["density"])
    assert np.sum(phi) * (grid[1] - grid[0]) == pytest.approx(1.0, abs=1e-3)
    assert d["sigma"] == pytest.approx(0.01 * (q.nodes.max() - q.nodes.min()))
    # the quadrature nodes span the spectrum: Lanczos finds both ends
    assert q.nodes.min() == pytest.approx(exact[0], rel=1e-4) and q.nodes.max() == pytest.approx(exact[-1], rel=1e-4)
    tol = 1e-4 * exact[-1]
    share = spectrum.shares(q, tol)
    assert share["negative_fraction"] == pytest.approx(np.mean(exact < -tol), abs=0.08)
    assert share["zero_fraction"] == pytest.approx(np.mean(np.abs(exact) <= tol), abs=0.05)
    assert 0 < share["negative_fraction_stderr"] < 0.05
    true_ratio = np.abs(exact[exact < -tol]).sum() / np.abs(exact).sum()
    assert share["negative_mass_ratio"] == pytest.approx(true_ratio, abs=0.05)


@pytest.mark.slow
def test_hessian_spectrum_by_lanczos_matches_the_exact_path(monkeypatch):
    params, loss = small_mlp()
    exact = analysis.hessian_spectrum(loss, params, k=3)
    monkeypatch.setattr(analysis, "EXACT_LIMIT", 10)  # force the matrix-free path
    approx = analysis.hessian_spectrum(loss, params, k=3, probes=30, order=80)
    assert (exact["method"], approx["method"]) == ("exact", "lanczos")
    np.testing.assert_allclose(approx["top_eigenvalues"], exact["top_eigenvalues"], rtol=1e-4)
    np.testing.assert_allclose(approx["bottom_eigenvalues"], exact["bottom_eigenvalues"], rtol=1e-4)
    assert max(approx["bottom_residuals"]) <= approx["residual_tol"] and max(exact["bottom_residuals"]) < 1e-10
    assert approx["negative_fraction"] == pytest.approx(exact["negative_fraction"], abs=0.08)
    assert abs(approx["trace"] - exact["trace"]) < 4 * approx["trace_stderr"]
    assert exact["gd_max_stable_lr"] == pytest.approx(2 / exact["lambda_max"])
    assert len(exact["layer_lambda_max"]) == 2
    # a block's top eigenvalue never exceeds the whole Hessian's (Cauchy interlacing)
    assert max(exact["layer_lambda_max"]) <= exact["lambda_max"] * (1 + 1e-9)
    np.testing.assert_allclose(approx["layer_lambda_max"], exact["layer_lambda_max"], rtol=1e-4)


def test_more_eigenvalues_than_parameters_is_refused():
    params, loss = small_mlp(sizes=(2, 2, 2))  # 12 parameters
    with pytest.raises(ValueError, match="asked for 13 eigenvalues but the problem has 12 parameters"):
        analysis.hessian_spectrum(loss, params, k=13)
