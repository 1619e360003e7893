"""Plug-ins: a file, a TOML's `plugins`, $OPTLAB_PLUGINS or an installed package registers optimizers,
schedules and experiments; their runs equal optax stepped by hand; every bad plug-in is one line.

Registries are global: the autouse fixture takes back whatever the plug-ins of a test registered.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from optlab import config, plugins, results
from optlab.cli import app
from optlab.core.optimizers import OPTIMIZERS
from optlab.core.schedules import SCHEDULES
from optlab.experiments import EXPERIMENTS
from optlab.problems.inits import INITS
from optlab.results.checks import check_types
from optlab.runs import resolve
from optlab.sweep import grid
from stops import StopAt

ROOT = Path(__file__).parents[1]
STEPS = 30


def readme_example() -> str:
    """The plug-in file the README prints under "Plug-ins", exactly as printed."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(# my_plugin\.py.*?)```", text, flags=re.S)
    assert len(blocks) == 1
    return blocks[0]


@pytest.fixture(autouse=True)
def forget_plugins():
    registries = (OPTIMIZERS, SCHEDULES, EXPERIMENTS, INITS)
    names = {r.kind: r.names() for r in registries}
    yield
    plugins.forget()
    assert {r.kind: r.names() for r in registries} == names  # nothing left behind


@pytest.fixture
def example(tmp_path) -> Path:
    file = tmp_path / "plug" / "my_plugin.py"
    file.parent.mkdir()
    file.write_text(readme_example(), encoding="utf-8")
    return file


def cli(*args, **kwargs):
    return CliRunner().invoke(app, [str(a) for a in args], **kwargs)


def folder(result) -> Path:
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip().splitlines()[-1])


def one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output, result.stderr
    return lines[0]


def lion_by_hand(lr: float, b1: float, b2: float, steps: int = STEPS) -> np.ndarray:
    """optax.lion on the tiny model's loss, stepped in a Python loop in float64: the points w_0 … w_steps."""
    import jax
    import jax.numpy as jnp
    import optax

    from optlab.problems import tiny

    with jax.enable_x64(True):
        w = jnp.asarray([0.5, 1.5], jnp.float64)
        tx = optax.lion(lr, b1=b1, b2=b2)
        state, points = tx.init(w), [np.asarray(w)]
        for _ in range(steps):
            updates, state = tx.update(jax.grad(tiny.loss)(w), state, w)
            w = optax.apply_updates(w, updates)
            points.append(np.asarray(w))
    return np.array(points)


@pytest.mark.slow  # four compiled runs and three hand loops: ~15 s
def test_the_readme_example_registers_an_optimizer_a_schedule_and_an_experiment(example, tmp_path):
    listed = cli("list", "--plugin", example)
    assert listed.exit_code == 0, listed.output
    text = " ".join(listed.stdout.split())
    assert "Lion (Chen et al., 2023); settings (--set KEY=VALUE): b1=0.9, b2=0.99 [plug-in my_plugin.py]" in text
    assert "warmup" in text and "parabola C(w) = ½ w², from w = 1" in text

    # the experiment: gradient descent on ½ w² is w_t = (1 − η)^t exactly
    record = results.read_metrics(folder(cli("run", "parabola", "--plugin", example, "--opt", "gd", "--lr", "0.5",
                                             "--steps", "3", "--out", tmp_path / "r", "-q")))
    assert record["summary"]["final_loss"] == 0.5 * 0.125**2 and record["history"]["loss"][0] == 0.5
    assert record["environment"]["plugins"] == [{"path": str(example.resolve()),
                                                 "sha256": plugins.sha256(example)}]
    import hashlib

    assert record["environment"]["plugins"][0]["sha256"] == hashlib.sha256(example.read_bytes()).hexdigest()

    # the optimizer and its own setting b1, against optax.lion by hand; the schedule against its formula
    run = folder(cli("run", "tiny", "--plugin", example, "--opt", "lion", "--lr", "0.05", "--set", "b1=0.5",
                     "--steps", STEPS, "--out", tmp_path / "r", "-q"))
    record = results.read_metrics(run)
    assert record["config"]["optimizer_settings"] == {"b1": 0.5, "b2": 0.99}
    np.testing.assert_allclose(record["history"]["params"], lion_by_hand(0.05, 0.5, 0.99), rtol=1e-13, atol=1e-15)
    # b1 reached optax: with the default 0.9 the path ends 0.8 away (it bounces about the minimum)
    assert np.abs(lion_by_hand(0.05, 0.5, 0.99) - lion_by_hand(0.05, 0.9, 0.99)).max() > 0.1
    warm = results.read_metrics(folder(cli("run", "tiny", "--plugin", example, "--opt", "gd", "--lr", "0.2",
                                           "--lr-schedule", "warmup", "--steps", STEPS, "--out", tmp_path / "r", "-q")))
    np.testing.assert_allclose(warm["history"]["lr"][:-1], [0.2 * min(t / 3, 1.0) for t in range(STEPS)],
                               rtol=1e-6)  # optax's linear_schedule counts in float32


