"""optlab.data.datasets and `optlab data info`: lookup order, loading, checks, the CLI (downloads: test_download.py)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import socket
from pathlib import Path

import numpy as np
import pytest

import optlab.experiments  # noqa: F401  (imported first: classify watches the real DATASETS, not `isolated`'s)
from optlab.data import datasets
from optlab.data.datasets import DATASETS, ROLES, fetch, load, locate
from optlab.data.idx import write_idx
from optlab.errors import ConfigError, DataError
from optlab.registry import Registry

# The real files: $OPTLAB_DATA if it names an "mnist" folder (read before `isolated` unsets it), else shared/data/mnist
# beside the checkout.
_ENV_DATA = Path(os.environ.get(datasets.ENV_VAR, ""))
SHARED_MNIST = _ENV_DATA if _ENV_DATA.name == "mnist" else Path(__file__).parents[2] / "shared/data/mnist"
SYSTEM_FASHION = datasets.SYSTEM_ROOTS[0] / "fashion-mnist"
STEMS = dict(zip(ROLES, ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]))
# Published for MNIST (and in shared/data/mnist/SOURCE.txt): label counts per class.
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


_real_cache_root = datasets.cache_root  # before `isolated` replaces it


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No real cache, system folder, $OPTLAB_DATA or network: mirrors point at a closed local port."""
    monkeypatch.setattr(datasets, "cache_root", lambda: tmp_path / "cache")
    monkeypatch.setattr(datasets, "SYSTEM_ROOTS", (tmp_path / "system",))
    monkeypatch.delenv(datasets.ENV_VAR, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    use_specs(monkeypatch, *(dataclasses.replace(e.value, mirrors=(f"http://127.0.0.1:{closed_port()}/",))
                             for e in DATASETS))


def use_specs(monkeypatch, *specs: datasets.DatasetSpec) -> None:
    registry = Registry[datasets.DatasetSpec]("dataset")
    for spec in specs:
        registry.register(spec.name, spec.name, spec)
    monkeypatch.setattr(datasets, "DATASETS", registry)


def write_dataset(folder: Path, marker: int = 0, n_train: int = 6, n_test: int = 4, suffix: str = ".gz",
                  roles=ROLES) -> dict[str, np.ndarray]:
    """Four small IDX files; every train label is `marker`, so a test can tell which copy was loaded."""
    rng = np.random.default_rng(marker)
    arrays = {
        "train-images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels": np.full(n_train, marker, np.uint8),
        "test-images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test-labels": np.arange(n_test, dtype=np.uint8) % 10,
    }
    folder.mkdir(parents=True, exist_ok=True)
    for role in roles:
        write_idx(folder / (STEMS[role] + suffix), arrays[role])
    return arrays


# ---------------------------------------------------------------- the registry

def test_registry_holds_mnist_and_fashion_mnist_with_their_mirrors():
    assert DATASETS.names() == ["fashion-mnist", "mnist"]
    assert DATASETS["mnist"].mirrors == ("https://ossci-datasets.s3.amazonaws.com/mnist/",
                                         "https://storage.googleapis.com/cvdf-datasets/mnist/")
    assert DATASETS["fashion-mnist"].mirrors == ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
    for entry in DATASETS:
        assert [f.stem for f in entry.value.files] == list(STEMS.values())
        for f in entry.value.files:
            assert all(len(d) == 64 and int(d, 16) >= 0 for d in (*f.sha256_gz, f.sha256_raw))


def test_unknown_dataset_is_a_config_error_with_a_suggestion():
    with pytest.raises(ConfigError, match=r"unknown dataset 'fashon-mnist'; did you mean 'fashion-mnist'\? "
                                          r"\(valid: fashion-mnist, mnist\)"):
        load("fashon-mnist")


# ---------------------------------------------------------------- lookup order

def test_lookup_order_data_dir_then_env_then_cache_then_system(tmp_path, monkeypatch):
    write_dataset(tmp_path / "given" / "mnist", marker=1)
    write_dataset(tmp_path / "env", marker=2)  # directly in the folder, no subfolder
    write_dataset(tmp_path / "cache" / "mnist", marker=3)
    write_dataset(tmp_path / "system" / "mnist", marker=4)
    monkeypatch.setenv(datasets.ENV_VAR, str(tmp_path / "env"))

    expected = [("data-dir", "given/mnist", 1), ("OPTLAB_DATA", "env", 2), ("cache", "cache/mnist", 3),
                ("system", "system/mnist", 4)]
    for found_in, folder, marker in expected:
        data_dir = tmp_path / "given" if found_in == "data-dir" else None
        statuses = locate("mnist", data_dir)
        assert [s.found_in for s in statuses] == [found_in] * 4
        assert [s.role for s in statuses] == list(ROLES)
        assert {s.path.parent for s in statuses} == {tmp_path / folder}
        assert [s.verified for s in statuses] == [False] * 4  # fixtures are not the real files
        dataset = load("mnist", data_dir)
        assert dataset.source == str(tmp_path / folder)
        assert set(dataset.train_labels.tolist()) == {marker}
        if found_in == "OPTLAB_DATA":
            monkeypatch.delenv(datasets.ENV_VAR)
        elif found_in == "cache":
            for path in (tmp_path / folder).iterdir():
                path.unlink()


def test_named_subfolder_beats_files_directly_in_the_folder(tmp_path):
    write_dataset(tmp_path / "d", marker=5)
    write_dataset(tmp_path / "d" / "mnist", marker=6)
    assert set(load("mnist", tmp_path / "d").train_labels.tolist()) == {6}
    assert set(load("fashion-mnist", tmp_path / "d").train_labels.tolist()) == {5}


def test_each_file_is_looked_up_on_its_own_and_gz_beats_raw(tmp_path):
    write_dataset(tmp_path / "d", marker=7, roles=ROLES[:2])
    write_dataset(tmp_path / "d", marker=8, roles=ROLES[:1], suffix="")  # raw copy loses to the .gz
    write_dataset(tmp_path / "cache" / "mnist", marker=9, suffix="")
    statuses = locate("mnist", tmp_path / "d", verify=False)
    assert [(s.found_in, s.file, s.verified) for s in statuses] == [
        ("data-dir", "train-images-idx3-ubyte.gz", None),
        ("data-dir", "train-labels-idx1-ubyte.gz", None),
        ("cache", "t10k-images-idx3-ubyte", None),
        ("cache", "t10k-labels-idx1-ubyte", None),
    ]
    dataset = load("mnist", tmp_path / "d")
    assert set(dataset.train_labels.tolist()) == {7}
    assert dataset.source == f"{tmp_path / 'cache' / 'mnist'}, {tmp_path / 'd'}"


def test_verified_is_true_for_a_file_with_a_known_checksum(tmp_path, monkeypatch):
    arrays = write_dataset(tmp_path / "d" / "mnist", suffix="")
    raw = (tmp_path / "d" / "mnist" / STEMS["test-labels"]).read_bytes()
    spec = DATASETS["mnist"]
    files = tuple(dataclasses.replace(f, sha256_raw=hashlib.sha256(raw).hexdigest()) if f.role == "test-labels"
                  else f for f in spec.files)
    use_specs(monkeypatch, dataclasses.replace(spec, files=files))
    assert [s.verified for s in locate("mnist", tmp_path / "d")] == [False, False, False, True]
    assert arrays["test-labels"].tolist() == [0, 1, 2, 3]


def test_a_named_folder_that_does_not_exist_is_a_config_error(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=f"--data-dir {tmp_path / 'typo'}: no such folder"):
        locate("mnist", tmp_path / "typo")
    monkeypatch.setenv(datasets.ENV_VAR, str(tmp_path / "gone"))
    with pytest.raises(ConfigError, match=rf"\$OPTLAB_DATA {tmp_path / 'gone'}: no such folder"):
        load("mnist")


# ---------------------------------------------------------------- missing files, offline

def test_missing_files_offline_say_which_and_where_to_put_them(tmp_path):
    write_dataset(tmp_path / "d", roles=ROLES[:2])
    with pytest.raises(DataError) as info:
        load("mnist", tmp_path / "d")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("mnist: missing t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz (download failed")
    assert "train-images" not in message
    assert str(tmp_path / "cache" / "mnist") in message
    assert "--data-dir" in message and "$OPTLAB_DATA" in message
    assert not (tmp_path / "cache" / "mnist" / "t10k-images-idx3-ubyte.gz").exists()


def test_missing_everywhere_lists_all_four(tmp_path):
    statuses = locate("fashion-mnist")
    assert [(s.found_in, s.path, s.verified) for s in statuses] == [("missing", None, None)] * 4
    with pytest.raises(DataError, match="fashion-mnist: missing train-images-idx3-ubyte.gz, "
                                        "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
                                        "t10k-labels-idx1-ubyte.gz"):
        fetch("fashion-mnist")


@pytest.mark.parametrize("role, array, expected", [
    ("train-labels", np.zeros(5, np.uint8), "holds 6 images but {labels} holds 5 labels"),
    ("test-images", np.zeros((4, 28, 28), np.float32), "expected uint8 images of shape (N, 28, 28), found float32"),
    ("test-images", np.zeros((4, 784), np.uint8), "found uint8 (4, 784)"),
    ("train-images", np.zeros((6, 27, 27), np.uint8), "found uint8 (6, 27, 27)"),
    ("test-labels", np.zeros((4, 1), np.uint8), "expected a 1-D uint8 array of labels, found uint8 (4, 1)"),
    ("test-labels", np.array([0, 3, 10, 2], np.uint8), "label 10 out of range 0..9"),
    ("train-labels", np.zeros(6, np.int32), "found int32 (6,)"),
])
def test_load_rejects_inconsistent_files(tmp_path, role, array, expected):
    write_dataset(tmp_path / "d")
    write_idx(tmp_path / "d" / (STEMS[role] + ".gz"), array)
    with pytest.raises(DataError) as info:
        load("mnist", tmp_path / "d")
    labels = tmp_path / "d" / "train-labels-idx1-ubyte.gz"
    assert expected.format(labels=labels) in str(info.value)
    assert str(tmp_path / "d" / (STEMS[role] + ".gz")) in str(info.value)


def test_load_reports_a_corrupt_file_by_name(tmp_path):
    write_dataset(tmp_path / "d")
    path = tmp_path / "d" / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DataError, match=f"{path}: corrupt gzip data"):
        load("mnist", tmp_path / "d")


