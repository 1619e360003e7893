"""optlab sweep: grid parsing, grouping, lanes equal to single runs, divergence per lane, outputs, bad input."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from optlab import config, results, sweep
from optlab.cli import app
from optlab.cli.commands_sweep import SweepBar
from optlab.data.idx import write_idx
from optlab.errors import ConfigError
from optlab.experiments import tiny
from optlab.reporting import compare
from optlab.runs import resolve, runner
from optlab.sweep import grid, plan
from optlab.sweep import summary as sweep_summary


def cli(*args: str):
    return CliRunner().invoke(app, list(args))


def build(base: dict, grid: dict) -> sweep.Sweep:
    return sweep.build([config.Layer(base, "flag")], [config.Layer(grid, "flag")])


def run(s: sweep.Sweep, out: Path, **kw) -> sweep.Outcome:
    return sweep.run(s, out, SweepBar(quiet=True), **kw)


def bars_dataset(folder: Path, n_train: int = 120, n_test: int = 40) -> Path:
    """A separable 4-class MNIST-layout dataset: a bright bar whose height is the label."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.resize(np.arange(4, dtype=np.uint8), n)
        images = rng.integers(0, 41, (n, 28, 28)).astype(np.uint8)
        for c in range(4):
            images[labels == c, 2 + 7 * c: 5 + 7 * c, 3:25] = 230
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return folder


# ---------------------------------------------------------------------------- parsing


@pytest.mark.parametrize("key, raw, wanted", [
    ("lr", "1e-4,3e-4", ["1e-4", "3e-4"]),
    ("seed", "0..4", ["0", "1", "2", "3", "4"]),
    ("seed", "7,0..1", ["7", "0", "1"]),
    ("hidden", "32;225,225", ["32", "225,225"]),
    ("lr", [0.1, 0.2], [0.1, 0.2]),
    ("seed", ["0..2"], ["0", "1", "2"]),
    ("hidden", [32, [64, 64]], [[32], [64, 64]]),
    ("lr", 0.5, [0.5]),
])
def test_values_lists_and_ranges_expand(key, raw, wanted):
    assert grid.parse_values(key, raw, "--x") == wanted


@pytest.mark.parametrize("key, raw, message", [
    ("lr", "", "empty value"),
    ("lr", "1e-4,", "empty value"),
    ("lr", "1e-4,,3e-4", "empty value"),
    ("seed", "0..", "two integers"),
    ("seed", "..3", "two integers"),
    ("seed", "5..1", "empty range"),
    ("seed", "a..b", "two integers"),
    ("lr", "0.1..0.5", "ranges a..b are for integer settings"),
    ("lr", [], "empty list"),
])
def test_malformed_values_are_one_config_error(key, raw, message):
    with pytest.raises(ConfigError, match=message):
        grid.parse_values(key, raw, "--" + key)


def test_ranges_are_counted_without_being_expanded():
    chunks = grid.alternatives("seed", "7,0..99999999999999999999", "--seed")
    assert chunks == [["7"], range(0, 10**20)] and grid.count(chunks) == 10**20 + 1
    assert grid.count(grid.alternatives("hidden", "32;64,64", "--hidden")) == 2


def test_range_and_list_kinds_come_from_each_settings_declaration():
    assert grid.parse_values("cg_iters", "5..7", "--cg-iters") == ["5", "6", "7"]  # every integer setting
    assert grid.parse_values("start", "1,2;3,4", "--start") == ["1,2", "3,4"]
    with pytest.raises(ConfigError, match=r"ranges a\.\.b are for integer settings \(seed, cg_iters, steps, epochs"):
        grid.parse_values("momentum", "0..1", "--momentum")


def test_grid_errors_name_where_the_value_came_from():
    with pytest.raises(ConfigError, match="--set lr must be a positive finite number, got '-1'"):
        sweep.build([config.Layer({"experiment": "tiny"}, "flag")], [config.Layer({"lr": "0.1,-1"}, "set")])
    with pytest.raises(ConfigError, match=r"the grid has 4,294,967,296 configurations \(--seed 4,294,967,296\)"):
        build({"experiment": "tiny"}, {"seed": "0..4294967295"})
    with pytest.raises(ConfigError, match="--data-dir takes one value in a sweep, got 2"):
        build({"experiment": "mnist"}, {"data_dir": "a,b"})


