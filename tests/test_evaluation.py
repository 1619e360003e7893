"""The classifier's evaluation folded into its compiled epoch: the same numbers as evaluating apart.

engine.evaluate_in_chunks against mlp.evaluate of the whole set at once (chunks that do and do not
divide it), and _classify_train.train_epoch_evaluated against train_epoch followed by mlp.evaluate
on the resulting parameters, for a single run and for a sweep's vmapped lanes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optlab import config
from optlab.core import engine
from optlab.experiments import _classify_train as train
from optlab.problems import mlp
from optlab.runs.resolve import resolve

SIZES = (784, 8, 8, 10)
N_TRAIN, N_TEST = 60, 23


def data(n: int, seed: int):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)), jnp.asarray(rng.integers(0, 10, n, np.uint8))


def close(a: dict, b: dict) -> None:
    """The loss equal to float32 rounding (a sum in another order); the error and activity, counts over n, exact."""
    assert float(a["loss"]) == pytest.approx(float(b["loss"]), rel=1e-5)
    assert float(a["error"]) == float(b["error"])
    for x, y in zip(a.get("active", []), b.get("active", [])):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("chunk", [1, 7, 23, 100])  # remainders 0, 2, none; one chunk larger than the set
def test_chunks_sum_to_the_whole_sets_mean(chunk):
    x = jnp.arange(23.0 * 3).reshape(23, 3)
    totals = lambda p, xs, ys: {"sum": jnp.sum(xs, axis=0) * p, "count": jnp.sum(ys > 10)}
    got = jax.jit(lambda x, y: engine.evaluate_in_chunks(totals, 2.0, x, y, chunk))(x, jnp.arange(23))
    np.testing.assert_allclose(np.asarray(got["sum"]), 2.0 * np.arange(69.0).reshape(23, 3).mean(axis=0), rtol=1e-6)
    assert float(got["count"]) == pytest.approx(12 / 23)


@pytest.mark.parametrize("chunk", [7, 20, 23, 100])  # 23 = 3 × 7 + 2 = 20 + 3, one chunk of 23, one larger
def test_chunked_evaluation_equals_the_whole_set_at_once(chunk, monkeypatch):
    monkeypatch.setattr(train, "EVAL_CHUNK", chunk)
    params = mlp.init(jax.random.key(0), SIZES)
    images, labels = data(N_TEST, 1)
    chunked = jax.jit(train.evaluate)(params, images, labels)
    whole = mlp.evaluate(params, images, labels)
    close(chunked, whole)
    assert len(chunked["active"]) == 2 and chunked["active"][0].shape == (8,)
    # error counts are exact: the chunked error times n is the whole set's count of mistakes
    assert round(float(chunked["error"]) * N_TEST) == int(np.sum(np.argmax(
        np.asarray(mlp.forward(params, mlp.pixels(images))[0]), axis=-1) != np.asarray(labels)))


def lecture_cfg(**settings) -> config.RunConfig:
    base = {"experiment": "mnist", "optimizer": "adam", "lr": 0.01, "epochs": 3, "batch_size": 20,
            "hidden": [8, 8], "input_noise": 0.3, "seed": 2}
    return resolve([config.Layer(base | settings, "flag")])


@pytest.mark.slow
def test_the_evaluated_epoch_gives_the_epoch_and_the_separate_evaluation(monkeypatch):
    monkeypatch.setattr(train, "EVAL_CHUNK", 16)  # 60 = 3 × 16 + 12 and 23 = 16 + 7: both paths of the chunking
    cfg = lecture_cfg()
    (x, y), (tx, ty) = data(N_TRAIN, 3), data(N_TEST, 4)
    hp = train.hyperparams(cfg)
    separate, folded = (train.initial_state(cfg, SIZES, N_TRAIN, hp) for _ in range(2))
    epoch = jax.jit(train.train_epoch(cfg, N_TRAIN))
    evaluated = jax.jit(train.train_epoch_evaluated(cfg, N_TRAIN))
    for _ in range(2):
        separate, loss, lr = epoch(separate, hp, x, y)
        folded, loss_f, lr_f, train_metrics, test_metrics = evaluated(folded, hp, x, y, tx, ty)
        # the training is the same program: the same parameters and minibatch loss, to float32 rounding
        # (XLA may fuse the two programs differently)
        for a, b in zip(jax.tree.leaves(separate.params), jax.tree.leaves(folded.params)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
        assert float(loss_f) == pytest.approx(float(loss), rel=1e-5) and float(lr_f) == pytest.approx(float(lr))
        assert set(train_metrics) == {"loss", "error"}  # the training set's activity is never needed
        close(train_metrics, mlp.evaluate(folded.params, x, y))
        close(test_metrics, mlp.evaluate(folded.params, tx, ty))


@pytest.mark.slow
def test_a_sweeps_lanes_each_get_their_own_evaluation():
    cfgs = [lecture_cfg(lr=lr, seed=s) for lr, s in ((0.01, 0), (0.003, 1))]
    (x, y), (tx, ty) = data(N_TRAIN, 5), data(N_TEST, 6)
    hp = jax.tree.map(lambda *v: jnp.stack(v), *[train.hyperparams(c) for c in cfgs])
    state = jax.vmap(lambda h: train.initial_state(cfgs[0], SIZES, N_TRAIN, h))(hp)
    evaluated = jax.jit(jax.vmap(train.train_epoch_evaluated(cfgs[0], N_TRAIN), in_axes=(0, 0, None, None, None, None)))
    state, _, _, train_metrics, test_metrics = evaluated(state, hp, x, y, tx, ty)
    for i in range(2):
        params = jax.tree.map(lambda a, i=i: a[i], state.params)
        lane = jax.tree.map(lambda a, i=i: a[i], (train_metrics, test_metrics))
        close(lane[0], mlp.evaluate(params, x, y))
        close(lane[1], mlp.evaluate(params, tx, ty))
    assert float(train_metrics["loss"][0]) != float(train_metrics["loss"][1])  # two lanes, two trainings
