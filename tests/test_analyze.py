"""`optlab analyze RUN_DIR`: the Hessian at a run's saved parameters, written into its metrics.json."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from typer.testing import CliRunner

from optlab import results
from optlab.cli import app
from optlab.curvature import hvp
from optlab.problems import mlp
from test_classify import (
    write_fixture,  # tests/ is on sys.path (pytest rootdir insertion)
)


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_tiny_run_gets_its_exact_hessian_and_critical_points(tmp_path):
    run = tmp_path / "run"
    assert invoke("run", "tiny", "--opt", "newton", "--run-dir", run, "-q").exit_code == 0
    before = results.read_metrics(run)
    result = invoke("analyze", run)
    assert result.exit_code == 0, result.output
    record = results.read_metrics(run)
    hessian = record["analysis"]["hessian"]
    np.testing.assert_allclose(hessian["bottom_eigenvalues"], [0.16, 5.84], atol=1e-9)  # at the minimum
    assert hessian["trace"] == pytest.approx(6.0) and hessian["negative_fraction"] == 0.0
    assert hessian["zero_fraction"] == 0.0 and hessian["zero_tol"] == pytest.approx(1e-4 * 5.84)
    assert max(hessian["bottom_residuals"]) < 1e-12 and hessian["density"]["sigma"] > 0
    assert [p["kind"] for p in hessian["critical_points"]] == ["minimum", "saddle", "minimum"]
    # keys added, none lost
    assert {k: v for k, v in record["analysis"].items() if k != "hessian"} == before["analysis"]
    assert results.figure_path(record["figures"]["spectral_density"]) == "spectral_density.png"
    assert (run / "spectral_density.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_network_run_lanczos_matches_the_dense_hessian(tmp_path, monkeypatch):
    data = write_fixture(tmp_path / "data")
    run = tmp_path / "run"
    # 784-2-10: 1,600 parameters, past analysis.EXACT_LIMIT so Lanczos is used, small enough to check densely
    args = ["run", "mnist", "--opt", "adam", "--lr", "0.01", "--epochs", "2", "--batch-size", "40", "--hidden", "2",
            "--input-noise", "0", "--data-dir", data, "--run-dir", run, "-q"]
    assert invoke(*args).exit_code == 0
    result = invoke("analyze", run, "--k", "3", "--subset", "100", "--probes", "4", "--curvature", "both",
                    "--max-order", "200")
    assert result.exit_code == 0, result.output
    analysis = json.loads((run / "metrics.json").read_text())["analysis"]
    hessian, ggn = analysis["hessian"], analysis["ggn"]
    assert (hessian["curvature"], ggn["curvature"]) == ("hessian", "ggn")
    assert hessian["max_order"] == 200 and hessian["lanczos_order"] <= 200
    assert hessian["method"] == "lanczos" and hessian["n_params"] == 1600
    assert hessian["data"] == "the first 100 mnist training images, clean loss"
    saved = results.load_params(run)
    params = [{"w": jnp.asarray(saved[f"{i}/w"]), "b": jnp.asarray(saved[f"{i}/b"])} for i in range(2)]
    from optlab.data.datasets import load

    d = load("mnist", data)
    batch = jnp.asarray(d.train_images[:100]), jnp.asarray(d.train_labels[:100])
    dense = np.linalg.eigvalsh(np.asarray(hvp.dense_hessian(lambda p: mlp.loss(p, batch, jax.random.key(0)), params),
                                          np.float64))
    assert hessian["lambda_max"] == pytest.approx(dense[-1], rel=1e-3)  # float32 products: 1e-3, not 1e-4
    assert hessian["lambda_min"] == pytest.approx(dense[0], rel=1e-2, abs=1e-4 * dense[-1])
    assert len(hessian["layer_lambda_max"]) == 2 and max(hessian["layer_lambda_max"]) <= hessian["lambda_max"] * 1.001
    tol = hessian["zero_tol"]
    assert hessian["negative_fraction"] == pytest.approx(np.mean(dense < -tol), abs=max(0.01, 3 * hessian[
        "negative_fraction_stderr"]))
    for value, residual, truth in zip(hessian["bottom_eigenvalues"], hessian["bottom_residuals"], dense):
        assert abs(value - truth) <= residual + 1e-5 * dense[-1]
    model = lambda p: mlp.forward(p, mlp.pixels(batch[0]))[0]
    output_loss = lambda z: optax.softmax_cross_entropy_with_integer_labels(z, batch[1].astype(jnp.int32)).mean()
    g = np.linalg.eigvalsh(analysis_ggn_dense(model, output_loss, params))
    np.testing.assert_allclose(ggn["top_eigenvalues"], g[::-1][: len(ggn["top_eigenvalues"])], rtol=1e-3)
    assert ggn["negative_fraction"] == 0.0  # positive semi-definite


def analysis_ggn_dense(model, output_loss, params) -> np.ndarray:
    """Jᵀ H_L J from the dense Jacobian of the logits (jax.jacfwd) and the dense Hessian of L (jax.hessian)."""
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    z = model(params)
    j = np.asarray(jax.jacfwd(lambda f: model(unravel(f)).ravel())(flat), np.float64)
    h = np.asarray(jax.hessian(lambda y: output_loss(y.reshape(z.shape)))(z.ravel()), np.float64)
    return j.T @ h @ j


def test_tiny_has_no_gauss_newton_and_says_so(tmp_path):
    run = tmp_path / "run"
    invoke("run", "tiny", "--steps", "3", "--run-dir", run, "-q")
    result = invoke("analyze", run, "--curvature", "ggn")
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "--curvature ggn needs a network's outputs" in result.output


def test_a_folder_without_params_is_one_line_exit_2(tmp_path, write_run):
    run = write_run(tmp_path)  # metrics.json, no params.npz
    result = invoke("analyze", run)
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "no saved parameters (params.npz is missing)" in result.output


def test_more_eigenvalues_than_parameters_is_one_line_exit_2(tmp_path):
    run = tmp_path / "run"
    invoke("run", "tiny", "--steps", "3", "--run-dir", run, "-q")
    result = invoke("analyze", run, "--k", "3")
    assert result.exit_code == 2
    assert result.output == "error: --k 3 is more than the 2 parameters of this run (a Hessian has n eigenvalues)\n"
    assert "hessian" not in results.read_metrics(run)["analysis"]  # nothing was written


@pytest.mark.parametrize("flag, value, message", [("--k", "0", "--k must be an integer from 1"),
                                                  ("--probes", "x", "--probes must be an integer from 1"),
                                                  ("--max-order", "0", "--max-order must be an integer from 1"),
                                                  ("--curvature", "fisher", "--curvature must be one of hessian, ggn, "
                                                   "both, got 'fisher'")])
def test_bad_numbers_are_one_line_exit_2(tmp_path, flag, value, message):
    result = invoke("analyze", tmp_path, flag, value)
    assert result.exit_code == 2 and message in result.output and result.output.count("\n") == 1
