"""optlab.data.download and `optlab data fetch`: downloads from a local HTTP server (checked, cached, mirrors in
turn), without pooch or platformdirs, and never over a bad entry in a data folder."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import os
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from optlab.data import datasets
from optlab.data.datasets import DATASETS, ROLES, fetch, load
from optlab.data.idx import write_idx
from optlab.errors import DataError
from test_datasets import (  # noqa: F401  (isolated: autouse, as there)
    STEMS,
    _real_cache_root,
    closed_port,
    isolated,
    use_specs,
    write_dataset,
)


def test_without_pooch_a_download_is_a_data_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pooch", None)  # makes `import pooch` fail
    with pytest.raises(DataError, match=r"mnist: missing .* \(pooch is not installed"):
        fetch("mnist")


def test_without_platformdirs_the_named_folders_still_load_and_a_download_is_a_data_error(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "cache_root", _real_cache_root)  # the real one, which imports platformdirs
    monkeypatch.setitem(sys.modules, "platformdirs", None)  # makes `import platformdirs` fail
    arrays = write_dataset(tmp_path / "d", marker=3)
    labels = [label for label, _ in datasets.search_folders("mnist", tmp_path / "d")]
    assert labels == ["data-dir", "data-dir", "system"]  # no cache folder
    np.testing.assert_array_equal(load("mnist", tmp_path / "d").train_labels, arrays["train-labels"])
    with pytest.raises(DataError, match=r"^mnist: missing .* \(platformdirs is not installed: no cache to download to\)"
                                        r"\. Put the files \(\.gz or raw\) in a folder given by --data-dir"):
        fetch("mnist")


# ---------------------------------------------------------------- downloads from a local HTTP server

@pytest.fixture
def mirror(tmp_path):
    """Serve tmp_path/served over HTTP on 127.0.0.1; yields the URL prefix."""
    served = tmp_path / "served"
    served.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def serve_mnist_fixture(tmp_path, monkeypatch, mirrors, marker=1):
    """Write fixture .gz files to the served folder; register 'mnist' with their digests and `mirrors`."""
    arrays = write_dataset(tmp_path / "served", marker=marker)
    spec = DATASETS["mnist"]
    files = tuple(dataclasses.replace(
        f, sha256_gz=(hashlib.sha256((tmp_path / "served" / f.download_name).read_bytes()).hexdigest(),))
        for f in spec.files)
    use_specs(monkeypatch, dataclasses.replace(spec, files=files, mirrors=tuple(mirrors)))
    return arrays


def test_download_through_pooch_lands_in_the_cache(tmp_path, monkeypatch, mirror):
    dead = f"http://127.0.0.1:{closed_port()}/"
    arrays = serve_mnist_fixture(tmp_path, monkeypatch, [dead, mirror])  # the first mirror is down
    statuses = fetch("mnist")
    assert [(s.found_in, s.verified) for s in statuses] == [("cache", True)] * 4
    assert sorted(p.name for p in (tmp_path / "cache" / "mnist").iterdir()) == sorted(
        s + ".gz" for s in STEMS.values())
    dataset = load("mnist")
    assert dataset.source == str(tmp_path / "cache" / "mnist")
    for role in ROLES:
        np.testing.assert_array_equal(getattr(dataset, role.replace("-", "_")), arrays[role])


def test_load_downloads_only_what_is_missing(tmp_path, monkeypatch, mirror):
    serve_mnist_fixture(tmp_path, monkeypatch, [mirror], marker=2)
    write_dataset(tmp_path / "d", marker=3, roles=ROLES[:2])
    dataset = load("mnist", tmp_path / "d")
    assert set(dataset.train_labels.tolist()) == {3}
    assert sorted(p.name for p in (tmp_path / "cache" / "mnist").iterdir()) == [
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


def test_download_with_wrong_checksum_is_a_data_error_and_leaves_nothing(tmp_path, monkeypatch, mirror):
    serve_mnist_fixture(tmp_path, monkeypatch, [mirror])
    write_idx(tmp_path / "served" / "train-labels-idx1-ubyte.gz", np.zeros(6, np.uint8))  # not what was pinned
    with pytest.raises(DataError) as info:
        fetch("mnist")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("mnist: missing train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
                              "t10k-labels-idx1-ubyte.gz (download failed:")
    assert f"{mirror}train-labels-idx1-ubyte.gz: SHA-256 mismatch" in message
    assert sorted(p.name for p in (tmp_path / "cache" / "mnist").iterdir()) == ["train-images-idx3-ubyte.gz"]


def test_fetch_replaces_a_corrupt_cached_copy(tmp_path, monkeypatch, mirror):
    arrays = serve_mnist_fixture(tmp_path, monkeypatch, [mirror])
    write_dataset(tmp_path / "cache" / "mnist", marker=9)  # wrong content, unknown checksums
    assert [s.verified for s in fetch("mnist")] == [True] * 4
    np.testing.assert_array_equal(load("mnist").train_labels, arrays["train-labels"])


# ---------------------------------------------------------------- checks on load


def test_cli_data_fetch_downloads_and_shows_the_table(tmp_path, monkeypatch, mirror, data_cli):
    serve_mnist_fixture(tmp_path, monkeypatch, [mirror])
    result = data_cli("data", "fetch", "mnist")
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if "-ubyte" in line]
    assert len(rows) == 4 and all("cache" in r and "yes" in r for r in rows)


def _plant(path: Path, kind: str) -> None:
    path.unlink()
    if kind == "folder":
        path.mkdir()
    elif kind == "broken symlink":
        path.symlink_to(path.parent / "gone.gz")
    else:
        os.mkfifo(path)


@pytest.mark.parametrize("kind, problem", [("folder", "is a folder"),
                                           ("broken symlink", "is a broken symbolic link (to "),
                                           ("fifo", "is not a regular file")])
def test_a_bad_entry_in_place_of_a_file_is_named_instead_of_downloading(tmp_path, monkeypatch, mirror,
                                                                         data_cli, kind, problem):
    serve_mnist_fixture(tmp_path, monkeypatch, [mirror])  # a download would succeed: it must not be tried
    write_dataset(tmp_path / "d")
    bad = tmp_path / "d" / "t10k-labels-idx1-ubyte.gz"
    _plant(bad, kind)
    with pytest.raises(DataError) as info:
        load("mnist", tmp_path / "d")
    assert str(info.value).startswith(f"{bad} {problem}") and "\n" not in str(info.value)
    assert "mnist test-labels file; remove it or put the file there" in str(info.value)
    assert not (tmp_path / "cache").exists()
    for command in (["data", "info"], ["data", "fetch", "mnist"]):
        result = data_cli(*command, "--data-dir", tmp_path / "d")
        assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
        assert result.output.startswith(f"error: {bad} {problem}")
    assert not (tmp_path / "cache").exists()
