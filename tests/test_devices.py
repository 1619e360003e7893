"""optlab.core.devices: padding, cluster detection, and a sweep sharded over 4 (virtual CPU) devices.

JAX fixes its device count when it starts, so the sharded checks run in a subprocess with
XLA_FLAGS=--xla_force_host_platform_device_count=4 and report back as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from optlab.core import devices
from optlab.errors import ConfigError

SCRIPT = textwrap.dedent('''
    import json, sys
    from functools import partial
    from pathlib import Path
    import jax, numpy as np
    sys.path.insert(0, {tests!r})
    from test_sweep import bars_dataset, build
    from optlab.core import devices
    from optlab.cli.commands_sweep import SweepBar
    from optlab.experiments import classify, tiny

    everything, first = jax.devices(), jax.devices()[:1]
    report = {{"devices": len(everything)}}

    s = build({{"experiment": "tiny", "optimizer": "adam", "steps": "50"}}, {{"lr": "0.01,0.1,0.5", "seed": "0,1"}})
    lanes = devices.Lanes.over(6)
    report["tiny_lanes"] = lanes.size
    report["tiny_shares"] = devices.shares(lanes.stack([{{"x": np.float64(i)}} for i in range(6)])["x"])
    sharded = tiny.run_lanes(s.configs, lanes, [None] * 6, SweepBar(True))
    alone = tiny.run_lanes(s.configs, devices.Lanes.over(6, first), [None] * 6, SweepBar(True))
    report["tiny_max_diff"] = max(float(np.max(np.abs(a.history["params"] - b.history["params"])))
                                  for a, b in zip(sharded, alone))

    data = bars_dataset(Path({tmp!r}) / "bars")
    s = build({{"experiment": "mnist", "optimizer": "adam", "epochs": "2", "batch_size": "20", "hidden": "16",
               "data_dir": str(data)}}, {{"lr": "0.01,0.003", "seed": "0..2"}})
    dataset, n_train, sizes = classify.validate(s.configs[0])
    lanes = devices.Lanes.over(6)
    hp = lanes.stack([devices.to_host(classify.hyperparams(c)) for c in s.configs])
    state = jax.jit(jax.vmap(partial(classify.initial_state, s.configs[0], sizes, n_train)))(hp)
    images, labels = lanes.replicate((dataset.train_images, dataset.train_labels))
    epoch = jax.jit(jax.vmap(classify.train_epoch(s.configs[0], n_train), in_axes=(0, 0, None, None)))
    state, _, _ = epoch(state, hp, images, labels)
    report["mnist_state_shares"] = devices.shares(state.params[0]["w"])
    sharded = classify.run_lanes(s.configs, dataset, n_train, sizes, lanes, [None] * 6, SweepBar(True))
    alone = classify.run_lanes(s.configs, dataset, n_train, sizes, devices.Lanes.over(6, first), [None] * 6,
                               SweepBar(True))
    report["mnist_max_diff"] = max(abs(x - y) for a, b in zip(sharded, alone)
                                   for x, y in zip(a.history["train_loss"], b.history["train_loss"]))
    report["mnist_final_losses"] = [a.history["train_loss"][-1] for a in sharded]
    print(json.dumps(report))
''')


def on_four_cpu_devices(script: str, tmp: Path) -> dict:
    """Run a script template in a fresh process that sees 4 CPU devices; its last stdout line is JSON."""
    script = script.format(tests=str(Path(__file__).parent), tmp=str(tmp))
    env = os.environ | {"XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def sharded_report(tmp_path_factory) -> dict:
    return on_four_cpu_devices(SCRIPT, tmp_path_factory.mktemp("sharded"))


def test_padded_rounds_up_to_a_multiple_of_the_device_count():
    assert [devices.padded(n, 4) for n in (1, 4, 5, 8, 9)] == [4, 4, 8, 8, 12]
    assert devices.padded(0, 3) == 3 and devices.padded(7, 1) == 7


def test_lanes_pad_with_the_last_configuration_on_one_device():
    lanes = devices.Lanes.over(3)
    stacked = lanes.stack([{"lr": 0.1}, {"lr": 0.2}, {"lr": 0.3}])
    assert lanes.size == len(__import__("jax").devices()) * -(-3 // len(__import__("jax").devices()))
    assert list(devices.to_host(stacked["lr"]))[:3] == [0.1, 0.2, 0.3]


@pytest.mark.parametrize("environ, wanted", [
    ({}, False),
    ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "1"}, False),
    ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4"}, True),
    ({"JAX_COORDINATOR_ADDRESS": "host:1234"}, True),
    ({"OMPI_MCA_orte_hnp_uri": "x"}, True),
])
def test_cluster_detection_reads_the_usual_variables(environ, wanted):
    assert devices.cluster_detected(environ) is wanted


@pytest.mark.parametrize("args, message", [
    (("host:1", None, None), "go together"),
    (("host:1", 2, 2), "--process-id 2 must be from 0 to 1"),
])
def test_explicit_distributed_flags_are_checked(args, message):
    with pytest.raises(ConfigError, match=message):
        devices.initialize(*args)


def test_no_cluster_means_no_distributed_initialize(monkeypatch):
    for name in devices.CLUSTER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert devices.initialize() is False and devices.is_writer()


@pytest.mark.slow
def test_every_device_gets_an_equal_share(sharded_report):
    assert sharded_report["devices"] == 4
    assert sharded_report["tiny_lanes"] == 8  # 6 configurations padded to 8
    assert sorted(sharded_report["tiny_shares"].values()) == [2, 2, 2, 2]
    assert len(sharded_report["mnist_state_shares"]) == 4
    assert sorted(sharded_report["mnist_state_shares"].values()) == [2, 2, 2, 2]


@pytest.mark.slow
def test_sharded_sweep_gives_the_numbers_of_the_unsharded_one(sharded_report):
    assert sharded_report["tiny_max_diff"] == 0.0
    assert sharded_report["mnist_max_diff"] <= 1e-6
    assert all(loss < 1.0 for loss in sharded_report["mnist_final_losses"])  # they trained


# ---- one run, its minibatches split over 4 devices (--data-parallel) ---------------------------

DATA_PARALLEL_SCRIPT = textwrap.dedent('''
    import json, sys
    from pathlib import Path
    import jax
    sys.path.insert(0, {tests!r})
    from typer.testing import CliRunner
    from test_classify import BASE, write_fixture
    from optlab import config
    from optlab.core import devices, engine
    from optlab.runs import resolve, runner
    from optlab.cli import app
    from optlab.errors import Interrupted
    from optlab.experiments import classify
    from optlab.problems import mlp

    tmp = Path({tmp!r})
    data = write_fixture(tmp / "bars")
    settings = {{**BASE, "data_dir": str(data), "input_noise": "0.3", "dropout": "0.1", "epochs": "3"}}
    settle = lambda **more: resolve.resolve([config.Layer({{**settings, **more}}, "flag")])
    report = {{"devices": len(jax.devices())}}

    plain = runner.run(settle(run_dir=str(tmp / "plain")), quiet=True).record
    split = runner.run(settle(run_dir=str(tmp / "split"), data_parallel="on"), quiet=True).record
    report["max_diff"] = max(abs(a - b) for k in ("train_loss", "test_loss", "minibatch_loss", "test_error")
                             for a, b in zip(plain["history"][k], split["history"][k]))
    report["epochs"] = [len(plain["history"]["epoch"]), len(split["history"]["epoch"])]
    report["summary_devices"] = [r["summary"].get("data_parallel_devices") for r in (plain, split)]
    report["config"] = split["config"]["data_parallel"]

    class StopAfter2:  # a Ctrl-C after the second epoch, once its checkpoint is written
        def start(self, total, description): pass
        def advance(self, completed, metrics):
            if completed == 2: raise KeyboardInterrupt
        def stop(self): pass
    try:
        runner.run(settle(run_dir=str(tmp / "resumed"), data_parallel="on", checkpoint_every="1"), bar=StopAfter2())
    except Interrupted:
        pass
    resumed = runner.resume(tmp / "resumed", quiet=True).record
    report["resume_equal"] = all(resumed["history"][k] == split["history"][k] for k in ("train_loss", "minibatch_loss"))

    # The engine's own epoch with the batch sharding: what each device sees of a minibatch.
    cfg = settle(data_parallel="on")
    dataset, n_train, sizes = classify.validate(cfg)
    dp = devices.DataParallel.over()
    hp = classify.hyperparams(cfg)
    hp, state = dp.replicate((hp, classify.initial_state(cfg, sizes, n_train, hp)))
    images, labels = dp.replicate((dataset.train_images, dataset.train_labels))
    seen = []
    def loss(params, batch, key):
        jax.debug.inspect_array_sharding(batch[0], callback=lambda s: seen.append(s))
        return mlp.loss(params, batch, key)
    epoch = jax.jit(engine.epoch_fn(loss, classify.make_tx_for(cfg, 36), n_train, cfg.batch_size, dp.batch))
    compiled = epoch.lower(state, hp, images, labels).compile()
    report["batch_devices"] = len(seen[0].device_set)
    report["shard_shape"] = list(seen[0].shard_shape((cfg.batch_size, 28, 28)))
    report["all_reduce"] = "all-reduce" in compiled.as_text()
    state, _, _ = compiled(state, hp, images, labels)
    report["params_replicated"] = state.params[0]["w"].sharding.is_fully_replicated

    bad = CliRunner().invoke(app, ["run", "mnist", "--data-dir", str(data), "--batch-size", "30", "--data-parallel",
                                   "--epochs", "1", "--hidden", "8", "--out", str(tmp / "bad"), "-q"])
    report["bad"] = [bad.exit_code, bad.stderr, (tmp / "bad").exists()]
    print(json.dumps(report))
''')


@pytest.fixture(scope="module")
def data_parallel_report(tmp_path_factory) -> dict:
    return on_four_cpu_devices(DATA_PARALLEL_SCRIPT, tmp_path_factory.mktemp("data-parallel"))


def test_data_parallel_is_a_setting_of_network_runs():
    from optlab import config
    from optlab.runs import resolve

    cfg = resolve.resolve([config.Layer({"experiment": "mnist", "data_parallel": "on"}, "flag")])
    assert cfg.data_parallel is True and resolve.relevant(cfg)["data_parallel"] is True
    with pytest.raises(ConfigError, match="--data-parallel must be true or false"):
        resolve.resolve([config.Layer({"experiment": "mnist", "data_parallel": "sometimes"}, "flag")])
    with pytest.raises(ConfigError, match="does not apply to experiment 'tiny'"):
        resolve.resolve([config.Layer({"experiment": "tiny", "data_parallel": "on"}, "flag")])


@pytest.mark.slow
def test_data_parallel_gives_the_numbers_of_one_device(data_parallel_report):
    r = data_parallel_report
    assert r["devices"] == 4 and r["epochs"] == [3, 3] and r["config"] is True
    assert r["max_diff"] <= 1e-5  # float32: the batch mean is summed in another order
    assert r["summary_devices"] == [None, 4]
    assert r["resume_equal"]  # a restored state is replicated again and goes on exactly


@pytest.mark.slow
def test_data_parallel_splits_every_minibatch_over_every_device(data_parallel_report):
    r = data_parallel_report
    assert r["batch_devices"] == 4 and r["shard_shape"] == [5, 28, 28]  # 20 images: 5 per device
    assert r["all_reduce"] and r["params_replicated"]  # XLA sums the gradient; every device has the parameters


@pytest.mark.slow
def test_data_parallel_batch_must_divide_over_the_devices(data_parallel_report):
    code, stderr, folder_made = data_parallel_report["bad"]
    assert code == 2 and not folder_made
    assert stderr.strip().count("\n") == 0
    assert "--batch-size 30" in stderr and "4 devices" in stderr and "--data-parallel" in stderr
