"""Interrupted, killed and failed runs lose nothing; bad input never yields a traceback."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from optlab import config, results
from optlab.cli import app
from optlab.errors import ConfigError, ResultsError
from optlab.runs import resolve
from test_classify import write_fixture


def start_run(data_dir: Path, run_dir: Path, epochs: int = 2000) -> subprocess.Popen:
    """A real `optlab run` in its own process, long enough to be stopped mid-training."""
    args = [sys.executable, "-m", "optlab", "run", "mnist", "--data-dir", str(data_dir), "--hidden", "16",
            "--batch-size", "20", "--epochs", str(epochs), "--input-noise", "0", "--run-dir", str(run_dir), "-q"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)


def wait_for_epochs(run_dir: Path, epochs: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if len(results.read_metrics(run_dir)["history"].get("epoch", [])) >= epochs:
                return
        except ResultsError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"no {epochs} epochs in {run_dir} after {timeout} s")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_fixture(tmp_path_factory.mktemp("bars"))


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_stopped_run_says_interrupted_and_keeps_its_finished_epochs(data_dir, tmp_path, signum, code):
    run_dir = tmp_path / "run"
    process = start_run(data_dir, run_dir)
    wait_for_epochs(run_dir, 3)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr
    assert stderr.strip().count("\n") == 0 and str(run_dir) in stderr and "Traceback" not in stderr
    record = results.read_metrics(run_dir)
    history = record["history"]
    assert record["status"] == "interrupted" and len(history["epoch"]) >= 3
    assert history["epoch"] == list(range(1, len(history["epoch"]) + 1))
    assert record["summary"]["epochs"] == len(history["epoch"])


@pytest.mark.slow
def test_sigkill_at_random_moments_always_leaves_a_valid_metrics_file(data_dir, tmp_path):
    rng = random.Random(0)
    seen = {"absent": 0, "running": 0}
    for attempt in range(30):
        run_dir = tmp_path / f"run{attempt}"
        process = start_run(data_dir, run_dir, epochs=200)
        time.sleep(rng.uniform(0.5, 4.0))
        process.kill()
        process.communicate(timeout=60)
        if not (run_dir / "metrics.json").exists():
            seen["absent"] += 1  # killed before the folder was made: nothing half-written either
            assert not run_dir.exists() or not any(p.suffix == ".json" for p in run_dir.iterdir())
            continue
        record = results.read_metrics(run_dir)  # raises on anything invalid
        assert record["status"] in ("running", "completed")
        epochs = record["history"].get("epoch", [])
        assert epochs == list(range(1, len(epochs) + 1))
        seen["running"] += record["status"] == "running"
    assert seen["running"] >= 5, seen  # the kills really did land mid-training


def test_unwritable_results_folder_is_named_before_training(tmp_path, monkeypatch):
    def refuse(self, data):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(Path, "write_bytes", refuse)
    result = CliRunner().invoke(app, ["run", "tiny", "--run-dir", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert result.stderr == f"error: cannot write to results folder {tmp_path / 'r'}: Read-only file system\n"


# ---- bad input, generated -----------------------------------------------------------------------

FLAGS = ["--opt", "--lr", "--lr-schedule", "--momentum", "--steps", "--start", "--seed", "--grad-noise",
         "--epochs", "--batch-size", "--hidden", "--init", "--init-scale", "--dropout", "--set", "--config"]
NASTY = st.sampled_from(["", " ", "-1", "0", "nan", "inf", "-inf", "1e999", "10" * 30, "abc", "1,2,3", "..",
                         "tiny", "=", "a=b", "lr=", "steps=-3", "\x00", "é", "/nonexistent/x.toml",
                         "0..", "5..1", "[1]", "{}", "1;2", "True"])
ARGS = st.lists(st.one_of(st.sampled_from(FLAGS), NASTY, st.text(max_size=8)), max_size=6)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(command=st.sampled_from([["run", "tiny"], ["run"], ["sweep", "tiny"], ["sweep"], ["list"], ["compare"],
                                 ["report"], ["analyze"], ["data", "info"], ["data", "fetch"]]), args=ARGS)
def test_generated_bad_arguments_never_give_a_traceback(tmp_path, command, args):
    writes = command[0] in ("run", "sweep")  # keep anything a valid combination writes in tmp_path
    result = CliRunner().invoke(app, [*command, *args, "--out", str(tmp_path / "out")] if writes else [*command, *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    if result.exit_code == 2:  # bad input: exactly one line, "error: ..."
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_the_toml_loader_only_ever_raises_config_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("toml") / "fuzz.toml"
    path.write_bytes(data)
    try:
        resolve.resolve([config.read_toml(path)])
    except ConfigError as e:
        assert "\n" not in str(e)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(config.FIELDS)),
                       st.one_of(st.integers(-10**30, 10**30), st.floats(), st.text(max_size=10), st.booleans(),
                                 st.lists(st.integers(-5, 5), max_size=3)), max_size=5))
def test_any_typed_settings_are_accepted_or_refused_in_one_line(values):
    try:
        cfg = resolve.resolve([config.Layer(values, "file.toml")])
    except ConfigError as e:
        assert "\n" not in str(e)
    else:
        json.dumps(results.to_jsonable(resolve.relevant(cfg)), allow_nan=False)


# ---- checkpoints and --resume -------------------------------------------------------------------


def _timeless(history: dict) -> dict:
    return {k: v for k, v in history.items() if k != "epoch_time_s"}


@pytest.mark.slow
def test_resume_after_sigkill_gives_the_uninterrupted_result_bit_for_bit(data_dir, tmp_path):
    epochs = 40
    args = ["--data-dir", data_dir, "--hidden", "16", "--batch-size", "20", "--input-noise", "0.3",
            "--dropout", "0.1", "--grad-noise", "0.01", "--epochs", epochs, "--checkpoint-every", "3", "-q"]
    straight = CliRunner().invoke(app, ["run", "mnist", *map(str, args), "--run-dir", str(tmp_path / "straight")])
    assert straight.exit_code == 0, straight.output

    killed = tmp_path / "killed"  # the same run in a real process, killed mid-training
    command = [sys.executable, "-m", "optlab", "run", "mnist", *map(str, args), "--run-dir", str(killed)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_epochs(killed, 10)
    process.kill()
    process.communicate(timeout=60)
    interrupted = results.read_metrics(killed)
    assert interrupted["status"] == "running" and 10 <= len(interrupted["history"]["epoch"]) < epochs
    assert (killed / "checkpoint.npz").exists()

    resumed = CliRunner().invoke(app, ["run", "--resume", str(killed), "-q"])
    assert resumed.exit_code == 0, resumed.output
    a, b = results.read_metrics(tmp_path / "straight"), results.read_metrics(killed)
    assert b["status"] == "completed" and _timeless(a["history"]) == _timeless(b["history"])
    for key, value in results.load_params(tmp_path / "straight").items():
        np.testing.assert_array_equal(value, results.load_params(killed)[key])
    assert not (killed / "checkpoint.npz").exists()


def test_resume_refuses_what_it_cannot_continue(tmp_path):
    done = tmp_path / "done"
    assert CliRunner().invoke(app, ["run", "tiny", "--steps", "3", "--run-dir", str(done)]).exit_code == 0
    result = CliRunner().invoke(app, ["run", "--resume", str(done)])
    assert result.exit_code == 2 and "has completed; there is nothing to resume" in result.stderr
    record = results.read_metrics(done)
    results.write_metrics(done, record | {"status": "interrupted"})
    result = CliRunner().invoke(app, ["run", "--resume", str(done)])
    assert result.exit_code == 2 and "one compiled program with no checkpoints" in result.stderr
    result = CliRunner().invoke(app, ["run", "--resume", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "no such file" in result.stderr
    result = CliRunner().invoke(app, ["run", "tiny", "--resume", str(done)])
    assert result.exit_code == 2 and "give no experiment" in result.stderr
