"""Checkpoints round-trip a training state bit for bit, typed PRNG keys included."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optlab.core import checkpoint
from optlab.core.engine import TrainState
from optlab.errors import ResultsError


def state(seed: int) -> TrainState:
    key = jax.random.key(seed)
    params = [{"w": jax.random.normal(key, (3, 4)), "b": jnp.arange(3.0)}]
    tx = optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)
    opt_state = tx.init(params)
    grads = jax.tree.map(jnp.ones_like, params)
    _, opt_state = tx.update(grads, opt_state, params)
    return TrainState(params, opt_state, jax.random.split(key)[1])


def test_round_trip_is_bit_for_bit(tmp_path):
    original = state(0)
    snapshots = {"w1/epoch1": np.arange(6.0).reshape(2, 3)}
    checkpoint.save(tmp_path, 7, original, snapshots)
    epoch, restored, extras = checkpoint.load(tmp_path, state(1))  # the template's values are ignored
    assert epoch == 7
    for a, b in zip(jax.tree.leaves(original), jax.tree.leaves(restored)):
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # the restored key draws the same numbers as the original
    np.testing.assert_array_equal(jax.random.normal(original.key, (5,)), jax.random.normal(restored.key, (5,)))
    np.testing.assert_array_equal(extras["w1/epoch1"], snapshots["w1/epoch1"])


def test_missing_or_mismatched_checkpoints_are_one_line_errors(tmp_path):
    with pytest.raises(ResultsError, match="no checkpoint to resume from"):
        checkpoint.load(tmp_path, state(0))
    checkpoint.save(tmp_path, 1, state(0))
    with pytest.raises(ResultsError, match="does not match this run's model"):
        other = [{"w": jnp.zeros((5, 4)), "b": jnp.zeros(5)}]
        checkpoint.load(tmp_path, TrainState(other, state(0).opt_state, state(0).key))
    (tmp_path / checkpoint.CHECKPOINT_FILE).write_bytes(b"garbage")
    with pytest.raises(ResultsError, match="unreadable checkpoint"):
        checkpoint.load(tmp_path, state(0))


def test_a_checkpoint_is_checked_against_an_abstract_template_and_the_record(tmp_path):
    checkpoint.save(tmp_path, 2, state(0))
    saved = checkpoint.read(tmp_path)
    checkpoint.check_layout(saved, jax.eval_shape(lambda: state(1)))  # shapes and dtypes only, nothing allocated
    checkpoint.check_epoch(saved, [1, 2, 3], total=5)  # metrics.json may be ahead: epoch 3 is trained again
    for recorded, total in (([1], 5), ([1, 2], 1), ([2, 3], 5), ([], 5)):
        with pytest.raises(ResultsError, match="taken after epoch 2, but metrics.json holds"):
            checkpoint.check_epoch(saved, recorded, total)
    with pytest.raises(ResultsError, match=r"state/0 is float32\[3\], the run's is float32\[4\]"):
        checkpoint.check_layout(saved, TrainState([{"w": jnp.zeros((3, 4)), "b": jnp.zeros(4)}], *state(0)[1:]))