@pytest.mark.slow  # a sweep and four hand loops: ~10 s
def test_a_sweep_over_a_plugin_setting_is_one_program_equal_to_separate_runs(example, tmp_path):
    plugins.load_file(example)
    plan = grid.build([config.Layer({"experiment": "tiny", "steps": str(STEPS)}, "argument")],
                      [config.Layer({"optimizer": "lion", "lr": "0.01,0.1"}, "flag"),
                       config.Layer({"b1": "0.8,0.9"}, "set")])
    assert len(plan.configs) == 4 and grid.groups(plan.configs) == [[0, 1, 2, 3]]  # one compiled program
    static = grid.build([config.Layer({"experiment": "tiny"}, "argument")],
                        [config.Layer({"optimizer": "lion"}, "flag"),
                         config.Layer({"b1": "0.8", "b2": "0.5,0.9"}, "set")])
    assert len(grid.groups(static.configs)) == 1  # b2 is real-valued too

    swept = cli("sweep", "tiny", "--plugin", example, "--opt", "lion", "--lr", "0.01,0.05", "--set", "b1=0.5,0.9",
                "--steps", STEPS, "--best", "final_loss", "--out", tmp_path / "s", "-q")
    summary = json.loads((folder(swept) / "summary.json").read_text())
    assert summary["grid"]["b1"] == ["0.5", "0.9"] and summary["grid"]["lr"] == ["0.01", "0.05"]
    seen = set()
    for run in summary["runs"]:
        record = results.read_metrics(run["path"])
        lr, b1 = record["config"]["lr"], record["config"]["optimizer_settings"]["b1"]
        seen.add((lr, b1))
        np.testing.assert_allclose(record["history"]["params"], lion_by_hand(lr, b1, 0.99), rtol=1e-12, atol=1e-14)
        assert run["b1"] == b1
    assert seen == {(0.01, 0.5), (0.01, 0.9), (0.05, 0.5), (0.05, 0.9)}
    # best.toml names the plug-in, so that `optlab run best.toml` runs the same code with the same b1
    best = folder(swept) / "best.toml"
    assert f'plugins = ["{example.resolve()}"]' in best.read_text()
    plugins.forget()
    cfg = resolve.resolve([config.read_toml(best)])
    winner = results.read_metrics(folder(swept) / summary["best"])
    again = json.loads(json.dumps(resolve.relevant(cfg)))  # as metrics.json would hold it
    assert "lion" in OPTIMIZERS and again | {"out": None} == winner["config"] | {"out": None}


def test_own_settings_come_from_set_and_toml_and_read_back_from_the_record(example, tmp_path):
    plugins.load_file(example)
    base = [config.Layer({"experiment": "tiny", "optimizer": "lion"}, "argument")]
    assert resolve.resolve(base).optimizer_settings == (("b1", 0.9), ("b2", 0.99))  # the factory's defaults
    cfg = resolve.resolve([*base, config.parse_sets(["b2=0.5", "b1=1"])])
    assert cfg.optimizer_settings == (("b1", 1.0), ("b2", 0.5)) and cfg.b1 == 1.0
    recorded = json.loads(json.dumps(resolve.relevant(cfg)))
    assert recorded["optimizer_settings"] == {"b1": 1.0, "b2": 0.5}
    assert resolve.resolve([config.Layer(recorded, "metrics.json")]) == cfg  # what --resume reads back

    from optlab.runs import sources  # optlab.run("tiny", optimizer="lion", b1=0.5): the same route

    assert resolve.resolve([*base, sources.keyword_layer({"b1": 0.5})]).b1 == 0.5
    with pytest.raises(config.ConfigError, match=r"^b3=: 'b3' is neither"):
        resolve.resolve([*base, sources.keyword_layer({"b3": 0.5})])

    file = tmp_path / "exp.toml"
    file.write_text('experiment = "tiny"\noptimizer = "lion"\nb1 = 0.95\n')
    assert resolve.resolve([config.read_toml(file)]).optimizer_settings == (("b1", 0.95), ("b2", 0.99))

    with pytest.raises(config.ConfigError, match=r"^--set b1 must be a finite number, got 'fast'$"):
        resolve.resolve([*base, config.parse_sets(["b1=fast"])])
    with pytest.raises(config.ConfigError, match=r"'b3' is neither .* optimizer 'lion' \(its keywords: b1, b2\)"):
        resolve.resolve([*base, config.parse_sets(["b3=0.5"])])
    with pytest.raises(config.ConfigError, match=r"--set b1: unknown setting 'b1'.*optimizer 'adam' has no keywords"):
        resolve.resolve([config.Layer({"experiment": "tiny", "optimizer": "adam"}, "argument"),
                         config.parse_sets(["b1=0.5"])])
    error = one_error_line(cli("run", "tiny", "--plugin", example, "--opt", "lion", "--set", "b3=1",
                               "--out", tmp_path / "none"))
    assert "(its keywords: b1, b2)" in error and not (tmp_path / "none").exists()