def test_grid_is_the_product_of_the_lists_in_order():
    s = build({"experiment": "tiny", "optimizer": "momentum"},
              {"lr": "0.1,0.2,0.3", "seed": "0..3", "momentum": "0.5,0.9"})
    assert len(s.configs) == 24 and s.varied == ["lr", "seed", "momentum"]
    assert [(c.lr, c.seed, c.momentum) for c in s.configs[:3]] == [(0.1, 0, 0.5), (0.1, 0, 0.9), (0.1, 1, 0.5)]
    assert {c.optimizer for c in s.configs} == {"momentum"}


@pytest.mark.parametrize("grid, message", [
    ({"lr": "0.1,-1"}, "--lr must be a positive finite number, got '-1'"),
    ({"lr": "0.1,0.10"}, "same configuration twice"),
    ({"learning_rate": "0.1"}, "unknown setting"),
    ({"out": "a,b"}, "--out takes one value"),
    ({"seed": "0..20000"}, "the limit is 10,000"),
])
def test_bad_grids_are_rejected_before_anything_runs(grid, message):
    with pytest.raises(ConfigError, match=message):
        build({"experiment": "tiny"}, grid)


def test_array_settings_share_a_group_and_shape_or_presence_settings_split_it():
    s = build({"experiment": "tiny"}, {"optimizer": "gd,adam", "lr": "0.1,0.2", "seed": "0,1", "grad_noise": "0,0.1"})
    groups = grid.groups(s.configs)
    assert len(groups) == 4 and all(len(g) == 4 for g in groups)  # optimizer × (noise present or not)
    for g in groups:
        assert len({(s.configs[i].optimizer, s.configs[i].grad_noise > 0) for i in g}) == 1


# ---------------------------------------------------------------------------- tiny: lanes equal single runs


def test_tiny_lanes_equal_single_runs_bit_for_bit_including_noise_and_divergence():
    from optlab.core.devices import Lanes

    s = build({"experiment": "tiny", "optimizer": "momentum", "steps": "60"},
              {"lr": "0.05,3.0", "seed": "0..1", "grad_noise": "0.2"})
    outcomes = tiny.run_lanes(s.configs, Lanes.over(4), [None] * 4, SweepBar(quiet=True))
    for cfg, lane in zip(s.configs, outcomes):
        history, *_ = tiny.simulate(cfg)
        cut = tiny.first_divergence(history)
        np.testing.assert_array_equal(lane.history["params"], history["params"][:cut])
        np.testing.assert_array_equal(lane.history["loss"], history["loss"][:cut])
        assert lane.status == ("diverged" if cfg.lr == 3.0 else "completed")
        assert lane.summary["diverged_at_step"] == cut
    assert outcomes[0].summary["final_loss"] != outcomes[1].summary["final_loss"]  # seeds feed the gradient noise


def test_tiny_sweep_folders_are_run_folders_that_compare_reads(tmp_path):
    s = build({"experiment": "tiny", "steps": "20"}, {"lr": "0.1,0.25", "seed": "0,1"})
    out = run(s, tmp_path, figures="all")
    assert out.sweep_dir.parent == tmp_path and out.sweep_id == out.sweep_dir.name
    single = runner.run(resolve.resolve([config.Layer({"experiment": "tiny", "steps": "20", "lr": "0.1",
                                                      "out": str(tmp_path / "single")}, "flag")]), quiet=True)
    for row in out.rows:
        record = results.read_metrics(row["path"])
        assert set(record) == set(single.record) | {"sweep_id"} and record["sweep_id"] == out.sweep_id
        assert record["config"].keys() == single.record["config"].keys()
        assert (Path(row["path"]) / "params.npz").exists() and (Path(row["path"]) / "loss.png").exists()
    runs, skipped = compare.load_runs([out.sweep_dir])
    assert len(runs) == 4 and not skipped
    assert len(compare.group_by_seed(compare.make_rows(runs))) == 2


