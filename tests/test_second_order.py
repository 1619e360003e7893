"""Newton with damping and line search, saddle-free Newton, and Hessian-free, against formulas written by hand."""

from __future__ import annotations

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

from optlab import config
from optlab.cli import app
from optlab.core import optimizers, schedules, second_order
from optlab.core.engine import epoch_fn, full_batch_run, init_state
from optlab.curvature import analysis
from optlab.problems import mlp, tiny
from optlab.runs import resolve, runner
from tiny_by_hand import grad, hessian

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
SADDLE_START = "-0.5,2.0"  # where pure Newton heads for the saddle at the origin


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def one_step(tx, w):
    params = jnp.asarray(w, jnp.float64)
    updates, _ = tx.update(jax.grad(tiny.loss)(params), tx.init(params), params, value_fn=tiny.loss)
    return np.asarray(updates)


def tiny_run(optimizer: str, start: str = SADDLE_START, steps: int = 30, **settings) -> np.ndarray:
    """The tiny problem's trajectory, with the run's hyperparameters from its config."""
    cfg = resolve.resolve([config.Layer({"experiment": "tiny", "optimizer": optimizer, "start": start,
                                        "steps": str(steps), **settings}, "flag")])
    hp = optimizers.hyperparams(cfg, jnp.float64)

    def make_tx(hp, key):
        return optimizers.build(cfg.optimizer, schedules.build("constant", hp["lr"], steps, cfg), hp, None, key)

    _, _, rows = full_batch_run(tiny.loss, make_tx, steps)(tiny.init(cfg.start), hp, jax.random.key(0))
    return np.asarray(rows.params), np.asarray(rows.loss)


@pytest.mark.parametrize("damping", [0.5, 4.0])
def test_damping_steps_by_h_plus_lambda_i_inverse(x64, damping):
    w = np.array([0.5, 1.5])
    expected = -np.linalg.solve(hessian(w) + damping * np.eye(2), grad(w))
    np.testing.assert_allclose(one_step(second_order.newton(1.0, damping), w), expected, rtol=1e-12)
    pure = -np.linalg.solve(hessian(w), grad(w))
    assert not np.allclose(expected, pure, rtol=1e-3)  # damping really changed the step


def test_damping_reaches_the_optimizer_through_the_config(x64):
    points, _ = tiny_run("newton", start="0.5,1.5", steps=1, damping="0.5")
    expected = np.array([0.5, 1.5]) - np.linalg.solve(hessian([0.5, 1.5]) + 0.5 * np.eye(2), grad([0.5, 1.5]))
    np.testing.assert_allclose(points[1], expected, rtol=1e-12)


def test_saddle_free_newton_steps_by_absolute_hessian_inverse(x64):
    w = np.array([0.3, 0.25])  # H is indefinite here, and ∇C points mostly along its negative curvature
    values, q = np.linalg.eigh(hessian(w))
    assert values[0] < 0 < values[1]
    expected = -q @ ((q.T @ grad(w)) / np.abs(values))
    np.testing.assert_allclose(one_step(second_order.saddle_free_newton(1.0), w), expected, rtol=1e-12)
    assert grad(w) @ expected < 0  # always downhill, unlike Newton's step here
    assert grad(w) @ -np.linalg.solve(hessian(w), grad(w)) > 0


def test_newton_is_drawn_into_the_saddle_and_saddle_free_newton_escapes(x64):
    newton_points, _ = tiny_run("newton")
    sfn_points, sfn_loss = tiny_run("saddle-free-newton")
    np.testing.assert_allclose(newton_points[-1], [0, 0], atol=1e-12)
    assert analysis.classify(analysis.gradient_norm(tiny.loss, jnp.asarray(newton_points[-1])),
                             analysis.hessian_eigenvalues(tiny.loss, jnp.asarray(newton_points[-1]))) == "saddle"
    np.testing.assert_allclose(sfn_points[-1], [tiny.MINIMUM, tiny.MINIMUM], atol=1e-10)
    assert sfn_loss[-1] == pytest.approx(tiny.MINIMUM_LOSS, abs=1e-12)
    assert np.all(np.diff(sfn_loss) <= 1e-15)  # every step went downhill


def test_line_search_halves_until_the_loss_decreases(x64):
    w = np.array([0.5, 1.5])
    direction = -np.linalg.solve(hessian(w), grad(w))
    f0 = float(tiny.loss(jnp.asarray(w)))
    t = 1.0  # the first of 1, 1/2, 1/4, … meeting Armijo's condition, found by hand
    while float(tiny.loss(jnp.asarray(w + t * direction))) > f0 + 1e-4 * t * grad(w) @ direction:
        t /= 2
    assert t < 1  # the full Newton step overshoots here, so the search has work to do
    np.testing.assert_allclose(one_step(second_order.newton(1.0, 0.0, True), w), t * direction, rtol=1e-12)
    _, losses = tiny_run("saddle-free-newton", line_search="true")
    assert losses[-1] == pytest.approx(tiny.MINIMUM_LOSS, abs=1e-12)


def armijo_by_hand(w, direction, eta=1.0, halvings=30):
    """The first t of η, η/2, …, η 2⁻³⁰ with C(w + t d) ≤ C(w) + 10⁻⁴ t gᵀd, else η 2⁻³⁰."""
    f0, slope, t = float(tiny.loss(jnp.asarray(w))), grad(w) @ direction, eta
    for _ in range(halvings):
        if float(tiny.loss(jnp.asarray(w + t * direction))) <= f0 + 1e-4 * t * slope:
            break
        t /= 2
    return t