def test_the_python_api_loads_plugins_as_the_command_line_does(example, tmp_path):
    import optlab

    run = optlab.run("tiny", plugins=[example], optimizer="lion", lr=0.05, b1=0.5, steps=STEPS,
                     run_dir=tmp_path / "api")
    np.testing.assert_allclose(run.history["params"], lion_by_hand(0.05, 0.5, 0.99), rtol=1e-13, atol=1e-15)
    assert run.metrics["environment"]["plugins"] == [{"path": str(example.resolve()),
                                                      "sha256": plugins.sha256(example)}]
    cli_dir = folder(cli("run", "tiny", "--plugin", example, "--opt", "lion", "--lr", "0.05", "--set", "b1=0.5",
                         "--steps", STEPS, "--run-dir", tmp_path / "cli", "-q"))
    assert results.read_metrics(cli_dir)["history"] == run.history
    with pytest.raises(config.ConfigError, match=r"^plugins= .*missing\.py: no such plug-in file$"):
        optlab.run("tiny", plugins=[tmp_path / "missing.py"], run_dir=tmp_path / "none")
    assert not (tmp_path / "none").exists()


def test_the_toml_and_environment_routes(example, tmp_path, monkeypatch):
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "run.toml").write_text(f'experiment = "tiny"\noptimizer = "lion"\nlr = 0.01\nsteps = {STEPS}\n'
                                  'b1 = 0.95\nplugins = ["../plug/my_plugin.py"]\n')
    record = results.read_metrics(folder(cli("run", exp / "run.toml", "--out", tmp_path / "r", "-q")))
    assert record["environment"]["plugins"] == [{"path": str(example.resolve()), "sha256": plugins.sha256(example)}]
    np.testing.assert_allclose(record["history"]["params"], lion_by_hand(0.01, 0.95, 0.99), rtol=1e-13, atol=1e-15)
    (exp / "bad.toml").write_text('experiment = "tiny"\nplugins = "missing.py"\n')
    assert one_error_line(cli("run", exp / "bad.toml")) == (
        f"error: plugins in bad.toml: {exp.resolve() / 'missing.py'}: no such plug-in file")
    (exp / "worse.toml").write_text('experiment = "tiny"\nplugins = [1]\n')
    assert "plugins in worse.toml must be a list of plug-in files" in one_error_line(cli("run", exp / "worse.toml"))

    plugins.forget()
    other = tmp_path / "other.py"
    other.write_text('import optlab\n\n@optlab.schedule("halved")\ndef halved(lr, total_steps, settings):\n'
                     '    """η/2 throughout"""\n    return lambda count: lr / 2\n\n\n'
                     '@optlab.init("flat", help="std 1/fan_in")\ndef flat(fan_in, fan_out):\n    return 1 / fan_in\n')
    monkeypatch.setenv("OPTLAB_PLUGINS", os.pathsep.join([str(example), str(other)]))
    text = " ".join(cli("list").stdout.split())
    assert "lion Lion" in text and "halved η/2 throughout [plug-in other.py]" in text
    assert "flat std 1/fan_in [plug-in other.py]" in text and INITS["flat"](4, 3) == 0.25
    plugins.forget()
    assert "flat" not in INITS
    monkeypatch.setenv("OPTLAB_PLUGINS", str(tmp_path / "gone.py"))
    assert one_error_line(cli("list")) == f"error: OPTLAB_PLUGINS {tmp_path / 'gone.py'}: no such plug-in file"


ENTRY_POINT_PLUGIN = '''
import optlab


@optlab.optimizer("ep-sgd", help="plain SGD from an installed package", default_lr=0.3)
def ep_sgd(learning_rate, nesterov=False):
    import optax

    return optax.sgd(learning_rate, momentum=0.5, nesterov=nesterov)
'''


