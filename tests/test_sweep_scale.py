"""Sweeps at scale: thousands of configurations as one table that compare, report and --best read,
per-configuration figures only on request, and heat maps readable at any size."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from matplotlib.colors import LogNorm
from typer.testing import CliRunner

from optlab import config, plots, results, sweep
from optlab.cli import app
from optlab.cli.commands_sweep import SweepBar
from optlab.errors import ResultsError
from optlab.experiments import tiny
from optlab.reporting import compare, report
from optlab.results import table
from optlab.sweep import summary as sweep_summary


def build(base: dict, grid: dict) -> sweep.Sweep:
    return sweep.build([config.Layer(base, "flag")], [config.Layer(grid, "flag")])


def values(lo: float, ratio: float, n: int) -> str:
    return ",".join(f"{lo * ratio**i:.6g}" for i in range(n))


def test_thousands_of_tiny_configurations_are_one_table_that_compare_and_best_read_exactly(tmp_path):
    # 60 × 50 = 3,000 configurations, learning rates up to ~3.5 so that a band of them diverges
    s = build({"experiment": "tiny", "optimizer": "momentum", "steps": "5"},
              {"lr": values(0.01, 1.1, 60), "momentum": ",".join(f"{0.02 * i:g}" for i in range(50))})
    out = sweep.run(s, tmp_path, SweepBar(quiet=True), best="final_loss")
    assert out.layout == "table" and len(out.rows) == 3000
    files = {p.name for p in out.sweep_dir.iterdir() if not p.name.startswith(".")}  # the folder's lock aside
    assert files == {"runs.npz", "summary.csv", "summary.json", "heatmap.png", "best.toml"}
    runs, skipped = compare.load_runs([tmp_path])
    assert not skipped and [r.record["run_id"] for r in runs] == [row["run_id"] for row in out.rows]
    assert [r.record["summary"].get("final_loss") for r in runs] == [row.get("final_loss") for row in out.rows]
    statuses = {r.record["status"] for r in runs}
    assert statuses == {"completed", "diverged"}
    # --best read back from the table: the same winner as the sweep picked
    table_rows = [{**row, "config": run.record["config"]} for row, run in zip(out.rows, runs)]
    assert sweep_summary.pick_best(table_rows, "final_loss")["run_id"] == out.best["run_id"]
    # a few configurations re-run singly give exactly the table's numbers
    diverged = next(i for i, r in enumerate(runs) if r.record["status"] == "diverged")
    best = [row["run_id"] for row in out.rows].index(out.best["run_id"])
    for i in (0, best, diverged, 2999):
        alone = tiny.finish(None, s.configs[i], *tiny.simulate(s.configs[i]))
        record = runs[i].record
        assert record["status"] == alone.status
        assert record["history"]["loss"] == alone.history["loss"].tolist()
        assert record["history"]["params"] == alone.history["params"].tolist()
        assert record["summary"]["final_loss"] == alone.summary["final_loss"]
        assert record["analysis"]["grad_norm"] == pytest.approx(alone.analysis["grad_norm"], rel=1e-12, abs=1e-300)
        assert record["analysis"]["critical_point"] == alone.analysis["critical_point"]
        np.testing.assert_array_equal(table.read_params(out.sweep_dir / "runs.npz", i)["w"], alone.params["w"])
    lines = (out.sweep_dir / "summary.csv").read_text().splitlines()
    assert len(lines) == 3001


def test_a_table_holds_exactly_what_the_run_folders_hold(tmp_path):
    s = build({"experiment": "tiny", "optimizer": "momentum", "steps": "12"},
              {"lr": "0.05,4.0", "momentum": "0,0.9", "seed": "0..1"})
    folders = sweep.run(s, tmp_path / "f", SweepBar(quiet=True), layout="folders")
    tabled = sweep.run(s, tmp_path / "t", SweepBar(quiet=True), layout="table")
    records = table.read_table(tabled.sweep_dir / "runs.npz")
    assert len(records) == 8 and any(r["status"] == "diverged" for r in records)
    for row, record in zip(folders.rows, records):
        on_disk = results.read_metrics(row["path"])
        for r in (record, on_disk):  # the only numbers two runs of one sweep do not share
            r["summary"].pop("wall_time_s"), r["summary"].pop("compile_time_s")
        assert record == on_disk | {"sweep_id": tabled.sweep_id}
        np.testing.assert_array_equal(table.read_params(tabled.sweep_dir / "runs.npz", records.index(record))["w"],
                                      results.load_params(row["path"])["w"])


def test_table_round_trip_of_ragged_missing_and_non_numeric_series(tmp_path):
    base = {"schema_version": 2, "experiment": "x", "environment": {"jax": "1"}, "analysis": {}, "figures": {}}
    records = [
        base | {"run_id": "a", "status": "completed", "config": {"lr": 0.1, "seed": 0, "optimizer": "gd"},
                "summary": {"final_loss": 1.5, "steps": 3},
                "history": {"step": np.arange(4), "loss": np.array([3.0, np.nan, np.inf, 1.5]),
                            "per_depth": [[1.0], [1.0, 2.0]], "note": ["x", "y"]}},
        base | {"run_id": "b", "status": "failed", "error": "boom", "config": {"lr": 0.2, "seed": 0, "optimizer": "gd"},
                "summary": {}, "history": {"step": [0, 1], "loss": [2.0, None]}},
        base | {"run_id": "c", "status": "running", "config": {"lr": 0.3, "seed": 1, "optimizer": "gd"},
                "summary": {}, "history": {}},
    ]
    path = table.write_table(tmp_path / "runs.npz", records, [{"w": np.array([1.0, 2.0])}, None, None])
    back = table.read_table(path)
    assert back == [results.to_jsonable(r) for r in records]  # NaN and inf read as null, as metrics.json writes them
    assert back[0]["history"]["loss"] == [3.0, None, None, 1.5] and back[1]["error"] == "boom"
    assert table.read_params(path, 0)["w"].tolist() == [1.0, 2.0] and table.read_params(path, 1) == {}


def rewrite_header(path, change) -> None:
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    header = json.loads(bytes(arrays["header.json"]).decode())
    change(header)
    arrays["header.json"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    np.savez(path, **arrays)


def test_a_newer_or_corrupt_table_is_skipped_with_a_message_and_the_rest_read(tmp_path):
    record = {"schema_version": 2, "run_id": "a", "status": "completed", "experiment": "tiny",
              "config": {"lr": 0.1, "seed": 0, "optimizer": "gd"}, "environment": {}, "history": {},
              "summary": {"final_loss": 0.5}, "analysis": {}, "figures": {}}
    for name in ("good", "newer", "newer_table", "corrupt"):
        (tmp_path / name).mkdir()
        table.write_table(tmp_path / name / "runs.npz", [record])
    rewrite_header(tmp_path / "newer" / "runs.npz", lambda h: h["shared"].update(schema_version=99))
    rewrite_header(tmp_path / "newer_table" / "runs.npz", lambda h: h.update(table_version=99))
    (tmp_path / "corrupt" / "runs.npz").write_bytes(b"PK\x03\x04 not a zip")
    runs, skipped = compare.load_runs([tmp_path])
    assert [r.record["run_id"] for r in runs] == ["a"]
    reasons = {s.path.parent.name: s.reason for s in skipped}
    assert "newer optlab (schema 99" in reasons["newer"] and "upgrade optlab" in reasons["newer"]
    assert "newer optlab (sweep table version 99" in reasons["newer_table"]
    assert "cannot read the sweep table" in reasons["corrupt"]
    with pytest.raises(ResultsError, match="not an optlab sweep table"):
        np.savez(tmp_path / "other.npz", x=np.zeros(2))
        table.read_table(tmp_path / "other.npz")


def test_figures_best_k_draws_only_those_and_report_finds_them(tmp_path):
    s = build({"experiment": "tiny", "optimizer": "momentum", "steps": "10"},
              {"lr": "0.02,0.1,0.3", "momentum": "0,0.5"})
    out = sweep.run(s, tmp_path, SweepBar(quiet=True), layout="table", figures=2)
    best_two = [out.rows[i]["run_id"] for i in sweep_summary.ranked(out.rows, "final_loss")[:2]]
    drawn = sorted(p.name for p in out.sweep_dir.iterdir() if p.is_dir())
    assert drawn == sorted(best_two)
    runs, _ = compare.load_runs([out.sweep_dir])
    found = [f for f in report.run_figures(runs) if f.file is not None]
    assert sorted({f.run.record["run_id"] for f in found}) == sorted(best_two)
    assert {f.name for f in found} == {"landscape", "loss"}
    written = CliRunner().invoke(app, ["report", str(out.sweep_dir), "--out", str(tmp_path / "r.html")])
    assert written.exit_code == 0, written.output
    page = (tmp_path / "r.html").read_text()
    assert all(f"<h3>{row['run_id']}</h3>" in page for row in out.rows)  # every configuration of the table
    shown = {row["run_id"] for row in out.rows if f"{row['run_id']}: the loss surface" in page}
    assert shown == set(best_two)  # and the figures of only those drawn
    folders = sweep.run(s, tmp_path / "f", SweepBar(quiet=True), layout="folders", figures=1)
    with_png = [row["run_id"] for row in folders.rows if (folders.sweep_dir / row["run_id"] / "loss.png").exists()]
    assert with_png == [folders.rows[sweep_summary.ranked(folders.rows, "final_loss")[0]]["run_id"]]


def test_an_interrupted_table_sweep_records_every_configuration_interrupted(tmp_path, monkeypatch):
    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tiny, "run_lanes", stop)
    s = build({"experiment": "tiny", "steps": "5"}, {"lr": "0.1,0.2,0.3"})
    with pytest.raises(KeyboardInterrupt):
        sweep.run(s, tmp_path, SweepBar(quiet=True), layout="table")
    (found,) = tmp_path.glob("*/runs.npz")
    assert [r["status"] for r in table.read_table(found)] == ["interrupted"] * 3


def test_heatmap_layout_log_scale_masks_diverged_cells_and_annotates_only_small_grids(tmp_path):
    big = np.geomspace(0.1, 50, 400).reshape(20, 20)
    big[15:, :3] = np.nan
    big[19, 19] = np.inf
    layout = plots.heatmap_layout(big, log=True)
    assert isinstance(layout.norm, LogNorm) and (layout.norm.vmin, layout.norm.vmax) == (0.1, big[19, 18])
    np.testing.assert_array_equal(layout.values.mask, ~np.isfinite(big))
    assert not layout.annotate and layout.row_ticks == list(range(0, 20, 2)) and len(layout.col_ticks) <= 16
    assert plots.heatmap_layout(big[:3, :3], log=True).annotate
    assert not isinstance(plots.heatmap_layout(np.array([[-1.0, 2.0]]), log=True).norm, LogNorm)  # a log of -1
    assert not isinstance(plots.heatmap_layout(np.array([[1.0, 2.0]])).norm, LogNorm)  # one decade: linear
    assert plots.heatmap_layout(np.array([[1.0, 2000.0]])).norm.__class__ is LogNorm
    assert len(plots.heatmap_layout(np.ones((100, 100))).row_ticks) == 15  # every 7th of 100
    path = plots.heatmap(tmp_path / "h.png", big, [str(i) for i in range(20)], [str(i) for i in range(20)],
                         xlabel="momentum", ylabel="lr", title="t", log=True)
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_heatmap_title_says_what_is_shown():
    s = build({"experiment": "tiny", "optimizer": "momentum"}, {"lr": "0.1,0.2", "momentum": "0.5,0.9"})
    rows = [{"status": "completed"}, {"status": "diverged"}, {"status": "completed"}, {"status": "completed"}]
    title, colorbar = sweep_summary.heatmap_title(s, rows, "final_loss", "")
    assert title == "tiny momentum: final loss of 4 configurations\nred: diverged or no value (1 configuration)"
    assert colorbar == "final loss (lower is better, log scale)" and "final final" not in title


@pytest.mark.parametrize("args, message", [
    (["--layout", "rows"], "--layout rows: choose from auto, folders, table"),
    (["--figures", "some"], "--figures some: give all, none, or a number K"),
])
def test_bad_layout_or_figures_is_one_line_exit_2_and_no_folder(tmp_path, args, message):
    result = CliRunner().invoke(app, ["sweep", "tiny", "--lr", "0.1,0.2", *args, "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and result.output.startswith(f"error: {message}")
    assert result.output.count("\n") == 1 and not (tmp_path / "o").exists()


def test_summary_json_names_the_layout(tmp_path):
    s = build({"experiment": "tiny", "steps": "3"}, {"lr": "0.1,0.2"})
    out = sweep.run(s, tmp_path, SweepBar(quiet=True), layout="table")
    summary = json.loads((out.sweep_dir / "summary.json").read_text())
    assert summary["layout"] == "table" and summary["table"] == "runs.npz"
    assert all(row["path"] is None for row in summary["runs"]) and not math.isnan(summary["runs"][0]["final_loss"])


def test_compare_overlays_at_most_the_first_runs_of_a_big_sweep(tmp_path, write_run, monkeypatch):
    monkeypatch.setattr(report, "MAX_OVERLAID", 2)
    for seed in range(3):
        write_run(tmp_path, experiment="mnist", seed=seed)
    runs, _ = compare.load_runs([tmp_path])
    figures = report.compare_figures(compare.make_rows(runs), tmp_path / "out")
    captions = [f.caption for f in figures]
    assert "mnist: training loss of the first 2 of 3 runs (in the table's order: --sort and --where choose)" in captions
