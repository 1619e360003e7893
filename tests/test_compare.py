"""`optlab compare`: discovery, skipping, filtering, sorting, seed groups, the four formats, the figures."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from optlab.cli import app
from optlab.errors import ConfigError, ResultsError
from optlab.reporting import compare as cmp
from optlab.reporting import tables

PNG = b"\x89PNG\r\n\x1a\n"
TINY_GD = ["tiny-gd-s0", "tiny-gd-s1", "tiny-gd-s2"]
DEFAULT_ORDER = ["mnist-adam-s0", "mnist-adam-s1", "tiny-adam-s0", *TINY_GD]


@pytest.fixture
def results(tmp_path: Path, write_run) -> Path:
    """Six good runs at different depths (3 seeds of tiny gd, 1 tiny adam, 2 seeds of mnist adam), 3 bad files."""
    root = tmp_path / "results"
    for seed, loss, wall in ((0, 1.0, 2.0), (1, 2.0, 4.0), (2, 4.0, 9.0)):
        write_run(root, subdir="sweep-a", run_id=f"tiny-gd-s{seed}", seed=seed,
                  summary={"final_loss": loss, "wall_time_s": wall})
    write_run(root, subdir="deep/nested", run_id="tiny-adam-s0", optimizer="adam", lr=0.1,
              summary={"final_loss": 0.5, "wall_time_s": 1.0})
    mnist = dict(optimizer="adam", lr=0.001, lr_schedule="anneal")
    write_run(root, "mnist", run_id="mnist-adam-s0", seed=0, **mnist, summary={
        "final_loss": 0.2, "test_error": 0.012, "best_test_error": 0.011, "time_to_target_s": 30.0,
        "wall_time_s": 100.0})
    write_run(root, "mnist", run_id="mnist-adam-s1", seed=1, **mnist, data_dir="/elsewhere", summary={
        "final_loss": 0.3, "test_error": 0.014, "best_test_error": 0.013, "time_to_target_s": None,
        "wall_time_s": 120.0})
    (root / "corrupt").mkdir()
    (root / "corrupt" / "metrics.json").write_text('{"schema_version": 1, "run_id": "trunc')
    (root / "empty").mkdir()
    (root / "empty" / "metrics.json").write_text("")
    write_run(root, run_id="future", schema_version=99)
    return root


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def ids(rows) -> list[str]:
    return [r.values["run"] for r in rows]


# ----------------------------------------------------------------------------- discovery


def test_load_runs_finds_every_depth_and_skips_bad_files_with_a_reason(results: Path) -> None:
    runs, skipped = cmp.load_runs([results])
    assert sorted(r.record["run_id"] for r in runs) == sorted(DEFAULT_ORDER)
    reasons = {s.path.parent.name: s.reason for s in skipped}
    assert set(reasons) == {"corrupt", "empty", "future"}
    assert "not valid JSON" in reasons["corrupt"]
    assert "empty" in reasons["empty"]
    assert "newer optlab (schema 99" in reasons["future"]


def test_several_paths_and_a_run_folder_itself_are_accepted_once_each(results: Path) -> None:
    runs, _ = cmp.load_runs([results / "sweep-a", results / "sweep-a" / "tiny-gd-s0", results / "deep"])
    assert sorted(r.record["run_id"] for r in runs) == ["tiny-adam-s0", *TINY_GD]


def test_missing_path_is_a_results_error(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="no such file or folder"):
        cmp.load_runs([tmp_path / "nope"])


# ----------------------------------------------------------------------------- --where and --sort


@pytest.mark.parametrize("where, expected", [
    (["optimizer=adam"], ["mnist-adam-s0", "mnist-adam-s1", "tiny-adam-s0"]),
    (["lr=0.25"], TINY_GD),
    (["lr=2.5e-1"], TINY_GD),  # numbers compare as numbers, not as text
    (["experiment=mnist", "optimizer=adam"], ["mnist-adam-s0", "mnist-adam-s1"]),
    (["optimizer=gd", "optimizer=adam", "seed=1"], ["mnist-adam-s1", "tiny-gd-s1"]),  # same key: either
    (["hidden=225,225"], ["mnist-adam-s0", "mnist-adam-s1"]),
    (["hidden=225"], []),
    (["status=completed", "lr_schedule=anneal"], ["mnist-adam-s0", "mnist-adam-s1"]),
])
def test_where_matches_config_values_by_type(results: Path, where: list[str], expected: list[str]) -> None:
    runs, _ = cmp.load_runs([results])
    kept = cmp.filter_runs(runs, cmp.parse_where(where))
    assert sorted(r.record["run_id"] for r in kept) == expected


def test_where_rejects_unknown_keys_and_mistyped_values(results: Path) -> None:
    runs, _ = cmp.load_runs([results])
    with pytest.raises(ConfigError, match=r"unknown key 'optimiser'; known keys: .*optimizer"):
        cmp.filter_runs(runs, cmp.parse_where(["optimiser=adam"]))
    with pytest.raises(ConfigError, match="lr is a number"):
        cmp.filter_runs(runs, cmp.parse_where(["lr=fast"]))
    with pytest.raises(ConfigError, match="expected key=value"):
        cmp.parse_where(["adam"])


@pytest.mark.parametrize("by, descending, expected", [
    (None, False, DEFAULT_ORDER),
    ("final_loss", False, ["mnist-adam-s0", "mnist-adam-s1", "tiny-adam-s0", *TINY_GD]),
    ("wall_time", True, ["mnist-adam-s1", "mnist-adam-s0", "tiny-gd-s2", "tiny-gd-s1", "tiny-gd-s0", "tiny-adam-s0"]),
    ("lr", True, [*TINY_GD, "tiny-adam-s0", "mnist-adam-s0", "mnist-adam-s1"]),
    # Runs without a test error go last, in the default order, whichever the direction.
    ("test_error", True, ["mnist-adam-s1", "mnist-adam-s0", "tiny-adam-s0", *TINY_GD]),
])
def test_sort_orders_rows_and_puts_missing_values_last(results: Path, by, descending, expected) -> None:
    runs, _ = cmp.load_runs([results])
    assert ids(cmp.sort_rows(cmp.make_rows(runs), by, descending)) == expected


@pytest.mark.parametrize("actual, raw, expected", [
    (True, "yes", True), (False, "true", False), (None, "none", True), (0.001, "1e-3", True),
    (3, "3.0", True), ([0.5, 1.5], "0.5, 1.5", True), ([0.5, 1.5], "0.5", False), ("adam", "Adam", False),
])
def test_where_value_comparison(actual, raw, expected) -> None:
    assert cmp._matches(actual, raw, "key") is expected


def test_unknown_sort_column_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"--sort loss: unknown column; known columns: .*final_loss.*wall_time"):
        cmp.sort_column("loss")


# ----------------------------------------------------------------------------- grouping


def test_stat_is_mean_and_sample_std() -> None:
    s = cmp.stat([1.0, 2.0, 4.0])
    assert s.n == 3 and s.mean == pytest.approx(7 / 3)
    # by hand: deviations -4/3, -1/3, 5/3 -> squares sum 42/9, / (n-1) = 7/3
    assert s.std == pytest.approx(math.sqrt(7 / 3))
    assert cmp.stat([3.0, None]) == cmp.Stat(3.0, None, 1)  # one value: no spread, not zero
    assert cmp.stat([None, None]) == cmp.Stat(None, None, 0)


def test_group_by_seed_folds_seeds_but_not_configs(results: Path) -> None:
    runs, _ = cmp.load_runs([results])
    rows = cmp.sort_rows(cmp.group_by_seed(cmp.make_rows(runs)))
    assert [(r.values["experiment"], r.values["optimizer"], r.n) for r in rows] == [
        ("mnist", "adam", 2), ("tiny", "adam", 1), ("tiny", "gd", 3)]
    mnist, adam, gd = rows
    assert gd.values["seed"] == [0, 1, 2] and gd.values["run"] == TINY_GD
    assert gd.values["final_loss"].mean == pytest.approx(7 / 3)
    assert gd.values["final_loss"].std == pytest.approx(1.5275252, rel=1e-6)
    assert gd.values["wall_time_s"].mean == pytest.approx(5.0)  # (2 + 4 + 9) / 3
    assert gd.values["wall_time_s"].std == pytest.approx(math.sqrt(13))  # (9 + 1 + 16) / 2
    # data_dir differs between the two mnist seeds: a path, so they still group
    assert mnist.values["test_error"].mean == pytest.approx(0.013)
    assert mnist.values["test_error"].std == pytest.approx(0.001 * math.sqrt(2))
    assert mnist.values["time_to_target_s"] == cmp.Stat(30.0, None, 1)
    assert adam.values["final_loss"] == cmp.Stat(0.5, None, 1)
    assert tables.cells(gd)[:6] == ["tiny-gd-s0 (+2)", "tiny", "gd", "0.25 constant", "0,1,2", "3"]
    assert "2.333 ± 1.528" in tables.cells(gd)
    assert "30s (1 of 2)" in tables.cells(mnist)  # mean over the one seed that reached the target


def test_a_group_lists_its_seeds_numerically(tmp_path: Path, write_run) -> None:
    for seed in (10, 2):
        write_run(tmp_path, run_id=f"run-{seed}", seed=seed)
    runs, _ = cmp.load_runs([tmp_path])
    (row,) = cmp.group_by_seed(cmp.make_rows(runs))
    assert row.values["seed"] == [2, 10] and tables.cells(row)[4] == "2,10"


# ----------------------------------------------------------------------------- formats


def test_csv_parses_with_one_row_per_run(results: Path) -> None:
    result = invoke("compare", results, "--format", "csv", "--no-figures")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["run"] for r in rows] == DEFAULT_ORDER
    first = rows[0]
    assert (first["experiment"], first["optimizer"], float(first["lr"]), first["lr_schedule"]) == (
        "mnist", "adam", 0.001, "anneal")
    assert float(first["test_error"]) == 0.012 and float(first["wall_time_s"]) == 100.0
    assert rows[1]["time_to_target_s"] == ""  # never reached: blank, not 0
    assert float(rows[-1]["final_loss"]) == 4.0 and rows[-1]["steps"] == "3"


def test_grouped_csv_has_mean_std_and_n_columns(results: Path) -> None:
    result = invoke("compare", results, "--format", "csv", "--group-by-seed", "--no-figures")
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["runs"] for r in rows] == ["mnist-adam-s0;mnist-adam-s1", "tiny-adam-s0", ";".join(TINY_GD)]
    gd = rows[2]
    assert (gd["n"], gd["seeds"], gd["final_loss_n"]) == ("3", "0;1;2", "3")
    assert float(gd["final_loss_mean"]) == pytest.approx(7 / 3)
    assert float(gd["final_loss_std"]) == pytest.approx(math.sqrt(7 / 3))
    assert rows[1]["final_loss_std"] == ""


def test_json_parses_and_carries_config(results: Path) -> None:
    result = invoke("compare", results, "--format", "json", "--group-by-seed", "--no-figures")
    data = json.loads(result.stdout)
    assert [d["runs"] for d in data][2] == TINY_GD
    assert data[0]["test_error"]["mean"] == pytest.approx(0.013)
    assert data[0]["test_error"]["std"] == pytest.approx(0.0014142136)
    assert data[0]["time_to_target_s"] == {"mean": 30.0, "std": None, "n": 1}
    assert "seed" not in data[2]["config"] and data[2]["config"]["optimizer"] == "gd"


def test_markdown_is_a_well_formed_table(results: Path) -> None:
    result = invoke("compare", results, "--format", "markdown", "--no-figures", "--sort", "final_loss")
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2 + 6
    widths = {line.count("|") - line.count("\\|") for line in lines}
    assert widths == {13}  # 12 columns
    assert all(line.startswith("|") and line.endswith("|") for line in lines)
    assert set(lines[1].replace("|", "").replace("-", "").replace(":", "")) == set()
    assert [line.split("|")[1].strip() for line in lines[2:]] == [
        "mnist-adam-s0", "mnist-adam-s1", "tiny-adam-s0", *TINY_GD]
    assert "| 0.001 anneal |" in lines[2] and "| 1.20% |" in lines[2]


def test_table_shows_every_run_fits_the_terminal_and_reports_skips_once(results: Path) -> None:
    result = CliRunner().invoke(app, ["compare", str(results), "--no-figures"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("6 runs")
    lines = result.stdout.splitlines()
    rule = next(i for i, line in enumerate(lines) if line.strip().startswith("─"))
    assert [line.split()[0] for line in lines[rule + 1:] if line.strip()] == DEFAULT_ORDER
    skips = [line for line in result.stderr.splitlines() if line.startswith("skipped")]
    assert len(skips) == 3 and sum("corrupt" in s for s in skips) == 1
    runs, _ = cmp.load_runs([results])
    console = Console(width=72, record=True, file=io.StringIO())
    console.print(tables.render(cmp.make_rows(runs), "table"))
    assert max(len(line) for line in console.export_text().splitlines()) <= 72


# ----------------------------------------------------------------------------- exit codes


def test_no_runs_found_is_one_line_and_exit_1(tmp_path: Path) -> None:
    result = invoke("compare", tmp_path)
    assert result.exit_code == 1
    assert result.stderr.strip() == f"no runs found in {tmp_path}"


def test_nothing_matching_where_is_exit_1(results: Path) -> None:
    result = invoke("compare", results, "--where", "optimizer=newton", "--no-figures")
    assert result.exit_code == 1 and "no runs match --where optimizer=newton" in result.stderr


@pytest.mark.parametrize("args, message", [
    (["--where", "optimiser=adam"], "error: --where optimiser: unknown key 'optimiser'; known keys:"),
    (["--sort", "speed"], "error: --sort speed: unknown column; known columns:"),
])
def test_bad_where_or_sort_is_one_line_error_exit_2(results: Path, args, message) -> None:
    result = invoke("compare", results, *args)
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if not line.startswith("skipped ")]
    assert len(errors) == 1 and errors[0].startswith(message)


def test_unreadable_path_is_one_line_error_exit_2(tmp_path: Path) -> None:
    result = invoke("compare", tmp_path / "missing")
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'missing'}: no such file or folder"


# ----------------------------------------------------------------------------- figures


def test_figures_per_experiment_exist(results: Path, tmp_path: Path) -> None:
    out = tmp_path / "figs"
    result = invoke("compare", results, "--out", out, "--format", "json")
    assert result.exit_code == 0, result.output
    json.loads(result.stdout)  # the figure note goes to stderr, stdout stays pipeable
    names = sorted(p.name for p in out.iterdir())
    assert names == ["mnist-loss.png", "mnist-test_error.png", "tiny-landscape.png", "tiny-loss.png", "tiny-race.gif"]
    assert all(p.read_bytes()[:8] == PNG or p.read_bytes()[:6] == b"GIF89a" for p in out.iterdir())
    assert (results / "compare").exists() is False


def test_default_figure_folder_is_results_compare(results: Path) -> None:
    result = invoke("compare", results, "--where", "experiment=tiny", "--group-by-seed")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (results / "compare").iterdir()) == ["tiny-landscape.png", "tiny-loss.png",
                                                                              "tiny-race.gif"]


def test_curves_never_mix_experiments_and_groups_draw_mean_and_band(results: Path, tmp_path: Path,
                                                                      monkeypatch) -> None:
    from optlab import plots
    from optlab.reporting.report import compare_figures

    calls = {}
    monkeypatch.setattr(plots, "curves", lambda path, curves, **kw: calls.setdefault(Path(path).name, curves) and path)
    runs, _ = cmp.load_runs([results])
    rows = cmp.sort_rows(cmp.group_by_seed(cmp.make_rows([r for r in runs if r.record["experiment"] == "tiny"])))
    compare_figures(rows, tmp_path)
    adam, gd = calls["tiny-loss.png"]
    assert (adam.label, gd.label) == ("adam lr=0.1 (n=1)", "gd lr=0.25 (n=3)")
    assert adam.lo is not None and not any(map(math.isfinite, adam.lo))  # one seed: no band
    # every seed has the fixture's loss 1/2**t, so the mean is that and the band has zero width
    assert list(gd.y) == [1.0, 0.5, 0.25, 0.125] and list(gd.hi - gd.lo) == [0.0] * 4

    calls.clear()
    compare_figures(cmp.make_rows(runs), tmp_path)
    assert len(calls["tiny-loss.png"]) == 4 and len(calls["mnist-loss.png"]) == 2
    labels = [c.label for c in calls["mnist-test_error.png"]]
    assert labels == ["adam lr=0.001 anneal seed=0", "adam lr=0.001 anneal seed=1"]
    assert all(len(c.x) == 4 for c in calls["tiny-loss.png"]) and all(len(c.x) == 3 for c in calls["mnist-loss.png"])


def test_nan_in_a_hand_edited_file_reads_as_missing(tmp_path: Path, write_run) -> None:
    folder = write_run(tmp_path, run_id="edited")
    text = (folder / "metrics.json").read_text()
    (folder / "metrics.json").write_text(text.replace('"final_loss": 0.125', '"final_loss": NaN'))
    result = invoke("compare", tmp_path, "--format", "json", "--no-figures")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["final_loss"] is None


# ----------------------------------------------------------------------------- schema versions


def test_schema_1_and_schema_2_runs_compare_side_by_side_and_a_newer_one_is_skipped(tmp_path: Path,
                                                                                      write_run) -> None:
    write_run(tmp_path, run_id="old-s0", seed=0, schema_version=1, summary={"final_loss": 1.0})
    write_run(tmp_path, run_id="new-s1", seed=1, summary={"final_loss": 3.0})
    write_run(tmp_path, run_id="newer", seed=2, schema_version=3)
    result = invoke("compare", tmp_path, "--format", "csv", "--out", tmp_path / "fig")
    assert result.exit_code == 0, result.output
    rows = {r["run"]: r for r in csv.DictReader(io.StringIO(result.stdout))}
    assert sorted(rows) == ["new-s1", "old-s0"]
    assert (float(rows["old-s0"]["final_loss"]), float(rows["new-s1"]["final_loss"])) == (1.0, 3.0)
    skips = [line for line in result.stderr.splitlines() if line.startswith("skipped")]
    assert len(skips) == 1 and "newer optlab (schema 3, this one reads up to 2)" in skips[0]
    assert (tmp_path / "fig" / "tiny-loss.png").read_bytes()[:8] == PNG  # both runs' curves in one overlay
    grouped = invoke("compare", tmp_path, "--format", "json", "--group-by-seed", "--no-figures")
    [group] = json.loads(grouped.stdout)  # the same settings in either schema: one seed group
    assert group["n"] == 2 and group["final_loss"]["mean"] == pytest.approx(2.0)