def test_chunked_sweep_gives_the_same_numbers(tmp_path):
    s = build({"experiment": "tiny", "steps": "30", "optimizer": "adam"}, {"lr": "0.01,0.1,0.3"})
    notices: list[str] = []
    assert [len(c.indices) for c in plan.plan(s, max_lanes=2, notices=notices)] == [2, 1]
    assert "2 chunks of up to 2" in notices[0]
    whole, chunked = run(s, tmp_path / "a"), run(s, tmp_path / "b", max_lanes=2)
    assert [r["final_loss"] for r in whole.rows] == [r["final_loss"] for r in chunked.rows]


# ---------------------------------------------------------------------------- summaries, heat-map, best


def rows_of(values: list[tuple[float, int, float | None]]) -> list[dict]:
    return [{"run_id": f"r{i}", "lr": lr, "seed": seed, "status": "completed" if v is not None else "diverged",
             "final_loss": v, "config": {"lr": lr, "seed": seed}} for i, (lr, seed, v) in enumerate(values)]


def test_best_breaks_ties_by_the_mean_over_seeds():
    rows = rows_of([(0.1, 0, 0.5), (0.1, 1, 0.9), (0.2, 0, 0.5), (0.2, 1, 0.6), (0.3, 0, None)])
    best = sweep_summary.pick_best(rows, "final_loss")
    assert best["run_id"] == "r2" and best["seed_mean"] == pytest.approx(0.55)


def test_no_best_when_every_configuration_diverged():
    assert sweep_summary.pick_best(rows_of([(0.1, 0, None)]), "final_loss") is None


def test_heatmap_averages_seeds_and_extra_axes_and_marks_diverged_cells():
    s = build({"experiment": "tiny", "optimizer": "momentum"}, {"lr": "0.1,0.2", "momentum": "0.5,0.9", "seed": "0,1"})
    rows = [{"run_id": str(i), "lr": c.lr, "momentum": c.momentum, "seed": c.seed, "config": {},
             "status": "diverged" if (c.lr, c.momentum, c.seed) == (0.2, 0.9, 1) else "completed",
             "final_loss": 10 * c.lr + c.momentum + c.seed} for i, c in enumerate(s.configs)]
    values, row_labels, col_labels, ylabel, xlabel, note = sweep_summary.heatmap_grid(s, rows, "final_loss")
    assert (ylabel, xlabel, note) == ("lr", "momentum", "mean over seed")
    assert row_labels == ["0.1", "0.2"] and col_labels == ["0.5", "0.9"]
    np.testing.assert_allclose(values[0], [1.5 + 0.5, 1.5 + 0.9])
    assert values[1, 0] == pytest.approx(2.5 + 0.5) and math.isnan(values[1, 1])


def test_toml_of_a_config_reads_back_to_the_same_config(tmp_path):
    cfg = resolve.resolve([config.Layer({"experiment": "tiny", "lr": "1e-05", "start": "0.5,-2", "seed": "3"}, "flag")])
    file = tmp_path / "best.toml"
    file.write_text(sweep_summary.to_toml(resolve.relevant(cfg), "a comment\nsecond line"))
    assert resolve.resolve([config.read_toml(file)]) == cfg


# ---------------------------------------------------------------------------- the command


