"""The phase diagram: the closed-form stability boundaries against the eigenvalues of the linear maps (numpy),
those maps against optax's own updates, and the measured (η, α) diagram of the tiny model against the boundary."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from optlab import config
from optlab.cli import app
from optlab.errors import ConfigError
from optlab.experiments import phase_diagram
from optlab.runs import resolve

LAMBDA_MAX = 5.84


def cfg(**settings):
    return resolve.resolve([config.Layer({"experiment": "phase-diagram", **settings}, "flag")])


def heavy_ball_map(lr: float, alpha: float, lam: float) -> np.ndarray:
    """(e_t, e_{t−1}) -> (e_{t+1}, e_t) for e_{t+1} = e_t − ηλ e_t + α (e_t − e_{t−1})."""
    return np.array([[1 + alpha - lr * lam, -alpha], [1.0, 0.0]])


def nesterov_map(lr: float, alpha: float, lam: float) -> np.ndarray:
    """(e, v) -> (e', v') for optax's Nesterov: v' = λe + αv, e' = e − η(λe + αv')."""
    return np.array([[1 - lr * lam * (1 + alpha), -lr * alpha**2], [lam, alpha]])


def radius(m: np.ndarray) -> float:
    return float(np.max(np.abs(np.linalg.eigvals(m))))


@pytest.mark.parametrize(("optimizer", "linear_map"), [("momentum", heavy_ball_map), ("nesterov", nesterov_map)])
@pytest.mark.parametrize("lam", [5.84, 0.16])
def test_the_boundary_is_where_the_linear_maps_spectral_radius_reaches_one(optimizer, linear_map, lam):
    checked = 0
    for alpha in np.linspace(0, 0.98, 50):
        limit = phase_diagram.max_stable_lr(optimizer, "momentum", alpha, lam)
        for lr in np.linspace(1e-3, 3 * limit, 300):
            if abs(lr - limit) > 1e-6 * limit:
                assert (radius(linear_map(lr, alpha, lam)) < 1) == (lr < limit), (alpha, lr, limit)
                checked += 1
    assert checked > 14_000
    assert phase_diagram.max_stable_lr(optimizer, "momentum", 0.0, lam) == pytest.approx(2 / lam)  # α = 0: gd


def test_the_closed_forms_at_a_glance():
    assert phase_diagram.max_stable_lr("momentum", "momentum", 0.9, LAMBDA_MAX) == pytest.approx(3.8 / 5.84)
    assert phase_diagram.max_stable_lr("nesterov", "momentum", 0.5, LAMBDA_MAX) == pytest.approx(1.5 / 5.84)
    assert phase_diagram.max_stable_lr("newton", "damping", 0.584, LAMBDA_MAX) == pytest.approx(2.2)
    assert phase_diagram.max_stable_lr("momentum", "momentum", 1.0, LAMBDA_MAX) is None
    assert phase_diagram.max_stable_lr("adam", "momentum", 0.5, LAMBDA_MAX) is None
    eta, alpha = phase_diagram.optimal_heavy_ball()
    assert eta == pytest.approx(4 / (5.84**0.5 + 0.4) ** 2) and alpha == pytest.approx(0.51262, abs=1e-5)


@pytest.mark.parametrize(("optimizer", "linear_map", "nesterov"), [("momentum", heavy_ball_map, False),
                                                                   ("nesterov", nesterov_map, True)])
def test_the_linear_maps_are_optaxs_updates_on_a_quadratic(optimizer, linear_map, nesterov):
    import optax

    lr, alpha, lam, w = 0.3, 0.6, 5.84, 1.0
    tx = optax.sgd(lr, momentum=alpha, nesterov=nesterov)
    state, ws = tx.init(w), [w]
    for _ in range(20):
        updates, state = tx.update(lam * w, state)
        w = float(optax.apply_updates(w, updates))
        ws.append(w)
    m = linear_map(lr, alpha, lam)
    x = np.array([1.0, 1.0]) if optimizer == "momentum" else np.array([1.0, 0.0])  # e_{−1} = e_0; v_0 = 0
    for t in range(1, 21):
        x = m @ x
        assert x[0] == pytest.approx(ws[t], rel=1e-5, abs=1e-9)


@pytest.mark.parametrize("optimizer", ["momentum", "nesterov"])
def test_the_measured_diagram_converges_inside_the_boundary_and_never_outside(optimizer):
    c = cfg(optimizer=optimizer, lr_min=0.05, lr_max=0.65, lr_count=25, hparam_min=0.0, hparam_max=0.3,
            hparam_count=7, steps=3000)
    lrs, alphas = phase_diagram.grid(c)
    losses, _, _ = phase_diagram.final_losses(c, lrs, alphas)
    converged, _ = phase_diagram.classify(losses, start_loss=1.0)
    limits = np.array([phase_diagram.max_stable_lr(optimizer, "momentum", a, LAMBDA_MAX) for a in alphas])
    margin = 2 * (lrs[1] - lrs[0])  # two cells
    inside, outside = lrs[None] < limits[:, None] - margin, lrs[None] > limits[:, None] + margin
    assert inside.sum() >= 50 and outside.sum() >= 50
    assert converged[inside].all() and not converged[outside].any()


def test_a_cell_is_the_heavy_ball_iteration_written_out_in_numpy():
    c = cfg(lr_min=0.1, lr_max=0.2, lr_count=2, hparam_min=0.3, hparam_max=0.6, hparam_count=2, steps=40)
    lrs, alphas = phase_diagram.grid(c)
    losses, _, _ = phase_diagram.final_losses(c, lrs, alphas)
    for i, alpha in enumerate(alphas):
        for j, lr in enumerate(lrs):
            w, v = np.array([0.5, 1.5]), np.zeros(2)
            for _ in range(40):
                r = w[0] * w[1] - 1.5
                g = np.array([2 * r * w[1] + 0.08 * w[0], 2 * r * w[0] + 0.08 * w[1]])
                v = g + alpha * v  # optax's trace
                w = w - lr * v
            assert losses[i, j] == pytest.approx((w[0] * w[1] - 1.5) ** 2 + 0.04 * (w @ w), rel=1e-10)


def test_optlab_run_phase_diagram_writes_the_map_and_the_boundary(tmp_path):
    run_dir = tmp_path / "run"
    done = CliRunner().invoke(app, ["run", "phase-diagram", "--lr-count", "30", "--hparam-count", "20",
                                    "--run-dir", str(run_dir)])
    assert done.exit_code == 0, done.output
    assert "phase-diagram momentum (η, momentum), 600 runs of 300 steps" in done.output
    record = json.loads((run_dir / "metrics.json").read_text())
    analysis, summary = record["analysis"], record["summary"]
    assert len(analysis["lr"]) == 30 and len(analysis["hparam_values"]) == 20 and analysis["hparam"] == "momentum"
    gap = np.array([[np.nan if g is None else g for g in row] for row in analysis["final_gap"]], dtype=float)
    assert gap.shape == (20, 30)
    assert np.array_equal(np.isnan(gap), np.array(analysis["diverged"]))
    assert summary["converged_outside"] == 0 and summary["cells_outside"] > 100
    assert summary["final_loss"] == pytest.approx(0.1184, abs=1e-12)
    assert (run_dir / "phase-diagram.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(("settings", "message"), [
    ({"optimizer": "gd"}, "--hparam momentum: optimizer 'gd' takes no hyperparameter besides η"),
    ({"hparam": "damping"}, "--hparam damping: optimizer 'momentum' takes momentum"),
    ({"hparam_max": 1.2}, r"--hparam-max 1.2: --momentum must be a number in \[0, 1\)"),
    ({"optimizer": "hessian-free", "hparam": "cg_iters", "hparam_min": 2, "hparam_max": 20},
     "--hparam cg_iters: a phase diagram needs a real-valued hyperparameter"),
    ({"lr_min": 0.9}, "--lr-min 0.9 must be below --lr-max 0.8"),
])
def test_bad_settings_are_one_line_config_errors(settings, message):
    with pytest.raises(ConfigError, match=message) as caught:
        cfg(**settings)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("name", ["phase-diagram-momentum", "phase-diagram-nesterov"])
def test_the_experiment_files_never_converge_outside_the_boundary(tmp_path, name):
    from pathlib import Path

    from optlab.runs import runner

    record = runner.run_file(Path(__file__).resolve().parents[1] / "experiments" / f"{name}.toml", tmp_path).record
    summary = record["summary"]
    assert summary["cells"] == 160 * 100 and summary["converged_outside"] == 0 and summary["cells_outside"] > 5000
    assert summary["converged_inside_fraction"] > 0.6
