"""The only training loops: pure step functions, scanned inside one `jax.jit`.

A loss is `loss(params, batch, key) -> scalar` (the key feeds input noise and dropout).
An optimizer is built *inside* the traced function by `make_tx(hp, key)` from `hp`, a dict
of hyperparameter arrays: the learning rate is then a traced value, not a constant baked
into the program, so one compiled program serves every learning rate and a sweep is a
`jax.vmap` over `hp`.

Two shapes of run:
- `full_batch_run`: a whole run of `steps` updates as one `lax.scan` (the tiny problem);
  the history of every step comes back in one transfer at the end.
- `epoch_fn`: one pass over the training set as one `lax.scan` over shuffled minibatch
  indices; the data stay on the device (uint8) and are indexed inside the program.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

Loss = Callable[[Any, Any, jax.Array], jax.Array]
MakeTx = Callable[[dict, jax.Array], optax.GradientTransformationExtraArgs]


class StepRecord(NamedTuple):
    params: Any  # the point the step started from
    loss: jax.Array
    grad_norm: jax.Array
    lr: jax.Array  # the learning rate the step used


class TrainState(NamedTuple):
    params: Any
    opt_state: Any
    key: jax.Array


def current_lr(opt_state) -> jax.Array:
    """The learning rate of the last update, as recorded by optax.inject_hyperparams."""
    return optax.tree_utils.tree_get(opt_state, "hyperparams")["learning_rate"]


def update(loss: Loss, tx, params, opt_state, batch, key):
    """One optimizer step on one batch: returns new params, opt state, loss and gradient norm."""

    def value_fn(p):
        return loss(p, batch, key)

    value, grads = jax.value_and_grad(value_fn)(params)
    # value (C(θ), already computed), value_fn (and the batch and key, for a network's split loss) are the
    # extra arguments second-order methods need; optax's own ignore them.
    updates, opt_state = tx.update(grads, opt_state, params, value=value, value_fn=value_fn, batch=batch, key=key)
    return optax.apply_updates(params, updates), opt_state, value, optax.tree_utils.tree_norm(grads)


def full_batch_run(loss: Loss, make_tx: MakeTx, steps: int) -> Callable:
    """`run(params, hp, key) -> (final_params, final_opt_state, StepRecord of `steps + 1` rows)`, jitted.

    Row k describes point k (row 0 the start, row `steps` the end); its `lr` is the step
    size used to leave it (NaN on the last row, which is not left).
    """

    def run(params, hp, key):
        noise_key, loss_key = jax.random.split(key)
        tx = make_tx(hp, noise_key)

        def step(carry, step_key):
            params, opt_state = carry
            new_params, opt_state, value, grad_norm = update(loss, tx, params, opt_state, None, step_key)
            return (new_params, opt_state), StepRecord(params, value, grad_norm, current_lr(opt_state))

        keys = jax.random.split(loss_key, steps)
        (final, opt_state), rows = jax.lax.scan(step, (params, tx.init(params)), keys)
        value, grads = jax.value_and_grad(loss)(final, None, None)
        last = StepRecord(final, value, optax.tree_utils.tree_norm(grads), jnp.full_like(rows.lr[0], jnp.nan))
        history = jax.tree.map(lambda xs, x: jnp.concatenate([xs, x[None]]), rows, last)
        return final, opt_state, history

    return jax.jit(run)


def init_state(make_tx: MakeTx, params, hp: dict, key: jax.Array) -> TrainState:
    noise_key, key = jax.random.split(key)
    opt_state = make_tx(hp, noise_key).init(params)
    # inject_hyperparams keeps constant hyperparameters as the very arrays of `hp`; copy them so
    # that donating the state to an epoch does not also donate (and invalidate) `hp`.
    opt_state = jax.tree.map(lambda x: x.copy() if isinstance(x, jax.Array) else x, opt_state)
    return TrainState(params, opt_state, key)


def epoch_fn(loss: Loss, make_tx: MakeTx, n_train: int, batch_size: int,
             batch_sharding: jax.sharding.Sharding | None = None) -> Callable:
    """`epoch(state, hp, images, labels) -> (state, mean minibatch loss, last lr)`, jitted.

    The shuffle happens inside the program (jax.random.permutation); the images stay
    uint8 on the device and each minibatch is gathered by index. The last partial batch
    of a shuffle is dropped, as is usual. The state buffers are donated: an epoch updates
    the parameters in place instead of copying them.

    Data parallel: with `batch_sharding` (a sharding of the batch axis over a mesh; the
    state and images replicated) every gathered minibatch is constrained to it, so each
    device gathers and differentiates its slice of the batch and XLA all-reduces the
    gradient. The mean over the batch is then summed in another order: equal to float32
    rounding, not bit for bit.
    """
    n_batches = n_train // batch_size

    def epoch(state: TrainState, hp: dict, images, labels):
        tx = make_tx(hp, state.key)  # the key only seeds noise state at init; unused here
        key, shuffle_key, steps_key = jax.random.split(state.key, 3)
        order = jax.random.permutation(shuffle_key, n_train)[: n_batches * batch_size]

        def step(carry, xs):
            params, opt_state = carry
            idx, step_key = xs
            batch = (images[idx], labels[idx])
            if batch_sharding is not None:
                batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
            params, opt_state, value, _ = update(loss, tx, params, opt_state, batch, step_key)
            return (params, opt_state), value

        xs = (order.reshape(n_batches, batch_size), jax.random.split(steps_key, n_batches))
        (params, opt_state), losses = jax.lax.scan(step, (state.params, state.opt_state), xs)
        return TrainState(params, opt_state, key), jnp.mean(losses), current_lr(opt_state)

    return jax.jit(epoch, donate_argnums=0)


def evaluate_in_chunks(totals: Callable, params, images, labels, chunk: int) -> Any:
    """The whole set's means from `totals(params, images, labels)`, taken `chunk` examples at a time.

    `totals` returns sums over the examples it is given (a summed loss, a count of mistakes); the
    result is each leaf's sum over the chunks divided by n, the whole set's mean. Why by hand: a
    60,000-image forward pass at once materializes its float32 pixels and activations (~0.2 GB)
    and runs ~2× slower on a CPU than chunks that stay in cache; `lax.map` keeps it one compiled
    loop. The n mod chunk examples left over are one more, smaller, chunk.
    """
    n = labels.shape[0]
    whole = (n // chunk) * chunk
    parts = []
    if whole:
        batches = (images[:whole].reshape(n // chunk, chunk, *images.shape[1:]),
                   labels[:whole].reshape(n // chunk, chunk, *labels.shape[1:]))
        sums = jax.lax.map(lambda b: totals(params, *b), batches)
        parts.append(jax.tree.map(lambda s: jnp.sum(s, axis=0), sums))
    if whole < n:
        parts.append(totals(params, images[whole:], labels[whole:]))
    return jax.tree.map(lambda *s: sum(s) / n, *parts)
