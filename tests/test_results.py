"""Run folders: atomic writes, the metrics contract, reading old/new/corrupt files, params round trip."""

import json
import math

import jax.numpy as jnp
import numpy as np
import pytest

from optlab import results
from optlab.errors import ResultsError


def record(**overrides):
    base = {key: {} for key in results.REQUIRED_KEYS}
    base.update(schema_version=results.SCHEMA_VERSION, run_id="r", status="completed", experiment="tiny")
    return base | overrides


def test_metrics_round_trip_with_arrays_and_non_finite_numbers(tmp_path):
    history = {"loss": np.array([1.0, np.nan, np.inf]), "params": jnp.ones((2, 2)), "step": np.arange(2)}
    results.write_metrics(tmp_path, record(history=history, summary={"x": np.float32(0.5), "ok": np.bool_(True)}))
    back = results.read_metrics(tmp_path)
    assert back["history"] == {"loss": [1.0, None, None], "params": [[1.0, 1.0], [1.0, 1.0]], "step": [0, 1]}
    assert back["summary"] == {"x": 0.5, "ok": True}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary file left behind


def test_write_refuses_a_record_that_breaks_the_contract(tmp_path):
    with pytest.raises(ValueError, match="lacks"):
        results.write_metrics(tmp_path, {"status": "completed"})
    with pytest.raises(ValueError, match="unknown status"):
        results.write_metrics(tmp_path, record(status="done"))


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", "empty file"),
        ('{"schema_version": 1, "run_id": "r"', "not valid JSON"),
        ("[1, 2]", "not an optlab metrics file"),
        (json.dumps(record(schema_version=results.SCHEMA_VERSION + 1)), "written by a newer optlab"),
        (json.dumps({"schema_version": 1, "run_id": "r"}), "incomplete metrics file"),
    ],
)
def test_read_explains_what_is_wrong_naming_the_file(tmp_path, text, reason):
    (tmp_path / "metrics.json").write_text(text)
    with pytest.raises(ResultsError) as error:
        results.read_metrics(tmp_path)
    assert reason in str(error.value) and str(tmp_path / "metrics.json") in str(error.value)


def test_older_schema_versions_are_read():
    assert results.SCHEMA_VERSION >= 1


# ----------------------------------------------------------------------------- figures: schema 1 and 2

V1_FIGURES = {"landscape": "landscape.png", "loss": "loss.png"}
V2_FIGURES = {"landscape": results.figure_entry("landscape.png", "the loss surface", steps=3),
              "loss": results.figure_entry("loss.png", "C − C* per step")}


def test_a_figure_entry_is_its_file_its_caption_and_what_it_holds():
    entry = results.figure_entry("weights.png", "W1 after epochs 1, 2", epochs=[1, 2])
    assert entry == {"path": "weights.png", "caption": "W1 after epochs 1, 2", "epochs": [1, 2]}
    assert results.figure_path(entry) == "weights.png" == results.figure_path("weights.png")


def test_figures_of_reads_both_schemas_as_schema_2_entries():
    assert results.figures_of(record(schema_version=1, figures=V1_FIGURES)) == {
        "landscape": {"path": "landscape.png"}, "loss": {"path": "loss.png"}}
    assert results.figures_of(record(figures=V2_FIGURES)) == V2_FIGURES


def test_writing_a_schema_1_record_upgrades_it_whole_and_leaves_the_callers_copy_alone(tmp_path):
    old = record(schema_version=1, figures=dict(V1_FIGURES))
    results.write_metrics(tmp_path, old)
    back = results.read_metrics(tmp_path)
    assert back["schema_version"] == results.SCHEMA_VERSION == 2
    assert back["figures"] == {"landscape": {"path": "landscape.png"}, "loss": {"path": "loss.png"}}
    assert old["schema_version"] == 1 and old["figures"] == V1_FIGURES
    with pytest.raises(ValueError, match="cannot rewrite a schema 3 record"):
        results.write_metrics(tmp_path, record(schema_version=3))
    assert results.read_metrics(tmp_path)["schema_version"] == 2  # the refused write changed nothing


@pytest.mark.parametrize("version, figures", [(1, V1_FIGURES), (2, V2_FIGURES)], ids=["schema1", "schema2"])
def test_read_accepts_either_schemas_figures(tmp_path, version, figures):
    results.write_json(tmp_path / "metrics.json", record(schema_version=version, figures=figures))
    assert results.read_metrics(tmp_path)["figures"] == figures  # read as written, not rewritten


@pytest.mark.parametrize("entry, reason", [
    ({"file": "loss.png"}, 'figures.loss is an object without a "path" (the file name)'),
    ({"path": 3}, "figures.loss.path is a number, expected a file name"),
    ({"path": "loss.png", "caption": ["a"]}, "figures.loss.caption is a list, expected text"),
    (["loss.png"], "figures.loss is a list, expected a file name"),
    ("lo\0ss.png", "figures.loss is text, expected a file name"),
])
def test_a_malformed_figure_entry_is_refused_naming_it(tmp_path, entry, reason):
    assert results.check_types(record(figures={"loss": entry})) == reason


def test_a_schema_newer_than_2_is_refused_with_the_version_it_reads(tmp_path):
    results.write_json(tmp_path / "metrics.json", record(schema_version=3, figures={"x": {"path": "x.png"}}))
    with pytest.raises(ResultsError, match=r"newer optlab \(schema 3, this one reads up to 2\); upgrade optlab"):
        results.read_metrics(tmp_path)


