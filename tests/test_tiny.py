"""The lecture's two-weight model: its analytic facts, and what each optimizer does on it."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optlab import config
from optlab.core.engine import full_batch_run
from optlab.curvature import analysis
from optlab.experiments import tiny as tiny_experiment
from optlab.problems import tiny
from optlab.runs import resolve


def cfg(**settings):
    return resolve.resolve([config.Layer({"experiment": "tiny", **settings}, "flag")])


def point(w1, w2):
    return jnp.asarray([w1, w2], dtype=jnp.float64)


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def test_minima_at_plus_minus_sqrt_1_46_with_loss_0_1184():
    a = math.sqrt(1.46)
    for w in (point(a, a), point(-a, -a)):
        assert float(tiny.loss(w)) == pytest.approx(0.1184, abs=1e-12)
        assert analysis.gradient_norm(tiny.loss, w) < 1e-12
        np.testing.assert_allclose(analysis.hessian_eigenvalues(tiny.loss, w), [0.16, 5.84], atol=1e-12)


def test_origin_is_a_saddle_with_eigenvalues_0_08_plus_minus_3():
    eigenvalues = analysis.hessian_eigenvalues(tiny.loss, point(0, 0))
    np.testing.assert_allclose(eigenvalues, [0.08 - 3, 0.08 + 3], atol=1e-12)
    report = analysis.critical_point_report(tiny.loss, point(0, 0))
    assert report["critical_point"] == "saddle"
    assert report["gd_max_stable_lr"] == pytest.approx(2 / 3.08)


def test_gradient_descent_is_stable_below_2_over_5_84():
    a = math.sqrt(1.46)
    report = analysis.critical_point_report(tiny.loss, point(a, a))
    assert report["critical_point"] == "minimum"
    assert report["gd_max_stable_lr"] == pytest.approx(2 / 5.84) == pytest.approx(0.3425, abs=1e-4)


def test_the_three_critical_points_are_found_numerically():
    found = analysis.find_critical_points(tiny.loss, (-3, 3, -3, 3))
    expected = sorted(tiny.CRITICAL_POINTS, key=lambda item: item[1])
    assert [kind for kind, _ in found] == [kind for kind, _ in expected]
    np.testing.assert_allclose([p for _, p in found], [p for _, p in expected], atol=1e-9)


def test_loss_grid_matches_the_jax_loss():
    w1, w2 = np.meshgrid(np.linspace(-2, 2, 7), np.linspace(-1, 3, 5))
    expected = [[float(tiny.loss(point(a, b))) for a, b in zip(r1, r2)] for r1, r2 in zip(w1, w2)]
    np.testing.assert_allclose(tiny.loss_grid(w1, w2), expected, rtol=1e-12)


def test_gd_step_0_25_converges_slowly_at_the_shallow_rate_0_96():
    history, *_ = tiny_experiment.simulate(cfg(optimizer="gd", lr="0.25", steps="400"))
    assert history["grad_norm"][-1] < 1e-6  # it does converge ...
    assert history["grad_norm"][100] > 1e-3  # ... but after 100 steps it is still far off
    # late in the run the error shrinks by 1 - 0.25*0.16 = 0.96 per step along the valley
    ratio = (history["loss"][201] - tiny.MINIMUM_LOSS) / (history["loss"][200] - tiny.MINIMUM_LOSS)
    assert ratio == pytest.approx(0.96**2, rel=1e-3)  # the loss gap shrinks with the square


def test_gd_step_0_35_ends_in_a_bounded_two_step_bounce():
    history, *_ = tiny_experiment.simulate(cfg(optimizer="gd", lr="0.35", steps="400"))
    params = history["params"]
    assert np.all(np.isfinite(history["loss"])) and history["loss"].max() < 10
    assert history["grad_norm"][-1] > 0.1  # never converges
    np.testing.assert_allclose(params[-1], params[-3], atol=1e-9)  # period two ...
    assert np.linalg.norm(params[-1] - params[-2]) > 0.1  # ... between two distinct points
    summary = tiny_experiment._summary(history, None)
    assert summary["oscillating"] and not summary["converged"]


def test_gd_0_35_error_along_the_steep_direction_grows_by_1_04_near_the_minimum():
    a = math.sqrt(1.46)
    steep = np.array([1.0, 1.0]) / math.sqrt(2)  # eigenvector of eigenvalue 5.84
    start = np.array([a, a]) + 1e-6 * steep
    history, *_ = tiny_experiment.simulate(cfg(optimizer="gd", lr="0.35", steps="2", start=list(start)))
    errors = (history["params"] - np.array([a, a])) @ steep
    np.testing.assert_allclose(errors[1:] / errors[:-1], 1 - 0.35 * 5.84, rtol=1e-4)


def test_newton_converges_to_machine_precision_within_10_steps_from_near_a_minimum():
    history, *_ = tiny_experiment.simulate(cfg(optimizer="newton", steps="10", start=[1.0, 1.4]))
    assert history["grad_norm"][-1] < 1e-8
    gaps = history["grad_norm"][1:6]
    assert np.all(gaps[1:] < 50 * gaps[:-1] ** 2)  # quadratic: each error about the square of the last


def test_newton_is_drawn_into_the_saddle_at_the_origin_from_nearby():
    history, *_ = tiny_experiment.simulate(cfg(optimizer="newton", steps="10", start=[0.3, -0.2]))
    np.testing.assert_allclose(history["params"][-1], [0, 0], atol=1e-12)
    assert analysis.critical_point_report(tiny.loss, point(*history["params"][-1]))["critical_point"] == "saddle"


def test_newton_says_where_the_hessian_is_singular_instead_of_crashing():
    a = math.sqrt(1.54)  # det H = 0 where 2a² + 0.08 = 4a² - 3
    assert abs(np.linalg.det(np.asarray(jax.hessian(tiny.loss)(point(a, a))))) < 1e-9
    history, opt_state, *_ = tiny_experiment.simulate(cfg(optimizer="newton", steps="5", start=[a, a]))
    assert np.all(np.isfinite(history["params"]))
    notes = tiny_experiment._singular_hessian_notes(opt_state, history["params"])
    assert len(notes) == 1 and "singular at 1 step(s), first at step 0" in notes[0]


def test_gradient_noise_has_the_requested_standard_deviation():
    # one gd step of size η from the same point moves by -η (g + noise); vmap over 4000 seeds
    c = cfg(optimizer="gd", lr="0.1", steps="1", grad_noise="0.5")
    run = full_batch_run(tiny.loss, tiny_experiment.make_tx_for(c), steps=1)
    hp = {k: jnp.asarray(getattr(c, k)) for k in ("lr", "momentum", "grad_noise")}
    keys = jax.random.split(jax.random.key(0), 4000)
    _, _, rows = jax.vmap(run, in_axes=(None, None, 0))(tiny.init(c.start), hp, keys)
    gradient = np.asarray(jax.grad(tiny.loss)(tiny.init(c.start)))
    noise = (np.asarray(rows.params[:, 1]) - np.asarray(c.start)) / -0.1 - gradient
    np.testing.assert_allclose(noise.mean(axis=0), 0, atol=0.03)
    np.testing.assert_allclose(noise.std(axis=0), 0.5, rtol=0.04)
    assert abs(np.corrcoef(noise.T)[0, 1]) < 0.05  # independent per coordinate


def test_the_same_seed_gives_the_same_history_bit_for_bit():
    settings = dict(optimizer="momentum", grad_noise="0.3", seed="7")
    first, *_ = tiny_experiment.simulate(cfg(**settings))
    second, *_ = tiny_experiment.simulate(cfg(**settings))
    other, *_ = tiny_experiment.simulate(cfg(**{**settings, "seed": "8"}))
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])
    assert not np.array_equal(first["params"], other["params"])


def test_divergence_is_found_at_the_first_blown_up_step():
    history, *_ = tiny_experiment.simulate(cfg(optimizer="gd", lr="2", steps="50"))
    step = tiny_experiment.first_divergence(history)
    assert step is not None and step >= 1
    assert np.all(history["loss"][:step] <= 1e8 * (1 + history["loss"][0]))
