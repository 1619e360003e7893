import os
import subprocess
import sys
from pathlib import Path

import pytest

from optlab.errors import ConfigError
from optlab.registry import Registry


def test_register_lookup_and_did_you_mean():
    reg = Registry("optimizer")
    reg.register("adam", "Adam", 1)

    @reg("adagrad", "Adagrad")
    def adagrad():
        return 2

    assert reg["adam"] == 1 and reg["adagrad"]() == 2
    assert reg.names() == ["adagrad", "adam"] and [e.help for e in reg] == ["Adagrad", "Adam"]
    with pytest.raises(ConfigError, match=r"unknown optimizer 'adma'; did you mean 'adam'\? \(valid: adagrad, adam\)"):
        reg["adma"]
    with pytest.raises(ConfigError, match=r"unknown optimizer 'zzz' \(valid"):
        reg["zzz"]
    with pytest.raises(ValueError, match="twice"):
        reg.register("adam", "again", 3)


def test_the_registries_of_names_import_no_jax():
    """--help, list and completion read them: they must not start JAX."""
    code = ("import sys, optlab.core.optimizers, optlab.core.schedules, optlab.problems.inits; "
            "print(sorted(m for m in ('jax', 'optax', 'jaxlib') if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_mlp_keeps_the_init_registry_it_always_had():
    from optlab.problems import inits, mlp

    assert mlp.INITS is inits.INITS and inits.INITS.names() == ["glorot", "he", "normal"]
    assert inits.INITS["he"](50, 10) == pytest.approx(0.2) and inits.INITS["glorot"](30, 20) == pytest.approx(0.2)