# ---------------------------------------------------------------- the real files (skipped when absent)

@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="real MNIST files not present")
def test_real_mnist_loads_with_the_published_numbers(monkeypatch):
    monkeypatch.setenv(datasets.ENV_VAR, str(SHARED_MNIST.parent))  # found as $OPTLAB_DATA/mnist
    statuses = locate("mnist")
    assert [(s.found_in, s.verified) for s in statuses] == [("OPTLAB_DATA", True)] * 4
    d = load("mnist")
    assert d.source == str(SHARED_MNIST)
    assert d.train_images.shape == (60000, 28, 28) and d.test_images.shape == (10000, 28, 28)
    assert d.train_images.dtype == np.uint8 and d.train_labels.dtype == np.uint8
    assert np.bincount(d.train_labels, minlength=10).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(d.test_labels, minlength=10).tolist() == MNIST_TEST_COUNTS
    assert sum(MNIST_TRAIN_COUNTS) == 60000 and sum(MNIST_TEST_COUNTS) == 10000
    assert d.train_images.mean() / 255 == pytest.approx(0.1307, abs=5e-5)


@pytest.mark.skipif(not SYSTEM_FASHION.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_the_system_folder(monkeypatch):
    monkeypatch.setattr(datasets, "SYSTEM_ROOTS", (SYSTEM_FASHION.parent,))
    statuses = locate("fashion-mnist")
    assert [(s.found_in, s.verified) for s in statuses] == [("system", True)] * 4
    d = load("fashion-mnist")
    assert d.source == str(SYSTEM_FASHION)
    assert d.train_images.shape == (60000, 28, 28) and d.test_images.shape == (10000, 28, 28)
    assert np.bincount(d.train_labels).tolist() == [6000] * 10  # Fashion-MNIST is balanced
    assert np.bincount(d.test_labels).tolist() == [1000] * 10


# ---------------------------------------------------------------- the CLI

def test_cli_data_info_shows_every_file(tmp_path, data_cli):
    write_dataset(tmp_path / "d" / "mnist")
    result = data_cli("data", "info", "--data-dir", tmp_path / "d")
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if "-ubyte" in line]
    assert len(rows) == 8
    assert sum("fashion-mnist" in r and "missing" in r for r in rows) == 4
    assert sum(str(tmp_path / "d" / "mnist") in r and "data-dir" in r and "NO" in r for r in rows) == 4


