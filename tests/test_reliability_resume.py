"""Single runs refuse what they cannot do before they start, and --resume what it cannot continue.

A run too big for the device's memory, `--analyze` past the last epoch, a damaged checkpoint: each
is one `error:` line, exit 2, and leaves no folder (or the interrupted run's folder byte for byte).
A run whose data folder moved continues with `--data-dir` or `$OPTLAB_DATA`.
"""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest
from typer.testing import CliRunner

from optlab import config, results
from optlab.cli import app
from optlab.core import devices
from optlab.data import datasets, download
from optlab.errors import DataError, Interrupted
from optlab.experiments import _classify_train
from optlab.runs import resolve, runner
from stops import StopAt
from test_classify import BASE, write_fixture

RUN = {**BASE, "hidden": "16", "epochs": "4", "checkpoint_every": "1"}  # 240 images, 12 steps an epoch


def settings(**more) -> config.RunConfig:
    return resolve.resolve([config.Layer({**RUN, **{k: str(v) for k, v in more.items()}}, "flag")])


def interrupted(run_dir: Path, data_dir: Path) -> Path:
    with pytest.raises(Interrupted):
        runner.run(settings(data_dir=data_dir, run_dir=run_dir), bar=StopAt(3))
    return run_dir


def cli(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output, result.stderr
    return lines[0]


def timeless(history: dict) -> dict:
    return {k: v for k, v in history.items() if k != "epoch_time_s"}


@pytest.fixture(scope="module", autouse=True)
def no_outside_data(tmp_path_factory):
    """Only the folders a test names are searched: no $OPTLAB_DATA, an empty cache, no downloads."""
    empty = tmp_path_factory.mktemp("empty-cache")

    def no_download(spec, roles, cache, env_var):
        raise DataError(download._where_to_put(spec, roles, cache, env_var, "downloads are off in these tests"))

    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(datasets.ENV_VAR, raising=False)
        patch.setattr(datasets, "cache_root", lambda: empty)
        patch.setattr(datasets, "download", no_download)
        yield


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_fixture(tmp_path_factory.mktemp("bars"))


@pytest.fixture(scope="module")
def straight(data_dir, tmp_path_factory) -> dict:
    """The uninterrupted run: what every resumed one must give."""
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    return runner.run(settings(data_dir=data_dir, run_dir=run_dir), quiet=True).record


@pytest.fixture(scope="module")
def stopped(data_dir, tmp_path_factory) -> Path:
    return interrupted(tmp_path_factory.mktemp("stopped") / "run", data_dir)


# ---- memory, --analyze: refused before anything is made ----------------------------------------


def test_a_single_run_too_big_for_memory_is_refused_in_one_line_before_any_allocation(data_dir, tmp_path,
                                                                                    monkeypatch):
    monkeypatch.setattr(devices, "memory_budget", lambda: 8 * 10**9)  # the same on every machine

    def no(*args, **kwargs):
        raise AssertionError("the run went on to load data or allocate")

    swept = one_error_line(cli("sweep", "mnist", "--data-dir", data_dir, "--hidden", "100000,100000",
                               "--out", tmp_path / "sweep"))
    monkeypatch.setattr(datasets, "load", no)
    monkeypatch.setattr(_classify_train, "initial_state", no)
    line = one_error_line(cli("run", "mnist", "--data-dir", data_dir, "--hidden", "100000,100000",
                              "--out", tmp_path / "out"))
    # 784·10⁵ + 10⁵·10⁵ + 10⁵·10 weights: 6 float32 copies alone are 242 GB, before any data is read
    assert line.startswith("error: one configuration needs ~242.4 GB per device, more than the ~8.0 GB free"), line
    assert re.sub(r"[\d.]+", "N", line) == re.sub(r"[\d.]+", "N", swept)  # the sweep's own words
    assert not (tmp_path / "out").exists()


def test_a_run_that_outgrows_memory_only_with_its_data_is_refused_before_its_folder(data_dir, tmp_path,
                                                                                  monkeypatch):
    # 784-16-10 in batches of 20 needs ~318 kB up front; evaluating 240 training images makes it ~364 kB
    monkeypatch.setattr(devices, "memory_budget", lambda: 340_000 * len(jax.devices()))
    loaded = []
    load = datasets.load
    monkeypatch.setattr(datasets, "load", lambda *a, **k: loaded.append(1) or load(*a, **k))
    line = one_error_line(cli("run", "mnist", "--data-dir", data_dir, "--hidden", "16", "--batch-size", "20",
                              "--out", tmp_path / "out"))
    assert "one configuration needs ~0.0 GB per device" in line and loaded
    assert not (tmp_path / "out").exists()


def test_analyze_past_the_last_epoch_is_refused_in_one_line(data_dir, tmp_path):
    line = one_error_line(cli("run", "mnist", "--data-dir", data_dir, "--epochs", "2", "--analyze", "1,5",
                              "--out", tmp_path / "out"))
    assert line == "error: --analyze 1,5: epoch 5 is past the run's end (--epochs 2)"
    assert not (tmp_path / "out").exists()
    assert settings(epochs=2, analyze="1,2").analyze == (1, 2)  # the last epoch itself is fine


# ---- a damaged checkpoint: refused, nothing touched ---------------------------------------------


def _rewritten(change):
    def damage(path: Path) -> None:
        with np.load(path) as data:
            arrays = dict(data)
        change(arrays)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        path.write_bytes(buffer.getvalue())

    return damage


def _flipped(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2: len(data) // 2 + 8] = b"\xff" * 8  # inside an array: the zip's CRC no longer matches
    path.write_bytes(bytes(data))


DAMAGES = {
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "unreadable checkpoint"),
    "empty": (lambda p: p.write_bytes(b""), "unreadable checkpoint"),
    "corrupt inside": (_flipped, "unreadable checkpoint (Bad CRC-32"),
    "not numpy": (lambda p: p.write_text("checkpoint\n"), "unreadable checkpoint"),
    "no epoch": (_rewritten(lambda a: a.pop("epoch")), "no 'epoch'"),
    "no leaf count": (_rewritten(lambda a: a.pop("leaves")), "no 'leaves'"),
    "a leaf missing": (_rewritten(lambda a: a.pop("state/3")), "no state/3"),
    "no training time": (_rewritten(lambda a: a.pop("extra/train_time")), "no 'extra/train_time'"),
    "epoch a float": (_rewritten(lambda a: a.update(epoch=np.asarray(2.0))), "'epoch' is float64"),
    "epoch a string": (_rewritten(lambda a: a.update(epoch=np.asarray("2"))), "not one integer"),
    "epoch a list": (_rewritten(lambda a: a.update(epoch=np.asarray([2, 2]))), "not one integer"),
    "a leaf of strings": (_rewritten(lambda a: a.update({"state/1": np.full((16, 784), "x")})), "not numbers"),
    "a leaf of another dtype": (_rewritten(lambda a: a.update({"state/1": a["state/1"].astype(np.float64)})),
                                "state/1 is float64[16, 784], the run's is float32[16, 784]"),
    "a leaf of another shape": (_rewritten(lambda a: a.update({"state/1": a["state/1"][:8]})),
                                "does not match this run's model and optimizer"),
    "a float PRNG key": (_rewritten(lambda a: a.update({"state/16": a["state/16"].astype(np.float64)})),
                         "state/16 is float64[2], the run's is uint32[2]"),
    "training time a string": (_rewritten(lambda a: a.update({"extra/train_time": np.asarray("1 s")})),
                               "extra/train_time holds <U3 values"),
    "training time negative": (_rewritten(lambda a: a.update({"extra/train_time": np.asarray(-1.0)})),
                               "not seconds"),
    "a snapshot of another shape": (_rewritten(lambda a: a.update({"extra/snapshot/1": np.zeros((3, 3))})),
                                    "not a W1 snapshot"),
    "epoch 0": (_rewritten(lambda a: a.update(epoch=np.asarray(0))), "taken after epoch 0, but metrics.json "
                "holds epochs 1..2 of the run's 4"),
    "epoch negative": (_rewritten(lambda a: a.update(epoch=np.asarray(-1))), "taken after epoch -1"),
    "epoch past the record": (_rewritten(lambda a: a.update(epoch=np.asarray(3))), "taken after epoch 3"),
    "epoch past the run": (_rewritten(lambda a: a.update(epoch=np.asarray(9))), "taken after epoch 9"),
}


@pytest.mark.parametrize("damage, wanted", DAMAGES.values(), ids=DAMAGES.keys())
def test_a_damaged_checkpoint_is_one_line_and_leaves_the_run_as_it_was(stopped, tmp_path, damage, wanted):
    run_dir = shutil.copytree(stopped, tmp_path / "run")
    damage(run_dir / "checkpoint.npz")
    before = {name: (run_dir / name).read_bytes() for name in ("metrics.json", "checkpoint.npz")}
    line = one_error_line(cli("run", "--resume", run_dir, "-q"))
    assert line.startswith(f"error: {run_dir / 'checkpoint.npz'}: ") and wanted in line, line
    assert {name: (run_dir / name).read_bytes() for name in before} == before
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoint.npz", "metrics.json"]


def test_the_undamaged_checkpoint_resumes_to_the_uninterrupted_history(stopped, straight, tmp_path):
    run_dir = shutil.copytree(stopped, tmp_path / "run")
    record = results.read_metrics(run_dir)
    assert record["status"] == "interrupted" and record["history"]["epoch"] == [1, 2]
    assert cli("run", "--resume", run_dir, "-q").exit_code == 0
    assert timeless(results.read_metrics(run_dir)["history"]) == timeless(straight["history"])


# ---- a run whose data folder moved ----------------------------------------------------------------


@pytest.mark.parametrize("where", ["--data-dir", "$OPTLAB_DATA"])
def test_a_run_whose_data_moved_resumes_from_where_they_are_now(where, data_dir, straight, tmp_path, monkeypatch):
    run_dir = interrupted(tmp_path / "run", shutil.copytree(data_dir, tmp_path / "A"))
    moved = shutil.move(tmp_path / "A", tmp_path / "B")
    if where == "--data-dir":
        result = cli("run", "--resume", run_dir, "--data-dir", moved, "-q")
    else:
        monkeypatch.setenv(datasets.ENV_VAR, str(moved))
        result = cli("run", "--resume", run_dir, "-q")
    assert result.exit_code == 0, result.output
    record = results.read_metrics(run_dir)
    assert record["status"] == "completed" and timeless(record["history"]) == timeless(straight["history"])
    # the record says where the data are now: the folder given, or (none) the usual lookup
    assert record["config"]["data_dir"] == (str(moved) if where == "--data-dir" else None)


def test_a_moved_data_folder_found_nowhere_is_one_line_that_names_it(data_dir, tmp_path):
    run_dir = interrupted(tmp_path / "run", shutil.copytree(data_dir, tmp_path / "A"))
    shutil.move(tmp_path / "A", tmp_path / "B")
    before = (run_dir / "metrics.json").read_bytes()
    line = one_error_line(cli("run", "--resume", run_dir, "-q"))
    assert line.startswith(f"error: this run's data folder {tmp_path / 'A'} no longer exists"), line
    assert f"--resume {run_dir} --data-dir DIR" in line and "downloads are off" in line
    assert (run_dir / "metrics.json").read_bytes() == before
    # a folder the user does type is named as theirs
    line = one_error_line(cli("run", "--resume", run_dir, "--data-dir", tmp_path / "C", "-q"))
    assert line == f"error: --data-dir {tmp_path / 'C'}: no such folder"
    line = one_error_line(cli("run", "--resume", run_dir, "--lr", "0.1", "-q"))
    assert "only --data-dir" in line
