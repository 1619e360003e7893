"""The activation, model and loss registries (optlab.problems.activations, .models, .losses) against formulas
written out, plug-ins of each used in a run, and the lecture's identity collapse: without a nonlinearity a
trained network is the single affine map W′x + b′ of its multiplied-out weights."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

import optlab
from optlab import config, results
from optlab.cli import app
from optlab.data import datasets
from optlab.problems import activations, losses, mlp, models
from optlab.runs import resolve, runner

Z = np.linspace(-4.0, 4.0, 81)


def np_sigmoid(z):
    return 1 / (1 + np.exp(-z))


HAND = {  # each built-in φ written out
    "relu": lambda z: np.maximum(z, 0),
    "leaky-relu": lambda z: np.where(z > 0, z, 0.01 * z),
    "tanh": np.tanh,
    "sigmoid": np_sigmoid,
    "identity": lambda z: z,
    "gelu": lambda z: 0.5 * z * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z**3))),
    "elu": lambda z: np.where(z > 0, z, np.expm1(z)),
    "softplus": lambda z: np.log1p(np.exp(z)),
    "silu": lambda z: z * np_sigmoid(z),
}


def test_every_built_in_activation_is_written_out_here():
    assert set(HAND) == set(activations.ACTIVATIONS.names())


@pytest.mark.parametrize("name", sorted(HAND))
def test_activation_matches_its_formula(name):
    got = np.asarray(activations.ACTIVATIONS[name].fn(jnp.asarray(Z, jnp.float32)), np.float64)
    np.testing.assert_allclose(got, HAND[name](Z), rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("name", [e.name for e in activations.ACTIVATIONS if e.value.gain is not None])
def test_an_activations_gain_is_its_small_signal_second_moment_ratio(name):
    """c = E[φ(z)²]/E[z²] for z ~ N(0, q), q = 10⁻⁴: 400,000 samples put the ratio within 1% of c."""
    z = 1e-2 * np.random.default_rng(0).standard_normal(400_000)
    ratio = np.mean(HAND[name](z) ** 2) / np.mean(z**2)
    assert ratio == pytest.approx(activations.ACTIVATIONS[name].gain, rel=0.01)


def test_losses_match_their_formulas():
    rng = np.random.default_rng(1)
    outputs, labels = rng.standard_normal((7, 4)), rng.integers(0, 4, 7)
    shifted = outputs - outputs.max(axis=1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    one_hot = np.eye(4)[labels]
    by_hand = {"cross-entropy": -log_softmax[np.arange(7), labels],
               "squared-error": 0.5 * ((outputs - one_hot) ** 2).sum(axis=1)}
    assert set(by_hand) == set(losses.LOSSES.names())
    for name, expected in by_hand.items():
        got = jax.jit(losses.LOSSES[name])(jnp.asarray(outputs, jnp.float32), jnp.asarray(labels))
        np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, err_msg=name)


def test_the_linear_model_is_softmax_regression_loss_and_gradient_by_hand():
    """Mean cross-entropy of softmax(Wx + b), and its gradient (softmax − onehot)ᵀx / N, (softmax − onehot) / N."""
    rng = np.random.default_rng(2)
    images, labels = rng.integers(0, 256, (9, 2, 3), dtype=np.uint8), rng.integers(0, 4, 9).astype(np.uint8)
    shapes = jax.eval_shape(lambda: mlp.init(jax.random.key(3), (6, 50, 50, 4), "glorot", model="linear"))
    assert [p["w"].shape for p in shapes] == [(4, 6)] and mlp.param_count((6, 50, 4), "linear") == 28  # no hidden
    x = images.reshape(9, -1) / 255.0
    w, b = rng.standard_normal((4, 6)), rng.standard_normal(4)
    params = [{"w": jnp.asarray(w, jnp.float32), "b": jnp.asarray(b, jnp.float32)}]
    w = np.asarray(params[0]["w"], np.float64)
    logits = x @ w.T + b
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    one_hot = np.eye(4)[labels]
    loss = jax.jit(jax.value_and_grad(functools.partial(mlp.loss, model="linear")))
    value, grad = loss(params, (images, labels), jax.random.key(0))
    assert float(value) == pytest.approx(-np.mean(np.log(p[np.arange(9), labels])), rel=1e-5)
    np.testing.assert_allclose(np.asarray(grad[0]["w"]), (p - one_hot).T @ x / 9, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(np.asarray(grad[0]["b"]), (p - one_hot).mean(0), rtol=1e-4, atol=1e-7)
    assert mlp.evaluate(params, images, labels, model="linear")["active"] == []  # no hidden units


def test_a_model_without_init_or_apply_is_refused():
    with pytest.raises(TypeError, match="needs callable apply"):
        models.model("half", "no apply")(type("Half", (), {"init": lambda key, sizes, std_of, scale: []}))
    assert "half" not in models.MODELS


def test_a_sweep_runs_each_model_activation_and_loss_as_its_own_program():
    """They are static (a different program each), unlike the seed and the step size (lanes of one program)."""
    from optlab.sweep import grid

    base = [config.Layer({"experiment": "mnist"}, "flag")]
    swept = grid.build(base, [config.Layer({"activation": "relu,tanh", "loss": "cross-entropy,squared-error",
                                            "model": "mlp,linear", "seed": "0..1", "lr": "1e-3,1e-2"}, "flag")])
    assert len(swept.configs) == 32
    groups = grid.groups(swept.configs)
    assert len(groups) == 8 and all(len(g) == 4 for g in groups)
    for g in groups:
        assert len({(swept.configs[i].activation, swept.configs[i].loss, swept.configs[i].model) for i in g}) == 1


# ---- plug-ins in a run ---------------------------------------------------------------------------


def blobs(n: int = 240, shape=(8, 8), classes: int = 3, seed: int = 0):
    """Separable random images: class c lights up its own band of pixels, on uint8 noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    images = rng.integers(0, 90, (n, int(np.prod(shape))))
    for c in range(classes):
        images[labels == c, c::classes] += 160
    images = images.reshape(n, *shape).astype(np.uint8)
    cut = n * 3 // 4
    return images[:cut], labels[:cut], images[cut:], labels[cut:]