def test_every_line_search_starts_again_from_eta(x64):
    """Halving from the full step at every step, not from the step the last search accepted."""
    w, path, ts = np.array([0.5, 1.5]), [np.array([0.5, 1.5])], []
    for _ in range(4):
        direction = -np.linalg.solve(hessian(w), grad(w))
        ts.append(armijo_by_hand(w, direction))
        w = w + ts[-1] * direction
        path.append(w)
    assert ts == [0.5, 0.25, 1.0, 1.0]  # a search starting from 0.25 at step 3 would accept 0.25
    points, _ = tiny_run("newton", start="0.5,1.5", steps=4, line_search="true")
    np.testing.assert_allclose(points, path, rtol=1e-12)


def test_line_search_gives_up_after_30_halvings_on_an_uphill_direction(x64):
    w = np.array([0.3, 0.25])  # H indefinite: Newton's direction climbs, gᵀd > 0, so no t passes Armijo
    direction = -np.linalg.solve(hessian(w), grad(w))
    assert grad(w) @ direction > 0
    assert armijo_by_hand(w, direction) == 2.0**-30
    np.testing.assert_allclose(one_step(second_order.newton(1.0, 0.0, True), w), 2.0**-30 * direction, rtol=1e-12)


def test_line_search_takes_no_step_when_every_trial_loss_is_nan(x64):
    """optax's rule: when even the last trial's loss is NaN the step is 0 (not η 2⁻³⁰ d into NaN)."""
    w = jnp.asarray([0.5, 1.5])

    def loss(p):  # C at w itself (so g and H are C's), NaN at every other point
        return jnp.where(jnp.all(p == w), tiny.loss(p), jnp.nan)

    for tx, expected in [(second_order.newton(1.0, 0.0, True), np.zeros(2)),
                         (second_order.newton(1.0, 0.0, False), -np.linalg.solve(hessian(w), grad(w)))]:
        updates, _ = tx.update(jax.grad(loss)(w), tx.init(w), w, value_fn=loss)
        np.testing.assert_allclose(np.asarray(updates), expected, rtol=1e-12, atol=0)


def test_the_saddle_free_experiment_file_ends_at_a_minimum(tmp_path):
    outcome = runner.run_file(EXPERIMENTS / "tiny-saddle-free-newton.toml", tmp_path)
    assert outcome.record["analysis"]["critical_point"] == "minimum"
    assert outcome.record["summary"]["final_loss"] == pytest.approx(tiny.MINIMUM_LOSS, abs=1e-9)


def test_conjugate_gradient_solves_a_positive_definite_system_and_stops_at_negative_curvature(x64):
    a = jax.random.normal(jax.random.key(0), (8, 8), jnp.float64)
    spd, b = a @ a.T + 0.1 * jnp.eye(8), jnp.arange(8.0)
    x = second_order.conjugate_gradient(lambda v: spd @ v, b, jnp.zeros(8), 50, tol=1e-12)
    np.testing.assert_allclose(spd @ x, b, atol=1e-8)
    indefinite = jnp.diag(jnp.asarray([1.0, -1.0]))
    x = second_order.conjugate_gradient(lambda v: indefinite @ v, jnp.asarray([0.0, 1.0]), jnp.zeros(2), 10)
    np.testing.assert_allclose(x, [0.0, 0.0])  # the only direction had negative curvature: no step


def test_hessian_free_reduces_the_loss_of_a_small_classifier():
    from test_classify import bars  # the bar images in the MNIST layout

    images, labels = bars(240, np.random.default_rng(0))
    data = jax.device_put(images), jax.device_put(labels)
    cfg = resolve.resolve([config.Layer({"experiment": "mnist", "optimizer": "hessian-free", "hidden": "32",
                                        "batch_size": "60", "cg_iters": "8"}, "flag")])
    hp = optimizers.hyperparams(cfg, jnp.float32)

    def make_tx(hp, key):
        return optimizers.build("hessian-free", schedules.build("constant", hp["lr"], 100, cfg), hp, None, key)

    params = mlp.init(jax.random.key(0), (784, 32, 4))
    before = float(mlp.evaluate(params, *data)["loss"])
    state = init_state(make_tx, params, hp, jax.random.key(1))
    epoch = epoch_fn(mlp.loss, make_tx, 240, 60)
    for _ in range(3):
        state, _, _ = epoch(state, hp, *data)
    after = mlp.evaluate(state.params, *data)
    assert before == pytest.approx(math.log(4), abs=0.3)
    assert float(after["loss"]) < 0.1 * before and float(after["error"]) == 0.0
    optimizers.check_size("hessian-free", mlp.param_count((784, 225, 225, 10)), 4)  # matrix-free: allowed on MNIST


@pytest.mark.parametrize("value", ["0", "-1", "nan"])
def test_non_positive_damping_is_one_line_exit_2(tmp_path, value):
    result = CliRunner().invoke(app, ["run", "tiny", "--opt", "newton", "--damping", value, "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: --damping must be a positive finite number, got '{value}'"
    assert not any(tmp_path.iterdir())  # nothing was written


def test_a_tiny_run_with_damping_takes_the_damped_first_step(tmp_path):
    settings = {"experiment": "tiny", "optimizer": "newton", "damping": "0.5", "steps": "1",
                "run_dir": str(tmp_path / "run")}
    outcome = runner.run(resolve.resolve([config.Layer(settings, "flag")]), quiet=True)
    w = np.array([0.5, 1.5])
    expected = w - np.linalg.solve(hessian(w) + 0.5 * np.eye(2), grad(w))
    np.testing.assert_allclose(outcome.record["history"]["params"][1], expected, rtol=1e-12)
