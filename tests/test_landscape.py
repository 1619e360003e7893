"""optlab.curvature.landscape and `optlab landscape RUN_DIR`: lines and planes through a network's parameters."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from typer.testing import CliRunner

from optlab import results
from optlab.cli import app
from optlab.curvature import landscape
from optlab.data.idx import read_idx
from test_classify import write_fixture  # tests/ is on sys.path (pytest rootdir insertion)


def layers(rng, sizes=(5, 4, 3)):
    return [{"w": rng.standard_normal((b, a)).astype(np.float32), "b": rng.standard_normal(b).astype(np.float32)}
            for a, b in zip(sizes[:-1], sizes[1:])]


def test_alphas_hold_zero_and_one_exactly():
    for points in (2, 5, 41, 37):
        a = landscape.alphas(points)
        assert 0.0 in a.tolist() and 1.0 in a.tolist()
        assert np.sum((a >= 0) & (a <= 1)) == points
    np.testing.assert_allclose(landscape.alphas(5), np.arange(-1, 6) / 4)


def test_filter_normalisation_is_per_row_and_leaves_biases_out():
    rng = np.random.default_rng(0)
    params, drawn = layers(rng), layers(rng)
    params[0]["w"][1] = 0.0  # a unit whose weights are all zero gets a zero direction
    d = landscape.filter_normalized(drawn, params)
    for dl, pl, raw in zip(d, params, drawn):
        for row in range(pl["w"].shape[0]):
            np.testing.assert_allclose(np.linalg.norm(dl["w"][row]), np.linalg.norm(pl["w"][row]), rtol=1e-6)
            if np.linalg.norm(pl["w"][row]) > 0:  # the same direction within the row, only rescaled
                cos = dl["w"][row] @ raw["w"][row] / np.linalg.norm(dl["w"][row]) / np.linalg.norm(raw["w"][row])
                assert cos == pytest.approx(1.0, abs=1e-6)
        assert not dl["b"].any()
    assert not d[0]["w"][1].any()


def test_principal_plane_matches_numpys_svd():
    rng = np.random.default_rng(1)
    final = rng.standard_normal(50)
    path = final + np.cumsum(rng.standard_normal((8, 50)) * [[3.0]] * np.linspace(2, 0.1, 50), axis=0)[::-1]
    trajectory = np.vstack([path, final])
    plane = landscape.principal_plane(trajectory, final)
    offsets = path - final
    centred = offsets - offsets.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    for j in range(2):
        sign = np.sign(plane["directions"][j] @ vt[j])
        np.testing.assert_allclose(plane["directions"][j], sign * vt[j], atol=1e-10)
        np.testing.assert_allclose(plane["coords"][:, j], sign * ((trajectory - final) @ vt[j]), atol=1e-9)
    np.testing.assert_allclose(plane["explained"], s[:2] ** 2 / np.sum(s**2), rtol=1e-10)
    assert plane["coords"][0, 0] >= 0 and plane["coords"][0, 1] >= 0
    np.testing.assert_allclose(plane["coords"][-1], 0.0)  # the final point is the origin
    full = np.sum(offsets**2, axis=1)
    np.testing.assert_allclose(plane["captured"][:-1], np.sum(plane["coords"][:-1] ** 2, axis=1) / full)


@pytest.mark.slow
def test_the_line_and_the_plane_evaluate_the_points_they_name():
    rng = np.random.default_rng(2)
    start, end = layers(rng), layers(rng)
    flat0, unravel = ravel_pytree(start)
    flat1 = ravel_pytree(end)[0]

    def evaluate(p):  # a loss whose value names the point: Σ θ² and Σ θ
        x = ravel_pytree(p)[0]
        return {"loss": jnp.sum(x**2), "error": jnp.sum(x)}

    alpha = np.array([-0.5, 0.0, 0.3, 1.0])
    line = landscape.interpolation(evaluate, unravel, flat0, flat1, alpha)
    points = [(1 - a) * np.asarray(flat0, np.float64) + a * np.asarray(flat1, np.float64) for a in alpha]
    np.testing.assert_allclose(line["loss"], [np.sum(p**2) for p in points], rtol=1e-5)
    assert line["loss"][1] == float(jnp.sum(flat0**2)) and line["loss"][3] == float(jnp.sum(flat1**2))  # exact
    dirs = rng.standard_normal((2, flat1.size))
    xs, ys = np.array([-1.0, 0.0, 2.0]), np.array([0.0, 0.5])
    grid = landscape.plane(evaluate, unravel, flat1, dirs, xs, ys)
    for i, y in enumerate(ys):
        for j, x in enumerate(xs):
            point = np.asarray(flat1, np.float64) + x * dirs[0] + y * dirs[1]
            assert grid["error"][i][j] == pytest.approx(point.sum(), rel=1e-4, abs=1e-4)


def numpy_loss(params: dict, images: np.ndarray, labels: np.ndarray) -> float:
    """The clean cross-entropy of a ReLU network written out in numpy float64: an independent evaluation."""
    x = images.reshape(len(images), -1).astype(np.float64) / 255.0
    count = len({k.split("/")[0] for k in params})
    for i in range(count):
        x = x @ params[f"{i}/w"].astype(np.float64).T + params[f"{i}/b"]
        if i < count - 1:
            x = np.maximum(x, 0.0)
    x = x - x.max(axis=1, keepdims=True)
    log_softmax = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    return float(-log_softmax[np.arange(len(labels)), labels.astype(int)].mean())


@pytest.mark.slow
def test_landscape_of_a_network_run(tmp_path):
    data = write_fixture(tmp_path / "data")
    run = tmp_path / "run"
    invoke = CliRunner().invoke
    args = ["run", "mnist", "--opt", "adam", "--lr", "0.01", "--epochs", "3", "--batch-size", "40", "--hidden", "8",
            "--input-noise", "0", "--data-dir", data, "--run-dir", run, "-q"]
    assert invoke(app, [str(a) for a in args]).exit_code == 0
    # every network run keeps its initial parameters and its trajectory
    initial, final = results.load_params(run, results.INITIAL_PARAMS_FILE), results.load_params(run)
    epochs, trajectory = results.load_trajectory(run)
    assert epochs.tolist() == [0, 1, 2, 3] and trajectory.shape == (4, 784 * 8 + 8 + 8 * 10 + 10)
    np.testing.assert_array_equal(trajectory[0], np.concatenate([initial[k].ravel() for k in ("0/b", "0/w", "1/b",
                                                                                               "1/w")]))
    np.testing.assert_array_equal(trajectory[-1], np.concatenate([final[k].ravel() for k in ("0/b", "0/w", "1/b",
                                                                                              "1/w")]))
    assert not np.array_equal(trajectory[0], trajectory[1])

    result = invoke(app, ["landscape", str(run), "--subset", "100", "--points", "5", "--resolution", "3"])
    assert result.exit_code == 0, result.output
    record = json.loads((run / "metrics.json").read_text())
    report = record["analysis"]["landscape"]
    images = read_idx(data / "train-images-idx3-ubyte.gz")[:100]
    labels = read_idx(data / "train-labels-idx1-ubyte.gz")[:100]
    line = report["interpolation"]
    assert line["alpha"] == (np.arange(-1, 6) / 4).tolist()
    # the line's ends are the losses of the saved initial and final parameters on that subset
    assert line["loss"][1] == pytest.approx(numpy_loss(initial, images, labels), rel=1e-5)
    assert line["loss"][5] == pytest.approx(numpy_loss(final, images, labels), rel=1e-5)
    assert report["initial"]["loss"] == line["loss"][1] and report["final"]["loss"] == line["loss"][5]
    # both planes are 3 × 3 and pass through the final point at their centre / origin
    random_plane, path_plane = report["random_plane"], report["trajectory_plane"]
    assert np.shape(random_plane["loss"]) == (3, 3) and random_plane["x"] == [-1.0, 0.0, 1.0]
    assert random_plane["loss"][1][1] == pytest.approx(line["loss"][5], rel=1e-6)
    assert path_plane["path"]["epoch"] == [0, 1, 2, 3] and path_plane["path"]["x"][-1] == 0.0
    assert sum(path_plane["explained_variance"]) <= 1 + 1e-9 and np.shape(path_plane["loss"]) == (3, 3)
    for name in ("landscape_1d", "landscape_2d"):
        assert (run / results.figure_path(record["figures"][name])).read_bytes()[:4] == b"\x89PNG"
    assert record["history"]["epoch"] == [1, 2, 3]  # nothing else changed


def test_landscape_refuses_bad_flags_and_runs_without_a_trajectory(tmp_path, write_run):
    run = write_run(tmp_path, experiment="mnist")
    result = CliRunner().invoke(app, ["landscape", str(run), "--resolution", "1"])
    assert result.exit_code == 2 and "--resolution" in result.output
    result = CliRunner().invoke(app, ["landscape", str(run)])
    assert result.exit_code != 0 and "params.npz" in result.output
    tiny = write_run(tmp_path / "t", experiment="tiny")
    result = CliRunner().invoke(app, ["landscape", str(tiny)])
    assert result.exit_code == 2 and "no network trajectory" in result.output


def test_landscape_refuses_a_path_too_short_for_a_plane_and_a_diverged_run(tmp_path, write_run):
    run = write_run(tmp_path, experiment="mnist")
    params = layers(np.random.default_rng(3), (784, 2, 10))
    flat = ravel_pytree(params)[0]
    results.save_params(run, params)
    results.save_params(run, params, results.INITIAL_PARAMS_FILE)
    results.save_trajectory(run, [0, 1, 2], np.stack([flat, flat + 1, flat]))
    result = CliRunner().invoke(app, ["landscape", str(run)])
    assert result.exit_code == 2 and "needs 4 (a run of at least 3 epochs)" in result.output
    params[1]["w"][0, 0] = np.nan
    results.save_params(run, params)
    results.save_trajectory(run, [0, 1, 2, 3], np.stack([flat, flat + 1, flat + 2, flat]))
    result = CliRunner().invoke(app, ["landscape", str(run)])
    assert result.exit_code == 2 and "not all finite" in result.output


def test_the_landscape_figures_leave_the_tiny_problems_landscape_figure_alone(tmp_path):
    from optlab import plots

    path = plots.interpolation_curve(tmp_path / "line.png", [0.0, 0.5, 1.0], [2.0, 1.5, 1.0], [0.9, 0.5, 0.2])
    assert path.read_bytes()[:4] == b"\x89PNG"
    assert callable(plots.landscape)  # the tiny problem's figure, not a module of the same name
