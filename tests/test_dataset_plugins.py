"""Dataset plug-ins (`@optlab.dataset`): their experiment appears and goes with them, they train through
`optlab run`, `sweep`, `analyze` and `compare`, with the figures that make sense for their inputs, and arrays
training would trip over are refused in one line that names the dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import optlab
from optlab import results
from optlab.cli import app
from optlab.data import datasets
from optlab.errors import DataError
from optlab.experiments import EXPERIMENTS


def digits(n: int = 200, shape=(8, 8), classes: int = 4, seed: int = 0, floats: bool = False):
    """Random images in which class c brightens every c-th pixel: (train_images, train_labels, test_…, test_…)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    x = rng.random((n, int(np.prod(shape)))) * 0.4
    for c in range(classes):
        x[labels == c, c::classes] += 0.6
    images = x.reshape(n, *shape) if floats else (255 * x.reshape(n, *shape)).astype(np.uint8)
    return images[:150], labels[:150], images[150:], labels[150:]


@pytest.fixture
def register():
    """Register a dataset plug-in for the test; unregistered (with its experiment) after."""
    names = []

    def add(name: str, loader, classes: int = 4) -> str:
        optlab.dataset(name, help=f"the test's {name}", classes=classes)(loader)
        names.append(name)
        return name

    yield add
    for name in names:
        datasets.DATASETS.unregister(name)
        assert name not in EXPERIMENTS


def cli(*args) -> object:
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def test_a_registered_dataset_is_an_experiment_listed_until_it_is_unregistered(register):
    name = register("test-listed", digits)
    assert name in EXPERIMENTS and "the test's test-listed" in EXPERIMENTS.entry(name).help
    listed = cli("list")
    assert listed.exit_code == 0 and name in listed.output
    assert datasets.locate(name) == [] and datasets.image_shape(name) == (8, 8)
    loaded = datasets.load(name)
    assert loaded.train_images.dtype == np.uint8 and loaded.train_labels.dtype == np.uint8
    assert datasets.load(name) is loaded  # the function is called once per process


@pytest.mark.slow
def test_8x8_images_run_sweep_analyze_compare_and_report(register, tmp_path):
    name = register("test-digits", digits)
    run_dir = tmp_path / "run"
    ran = cli("run", name, "--hidden", "8", "--epochs", "2", "--batch-size", "25", "--run-dir", run_dir, "-q")
    assert ran.exit_code == 0, ran.output
    record = results.read_metrics(run_dir)
    assert record["status"] == "completed" and record["experiment"] == name
    assert set(record["figures"]) == {"learning_curves", "sparsity", "weights"}
    assert all((run_dir / e["path"]).read_bytes()[:4] == b"\x89PNG" for e in record["figures"].values())
    assert record["analysis"]["activity_measured_on"] == f"{name} test set (50 images)"

    swept = cli("sweep", name, "--hidden", "8", "--epochs", "2", "--batch-size", "25", "--activation", "relu,tanh",
                "--out", tmp_path / "sweep", "-q")
    assert swept.exit_code == 0, swept.output
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "sweep").glob("*/*/metrics.json"))]
    assert [r["config"]["activation"] for r in records] == ["relu", "tanh"]
    assert all(r["status"] == "completed" and 0 <= r["summary"]["test_error"] <= 1 for r in records)

    analyzed = cli("analyze", run_dir, "--subset", "40", "--k", "1", "--probes", "1", "--max-order", "20")
    assert analyzed.exit_code == 0, analyzed.output
    hessian = results.read_metrics(run_dir)["analysis"]["hessian"]
    assert hessian["n_params"] == 64 * 8 + 8 + 8 * 4 + 4 and np.isfinite(hessian["lambda_max"])
    assert hessian["data"].startswith(f"the first 40 {name} training images")

    compared = cli("compare", tmp_path, "--format", "csv", "--no-figures")
    assert compared.exit_code == 0, compared.output
    assert len([row for row in compared.output.splitlines() if name in row]) == 3
    reported = cli("report", run_dir, "--out", tmp_path / "report.html")
    assert reported.exit_code == 0, reported.output
    assert record["run_id"] in (tmp_path / "report.html").read_text(encoding="utf-8")


