"""Learning-rate schedules: values at chosen steps, against the formulas."""

import math
from types import SimpleNamespace

import numpy as np
import pytest

from optlab.core import schedules
from optlab.errors import ConfigError

SETTINGS = SimpleNamespace(anneal_fraction=0.5, lr_decay=0.1)


def values(name, lr=0.2, total=100, settings=SETTINGS):
    schedule = schedules.build(name, lr, total, settings)
    return np.array([float(schedule(t)) for t in range(total + 1)])


def test_constant():
    np.testing.assert_allclose(values("constant"), 0.2)


def test_anneal_holds_then_decays_linearly_to_zero():
    lr = values("anneal", total=600 * 50)  # the lecture: 50 epochs of 600 updates, second half decays
    assert lr[0] == lr[15_000] == pytest.approx(0.2)
    assert lr[22_500] == pytest.approx(0.1)
    assert lr[30_000] == pytest.approx(0.0)
    quarter = values("anneal", total=100, settings=SimpleNamespace(anneal_fraction=0.25, lr_decay=0.1))
    assert quarter[75] == pytest.approx(0.2) and quarter[90] == pytest.approx(0.2 * 10 / 25)


def test_step_multiplies_by_lr_decay_at_half_and_three_quarters():
    lr = values("step")
    np.testing.assert_allclose(lr[[0, 49, 50, 74, 75, 100]], [0.2, 0.2, 0.02, 0.02, 0.002, 0.002])


def test_exponential_ends_at_lr_times_lr_decay():
    lr = values("exponential")
    assert lr[100] == pytest.approx(0.02)
    assert lr[50] == pytest.approx(0.2 * math.sqrt(0.1))


def test_cosine_is_half_a_cosine_to_zero():
    lr = values("cosine")
    assert lr[50] == pytest.approx(0.1) and lr[100] == pytest.approx(0.0, abs=1e-9)
    assert lr[25] == pytest.approx(0.2 * 0.5 * (1 + math.cos(math.pi / 4)))


def test_inverse_time_ends_at_lr_times_lr_decay():
    lr = values("inverse-time")
    assert lr[100] == pytest.approx(0.02)
    assert lr[50] == pytest.approx(0.2 / (1 + 9 * 0.5))


def test_unknown_schedule_suggests_the_closest_name():
    with pytest.raises(ConfigError, match=r"unknown schedule 'cosin'; did you mean 'cosine'\?"):
        schedules.build("cosin", 0.1, 10, SETTINGS)
