"""optlab.curvature.index and --hessian-index: the exact Hessian's index of a network, every epoch."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from typer.testing import CliRunner

from optlab import results
from optlab.cli import app
from optlab.curvature import index
from optlab.problems import mlp
from test_classify import write_fixture  # tests/ is on sys.path (pytest rootdir insertion)
from test_lanczos import small_mlp


def test_counts_use_the_relative_zero_tolerance():
    # ‖H‖ = 10: tol = 1e-3; -2e-3 is negative, ±5e-4 and 0 are zero
    counted = index.counts(np.array([-2e-3, -5e-4, 0.0, 5e-4, 1.0, 10.0]))
    assert counted["hessian_negative_count"] == 1
    assert counted["hessian_negative_fraction"] == pytest.approx(1 / 6)
    assert counted["hessian_zero_fraction"] == pytest.approx(3 / 6)
    assert (counted["hessian_lambda_min"], counted["hessian_lambda_max"]) == (-2e-3, 10.0)
    # the norm is the largest |λ|, whichever its sign: tol = 1e-3 again
    assert index.counts(np.array([-10.0, -2e-3, 5e-4]))["hessian_negative_count"] == 2


@pytest.mark.slow
def test_index_matches_a_dense_eigendecomposition():
    params, loss = small_mlp(seed=1, sizes=(6, 5, 3))  # float32: x64 is off
    batch = None
    measure = index.index_program(lambda p, b: loss(p))
    row = index.hessian_index(measure, params, batch)
    # independently: reverse-over-reverse (jax.hessian is forward-over-reverse), float64 numpy eigh
    flat, unravel = ravel_pytree(params)
    hessian = np.asarray(jax.jit(jax.jacrev(jax.jacrev(lambda x: loss(unravel(x)))))(flat), np.float64)
    values = np.linalg.eigh((hessian + hessian.T) / 2)[0]
    tol = 1e-4 * np.abs(values).max()
    assert row["hessian_negative_count"] == int(np.sum(values < -tol)) > 0  # this point is a saddle-like region
    assert row["hessian_negative_fraction"] == pytest.approx(np.mean(values < -tol))
    assert row["hessian_zero_fraction"] == pytest.approx(np.mean(np.abs(values) <= tol))
    assert row["hessian_lambda_min"] == pytest.approx(values[0], rel=1e-4, abs=1e-6)
    assert row["hessian_lambda_max"] == pytest.approx(values[-1], rel=1e-4)
    grad = np.asarray(jax.grad(lambda x: loss(unravel(x)))(flat), np.float64)
    assert row["hessian_grad_norm"] == pytest.approx(np.linalg.norm(grad), rel=1e-5)


@pytest.mark.slow
def test_every_epoch_records_the_index_at_its_iterate(tmp_path):
    data = write_fixture(tmp_path / "data")
    run = tmp_path / "run"
    # 784-1-10 on the 240 bar images: 805 parameters; saddle-free Newton, full-batch steps
    args = ["run", "mnist", "--opt", "saddle-free-newton", "--damping", "0.1", "--line-search", "--lr", "1",
            "--lr-schedule", "constant", "--epochs", "2", "--batch-size", "240", "--hidden", "1", "--input-noise", "0",
            "--hessian-index", "--data-dir", data, "--run-dir", run, "-q"]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    record = json.loads((run / "metrics.json").read_text())
    history = record["history"]
    for key in index.KEYS:
        assert len(history[key]) == 2, key
    info = record["analysis"]["hessian_index"]
    assert info["zero_rtol"] == 1e-4 and info["history_keys"] == list(index.KEYS)
    # the last epoch's row is the index at the saved final parameters, on the run's 240 images (< 1,000)
    from optlab.data.idx import read_idx

    images = jnp.asarray(read_idx(data / "train-images-idx3-ubyte.gz"))
    labels = jnp.asarray(read_idx(data / "train-labels-idx1-ubyte.gz"))
    saved = results.load_params(run)
    params = [{"w": jnp.asarray(saved[f"{i}/w"]), "b": jnp.asarray(saved[f"{i}/b"])} for i in range(2)]
    flat, unravel = ravel_pytree(params)

    def loss(x):
        return mlp.loss(unravel(x), (images, labels), jax.random.key(0))

    values = np.linalg.eigvalsh(np.asarray(jax.jit(jax.jacrev(jax.jacrev(loss)))(flat), np.float64))
    tol = 1e-4 * np.abs(values).max()
    assert history["hessian_negative_count"][-1] == pytest.approx(np.sum(values < -tol), abs=1)
    assert history["hessian_lambda_max"][-1] == pytest.approx(values[-1], rel=1e-3)
    # and before the first step: at params_init.npz
    first = results.load_params(run, results.INITIAL_PARAMS_FILE)
    start = ravel_pytree([{"w": jnp.asarray(first[f"{i}/w"]), "b": jnp.asarray(first[f"{i}/b"])}
                          for i in range(2)])[0]
    initial = np.linalg.eigvalsh(np.asarray(jax.jit(jax.jacrev(jax.jacrev(loss)))(start), np.float64))
    assert info["initial"]["hessian_lambda_max"] == pytest.approx(initial[-1], rel=1e-3)


def test_the_index_is_refused_on_a_network_too_large_for_a_dense_hessian(tmp_path):
    result = CliRunner().invoke(app, ["run", "mnist", "--hidden", "8", "--hessian-index", "--run-dir",
                                      str(tmp_path / "run"), "-q"])
    assert result.exit_code == 2
    assert "--hessian-index" in result.output and "6,370" in result.output
    assert not (tmp_path / "run").exists()
