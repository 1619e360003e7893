"""Figures say what they show (schema 2): every entry has a caption, the weights entry lists the epochs it draws,
and a schema-1 record that optlab rewrites (`run --resume`, `analyze`) becomes schema 2 whole, never a mix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from optlab import config, plots, results
from optlab.cli import app
from optlab.errors import Interrupted
from optlab.runs import resolve, runner
from optlab.runs.record import RunRecord
from stops import StopAt
from test_classify import write_fixture

# 240 images in batches of 20: 12 steps an epoch; a network small enough for an exact-enough Lanczos in seconds
NETWORK = {"experiment": "mnist", "optimizer": "adam", "lr": "0.01", "batch_size": "20", "hidden": "16",
           "input_noise": "0", "seed": "1"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_fixture(tmp_path_factory.mktemp("bars"))


@pytest.fixture
def drawn(monkeypatch) -> list[list[int]]:
    """The epochs of every weights figure drawn, as plots.weight_tiles received them (what the PNG shows)."""
    calls: list[list[int]] = []
    real = plots.weight_tiles

    def spy(path, snapshots, **kwargs):
        calls.append(sorted(int(e) for e in snapshots))
        return real(path, snapshots, **kwargs)

    monkeypatch.setattr(plots, "weight_tiles", spy)
    return calls


def network(data_dir: Path, run_dir: Path, **settings) -> config.RunConfig:
    layer = {**NETWORK, "data_dir": str(data_dir), "run_dir": str(run_dir), **{k: str(v) for k, v in settings.items()}}
    return resolve.resolve([config.Layer(layer, "flag")])


def as_version_1(run_dir: Path) -> dict:
    """Rewrite a run's metrics.json as the schema-1 optlab wrote it: bare file names. The record, as written."""
    record = json.loads((run_dir / "metrics.json").read_text())
    record.update(schema_version=1, figures={k: results.figure_path(v) for k, v in record["figures"].items()})
    (run_dir / "metrics.json").write_text(json.dumps(record))
    return record


def test_the_weights_entry_lists_exactly_the_epochs_drawn_and_every_figure_says_what_it_shows(
        data_dir, tmp_path, drawn):
    record = runner.run(network(data_dir, tmp_path / "run", epochs=12), quiet=True).record
    figures = results.read_metrics(tmp_path / "run")["figures"]
    assert figures == record["figures"] and record["schema_version"] == 2
    assert drawn == [[1, 2, 3, 4, 5, 10, 12]]  # the lecture's epochs 1-5 and 10, and the last
    assert figures["weights"]["epochs"] == drawn[0]
    assert figures["weights"]["caption"] == ("first-layer weights W1 of the 16 hidden units as images, "
                                             "after epochs 1, 2, 3, 4, 5, 10, 12")
    assert figures["sparsity"]["measured_on"] == "mnist test set (80 images)" == record["analysis"][
        "activity_measured_on"]
    assert figures["sparsity"]["epoch"] == 12 and isinstance(figures["sparsity"]["epoch"], int)
    assert figures["learning_curves"]["caption"].endswith("over 12 epochs")
    assert set(figures) == {"learning_curves", "sparsity", "weights"}  # no --analyze: no edge of stability
    for name, entry in figures.items():
        assert entry["caption"] and (tmp_path / "run" / entry["path"]).read_bytes()[:4] == b"\x89PNG", name


@pytest.mark.slow
def test_the_edge_of_stability_entry_lists_the_analysed_epochs_and_their_data(data_dir, tmp_path):
    record = runner.run(network(data_dir, tmp_path / "run", epochs=3, hidden=8, analyze="1,3"), quiet=True).record
    entry = results.read_metrics(tmp_path / "run")["figures"]["edge_of_stability"]
    assert entry["epochs"] == [row["epoch"] for row in record["analysis"]["hessian_over_training"]] == [1, 3]
    assert entry["measured_on"] == "the first 240 mnist training images, clean loss"
    assert entry["caption"].startswith("the Hessian's largest eigenvalue λmax against 2/η after epochs 1, 3, on ")
    assert (tmp_path / "run" / entry["path"]).read_bytes()[:4] == b"\x89PNG"