@pytest.fixture
def blob_dataset():
    optlab.dataset("test-blobs", help="separable 8x8 blobs", classes=3)(blobs)
    yield "test-blobs"
    datasets.DATASETS.unregister("test-blobs")


def run(tmp_path: Path, **settings) -> runner.RunOutcome:
    layer = {"run_dir": str(tmp_path / "run"), "epochs": "3", "batch_size": "30", "hidden": "8", **settings}
    return runner.run(resolve.resolve([config.Layer(layer, "flag")]), quiet=True)


@pytest.mark.slow
def test_plug_in_activation_model_and_loss_train_and_their_numbers_are_theirs(tmp_path, blob_dataset):
    """φ(z) = z², a model whose output adds a skip connection from the input, and the mean absolute error:
    the final test loss and error of the run are recomputed here from params.npz with numpy."""
    optlab.activation("test-square", help="z²")(lambda z: z * z)

    @optlab.model("test-skip", help="one hidden layer, plus a linear map from the input to the output")
    class Skip:
        def init(key, sizes, std_of, scale):
            return models.dense_layers(key, (sizes[0], sizes[1], sizes[-1]), std_of, scale) + \
                models.dense_layers(jax.random.fold_in(key, 1), (sizes[0], sizes[-1]), std_of, scale)

        def apply(params, x, activation):
            h = activation(x @ params[0]["w"].T + params[0]["b"])
            return h @ params[1]["w"].T + params[1]["b"] + x @ params[2]["w"].T + params[2]["b"], [h]

    @optlab.loss("test-abs", help="Σ|f − onehot|")
    def absolute(outputs, labels):
        return jnp.abs(outputs - jax.nn.one_hot(labels, outputs.shape[-1])).sum(-1)

    try:
        outcome = run(tmp_path, experiment=blob_dataset, activation="test-square", model="test-skip", loss="test-abs",
                      lr="0.01")
    finally:
        activations.ACTIVATIONS.unregister("test-square")
        models.MODELS.unregister("test-skip")
        losses.LOSSES.unregister("test-abs")
    record = outcome.record
    assert record["status"] == "completed"
    assert {k: record["config"][k] for k in ("model", "activation", "loss")} == {
        "model": "test-skip", "activation": "test-square", "loss": "test-abs"}
    saved = results.load_params(tmp_path / "run")
    w = [np.asarray(saved[f"{i}/w"], np.float64) for i in range(3)]
    b = [np.asarray(saved[f"{i}/b"], np.float64) for i in range(3)]
    _, _, test_images, test_labels = blobs()
    x = test_images.reshape(len(test_images), -1) / 255.0
    h = (x @ w[0].T + b[0]) ** 2
    out = h @ w[1].T + b[1] + x @ w[2].T + b[2]
    assert record["history"]["test_loss"][-1] == pytest.approx(np.abs(out - np.eye(3)[test_labels]).sum(1).mean(),
                                                               rel=1e-4)
    assert record["summary"]["test_error"] == pytest.approx(np.mean(out.argmax(1) != test_labels), abs=1e-6)
    assert record["analysis"]["active_fraction"][0] == pytest.approx(np.mean(h > 0), abs=1e-6)