def test_the_entry_point_route(tmp_path, monkeypatch):
    site = tmp_path / "site"
    (site / "optlab_ep_demo-0.1.dist-info").mkdir(parents=True)
    (site / "optlab_ep_demo.py").write_text(ENTRY_POINT_PLUGIN)
    (site / "optlab_ep_demo-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: optlab-ep-demo\n"
                                                                     "Version: 0.1\n")
    (site / "optlab_ep_demo-0.1.dist-info" / "entry_points.txt").write_text("[optlab.plugins]\ndemo = optlab_ep_demo\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(site)])}
    done = subprocess.run([sys.executable, "-m", "optlab", "list"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "plain SGD from an installed package; settings (--set KEY=VALUE): nesterov=False [plug-in entry point " \
           "demo]" in " ".join(done.stdout.split())

    monkeypatch.syspath_prepend(str(site))  # the same, in this process: importlib.metadata reads sys.path
    run = folder(cli("run", "tiny", "--opt", "ep-sgd", "--set", "nesterov=true", "--steps", "5",
                     "--out", tmp_path / "r", "-q"))
    record = results.read_metrics(run)
    assert record["environment"]["plugins"] == [{"name": "demo", "entry_point": "optlab_ep_demo",
                                                 "sha256": plugins.sha256(site / "optlab_ep_demo.py")}]
    assert record["config"]["optimizer_settings"] == {"nesterov": True}  # static: a switch, not an array
    sys.modules.pop("optlab_ep_demo", None)


def test_resume_loads_the_recorded_plugins_and_refuses_a_changed_or_missing_one(example, tmp_path, write_run):
    run = write_run(tmp_path / "r", status="interrupted", environment={
        "backend": "cpu", "plugins": [{"path": str(example.resolve()), "sha256": plugins.sha256(example)}]})
    plugins.check_recorded(results.read_metrics(run)["environment"]["plugins"], run)
    assert "lion" in OPTIMIZERS and "parabola" in EXPERIMENTS  # the recorded file, loaded again
    plugins.forget()

    before = (run / "metrics.json").read_bytes()
    example.write_text(readme_example() + "\n# edited\n")
    error = one_error_line(cli("run", "--resume", run))
    assert f"plug-in {example.resolve()} has changed since the run started" in error and "sha256" in error
    assert (run / "metrics.json").read_bytes() == before and "lion" not in OPTIMIZERS
    example.unlink()
    assert f"the run used plug-in {example.resolve()}, which no longer exists" in one_error_line(
        cli("run", "--resume", run))
    assert (run / "metrics.json").read_bytes() == before


@pytest.mark.slow  # two short classifier runs on synthetic images: ~10 s
def test_a_resumed_plugin_run_loads_the_recorded_file_and_ends_as_the_straight_run(example, tmp_path):
    from optlab.errors import Interrupted
    from optlab.runs import runner
    from test_classify import BASE, write_fixture

    data = write_fixture(tmp_path / "data")
    plugins.load_file(example)
    layer = {**BASE, "optimizer": "lion", "lr": "0.001", "hidden": "16", "epochs": "4", "checkpoint_every": "1",
             "data_dir": str(data), "b1": "0.5"}
    straight = runner.run(resolve.resolve([config.Layer({**layer, "run_dir": str(tmp_path / "a")}, "flag")]),
                          quiet=True).record
    with pytest.raises(Interrupted):
        runner.run(resolve.resolve([config.Layer({**layer, "run_dir": str(tmp_path / "b")}, "flag")]),
                   bar=StopAt(3))
    plugins.forget()  # a new process: nothing but what the record names
    assert "lion" not in OPTIMIZERS
    record = results.read_metrics(folder(cli("run", "--resume", tmp_path / "b", "-q")))
    assert record["status"] == "completed" and record["config"]["optimizer_settings"] == {"b1": 0.5, "b2": 0.99}
    timeless = [{k: v for k, v in r["history"].items() if k != "epoch_time_s"} for r in (record, straight)]
    assert timeless[0] == timeless[1] and record["environment"]["plugins"] == straight["environment"]["plugins"]


BAD = {
    "syntax": ("import optlab\n\ndef f(:\n    pass\n", ":3: SyntaxError: invalid syntax"),
    "import": ("import optlab\nimport no_such_module_for_optlab\n",
               ":2: ModuleNotFoundError: No module named 'no_such_module_for_optlab'"),
    "exception": ("x = 1\nraise RuntimeError('the plug-in broke')\n", ":2: RuntimeError: the plug-in broke"),
    "builtin-name": ('import optlab\n\n\n@optlab.optimizer("adam", help="again")\ndef adam(learning_rate):\n'
                     '    return None\n', ":4: registers optimizer 'adam', which is already registered (optlab's own)"),
    "no-learning-rate": ('import optlab\n\n@optlab.optimizer("lr-less", help="x")\ndef f(lr, b1=0.9):\n'
                         '    return None\n',
                         ":3: optimizer 'lr-less': its factory takes no learning_rate keyword"),
    "star-args": ('import optlab\n\n@optlab.optimizer("star", help="x")\ndef f(learning_rate, *betas):\n'
                  '    return None\n', ":3: optimizer 'star': its factory takes *betas"),
    "named-like-a-setting": ('import optlab\n\n@optlab.optimizer("seeded", help="x")\ndef f(learning_rate, seed=0):\n'
                             '    return None\n', "optimizer 'seeded': its factory takes 'seed', the name of optlab's "
                             "setting --seed"),
    "no-default": ('import optlab\n\n@optlab.optimizer("bare", help="x")\ndef f(learning_rate, b1):\n    return None\n',
                   "keyword 'b1' needs a default that is a number, true/false, text or None"),
    "schedule-signature": ('import optlab\n\n@optlab.schedule("flat", help="x")\ndef f(lr):\n    return lr\n',
                           ":3: schedule 'flat': its factory must take (lr, total_steps, settings)"),
    "experiment-field": ('import optlab\n\n@optlab.experiment("typo", help="x", fields=("stepz",))\n'
                         'def prepare(cfg):\n    return None\n',
                         ":3: experiment 'typo': 'stepz' is not one of optlab's settings"),
    "init-signature": ('import optlab\n\n@optlab.init("wide", help="x")\ndef f(fan_in):\n    return 1.0\n',
                       ":3: init 'wide': its rule must take (fan_in, fan_out)"),
    "half-registered": ('import optlab\n\n@optlab.schedule("fine", help="x")\ndef f(lr, n, s):\n    return lr\n\n'
                        'raise ValueError("after registering")\n', ":7: ValueError: after registering"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_plugin_is_one_line_naming_the_file_exit_2_and_no_folder(case, tmp_path):
    source, message = BAD[case]
    file = tmp_path / f"{case.replace('-', '_')}.py"
    file.write_text(source)
    out = tmp_path / "results"
    error = one_error_line(cli("run", "tiny", "--plugin", file, "--out", out))
    assert error.startswith(f"error: plug-in {file}") and message in error, error
    assert not out.exists()
    assert "fine" not in SCHEDULES  # a plug-in that fails leaves nothing registered


def test_missing_not_python_and_twice_registered_plugins(example, tmp_path):
    out = tmp_path / "results"
    assert one_error_line(cli("sweep", "tiny", "--plugin", tmp_path / "nope.py", "--out", out)) == (
        f"error: --plugin {tmp_path / 'nope.py'}: no such plug-in file")
    (tmp_path / "notes.txt").write_text("x")
    assert "not a Python file" in one_error_line(cli("list", "--plugin", tmp_path / "notes.txt"))
    copy = tmp_path / "copy.py"
    copy.write_text(example.read_text())
    error = one_error_line(cli("analyze", tmp_path, "--plugin", example, "--plugin", copy))
    assert error == (f"error: plug-in {copy}:8: registers optimizer 'lion', which is already registered "
                     f"(from plug-in {example.resolve()}); choose another name")
    assert not out.exists()


def test_compare_where_matches_an_optimizers_own_setting(write_run, tmp_path):
    for b1 in (0.5, 0.9):
        write_run(tmp_path, optimizer="lion", optimizer_settings={"b1": b1, "b2": 0.99}, run_id=f"tiny-lion-{b1}")
    done = cli("compare", tmp_path, "--where", "b1=0.5", "--format", "json", "--no-figures")
    assert done.exit_code == 0, done.output
    assert [r["run"] for r in json.loads(done.stdout)] == ["tiny-lion-0.5"]


def test_environment_plugins_is_type_checked(write_run, tmp_path):
    run = write_run(tmp_path)
    record = json.loads((run / "metrics.json").read_text())
    assert check_types(record) is None
    for plugins_value, wrong in (("f.py", "environment.plugins is text, expected a list"),
                                 ([{"sha256": "ab"}], 'environment.plugins[0] has no text "path"'),
                                 ([{"path": "f.py", "sha256": 3}], "environment.plugins[0].sha256 is a number")):
        record["environment"]["plugins"] = plugins_value
        assert (check_types(record) or "").startswith(wrong)
    record["environment"]["plugins"] = [{"path": "f.py", "sha256": "ab"}, {"name": "demo", "sha256": "cd"}]
    assert check_types(record) is None

