"""Learning-rate schedules: each a function (lr, total_steps, cfg) -> optax schedule.

`lr` may be a traced array (that is what lets a sweep vmap over it); the shape of the
schedule (total steps, fractions) is static. All schedules start at `lr` at step 0.
The registry imports no JAX (`--help` and completion read it): optax is imported when a
schedule is built.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from optlab.registry import Registry

if TYPE_CHECKING:
    import optax


class ScheduleSettings(Protocol):
    anneal_fraction: float
    lr_decay: float


ScheduleFactory = Callable[[Any, int, ScheduleSettings], "optax.Schedule"]  # (lr, total_steps, settings)
SCHEDULES: Registry[ScheduleFactory] = Registry("schedule")


@SCHEDULES("constant", "η stays at --lr")
def constant(lr, total_steps, s):
    import optax

    return optax.constant_schedule(lr)


@SCHEDULES("anneal", "constant, then linear decay to 0 over the last --anneal-fraction of the run (the lecture's)")
def anneal(lr, total_steps, s):
    import optax

    decay_steps = max(1, round(s.anneal_fraction * total_steps))
    hold_steps = total_steps - decay_steps
    return optax.join_schedules(
        [optax.constant_schedule(lr), optax.linear_schedule(lr, 0.0, decay_steps)], [hold_steps]
    )


@SCHEDULES("step", "η × --lr-decay at 50% and again at 75% of the run")
def step(lr, total_steps, s):
    import optax

    boundaries = {max(1, total_steps // 2): s.lr_decay, max(2, (3 * total_steps) // 4): s.lr_decay}
    return optax.piecewise_constant_schedule(lr, boundaries)


@SCHEDULES("exponential", "η × --lr-decay^(t/T): smooth decay to η × --lr-decay at the end")
def exponential(lr, total_steps, s):
    import optax

    return optax.exponential_decay(lr, transition_steps=max(1, total_steps), decay_rate=s.lr_decay)


@SCHEDULES("cosine", "half a cosine from η down to 0 (Loshchilov & Hutter, 2017)")
def cosine(lr, total_steps, s):
    import optax

    return optax.cosine_decay_schedule(lr, decay_steps=max(1, total_steps))


@SCHEDULES("inverse-time", "η / (1 + k t/T), with k set so that the last step uses η × --lr-decay")
def inverse_time(lr, total_steps, s):
    k = 1.0 / s.lr_decay - 1.0
    return lambda count: lr / (1.0 + k * count / max(1, total_steps))


def schedule(name: str, help: str | None = None) -> Callable[[ScheduleFactory], ScheduleFactory]:
    """Register `factory(lr, total_steps, settings) -> optax schedule` under `name` (`optlab.schedule`).

    `help` is its line in `optlab list` (default: the first line of its docstring). A factory that
    cannot be called with those three arguments is refused with a ConfigError when its file loads.
    """

    def decorate(factory: ScheduleFactory) -> ScheduleFactory:
        from optlab.errors import ConfigError

        try:
            inspect.signature(factory).bind(0.1, 100, None)
        except (TypeError, ValueError):
            raise ConfigError(f"schedule {name!r}: its factory must take (lr, total_steps, settings)") from None
        line = help if help is not None else (inspect.getdoc(factory) or name).splitlines()[0]
        return SCHEDULES.register(name, line, factory)

    return decorate


def build(name: str, lr, total_steps: int, settings: ScheduleSettings) -> optax.Schedule:
    """The schedule `name` starting at `lr` (a float or a traced array) over `total_steps` updates."""
    return SCHEDULES[name](lr, total_steps, settings)