@pytest.mark.parametrize("flag, value, message", [
    ("--activation", "rlu", "unknown activation 'rlu'; did you mean 'relu'?"),
    ("--model", "mpl", "unknown model 'mpl'; did you mean 'mlp'?"),
    ("--loss", "squared-eror", "unknown loss 'squared-eror'; did you mean 'squared-error'?"),
])
def test_unknown_names_are_the_registrys_did_you_mean_in_one_line(tmp_path, flag, value, message):
    result = CliRunner().invoke(app, ["run", "mnist", flag, value, "--out", str(tmp_path)])
    assert result.exit_code == 2 and result.output.count("\n") == 1 and message in result.output
    assert not any(tmp_path.iterdir())


# ---- the identity collapse -------------------------------------------------------------------


@pytest.mark.slow
def test_a_trained_identity_network_is_the_affine_map_of_its_multiplied_out_weights(tmp_path, blob_dataset):
    """h1 = W1x + b1, h2 = W2h1 + b2, f = W3h2 + b3 multiply out into f = W′x + b′ with W′ = W3W2W1 and
    b′ = W3(W2b1 + b2) + b3; the trained network's outputs are those of W′x + b′ to float32 rounding."""
    outcome = run(tmp_path, experiment=blob_dataset, activation="identity", hidden="16,12", lr="0.01")
    assert outcome.record["status"] == "completed"
    saved = results.load_params(tmp_path / "run")
    params = [{"w": jnp.asarray(saved[f"{i}/w"]), "b": jnp.asarray(saved[f"{i}/b"])} for i in range(3)]
    (w1, b1), (w2, b2), (w3, b3) = ((np.asarray(p["w"], np.float64), np.asarray(p["b"], np.float64)) for p in params)
    w_, b_ = w3 @ w2 @ w1, w3 @ (w2 @ b1 + b2) + b3
    assert w_.shape == (3, 64)
    _, _, test_images, test_labels = blobs()
    x = mlp.pixels(jnp.asarray(test_images))
    outputs, hidden = mlp.forward(params, x, activation="identity")
    affine = np.asarray(x, np.float64) @ w_.T + b_
    scale = np.abs(affine).max()
    np.testing.assert_allclose(np.asarray(outputs, np.float64), affine, atol=1e-5 * scale)
    assert len(hidden) == 2 and math.isclose(outcome.record["summary"]["test_error"],
                                             float(np.mean(affine.argmax(1) != test_labels)), abs_tol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("curvature", ["hessian", "ggn"])
def test_analyze_reads_the_runs_model_and_loss_linear_squared_error_has_the_data_covariance_hessian(
        blob_dataset, curvature):
    """½‖Wx + b − e_y‖² averaged over N is quadratic in (W, b): its Hessian (= its Gauss–Newton matrix) is
    I_classes ⊗ X̃ᵀX̃/N, X̃ = [x, 1], whatever the parameters. Cross-entropy's would depend on them."""
    from optlab.experiments import AnalyzeOptions, classify

    rng = np.random.default_rng(5)
    saved = {"0/w": rng.standard_normal((3, 64)).astype(np.float32), "0/b": np.zeros(3, np.float32)}
    record = {"experiment": blob_dataset, "config": {"model": "linear", "loss": "squared-error", "weight_decay": 0.0}}
    report = classify.analyze(record, saved, AnalyzeOptions(k=3, subset=60, probes=2, curvature=curvature))
    images = blobs()[0][:60].reshape(60, -1) / 255.0
    x = np.hstack([images, np.ones((60, 1))])
    top = np.linalg.eigvalsh(x.T @ x / 60)[-1]
    assert report["n_params"] == 3 * 65
    assert report["lambda_max"] == pytest.approx(top, rel=1e-4)
    assert report["top_eigenvalues"][:3] == pytest.approx([top] * 3, rel=1e-3)  # one copy per class