def test_cli_sweep_best_toml_reruns_to_the_same_numbers(tmp_path):
    result = cli("sweep", "tiny", "--opt", "gd", "--lr", "0.1,0.25,0.5", "--seed", "0..1", "--steps", "40",
                 "--out", str(tmp_path), "--best", "final_loss")
    assert result.exit_code == 0, result.output
    sweep_dir = Path(result.stdout.strip().splitlines()[-1])
    summary = json.loads((sweep_dir / "summary.json").read_text())
    assert len(summary["runs"]) == 6 and summary["best"].startswith("002-tiny-gd-lr0.25-seed0")
    assert (sweep_dir / "heatmap.png").read_bytes()[:4] == b"\x89PNG"
    assert (sweep_dir / "summary.csv").read_text().count("\n") == 7
    rerun = cli("run", str(sweep_dir / "best.toml"), "--out", str(tmp_path / "again"), "-q")
    assert rerun.exit_code == 0, rerun.output
    again = results.read_metrics(Path(rerun.stdout.strip().splitlines()[-1]))
    best = results.read_metrics(sweep_dir / summary["best"])
    assert again["history"]["loss"] == best["history"]["loss"]

    def settings(record: dict) -> dict:
        return {k: v for k, v in record["config"].items() if k != "out"}

    assert settings(again) == settings(best)


def test_sweep_grid_from_a_toml_file_with_flags_winning(tmp_path):
    file = tmp_path / "grid.toml"
    file.write_text('experiment = "tiny"\nsteps = 10\n[sweep]\nlr = [0.1, 0.2]\nseed = "0..2"\n')
    result = cli("sweep", str(file), "--seed", "5", "--out", str(tmp_path), "-q")
    assert result.exit_code == 0, result.output
    summary = json.loads((Path(result.stdout.strip().splitlines()[-1]) / "summary.json").read_text())
    assert [(r["lr"], r["seed"]) for r in summary["runs"]] == [(0.1, 5), (0.2, 5)]