@pytest.mark.parametrize("version, figures", [(1, V1_FIGURES), (2, V2_FIGURES)], ids=["schema1", "schema2"])
def test_overwrite_knows_the_figures_of_either_schema_as_optlabs(tmp_path, version, figures):
    folder = tmp_path / "r"
    folder.mkdir()
    results.write_json(folder / "metrics.json", record(schema_version=version, figures=figures))
    for name in ("landscape.png", "loss.png", "params.npz"):
        (folder / name).write_bytes(b"optlab's")
    assert [f.name for f in results.replaceable_files(folder)] == ["landscape.png", "loss.png", "metrics.json",
                                                                   "params.npz"]
    (folder / "stray.png").write_bytes(b"not listed")
    with pytest.raises(ResultsError, match="'stray.png' is not a file optlab wrote"):
        results.create_run_dir(folder, overwrite=True)
    (folder / "stray.png").unlink()
    assert [p.name for p in results.create_run_dir(folder, overwrite=True).iterdir()] == [results.LOCK_FILE]
    results.release_run_dir(folder)
    assert not any(folder.iterdir())  # emptied, and the claim ended with its lock file


def test_failed_write_leaves_the_old_file_intact(tmp_path):
    results.write_metrics(tmp_path, record(run_id="first"))
    with pytest.raises(TypeError):  # JSON cannot hold this object: nothing may be half-written
        results.write_metrics(tmp_path, record(summary={"bad": object()}))
    assert results.read_metrics(tmp_path)["run_id"] == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_run_ids_are_unique_even_in_the_same_second():
    ids = {results.new_run_id("tiny-gd") for _ in range(200)}
    assert len(ids) == 200 and all(i.startswith("tiny-gd-") for i in ids)


def test_create_run_dir_probes_writability_and_refuses_to_clobber(tmp_path):
    folder = results.create_run_dir(tmp_path / "a" / "b")
    assert folder.is_dir() and [p.name for p in folder.iterdir()] == [results.LOCK_FILE]  # claimed, else empty
    results.write_metrics(folder, record(run_id="b", figures={"loss": "loss.png"}))
    for name in ("params.npz", "checkpoint.npz", "loss.png", ".metrics.json.x1.tmp"):
        (folder / name).write_bytes(b"optlab's")
    with pytest.raises(ResultsError, match="already exists"):
        results.create_run_dir(folder)
    assert [p.name for p in results.create_run_dir(folder, overwrite=True).iterdir()] == [results.LOCK_FILE]
    results.release_run_dir(folder)
    assert not any(folder.iterdir())  # the lock file goes with the claim


@pytest.mark.parametrize("plant, reason", [
    ({"notes.txt": "mine"}, "'notes.txt' is not a file optlab wrote"),
    ({"other-run/metrics.json": "{}"}, "'other-run' is not a file optlab wrote"),
    ({"figure.png": "not listed"}, "'figure.png' is not a file optlab wrote"),
])
def test_overwrite_refuses_a_run_folder_holding_anything_optlab_did_not_write(tmp_path, plant, reason):
    folder = tmp_path / "r"
    results.create_run_dir(folder)
    results.write_metrics(folder, record(run_id="r"))
    for name, text in plant.items():
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_text(text)
    before = sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
    with pytest.raises(ResultsError, match=reason):
        results.create_run_dir(folder, overwrite=True)
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) == before


@pytest.mark.parametrize("metrics, reason", [
    (None, "not an optlab run folder"),
    ("not json", "not an optlab run folder"),
    (record(run_id="someone-else"), "belongs to run 'someone-else'"),
])
def test_overwrite_refuses_a_folder_that_is_not_a_run_folder(tmp_path, metrics, reason):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "source.py").write_text("print('precious')")
    if isinstance(metrics, dict):
        results.write_metrics(folder, metrics)
    elif metrics is not None:
        (folder / "metrics.json").write_text(metrics)
    with pytest.raises(ResultsError, match=reason):
        results.create_run_dir(folder, overwrite=True)
    assert (folder / "source.py").read_text() == "print('precious')"


def test_params_round_trip_by_path(tmp_path):
    params = [{"w": np.arange(6.0).reshape(2, 3), "b": np.zeros(2)}, {"w": np.ones((1, 2)), "b": np.array([math.pi])}]
    results.save_params(tmp_path, params)
    loaded = results.load_params(tmp_path)
    assert set(loaded) == {"0/w", "0/b", "1/w", "1/b"}
    np.testing.assert_array_equal(loaded["0/w"], params[0]["w"])
    assert loaded["1/b"][0] == math.pi
    with pytest.raises(ResultsError, match="no saved parameters"):
        results.load_params(tmp_path / "nowhere")


def test_find_runs_any_depth(tmp_path):
    for path in ("a/r1", "a/b/c/r2", "r3"):
        (tmp_path / path).mkdir(parents=True)
        (tmp_path / path / "metrics.json").write_text("{}")
    found = [p.relative_to(tmp_path).as_posix() for p in results.find_runs(tmp_path, tmp_path / "a")]
    assert sorted(found) == ["a/b/c/r2", "a/r1", "r3"]


def test_written_files_are_readable_by_others_as_the_umask_allows(tmp_path):
    import os

    results.write_metrics(tmp_path, record())
    mode = (tmp_path / "metrics.json").stat().st_mode & 0o777
    assert mode == 0o666 & ~results._UMASK and os.access(tmp_path / "metrics.json", os.R_OK)
