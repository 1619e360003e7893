"""The signals experiment against ReLU signal-propagation theory, and the lecture's scaling observation on tiny."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

from optlab import config
from optlab.cli import app
from optlab.problems import tiny
from optlab.runs import resolve, runner

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def run_signals(tmp_path: Path, **settings) -> dict:
    layer = {"experiment": "signals", "run_dir": str(tmp_path / "run"), **settings}
    return runner.run(resolve.resolve([config.Layer(layer, "flag")]), quiet=True).record


@pytest.fixture(scope="module")
def deep(tmp_path_factory) -> dict:
    """20 ReLU layers of 256 units, every init at scales 0.5, 1, 2 (synthetic data unless MNIST is found)."""
    return run_signals(tmp_path_factory.mktemp("signals"), depth="20", activation="relu", init="glorot,he,normal",
                       init_scale="0.5,1,2")


def line(record: dict, init: str, scale: float) -> dict:
    return next(line for line in record["summary"]["lines"] if line["init"] == init and line["init_scale"] == scale)


def test_he_stays_within_a_factor_2_across_20_layers_and_glorot_decays(deep):
    rows = deep["history"]
    he = rows["init"].index("he") + 1  # the rows run init-major then scale: he ×1 is the second he row
    std, grad = np.array(rows["activation_std"][he]), np.array(rows["grad_norm"][he])
    assert (rows["init"][he], rows["init_scale"][he], len(std)) == ("he", 1.0, 20)
    assert np.all((0.5 < std / std[0]) & (std / std[0] < 2)) and np.all((0.5 < grad / grad[-1]) & (grad / grad[-1] < 2))
    glorot = line(deep, "glorot", 1.0)
    # (1/√2)¹⁹ ≈ 0.0014 in theory: two orders of magnitude down, forward and backward
    assert glorot["activation_std_last_over_first"] < 0.01 and glorot["grad_norm_first_over_last"] < 0.01


@pytest.mark.parametrize("init", ["glorot", "he", "normal"])
@pytest.mark.parametrize("scale", [0.5, 1.0, 2.0])
def test_every_lines_per_layer_factor_is_scale_times_root_g_over_2(deep, init, scale):
    g = {"he": 2.0, "glorot": 1.0, "normal": 256 * 0.01**2}[init]  # Var(w) = g·s²/fan_in on 256-wide layers
    found = line(deep, init, scale)
    assert found["theory_factor"] == pytest.approx(scale * np.sqrt(g / 2), rel=1e-12)
    assert found["forward_factor"] == pytest.approx(found["theory_factor"], rel=0.10)
    assert found["backward_factor"] == pytest.approx(found["theory_factor"], rel=0.10)


def test_every_depth_activation_init_and_scale_is_a_row_and_the_figure_is_written(tmp_path):
    record = run_signals(tmp_path, depth="2..4", init="he,glorot", init_scale="1", width="32", batch_size="16")
    assert record["history"]["depth"] == [2] * 4 + [3] * 4 + [4] * 4
    assert record["history"]["activation"] == ["relu", "relu", "tanh", "tanh"] * 3  # the default: both
    assert [len(s) for s in record["history"]["activation_std"]] == [2] * 4 + [3] * 4 + [4] * 4
    assert [(f["activation"], f["init"]) for f in record["summary"]["lines"]] == [
        ("relu", "he"), ("relu", "glorot"), ("tanh", "he"), ("tanh", "glorot")]
    assert record["figures"]["signals"]["activations"] == ["relu", "tanh"]
    assert list(record["config"]["depth"]) == [2, 3, 4] and list(record["config"]["init"]) == ["he", "glorot"]
    assert (tmp_path / "run" / "signals.png").read_bytes()[:4] == b"\x89PNG"
    assert "images" in json.loads((tmp_path / "run" / "metrics.json").read_text())["analysis"]["data"]


def test_with_tanh_glorots_init_keeps_the_signal_and_hes_explodes_the_gradient(tmp_path):
    """Glorot & Bengio (2010): tanh is linear near 0 (gain c = 1), so Glorot's g = 1 keeps the scale where it
    decays as (1/√2)ˡ under ReLU; He's g = 2 makes tanh saturate forward and the gradient grow towards the input."""
    record = run_signals(tmp_path, depth="20", activation="tanh,relu", init="glorot,he", init_scale="1")
    tanh_glorot = next(f for f in record["summary"]["lines"] if f["activation"] == "tanh" and f["init"] == "glorot")
    relu_glorot = next(f for f in record["summary"]["lines"] if f["activation"] == "relu" and f["init"] == "glorot")
    tanh_he = next(f for f in record["summary"]["lines"] if f["activation"] == "tanh" and f["init"] == "he")
    assert tanh_glorot["theory_factor"] == 1.0 and tanh_he["theory_factor"] == pytest.approx(np.sqrt(2))
    assert tanh_glorot["forward_factor"] == pytest.approx(1.0, abs=0.1)
    assert tanh_glorot["activation_std_last_over_first"] > 100 * relu_glorot["activation_std_last_over_first"]
    assert tanh_he["grad_norm_first_over_last"] > 2  # backward, tanh with g = 2 is past the edge of chaos