@pytest.mark.parametrize("args, message", [
    (["--lr", "0.1,"], "error: --lr '0.1,': empty value"),
    (["--seed", "0.."], "error: --seed '0..': a range needs two integers"),
    (["--seed", "5..1"], "error: --seed '5..1': empty range"),
    (["--lr", "abc"], "error: --lr must be a positive finite number"),
    (["--opt", "gd,nope"], "error: unknown optimizer"),
    (["--best", "accuracy"], "error: --best accuracy: unknown metric"),
    (["--coordinator", "host:1"], "error: --coordinator, --num-processes and --process-id go together"),
])
def test_bad_input_is_one_line_exit_2_and_no_folder(tmp_path, args, message):
    result = cli("sweep", "tiny", *args, "--out", str(tmp_path / "out"))
    assert result.exit_code == 2, result.output
    assert result.output.strip().startswith(message) and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_shape_group_that_cannot_run_is_refused_up_front(tmp_path):
    data = bars_dataset(tmp_path / "bars")
    result = cli("sweep", "mnist", "--opt", "adam,newton", "--epochs", "1", "--hidden", "16",
                 "--data-dir", str(data), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2 and "--opt newton forms the dense Hessian" in result.output
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------- networks


@pytest.mark.slow
def test_network_lanes_match_single_runs_and_a_diverged_lane_harms_no_other(tmp_path):
    data = bars_dataset(tmp_path / "bars")
    base = {"experiment": "mnist", "optimizer": "gd", "epochs": "3", "batch_size": "20", "hidden": "16",
            "lr_schedule": "anneal", "data_dir": str(data), "out": str(tmp_path / "single")}
    s = build(base, {"lr": "0.1,1e6", "seed": "0,1", "input_noise": "0.2", "weight_decay": "0.001"})
    out = run(s, tmp_path / "sweep")
    statuses = [r["status"] for r in out.rows]
    assert statuses == ["completed", "completed", "diverged", "diverged"]
    for cfg, row in zip(s.configs, out.rows):
        lane = results.read_metrics(row["path"])
        single = runner.run(cfg, quiet=True).record
        assert lane["status"] == single["status"]
        assert lane["summary"].get("diverged_at_epoch") == single["summary"].get("diverged_at_epoch")
        for key in ("train_loss", "test_error", "minibatch_loss", "lr"):
            np.testing.assert_allclose(np.array(lane["history"][key], float), np.array(single["history"][key], float),
                                       rtol=1e-6, atol=1e-7, err_msg=key)
        np.testing.assert_array_equal(lane["analysis"]["dead_units"], single["analysis"]["dead_units"])


def test_data_parallel_is_refused_in_a_sweep():
    from optlab.errors import ConfigError

    with pytest.raises(ConfigError, match="data_parallel is for single runs"):
        sweep.build([config.Layer({"experiment": "mnist", "data_parallel": "true"}, "flag")],
                    [config.Layer({"lr": "1e-3,1e-2"}, "set")])


class StopAfter(SweepBar):
    """A quiet bar that presses Ctrl-C once `epochs` epochs of every configuration are done."""

    def __init__(self, epochs: int) -> None:
        super().__init__(quiet=True)
        self.epochs, self.updates = epochs, 0

    def advance(self, count: int, summaries) -> None:
        super().advance(count, summaries)
        self.updates += 1
        if self.updates == self.epochs + 1:  # the epoch after `epochs`: its metrics are not yet saved
            raise KeyboardInterrupt


def test_an_interrupted_network_sweep_keeps_every_finished_epoch(tmp_path):
    data = bars_dataset(tmp_path / "bars")
    base = {"experiment": "mnist", "optimizer": "gd", "epochs": "6", "batch_size": "20", "hidden": "8",
            "data_dir": str(data), "input_noise": "0"}
    s = build(base, {"lr": "0.05,0.1"})
    with pytest.raises(KeyboardInterrupt):
        sweep.run(s, tmp_path / "sweep", StopAfter(2))
    records = [results.read_metrics(p.parent) for p in sorted((tmp_path / "sweep").rglob("metrics.json"))]
    assert len(records) == 2
    for record in records:
        assert record["status"] == "interrupted"
        assert record["history"]["epoch"] == [1, 2] and record["summary"]["epochs"] == 2


def network_sweep_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["sweep", "mnist", "--opt", "gd", "--lr", "0.05,0.2", "--epochs", "2", "--batch-size", "20", "--hidden", "2",
            "--input-noise", "0", "--data-dir", str(data), "--out", str(out), "-q", *extra]


@pytest.mark.slow
def test_a_network_sweep_measures_analyze_for_each_configuration_as_its_single_run_does(tmp_path):
    data = bars_dataset(tmp_path / "bars")
    result = cli(*network_sweep_args(data, tmp_path / "sweep", "--set", "analyze=2", "--figures", "all"))
    assert result.exit_code == 0, result.output
    summary = json.loads((Path(result.stdout.strip().splitlines()[-1]) / "summary.json").read_text())
    for row in summary["runs"]:
        lane = results.read_metrics(row["path"])
        cfg = resolve.resolve([config.Layer({k: v for k, v in lane["config"].items() if v is not None}, "file")])
        assert cfg.analyze == (2,)
        single = runner.run(dataclasses.replace(cfg, out=str(tmp_path / "single")), quiet=True).record
        measured, alone = lane["analysis"]["hessian_over_training"], single["analysis"]["hessian_over_training"]
        # anneal over 12 steps (120 images / 20): epoch 2 ends at step 11, η (1 − (11 − 6)/6) = η/6
        assert [r["epoch"] for r in measured] == [2] and measured[0]["lr"] == pytest.approx(cfg.lr / 6, rel=1e-6)
        assert len(alone) == 1
        for a, b in zip(measured, alone):  # the same parameters up to float32 rounding of vmapped vs single epochs
            assert a["lambda_max"] == pytest.approx(b["lambda_max"], rel=1e-4) and a["lambda_max"] > 0
        figure = results.figure_path(lane["figures"]["edge_of_stability"])
        assert (Path(row["path"]) / figure).read_bytes()[:4] == b"\x89PNG"


def test_checkpoints_are_refused_in_a_sweep_with_one_line_naming_the_setting(tmp_path):
    data = bars_dataset(tmp_path / "bars")
    result = cli(*network_sweep_args(data, tmp_path / "out", "--set", "checkpoint_every=1"))
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: checkpoint_every 1 is for single runs") and result.output.count("\n") == 1
    assert not (tmp_path / "out").exists()
