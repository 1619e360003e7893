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