def test_a_run_shorter_than_the_snapshot_epochs_lists_only_its_own(data_dir, tmp_path, drawn):
    figures = runner.run(network(data_dir, tmp_path / "run", epochs=3), quiet=True).record["figures"]
    assert figures["weights"]["epochs"] == drawn[0] == [1, 2, 3]


class SchemaOnStart:
    """Notes the schema of metrics.json when the resumed job starts: resume's first write is already done."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir, self.seen = run_dir, []

    def start(self, total, description):
        self.seen.append(json.loads((self.run_dir / "metrics.json").read_text())["schema_version"])

    def advance(self, completed, metrics):
        pass

    def stop(self):
        pass


def test_a_resumed_schema_1_run_is_schema_2_from_its_first_write(data_dir, tmp_path, drawn):
    run_dir = tmp_path / "run"
    with pytest.raises(Interrupted):
        runner.run(network(data_dir, run_dir, epochs=6, checkpoint_every=1), bar=StopAt(2))
    before = as_version_1(run_dir)
    assert before["status"] == "interrupted" and before["history"]["epoch"] == [1]
    bar = SchemaOnStart(run_dir)
    resumed = runner.resume(run_dir, bar=bar).record
    assert bar.seen == [2]
    after = results.read_metrics(run_dir)
    assert after == json.loads(json.dumps(resumed)) and after["status"] == "completed"
    assert after["schema_version"] == 2 and all(isinstance(e, dict) and e["caption"] for e in after["figures"].values())
    # epoch 1 drawn from the checkpoint's snapshot, 2 to 6 from the resumed training
    assert after["figures"]["weights"]["epochs"] == drawn[0] == [1, 2, 3, 4, 5, 6]


def test_a_schema_1_record_stopped_again_is_written_as_schema_2(tmp_path):
    record = {key: {} for key in results.REQUIRED_KEYS} | {
        "schema_version": 1, "run_id": "r", "status": "running", "experiment": "mnist",
        "figures": {"weights": "weights.png"}}
    RunRecord(tmp_path, record).stop(KeyboardInterrupt())
    back = results.read_metrics(tmp_path)
    assert (back["schema_version"], back["status"]) == (2, "interrupted")
    assert back["figures"] == {"weights": {"path": "weights.png"}}


def test_analyze_on_a_schema_1_run_writes_schema_2_with_the_density_measured_on(tmp_path):
    run_dir = tmp_path / "run"
    assert CliRunner().invoke(app, ["run", "tiny", "--steps", "5", "--run-dir", str(run_dir), "-q"]).exit_code == 0
    as_version_1(run_dir)
    result = CliRunner().invoke(app, ["analyze", str(run_dir)])
    assert result.exit_code == 0, result.output
    record = results.read_metrics(run_dir)
    assert record["schema_version"] == 2
    assert record["figures"]["landscape"] == {"path": "landscape.png"}  # what schema 1 knew of it, no more
    density = record["figures"]["spectral_density"]
    assert density["path"] == "spectral_density.png"
    assert density["measured_on"] == record["analysis"]["hessian"]["data"] == ("none: the tiny problem is its own "
                                                                              "single data point")


def test_tiny_and_signals_figures_carry_captions(tmp_path):
    tiny = runner.run(resolve.resolve([config.Layer({"experiment": "tiny", "steps": "4",
                                                     "run_dir": str(tmp_path / "tiny")}, "flag")]), quiet=True)
    assert {k: e["steps"] for k, e in tiny.record["figures"].items()} == {"landscape": 4, "loss": 4}
    assert tiny.record["figures"]["landscape"]["caption"].startswith("the loss surface C(w1, w2) and gd η=")
    signals = runner.run(resolve.resolve([config.Layer({"experiment": "signals", "depth": "3", "width": "8",
                                                        "batch_size": "16", "run_dir": str(tmp_path / "signals")},
                                                       "flag")]), quiet=True).record
    entry = signals["figures"]["signals"]
    assert entry["measured_on"] == signals["analysis"]["data"] and entry["depth"] == 3 and "3 hidden layers of 8" in \
        entry["caption"]