@pytest.mark.parametrize("args, expected", [
    (["data", "fetch", "mnsit"], "error: unknown dataset 'mnsit'; did you mean 'mnist'?"),
    (["data", "fetch", "mnist"], "error: mnist: missing train-images-idx3-ubyte.gz"),
])
def test_cli_errors_are_one_line_and_exit_2(data_cli, args, expected):
    result = data_cli(*args)
    assert result.exit_code == 2
    assert result.output.count("\n") == 1
    assert result.output.startswith(expected)


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="real MNIST files not present")
def test_a_folder_of_mnist_files_is_not_taken_for_fashion_mnist():
    # Same file names: only the checksums tell them apart. MNIST's folder serves MNIST ...
    assert [s.found_in for s in datasets.locate("mnist", SHARED_MNIST, verify=False)] == ["data-dir"] * 4
    # ... and is passed over for Fashion-MNIST, which (with no other copy here) is missing.
    assert [s.found_in for s in datasets.locate("fashion-mnist", SHARED_MNIST, verify=False)] == ["missing"] * 4


# ---------------------------------------------------------------- bad entries in place of files

@pytest.mark.parametrize("split", ["test", "train"])
def test_an_empty_split_is_a_data_error_naming_the_file(tmp_path, split):
    write_dataset(tmp_path / "d", **{f"n_{split}": 0})  # valid IDX files of 0 images and 0 labels
    images = tmp_path / "d" / (STEMS[f"{split}-images"] + ".gz")
    with pytest.raises(DataError, match=f"^{images}: the {split} split holds 0 images; it needs at least one$"):
        load("mnist", tmp_path / "d")


def test_an_empty_test_split_stops_a_run_with_one_line_not_a_division_by_zero(tmp_path, data_cli):
    write_dataset(tmp_path / "d", n_test=0)
    result = data_cli("run", "mnist", "--data-dir", tmp_path / "d", "--epochs", "1", "--batch-size", "2",
                      "--out", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert result.output == f"error: {tmp_path / 'd' / 't10k-images-idx3-ubyte.gz'}: the test split holds 0 images; " \
                            "it needs at least one\n"
