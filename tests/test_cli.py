"""`optlab run` and `optlab list` as a user meets them: outputs, files, exit codes, one-line errors."""

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from optlab import config, results
from optlab.cli import app, options
from optlab.core import optimizers

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_run_tiny_newton_writes_a_complete_run_folder(tmp_path):
    result = invoke("run", "tiny", "--opt", "newton", "--steps", "12", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    run_dir = Path(result.stdout.strip().splitlines()[-1])  # the last line of stdout is the folder
    assert run_dir.parent == tmp_path and run_dir.name.startswith("tiny-newton-")
    record = json.loads((run_dir / "metrics.json").read_text())
    assert set(results.REQUIRED_KEYS) <= set(record)
    assert record["schema_version"] == results.SCHEMA_VERSION and record["run_id"] == run_dir.name
    assert record["status"] == "completed" and record["experiment"] == "tiny"
    cfg = record["config"]
    assert (cfg["optimizer"], cfg["lr"], cfg["lr_schedule"], cfg["steps"], cfg["seed"], cfg["start"]) == (
        "newton", 1.0, "constant", 12, 0, [0.5, 1.5])
    history = record["history"]
    assert history["step"] == list(range(13))
    assert len(history["loss"]) == len(history["params"]) == len(history["grad_norm"]) == len(history["lr"]) == 13
    assert history["params"][0] == [0.5, 1.5]
    assert history["lr"][-1] is None  # the last point is not left, so it has no step size
    summary, analysis = record["summary"], record["analysis"]
    assert summary["converged"] and not summary["oscillating"] and summary["steps"] == 12
    assert summary["final_loss"] == pytest.approx(0.1184, abs=1e-12)
    assert analysis["critical_point"] == "minimum" and analysis["grad_norm"] < 1e-8
    assert analysis["hessian_eigenvalues"] == pytest.approx([0.16, 5.84], abs=1e-9)
    assert analysis["gd_max_stable_lr"] == pytest.approx(2 / 5.84)
    assert {"jax", "jaxlib", "optlab", "backend", "device_count"} <= set(record["environment"])
    for name in map(results.figure_path, record["figures"].values()):
        assert (run_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(record["figures"]) == {"landscape", "loss"}
    assert set(results.load_params(run_dir)) == {"w"}


def test_run_an_experiment_file_and_override_it(tmp_path):
    file = Path(__file__).parents[1] / "experiments" / "tiny-gd-oscillates.toml"
    result = invoke("run", file, "--steps", "60", "--run-dir", tmp_path / "osc")
    assert result.exit_code == 0, result.output
    record = results.read_metrics(tmp_path / "osc")
    assert record["config"]["lr"] == 0.35 and record["config"]["steps"] == 60
    assert record["summary"]["oscillating"] and record["run_id"] == "osc"


def test_config_file_and_set_reach_every_setting(tmp_path):
    settings = tmp_path / "s.toml"
    settings.write_text('optimizer = "gd"\nlr_schedule = "step"\n')
    result = invoke("run", "tiny", "--config", settings, "--set", "lr_decay=0.5", "--set", "steps=8",
                    "--run-dir", tmp_path / "r")
    assert result.exit_code == 0, result.output
    record = results.read_metrics(tmp_path / "r")
    assert record["history"]["lr"][:-1] == pytest.approx([0.25] * 4 + [0.125] * 2 + [0.0625] * 2)


def test_divergence_stops_writes_diverged_and_exits_non_zero(tmp_path):
    result = invoke("run", "tiny", "--lr", "2", "--run-dir", tmp_path / "d")
    assert result.exit_code == 1
    assert "diverged" in result.stdout
    record = results.read_metrics(tmp_path / "d")
    step = record["summary"]["diverged_at_step"]
    assert record["status"] == "diverged" and step >= 1
    assert len(record["history"]["loss"]) == step and all(x is not None for x in record["history"]["loss"])


def test_run_dir_onto_an_existing_run_refuses_without_overwrite(tmp_path):
    assert invoke("run", "tiny", "--steps", "3", "--run-dir", tmp_path / "r").exit_code == 0
    again = invoke("run", "tiny", "--steps", "3", "--run-dir", tmp_path / "r")
    assert again.exit_code == 2 and "already exists" in again.stderr and "--overwrite" in again.stderr
    assert invoke("run", "tiny", "--steps", "3", "--run-dir", tmp_path / "r", "--overwrite").exit_code == 0


def test_overwrite_never_deletes_a_folder_that_is_not_optlabs(tmp_path, monkeypatch):
    (tmp_path / "notes.md").write_text("my notes")
    (tmp_path / "older-run").mkdir()
    (tmp_path / "older-run" / "metrics.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    for folder in (tmp_path, "."):
        result = invoke("run", "tiny", "--steps", "3", "--run-dir", folder, "--overwrite")
        assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
        assert "--overwrite refuses to empty" in result.stderr and "not an optlab run folder" in result.stderr
    assert (tmp_path / "notes.md").read_text() == "my notes" and (tmp_path / "older-run" / "metrics.json").exists()
    # A real run folder with a user's file added is refused too, and keeps both.
    assert invoke("run", "tiny", "--steps", "3", "--run-dir", tmp_path / "r").exit_code == 0
    (tmp_path / "r" / "notes.md").write_text("mine")
    result = invoke("run", "tiny", "--steps", "3", "--run-dir", tmp_path / "r", "--overwrite")
    assert result.exit_code == 2 and "'notes.md' is not a file optlab wrote" in result.stderr
    assert (tmp_path / "r" / "notes.md").exists() and (tmp_path / "r" / "metrics.json").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "tinny"], "unknown experiment 'tinny'; did you mean 'tiny'?"),
        (["run", "tiny", "--opt", "adma"], "unknown optimizer 'adma'; did you mean 'adam'?"),
        (["run", "tiny", "--lr-schedule", "cosin"], "unknown schedule 'cosin'; did you mean 'cosine'?"),
        (["run", "tiny", "--start", "1;2"], "--start must be two finite numbers W1,W2"),
        (["run", "tiny", "--start", "a,b"], "--start must be two finite numbers W1,W2"),
        (["run", "tiny", "--lr", "-0.1"], "--lr must be a positive finite number, got '-0.1'"),
        (["run", "tiny", "--lr", "nan"], "--lr must be a positive finite number, got 'nan'"),
        (["run", "tiny", "--lr", "inf"], "--lr must be a positive finite number, got 'inf'"),
        (["run", "tiny", "--steps", "0"], "--steps must be an integer from 1 to 100,000, got '0'"),
        (["run", "tiny", "--steps", "-5"], "--steps must be an integer"),
        (["run", "tiny", "--steps", "inf"], "--steps must be an integer"),
        (["run", "tiny", "--set", "wat=1"], "--set wat: unknown setting 'wat'"),
        (["run", "tiny", "--set", "noequals"], "--set expects key=value"),
        (["run", "tiny", "--lrr", "1"], "No such option: --lrr"),
        (["run"], "missing EXPERIMENT or FILE.toml"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_leaves_no_folder(tmp_path, args, message):
    result = invoke(*args, "--out", tmp_path / "results")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert not (tmp_path / "results").exists()


def test_malformed_toml_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('experiment = "tiny"\nlr = [1, \n')
    result = invoke("run", bad, "--out", tmp_path / "results")
    assert result.exit_code == 2 and "bad.toml is not valid TOML" in result.stderr
    assert result.stderr.count("\n") == 1 and not (tmp_path / "results").exists()


def test_unwritable_results_folder_is_one_line_exit_2(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = invoke("run", "tiny", "--run-dir", blocker)
    assert result.exit_code == 2 and "is not a directory" in result.stderr


def test_list_shows_every_registered_name_with_its_help():
    result = invoke("list")
    assert result.exit_code == 0
    for name in ("tiny", "mnist", "fashion-mnist", "gd", "momentum", "nesterov", "newton", "adagrad", "adadelta",
                 "rmsprop", "adam", "constant", "anneal", "step", "exponential", "cosine", "inverse-time", "glorot",
                 "he"):
        assert name in result.stdout
    assert "Kingma & Ba" in result.stdout


@pytest.mark.parametrize("file", sorted((Path(__file__).parents[1] / "experiments").glob("tiny-*.toml")),
                         ids=lambda p: p.stem)
def test_every_tiny_experiment_file_runs_and_shows_its_point(tmp_path, file):
    result = invoke("run", file, "--run-dir", tmp_path / file.stem, "-q")
    assert result.exit_code == 0, result.output
    record = results.read_metrics(tmp_path / file.stem)
    summary, analysis = record["summary"], record["analysis"]
    expected = {
        "tiny-gd-slow": lambda: not summary["converged"] and summary["final_loss"] < 0.1185,
        "tiny-gd-oscillates": lambda: summary["oscillating"],
        "tiny-newton": lambda: summary["converged"] and analysis["critical_point"] == "minimum",
        "tiny-newton-saddle": lambda: analysis["critical_point"] == "saddle",
        "tiny-saddle-free-newton": lambda: analysis["critical_point"] == "minimum",
        "tiny-momentum": lambda: summary["final_loss"] < 0.1185,
        "tiny-momentum-noisy": lambda: 0.1185 < summary["final_loss"] < 0.2,
        "tiny-adam": lambda: summary["final_loss"] < 0.1185,
    }[file.stem]
    assert expected(), (summary, analysis)


# ---------------------------------------------------------------------------- options from the settings


def wide_help(*command):
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    return result.stdout


def complete(words: str) -> list[str]:
    """What bash completion offers for the last word of `words` (as `optlab`'s completion script asks)."""
    env = {"_OPTLAB_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(len(words.split()) - 1)}
    result = runner.invoke(app, [], prog_name="optlab", env=env)
    assert result.exit_code == 0, result.output
    return result.stdout.split()


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_every_setting_a_command_offers_is_an_option_with_its_metavar(command):
    lines = {line.split()[1]: line for line in wide_help(command).splitlines() if line[2:4] == "--"}
    offered = [k for k, spec in config.SETTINGS.items() if command in spec.commands]
    assert len(offered) >= (30 if command == "run" else 27)
    for key in offered:
        spec = config.SETTINGS[key]
        line = lines[config.flag(key)]
        assert spec.help.split(" (")[0] in line, line
        if spec.metavar is not None:
            assert line.split()[2] == spec.metavar_for(command), line
    assert "--data-parallel" not in lines if command == "sweep" else "--data-parallel" in lines
    assert "--experiment" not in lines  # the argument, not an option


def test_sweep_metavars_say_how_alternatives_are_written():
    lines = {line.split()[1]: line.split()[2] for line in wide_help("sweep").splitlines() if line[2:4] == "--"}
    assert (lines["--opt"], lines["--lr"], lines["--seed"], lines["--start"], lines["--hidden"], lines["--out"]) == (
        "NAME,…", "FLOAT,…", "INT,…|A..B", "W1,W2;…", "N,N;…", "DIR")
    run = {line.split()[1]: line.split()[2] for line in wide_help("run").splitlines() if line[2:4] == "--"}
    assert (run["--opt"], run["--lr"], run["--seed"], run["--start"], run["--hidden"]) == (
        "NAME", "FLOAT", "INT", "W1,W2", "N,N,…")


def test_help_reads_names_and_defaults_from_the_registries():
    lines = {line.split()[1]: " ".join(line.strip(" │").split())
             for line in wide_help("run").splitlines() if line[2:4] == "--"}
    assert "adam, gd, hessian-free, kfac, momentum, nesterov, newton, rmsprop, saddle-free-newton" in lines["--opt"]
    assert "(default: gd; fashion-mnist, mnist adam; phase-diagram momentum)" in lines["--opt"]
    assert "anneal, constant, cosine, exponential, inverse-time, step" in lines["--lr-schedule"]
    assert "glorot, he, normal" in lines["--init"]
    assert "(default: 0; mnist 0.3)" in lines["--input-noise"]
    assert lines["--epochs"].endswith("fashion-mnist, mnist: passes over the training set (default: 50)")
    assert lines["--steps"].endswith("tiny: number of updates (default: 100; bifurcation 5000; phase-diagram 300)")
    assert "(default:" not in lines["--train-subset"] and "(default:" not in lines["--line-search"]
    # Which experiments a setting applies to: all (no prefix), most ("all but …"), or a few by name.
    assert lines["--seed"].startswith("--seed INT random seed")
    assert lines["--opt"].startswith("--opt NAME all but signals: optimizer:")
    assert lines["--momentum"].startswith("--momentum FLOAT all but signals: momentum")
    assert lines["--lr"].startswith("--lr FLOAT fashion-mnist, mnist, tiny: step size")


def test_defaults_shown_per_experiment_where_they_differ():
    assert options._default("input_noise", {"fashion-mnist": {"input_noise": 0.0}, "mnist": {"input_noise": 0.3}}) == (
        "0; mnist 0.3")
    assert options._default("optimizer", {"a": {}, "b": {"optimizer": "adam"}, "c": {"optimizer": "adam"}}) == (
        "adam; a gd")
    assert options._default("depth", {"signals": {"depth": tuple(range(2, 21))}}) == "2..20"
    assert options._default("hidden", {"mnist": {}}) == "225,225"
    assert options._default("train_subset", {"mnist": {}}) == ""


def test_a_registered_optimizer_shows_in_list_run_help_and_completion(monkeypatch):
    monkeypatch.setattr(optimizers.OPTIMIZERS, "_entries", dict(optimizers.OPTIMIZERS._entries))

    @optimizers.optimizer("zz-sign", "sign descent, registered by a test", default_lr=0.01)
    def sign(learning_rate):
        raise AssertionError("help and completion never build the optimizer")

    assert "zz-sign" in invoke("list").stdout
    assert "saddle-free-newton, zz-sign (default:" in " ".join(wide_help("run").split())
    assert "zz-sign" in wide_help("sweep")
    assert complete("optlab run tiny --opt zz") == ["zz-sign"]
    assert complete("optlab sweep tiny --opt gd,zz") == ["gd,zz-sign"]


def test_completion_of_names_comes_from_the_registries():
    assert complete("optlab run tiny --opt ada") == ["adadelta", "adagrad", "adam"]
    assert complete("optlab run tiny --lr-schedule co") == ["constant", "cosine"]
    assert complete("optlab run signals --init glorot,h") == ["glorot,he"]
    assert complete("optlab run fash") == ["fashion-mnist"]
    assert complete("optlab sweep ti") == ["tiny"]


def test_settings_without_a_hand_written_flag_before_now_have_one(tmp_path):
    result = invoke("run", "tiny", "--lr-schedule", "anneal", "--anneal-fraction", "0.25", "--steps", "8",
                    "--run-dir", tmp_path / "r", "-q")
    assert result.exit_code == 0, result.output
    lr = results.read_metrics(tmp_path / "r")["history"]["lr"]
    # held for 6 steps, then linear to 0 over the last quarter (2 steps); the default one half would decay from step 4
    assert lr[:-1] == pytest.approx([0.25] * 7 + [0.125])


@pytest.mark.parametrize("args, message", [
    (["sweep", "tiny", "--seed", "0..4294967295"],
     "the grid has 4,294,967,296 configurations (--seed 4,294,967,296); the limit is 10,000"),
    (["sweep", "tiny", "--seed", "0..99999999999999999999", "--lr", "0.1,0.2"],
     "the grid has 200,000,000,000,000,000,000 configurations (--lr 2 × --seed 100,000,000,000,000,000,000)"),
    (["run", "signals", "--depth", "1..10000000000"],
     "--depth must be integers from 1 to 1,000: a list 2,5,10 or a range 2..20, got '1..10000000000'"),
])
def test_huge_ranges_are_refused_before_they_are_expanded(tmp_path, args, message):
    start = time.perf_counter()
    result = invoke(*args, "--out", tmp_path / "results")
    assert time.perf_counter() - start < 20  # expanding the range would take minutes and gigabytes
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert not (tmp_path / "results").exists()
