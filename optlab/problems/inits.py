"""Weight initialisations: each a rule (fan_in, fan_out) -> the standard deviation of a layer's weights.

Plain math, no JAX: `optlab list`, `--init`'s help and its completion read this registry without
starting JAX. `optlab.problems.mlp.init` draws the Gaussian weights.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

from optlab.registry import Registry

InitStd = Callable[[int, int], float]
INITS: Registry[InitStd] = Registry("init")


def init(name: str, help: str | None = None) -> Callable[[InitStd], InitStd]:
    """Register `rule(fan_in, fan_out) -> standard deviation` under `name` (`optlab.init`, for `--init`)."""

    def decorate(rule: InitStd) -> InitStd:
        from optlab.errors import ConfigError

        try:
            inspect.signature(rule).bind(1, 1)
        except (TypeError, ValueError):
            raise ConfigError(f"init {name!r}: its rule must take (fan_in, fan_out)") from None
        return INITS.register(name, help if help is not None else (inspect.getdoc(rule) or name).splitlines()[0], rule)

    return decorate


@INITS("glorot", "Glorot/Xavier: std √(2/(fan_in + fan_out))")
def glorot(fan_in: int, fan_out: int) -> float:
    return math.sqrt(2 / (fan_in + fan_out))


@INITS("he", "He/Kaiming: std √(2/fan_in), keeps ReLU signals at the same scale")
def he(fan_in: int, fan_out: int) -> float:
    return math.sqrt(2 / fan_in)


@INITS("normal", "N(0, 0.01²): fixed small weights whatever the width")
def normal(fan_in: int, fan_out: int) -> float:
    return 0.01