def test_an_activation_without_a_gain_has_no_theory_and_an_unknown_one_is_refused(tmp_path):
    record = run_signals(tmp_path, depth="3", width="16", batch_size="16", activation="sigmoid", init="he",
                         init_scale="1")
    assert np.isnan(record["summary"]["lines"][0]["theory_factor"])
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert written["summary"]["lines"][0]["theory_factor"] is None  # JSON has no NaN
    result = CliRunner().invoke(app, ["run", "signals", "--activation", "relu,tnah", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "unknown activation 'tnah'; did you mean 'tanh'?" in result.output


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="real MNIST not present")
def test_real_mnist_inputs_follow_the_same_theory(tmp_path):
    # ReLU's gain is exact for any input; tanh's holds only while it stays linear (not at He's scale)
    record = run_signals(tmp_path, depth="20", init="he,glorot", init_scale="1", activation="relu",
                         data_dir=str(SHARED_MNIST))
    assert record["analysis"]["data"].startswith("the first 256 MNIST training images")
    for line in record["summary"]["lines"]:
        assert line["forward_factor"] == pytest.approx(line["theory_factor"], rel=0.10)


@pytest.mark.parametrize("args, message", [
    (["--init", "he,xavier"], "unknown init 'xavier'"),
    (["--depth", "0..3"], "--depth must be integers from 1 to 1,000"),
    (["--init-scale", "1,-2"], "--init-scale must be comma-separated positive scales"),
])
def test_bad_signals_settings_are_one_line_exit_2(tmp_path, args, message):
    result = CliRunner().invoke(app, ["run", "signals", *args, "--out", str(tmp_path)])
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert message in result.output


def test_doubling_w1_and_halving_w2_keeps_the_output_and_doubles_w2s_data_gradient():
    """The lecture's observation on C = (w1·w2 − 1.5)² + 0.04(w1² + w2²).

    With (w1, w2) → (2w1, w2/2) the output w1·w2 is unchanged, so the data term is too; its
    gradient 2(w1w2 − 1.5)·w1 in w2 doubles and 2(w1w2 − 1.5)·w2 in w1 halves. The weight-decay
    part 0.08·w2 halves instead, so the *full* ∂C/∂w2 is 2 × data part + ½ × decay part, not 2×.
    """
    with jax.enable_x64(True):
        w, scaled = jnp.asarray([0.5, 1.5]), jnp.asarray([1.0, 0.75])
        data_grad = jax.grad(lambda p: (p[0] * p[1] - tiny.TARGET) ** 2)
        decay_grad = 2 * tiny.DECAY * w  # of 0.04(w1² + w2²)
        assert float(w[0] * w[1]) == float(scaled[0] * scaled[1]) == 0.75
        np.testing.assert_allclose(data_grad(scaled), [data_grad(w)[0] / 2, 2 * data_grad(w)[1]], rtol=1e-15)
        np.testing.assert_allclose(data_grad(w), [-2.25, -0.75], rtol=1e-15)  # 2(0.75 − 1.5)·(1.5, 0.5)
        full, full_scaled = jax.grad(tiny.loss)(w), jax.grad(tiny.loss)(scaled)
        np.testing.assert_allclose(full_scaled[1], 2 * data_grad(w)[1] + decay_grad[1] / 2, rtol=1e-15)
        assert float(full[1]) == pytest.approx(-0.63) and float(full_scaled[1]) == pytest.approx(-1.44)  # not 2 × −0.63


def test_signals_take_no_optimizer_settings(tmp_path):
    result = CliRunner().invoke(app, ["run", "signals", "--depth", "2..3", "--opt", "adam", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--opt does not apply to experiment 'signals'" in result.stderr
    assert not any(tmp_path.iterdir())
