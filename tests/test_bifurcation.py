"""The bifurcation experiment: the period detector on maps of known period, the lecture's facts about gradient
descent on the tiny model (checked against an independent numpy iteration of the GD map), and the command."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from optlab import config
from optlab.cli import app
from optlab.errors import ConfigError
from optlab.experiments import bifurcation
from optlab.runs import resolve

LAMBDA_MAX = 5.84
# The lecture's facts, from (0.5, 1.5): η -> the attractor's period (0 chaotic, −1 diverged).
FACTS = {0.30: 1, 0.34: 1, 0.35: 2, 0.40: 2, 0.43: 4, 0.44: 4, 0.45: 0, 0.46: 0, 0.47: 0, 0.50: 3, 0.60: -1}


def cfg(**settings):
    return resolve.resolve([config.Layer({"experiment": "bifurcation", **settings}, "flag")])


def logistic_tail(r: float, transient: int = 2000, tail: int = 128) -> np.ndarray:
    x = 0.2
    for _ in range(transient):
        x = r * x * (1 - x)
    out = []
    for _ in range(tail):
        x = r * x * (1 - x)
        out.append(x)
    return np.array(out)


def gd_tails(lrs, start=(0.5, 1.5), steps=5000, tail=128) -> np.ndarray:
    """Gradient descent on C = (w1·w2 − 1.5)² + 0.04(w1² + w2²) written out in numpy: the last `tail` points."""
    lr = np.asarray(lrs, dtype=float)[:, None]
    w = np.tile(np.asarray(start, dtype=float), (len(lr), 1))
    out = np.empty((len(lr), tail, 2))
    with np.errstate(all="ignore"):
        for t in range(steps + 1):
            if t >= steps + 1 - tail:
                out[:, t - (steps + 1 - tail)] = w
            r = w[:, 0] * w[:, 1] - 1.5
            grad = np.stack([2 * r * w[:, 1] + 0.08 * w[:, 0], 2 * r * w[:, 0] + 0.08 * w[:, 1]], axis=1)
            w = w - lr * grad
    return out


@pytest.mark.parametrize(("r", "expected"), [(2.8, 1), (3.2, 2), (3.5, 4), (3.83, 3), (3.9, 0)])
def test_the_detector_reads_the_logistic_maps_known_periods(r, expected):
    assert bifurcation.period(logistic_tail(r)) == expected


def test_the_detector_calls_a_blown_up_or_non_finite_orbit_diverged_and_needs_a_long_enough_tail():
    assert bifurcation.period(2.0 ** np.arange(100)) == -1
    assert bifurcation.period(np.r_[np.ones(99), np.nan]) == -1
    with pytest.raises(ValueError, match="cannot show periods up to 32"):
        bifurcation.period(np.ones(64))


def test_the_tolerance_separates_a_cycle_from_what_is_left_of_a_transient():
    # x_t = 1 + (−1)^t a ρ^t: a fixed point approached with multiplier −ρ, seen after 200 steps, against
    # 2-cycles of half-size 1e-3 (above the tolerance 1e-5·(1 + max|x|) ≈ 2e-5) and 1e-6 (below it).
    t = np.arange(128)
    assert bifurcation.period(1 + (-1.0) ** t * 0.9 ** (t + 200)) == 1
    assert bifurcation.period(1 + (-1.0) ** t * 1e-3) == 2
    assert bifurcation.period(1 + (-1.0) ** t * 1e-6) == 1  # a cycle smaller than the tolerance reads as a point


def test_doublings_and_windows_read_a_period_sequence():
    lrs = np.arange(12) / 10
    periods = np.array([1, 1, 2, 2, 4, 8, 0, 0, 3, 3, 0, -1])
    assert bifurcation.doublings(lrs, periods) == [0.2, 0.4, 0.5]
    assert bifurcation.windows(lrs, periods) == [{"period": 3, "lr_from": 0.8, "lr_to": 0.9}]
    assert bifurcation.first(lrs, periods == -1) == 1.1 and bifurcation.first(lrs, periods == 16) is None


def test_the_lecture_facts_hold_for_numpy_gd_and_for_the_vmapped_run():
    lrs = np.array(sorted(FACTS))
    by_numpy = [bifurcation.period(tail) for tail in gd_tails(lrs)]
    assert dict(zip(lrs.tolist(), by_numpy)) == FACTS
    points, losses, _, _ = bifurcation.attractors(cfg(), lrs)
    assert points.shape == (len(lrs), bifurcation.TAIL, 2) and losses.shape == (len(lrs), bifurcation.TAIL)
    assert [bifurcation.period(p) for p in points] == by_numpy
    stable = lrs < 2 / LAMBDA_MAX  # below 2/λmax both settle on the minimum √1.46 = 1.2083
    np.testing.assert_allclose(points[stable, -1], np.sqrt(1.46), atol=1e-9)
    np.testing.assert_allclose(losses[stable, -1], 0.1184, atol=1e-12)


def test_the_first_period_doubling_is_at_2_over_lambda_max_within_the_grid():
    lrs = np.linspace(0.30, 0.40, 201)  # spacing 5e-4
    points, _, _, _ = bifurcation.attractors(cfg(), lrs)
    periods = np.array([bifurcation.period(p) for p in points])
    first = bifurcation.doublings(lrs, periods)[0]
    assert abs(first - 2 / LAMBDA_MAX) <= lrs[1] - lrs[0]
    assert np.all(periods[lrs < first] == 1) and np.all(periods[(lrs >= first)] == 2)


def test_momentum_doubles_where_its_local_quadratic_loses_stability():
    lrs = np.linspace(0.38, 0.44, 121)
    points, _, _, _ = bifurcation.attractors(cfg(optimizer="momentum", momentum=0.2), lrs)
    first = bifurcation.doublings(lrs, np.array([bifurcation.period(p) for p in points]))[0]
    assert abs(first - 2 * (1 + 0.2) / LAMBDA_MAX) <= lrs[1] - lrs[0]  # 0.4110


def test_optlab_run_bifurcation_records_periods_and_draws_the_diagram(tmp_path):
    run_dir = tmp_path / "run"
    done = CliRunner().invoke(app, ["run", "bifurcation", "--lr-min", "0.3", "--lr-max", "0.7", "--lr-count", "201",
                                    "--run-dir", str(run_dir)])
    assert done.exit_code == 0, done.output
    assert "period doubling at η = 0.344 (local limit 0.3425)" in done.output
    record = json.loads((run_dir / "metrics.json").read_text())
    analysis = record["analysis"]
    lrs, periods = np.array(analysis["lr"]), np.array(analysis["period"])
    assert len(lrs) == 201 and lrs[0] == 0.3 and lrs[-1] == 0.7
    by_numpy = np.array([bifurcation.period(t) for t in gd_tails(lrs)])
    assert np.mean(periods == by_numpy) >= 0.97  # rounding may move a chaotic cell at a window's edge
    # the first grid points with periods 2 and 4 (0.3426 and 0.4232 on a grid 4 times finer)
    assert analysis["period_doubling_lrs"][:2] == pytest.approx([0.344, 0.424])
    assert record["summary"]["diverged_lr"] == pytest.approx(0.562) and record["summary"]["chaos_lr"] < 0.45
    figure = record["figures"]["bifurcation"]
    assert figure["path"] == "bifurcation.png" and figure["lr_range"] == [0.3, 0.7] and figure["lr_count"] == 201
    assert "201 values from 0.3 to 0.7" in figure["caption"]
    assert (run_dir / "bifurcation.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(("settings", "message"), [
    ({"steps": 100}, "--steps 100: a bifurcation run needs at least 256"),
    ({"lr_min": 0.5, "lr_max": 0.4}, "--lr-min 0.5 must be below --lr-max 0.4"),
    ({"lr_count": 100_000, "steps": 1000}, "--lr-count × --steps = 100,000 × 1,000 is more than"),
])
def test_bad_settings_are_one_line_config_errors(settings, message):
    with pytest.raises(ConfigError, match=message) as caught:
        cfg(**settings)
    assert "\n" not in str(caught.value)


def test_the_experiment_files_show_their_points(tmp_path):
    from pathlib import Path

    from optlab.runs import runner

    files = Path(__file__).resolve().parents[1] / "experiments"
    gd = runner.run_file(files / "bifurcation-gd.toml", tmp_path).record
    assert len(gd["analysis"]["lr"]) == 1000
    assert abs(gd["summary"]["first_doubling_lr"] - 2 / LAMBDA_MAX) <= 0.5 / 999
    assert gd["summary"]["chaos_lr"] == pytest.approx(0.446, abs=2e-3)
    assert gd["summary"]["diverged_lr"] == pytest.approx(0.561, abs=2e-3)
    assert any(w["period"] == 3 and w["lr_from"] < 0.499 < w["lr_to"] for w in gd["analysis"]["windows"])
    momentum = runner.run_file(files / "bifurcation-momentum.toml", tmp_path).record
    assert abs(momentum["summary"]["first_doubling_lr"] - 2 * 1.2 / LAMBDA_MAX) <= 0.5 / 999