@pytest.mark.slow
def test_feature_vectors_train_without_weight_pictures(register, tmp_path):
    """1-D inputs (floats in [0, 1], 5 features): every figure but the first-layer weights as images."""
    name = register("test-vectors", lambda: digits(shape=(5,), floats=True))
    ran = cli("run", name, "--hidden", "8", "--epochs", "3", "--batch-size", "25", "--lr", "0.01",
              "--run-dir", tmp_path / "run", "-q")
    assert ran.exit_code == 0, ran.output
    record = results.read_metrics(tmp_path / "run")
    assert set(record["figures"]) == {"learning_curves", "sparsity"}
    assert results.load_params(tmp_path / "run")["0/w"].shape == (8, 5)
    assert record["summary"]["test_error"] < 0.5  # four separable classes: better than chance (0.75)


def good():
    return digits()


@pytest.mark.parametrize("change, message", [
    (lambda a: a[:3], "must return (train_images, train_labels, test_images, test_labels), got tuple of 3"),
    (lambda a: (a[0].astype(np.int64), *a[1:]), "train_images must be uint8, or floats in [0, 1]; got int64"),
    (lambda a: (a[0] / 100.0, *a[1:]), "train_images must be floats in [0, 1] (or uint8); found values in [0, 2.5"),
    (lambda a: (a[0][:, 0, 0], *a[1:]), "train_images must be (N, ...), one image or feature vector per row"),
    (lambda a: (a[0], a[1].astype(float), *a[2:]), "train_labels must be a 1-D array of integers, got float64"),
    (lambda a: (a[0], a[1] + 1, *a[2:]), "train_labels: label 4 out of range 0..3 (classes=4)"),
    (lambda a: (*a[:3], a[3][:-1]), "50 test_images but 49 test_labels"),
    (lambda a: (a[0], a[1], a[2][:, :4], a[3]), "train_images are (8, 8) each but test_images (4, 8)"),
    (lambda a: (a[0], a[1], a[2][:0], a[3][:0]), "the test split holds no examples"),
])
def test_arrays_training_would_trip_over_are_refused_naming_the_dataset(change, message):
    with pytest.raises(DataError) as info:
        datasets.checked_arrays("test-bad", change(digits()), 4)
    assert str(info.value).startswith("dataset 'test-bad': ") and message in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_arrays_stop_optlab_run_in_one_line_before_any_run_folder(register, tmp_path):
    name = register("test-bad", lambda: (digits()[0] * 2.0, *digits()[1:]))
    result = cli("run", name, "--hidden", "8", "--epochs", "1", "--out", tmp_path)
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert result.output.startswith("error: dataset 'test-bad': train_images must be floats in [0, 1] (or uint8)")
    assert not any(tmp_path.iterdir())


def test_classes_must_be_a_count():
    with pytest.raises(ValueError, match="classes must be an integer ≥ 2, got 1"):
        optlab.dataset("test-one-class", help="", classes=1)
    assert "test-one-class" not in datasets.DATASETS


def readme_example() -> str:
    """The README's dataset plug-in example: the Python block after its `<!-- dataset example -->` marker."""
    text = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    block = text.split("<!-- dataset example -->", 1)[1].split("```python\n", 1)[1]
    return block.split("```", 1)[0]


@pytest.mark.slow
def test_the_readmes_dataset_example_trains_with_hidden_32_as_a_plugin_file(tmp_path):
    from optlab import plugins

    file = tmp_path / "digits.py"
    file.write_text(readme_example(), encoding="utf-8")
    try:
        ran = cli("run", "digits", "--plugin", file, "--hidden", "32", "--epochs", "5", "--lr", "0.01",
                  "--run-dir", tmp_path / "run", "-q")
        assert ran.exit_code == 0, ran.output
        assert datasets.image_shape("digits") == (8, 8) and datasets.load("digits").train_images.dtype == np.float32
    finally:
        plugins.forget()
    assert "digits" not in datasets.DATASETS and "digits" not in EXPERIMENTS  # forgotten, its experiment with it
    record = results.read_metrics(tmp_path / "run")
    assert results.load_params(tmp_path / "run")["0/w"].shape == (32, 64)
    assert record["summary"]["test_error"] < 0.1  # ten strokes in noise of σ = 0.3: chance is 0.9


def test_a_dataset_named_like_an_experiment_registers_neither():
    with pytest.raises(ValueError, match="tiny"):
        optlab.dataset("tiny", help="clashes with the tiny experiment")(digits)
    assert "tiny" not in datasets.DATASETS and "clashes" not in EXPERIMENTS.entry("tiny").help  # tiny is still tiny
