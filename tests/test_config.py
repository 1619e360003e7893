"""Settings: layering, parsing, and one-line errors that say where a bad value came from."""

import time

import pytest

from optlab import config, parsers
from optlab.config import Layer, parse_sets, read_toml
from optlab.errors import ConfigError
from optlab.runs.resolve import relevant, resolve


def flags(**values):
    return Layer(values, "flag")


def test_layers_win_in_order_defaults_experiment_file_set_flag(tmp_path):
    file = tmp_path / "exp.toml"
    file.write_text('experiment = "tiny"\noptimizer = "momentum"\nlr = 0.3\nsteps = 7\n')
    cfg = resolve([read_toml(file), parse_sets(["lr=0.4", "momentum=0.5"]), flags(lr="0.5")])
    assert (cfg.optimizer, cfg.lr, cfg.momentum, cfg.steps, cfg.seed) == ("momentum", 0.5, 0.5, 7, 0)


def test_default_learning_rate_comes_from_the_experiment_then_the_optimizer():
    assert resolve([Layer({"experiment": "tiny"}, "argument")]).lr == 0.25  # the lecture's gd step
    assert resolve([Layer({"experiment": "tiny"}, "argument"), flags(optimizer="newton")]).lr == 1.0
    mnist = resolve([Layer({"experiment": "mnist"}, "argument")])
    assert (mnist.optimizer, mnist.lr, mnist.lr_schedule, mnist.input_noise) == ("adam", 1e-3, "anneal", 0.3)


def test_values_are_parsed_from_strings_and_toml_types(tmp_path):
    cfg = resolve([flags(experiment="tiny", start="1,-2.5", steps="1_000", lr="1e-2")])
    assert cfg.start == (1.0, -2.5) and cfg.steps == 1000 and cfg.lr == 0.01
    net = resolve([flags(experiment="mnist", hidden="64, 32,16")])
    assert net.hidden == (64, 32, 16)
    file = tmp_path / "net.toml"
    file.write_text('experiment = "mnist"\nhidden = [100, 50]\nepochs = 3\n')
    assert resolve([read_toml(file)]).hidden == (100, 50)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"lr": "abc"}, "--lr must be a positive finite number, got 'abc'"),
        ({"lr": "0"}, "--lr must be a positive finite number, got '0'"),
        ({"lr": "-1"}, "--lr must be a positive finite number"),
        ({"lr": "nan"}, "--lr must be a positive finite number"),
        ({"lr": "inf"}, "--lr must be a positive finite number"),
        ({"steps": "0"}, "--steps must be an integer from 1 to 100,000, got '0'"),
        ({"steps": "2.5"}, "--steps must be an integer"),
        ({"steps": "1e9"}, "--steps must be an integer"),
        ({"start": "1"}, "--start must be two finite numbers W1,W2"),
        ({"start": "1,x"}, "--start must be two finite numbers W1,W2"),
        ({"start": "1,2,3"}, "--start must be two finite numbers W1,W2"),
        ({"start": "nan,1"}, "--start must be two finite numbers"),
        ({"momentum": "1"}, "--momentum must be a number in [0, 1)"),
        ({"optimizer": "adma"}, "unknown optimizer 'adma'; did you mean 'adam'?"),
        ({"lr_schedule": "anneel"}, "unknown schedule 'anneel'; did you mean 'anneal'?"),
        ({"epochs": "3"}, "--epochs does not apply to experiment 'tiny'"),
        ({"seed": "-1"}, "--seed must be an integer in [0, 2³²)"),
    ],
)
def test_bad_values_name_the_flag_and_the_value(values, message):
    with pytest.raises(ConfigError) as error:
        resolve([Layer({"experiment": "tiny"}, "argument"), flags(**values)])
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_set_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"--set lrr: unknown setting 'lrr'; did you mean 'lr'\?"):
        resolve([parse_sets(["lrr=1"])])
    with pytest.raises(ConfigError, match="--set expects key=value, got 'lr'"):
        parse_sets(["lr"])
    with pytest.raises(ConfigError, match=r"--set anneal_fraction must be a number in \(0, 1\], got '2'"):
        resolve([Layer({"experiment": "tiny"}, "argument"), parse_sets(["anneal-fraction=2"])])
    with pytest.raises(ConfigError, match="no experiment given"):
        resolve([parse_sets(["lr=0.1"])])


def test_toml_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("lr = = 3\n")
    with pytest.raises(ConfigError, match="bad.toml is not valid TOML"):
        read_toml(bad)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"lr = \xff\xfe\n")
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        read_toml(binary)
    with pytest.raises(ConfigError, match="does not exist"):
        read_toml(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="is a directory"):
        read_toml(tmp_path)
    typed = tmp_path / "typed.toml"
    typed.write_text('experiment = "tiny"\nsteps = "many"\n')
    with pytest.raises(ConfigError, match="steps in typed.toml must be an integer from 1 to 100,000, got 'many'"):
        resolve([read_toml(typed)])
    table = tmp_path / "table.toml"
    table.write_text("[run]\nlr = 1\n")
    with pytest.raises(ConfigError, match=r"unexpected table \[run\]"):
        read_toml(table)


def test_recorded_config_holds_only_the_settings_that_apply():
    tiny = relevant(resolve([Layer({"experiment": "tiny"}, "argument")]))
    assert {"steps", "start", "lr", "optimizer"} <= set(tiny) and "epochs" not in tiny and "hidden" not in tiny
    mnist = relevant(resolve([Layer({"experiment": "mnist"}, "argument")]))
    assert {"epochs", "hidden", "batch_size", "input_noise"} <= set(mnist) and "start" not in mnist


def test_every_field_declares_its_setting_once():
    assert set(config.SETTINGS) == set(config.FIELDS)
    for key, spec in config.SETTINGS.items():
        assert callable(spec.parse) and spec.help, key
        default = config.FIELDS[key].default
        # alternatives of a tuple-valued setting are separated by ";" in a sweep (the optimizer's own, by key)
        if isinstance(default, tuple) and key != "optimizer_settings":
            assert spec.grid == "lists", key
        if spec.metavar is None:  # a switch
            assert isinstance(default, bool), key
    assert config.flag("optimizer") == "--opt" and config.flag("batch_size") == "--batch-size"
    assert Layer({}, "flag").label("optimizer") == "--opt"
    with pytest.raises(ValueError, match="grid must be one of"):
        config.Setting(parsers.name, "x", grid="range")


def test_integer_ranges_are_checked_before_they_are_expanded():
    assert parsers.int_range("2..5", 1, 1000) == (2, 3, 4, 5)
    assert parsers.int_range([3, 7], 1, 1000) == (3, 7)
    start = time.perf_counter()
    for raw in ("1..10000000000", "0..3", "5..2", "999..1001"):
        with pytest.raises(ValueError, match="must be integers from 1 to 1,000"):
            parsers.int_range(raw, 1, 1000)
    assert time.perf_counter() - start < 1  # expanding 10¹⁰ integers would take minutes
