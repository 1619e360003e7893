"""The Python API (optlab.api) against the command line: the same settings give the same metrics.json."""

from __future__ import annotations

import doctest
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tomllib
from typer.testing import CliRunner

import optlab
from optlab import results
from optlab.cli import app
from optlab.errors import ConfigError, ResultsError
from optlab.sweep.call import _Lines

README = Path(__file__).parents[1] / "README.md"
TIMINGS = ("wall_time_s", "compile_time_s")  # the only numbers two identical runs may differ in


def cli(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def cli_error(*args: object) -> str:
    """The one line the CLI prints for a refused command, without its `error: ` prefix."""
    result = cli(*args)
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    return line.removeprefix("error: ")


def without_timings(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in TIMINGS}


# ---------------------------------------------------------------------------- run


@pytest.mark.parametrize("settings, flags, status, code", [
    (dict(optimizer="newton", steps=12), ["--opt", "newton", "--steps", "12"], "completed", 0),
    (dict(lr=2, steps=12), ["--lr", "2", "--steps", "12"], "diverged", 1),  # a result, not an exception
])
def test_run_writes_what_the_cli_writes(tmp_path, capfd, settings, flags, status, code):
    capfd.readouterr()
    r = optlab.run("tiny", run_dir=tmp_path / "api", **settings)
    assert capfd.readouterr() == ("", "")  # quiet by default
    done = cli("run", "tiny", *flags, "--run-dir", tmp_path / "cli", "--quiet")
    assert done.exit_code == code, done.output
    theirs = results.read_metrics(tmp_path / "cli")
    mine = json.loads((tmp_path / "api" / "metrics.json").read_text())
    assert r.path == tmp_path / "api" and r.metrics == mine and r.status == theirs["status"] == status
    assert {**mine["config"], "run_dir": None} == {**theirs["config"], "run_dir": None}
    assert mine["history"] == theirs["history"] and mine["analysis"] == theirs["analysis"]
    assert without_timings(mine["summary"]) == without_timings(theirs["summary"])
    assert mine["figures"] == theirs["figures"] and set(r.figures) == set(theirs["figures"])
    assert all(p.parent == r.path and p.read_bytes()[:4] == b"\x89PNG" for p in r.figures.values())
    np.testing.assert_array_equal(r.params()["w"], results.load_params(tmp_path / "cli")["w"])
    assert r.history["params"][0] == [0.5, 1.5] and len(r.history["loss"]) == len(theirs["history"]["loss"])


def test_the_runs_notes_are_warnings_as_the_cli_prints_them(tmp_path):
    a = math.sqrt(1.54)  # det H = 0 at (a, a): Newton says so (tests/test_tiny.py)
    with pytest.warns(UserWarning) as caught:
        r = optlab.run("tiny", optimizer="newton", steps=5, start=(a, a), run_dir=tmp_path / "api")
    done = cli("run", "tiny", "--opt", "newton", "--steps", "5", f"--start={a!r},{a!r}", "--run-dir", tmp_path / "cli")
    assert done.exit_code == 0, done.output
    notes = [line.removeprefix("note: ") for line in done.stderr.splitlines() if line.startswith("note: ")]
    assert [str(w.message) for w in caught] == list(r.notes) == notes
    assert len(notes) == 1 and "singular at 1 step(s), first at step 0" in notes[0]


def test_run_reads_an_experiment_file_and_keywords_win(tmp_path):
    file = Path(__file__).parents[1] / "experiments" / "tiny-gd-oscillates.toml"
    r = optlab.run(file, steps=12, run_dir=tmp_path / "osc")
    assert (r.config["lr"], r.config["steps"], r.run_id) == (0.35, 12, "osc")  # lr from the file
    assert tomllib.loads(file.read_text())["lr"] == 0.35


@pytest.mark.parametrize("target, settings, flags", [
    ("tiny", dict(lr=-1), ["--lr", "-1"]),
    ("tiny", dict(optimizer="adamm"), ["--opt", "adamm"]),
    ("tiny", dict(epochs=3), ["--epochs", "3"]),
    ("tiny", dict(steps=0), ["--steps", "0"]),
    ("tinyy", {}, []),
])
def test_a_refused_run_raises_the_cli_message_and_writes_nothing(tmp_path, target, settings, flags):
    with pytest.raises(ConfigError) as caught:
        optlab.run(target, out=tmp_path / "api", **settings)
    line = cli_error("run", target, *flags, "--out", tmp_path / "cli")
    for key, flag in zip(settings, flags[::2]):
        line = line.replace(flag, f"{key}=")  # the one difference: the keyword where the CLI names the flag
    assert str(caught.value) == line
    assert not any(tmp_path.iterdir())  # no folder, from either


def test_an_existing_run_dir_is_refused_unless_overwrite(tmp_path, write_run):
    folder = write_run(tmp_path, run_id="taken")
    with pytest.raises(ResultsError) as caught:
        optlab.run("tiny", run_dir=folder)
    assert str(caught.value) == cli_error("run", "tiny", "--run-dir", folder).replace("--overwrite", "overwrite=True")
    assert optlab.load(folder).config["lr"] == 0.25  # untouched
    assert optlab.run("tiny", steps=3, run_dir=folder, overwrite=True).config["steps"] == 3


def test_a_flag_spelling_names_the_keyword(tmp_path):
    with pytest.raises(ConfigError, match=r"^opt=: unknown setting 'opt'; the keyword is optimizer= \(--opt "):
        optlab.run("tiny", opt="adam", out=tmp_path)
    with pytest.raises(ConfigError, match="^lrr=: unknown setting 'lrr'; did you mean 'lr'"):
        optlab.run("tiny", lrr=0.1, out=tmp_path)
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------------------- sweep


@pytest.mark.slow  # two sweeps and their figures: ~10 s on a loaded 2-core machine
def test_sweep_writes_what_the_cli_sweep_writes(tmp_path, capfd):
    capfd.readouterr()
    s = optlab.sweep("tiny", lr=[0.1, 0.3], seed=range(1), steps=12, out=tmp_path / "api", best="final_loss")
    assert capfd.readouterr() == ("", "")
    done = cli("sweep", "tiny", "--lr", "0.1,0.3", "--seed", "0..0", "--steps", "12", "--out", tmp_path / "cli",
               "--best", "final_loss", "--quiet")
    assert done.exit_code == 0, done.output
    theirs = json.loads((Path(done.stdout.strip().splitlines()[-1]) / "summary.json").read_text())["runs"]
    assert s.path.parent == tmp_path / "api" and s.varied == ["lr"] and len(s.rows) == 2

    def comparable(row: dict) -> dict:
        return {k: v for k, v in row.items() if k not in (*TIMINGS, "path", "config")}

    assert [comparable(r) for r in s.rows] == [comparable(r) for r in theirs]
    assert [(r["lr"], r["seed"]) for r in s.rows] == [(0.1, 0), (0.3, 0)]
    for run, row in zip(s.runs, theirs):
        cli_run = results.read_metrics(row["path"])
        assert run.history == cli_run["history"] and run.metrics["sweep_id"] == s.path.name
        assert {**run.config, "out": None} == {**cli_run["config"], "out": None}
    lowest = min(s.rows, key=lambda r: r["final_loss"])
    assert s.best().run_id == lowest["run_id"] == s.best("final_loss").run_id
    assert optlab.compare(s) == optlab.compare(s.runs) == optlab.compare(s.path)  # no pandas here, or all frames
    mine, cli_best = (tomllib.loads((d / "best.toml").read_text()) for d in (s.path, Path(theirs[0]["path"]).parent))
    assert mine == cli_best and mine["lr"] == lowest["lr"]


@pytest.mark.parametrize("settings, flags", [
    (dict(lr=[0.1, -1]), ["--lr", "0.1,-1"]),
    (dict(seed=range(2**31)), ["--seed", "0..2147483647"]),  # counted before it is expanded
    (dict(lr="0.1,,0.2"), ["--lr", "0.1,,0.2"]),
])
def test_a_refused_sweep_raises_the_cli_message_and_writes_nothing(tmp_path, settings, flags):
    with pytest.raises(ConfigError) as caught:
        optlab.sweep("tiny", out=tmp_path / "api", **settings)
    line = cli_error("sweep", "tiny", *flags, "--out", tmp_path / "cli")
    key, flag = next(iter(settings)), flags[0]
    assert str(caught.value) == line.replace(flag, f"{key}=")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("settings, wanted", [
    (dict(lr=[0.1, 0.2]), [("lr", 0.1), ("lr", 0.2)]),
    (dict(lr=(0.1, 0.2)), [("lr", 0.1), ("lr", 0.2)]),
    (dict(lr=np.array([0.1, 0.2])), [("lr", 0.1), ("lr", 0.2)]),
    (dict(lr="0.1,0.2"), [("lr", 0.1), ("lr", 0.2)]),
    (dict(lr=0.3), [("lr", 0.3)]),
    (dict(seed=range(2, 5)), [("seed", 2), ("seed", 3), ("seed", 4)]),
    (dict(seed=range(0, 5, 2)), [("seed", 0), ("seed", 2), ("seed", 4)]),
    (dict(start=(0.2, 0.3)), [("start", (0.2, 0.3))]),
    (dict(start=[(0, 0), [1, 2]]), [("start", (0.0, 0.0)), ("start", (1.0, 2.0))]),
    (dict(out=Path("elsewhere")), [("out", "elsewhere")]),
])
def test_sweep_keywords_list_alternatives(settings, wanted):
    from optlab.sweep import grid, sources

    base, _ = sources.target_layers("tiny")
    configs = grid.build(base, [sources.keyword_grid(settings)]).configs
    assert [(k, getattr(cfg, k)) for cfg, (k, _) in zip(configs, wanted)] == wanted and len(configs) == len(wanted)


def test_sweep_progress_lines_count_config_epochs_and_the_best(capsys):
    bar = _Lines()
    bar.start(6, "sweep of 3", "final_loss")
    bar.advance(3, [{"final_loss": 0.5}, {"final_loss": 0.25}, {"final_loss": None}])
    bar.advance(3, [{"final_loss": 0.4}])
    assert capsys.readouterr().err.splitlines() == [
        "sweep 3/6 config-epochs  best final_loss 0.25", "sweep 6/6 config-epochs  best final_loss 0.25"]


# ---------------------------------------------------------------------------- load


def test_load_round_trips_a_run_folder(tmp_path, write_run):
    folder = write_run(tmp_path, optimizer="adam", lr=0.01, seed=3, summary={"final_loss": 0.5})
    r = optlab.load(folder)
    assert r == optlab.load(folder / "metrics.json") == optlab.load(str(folder))
    assert r.metrics == json.loads((folder / "metrics.json").read_text())
    assert (r.status, r.config["optimizer"], r.config["lr"]) == ("completed", "adam", 0.01)
    assert r.summary["final_loss"] == 0.5
    assert r.figures == {"loss": folder / "loss.png"} and r.run_id == folder.name
    assert repr(r) == f"<Run {folder.name}: tiny adam, completed, final_loss=0.5, steps=3>"  # the fixture's 3 steps


def test_load_refuses_what_is_not_a_run(tmp_path, write_run):
    write_run(tmp_path / "sweep", run_id="a")
    write_run(tmp_path / "sweep", run_id="b")
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("x")
    cases = {"sweep": "not a run folder (no metrics.json); it holds 2 run folders (optlab.compare reads them all)",
             "empty": "not a run folder (no metrics.json)", "missing": "no such folder",
             "file.txt": "not a run folder (give the folder that holds metrics.json)"}
    for name, message in cases.items():
        with pytest.raises(ResultsError) as caught:
            optlab.load(tmp_path / name)
        assert str(caught.value) == f"{tmp_path / name}: {message}"
    (tmp_path / "empty" / "metrics.json").write_text("{")
    with pytest.raises(ResultsError, match="not valid JSON"):
        optlab.load(tmp_path / "empty")
    with pytest.raises(ResultsError, match="no saved parameters"):
        optlab.load(tmp_path / "sweep" / "a").params()


# ---------------------------------------------------------------------------- compare


@pytest.fixture
def runs(tmp_path, write_run) -> Path:
    root = tmp_path / "results"
    for seed, loss in ((0, 0.3), (1, 0.1)):
        write_run(root, seed=seed, summary={"final_loss": loss})
    write_run(root, "mnist", optimizer="adam", lr=0.001)
    return root


@pytest.mark.parametrize("keywords, flags", [
    ({}, []),
    ({"group_by_seed": True}, ["--group-by-seed"]),
    ({"sort": "final_loss", "descending": True}, ["--sort", "final_loss", "--desc"]),
])
def test_compare_gives_the_rows_of_compare_format_json(runs, monkeypatch, keywords, flags):
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` fails: the plain rows
    rows = optlab.compare(runs, **keywords)
    done = cli("compare", runs, "--format", "json", "--no-figures", *flags)
    assert done.exit_code == 0, done.output
    assert rows == json.loads(done.stdout)
    assert len(rows) == (2 if keywords.get("group_by_seed") else 3)


def test_compare_reads_runs_and_folders_and_warns_of_the_skipped(runs, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    bad = runs / "broken"
    bad.mkdir()
    (bad / "metrics.json").write_text("{")
    with pytest.warns(UserWarning) as caught:
        rows = optlab.compare([optlab.load(runs / "tiny-gd-lr0.25-s1"), runs])
    line = next(x for x in cli("compare", runs, "--no-figures").stderr.splitlines() if x.startswith("skipped"))
    assert [str(w.message) for w in caught] == [line]
    assert sorted(r["run"] for r in rows) == ["mnist-adam-lr0.001-s0", "tiny-gd-lr0.25-s0", "tiny-gd-lr0.25-s1"]
    (tmp_path / "none").mkdir()
    with pytest.raises(ResultsError) as nothing:
        optlab.compare(tmp_path / "none")
    assert str(nothing.value) == cli("compare", tmp_path / "none").stderr.strip()


def test_compare_is_a_dataframe_with_pandas(runs):
    pandas = pytest.importorskip("pandas")
    table = optlab.compare(runs)
    assert isinstance(table, pandas.DataFrame)
    assert list(table["run"]) == [r["run"] for r in json.loads(cli("compare", runs, "--format", "json",
                                                                      "--no-figures").stdout)]


# ---------------------------------------------------------------------------- the package


def test_import_optlab_load_and_compare_need_no_jax(runs):
    blocked = ("import importlib.abc, sys\n"
               "class Refuse(importlib.abc.MetaPathFinder):\n"
               "    def find_spec(self, name, path=None, target=None):\n"
               "        if name.split('.')[0] in ('jax', 'jaxlib', 'optax'):\n"
               "            raise ImportError(name + ' is blocked')\n"
               "sys.meta_path.insert(0, Refuse())\n"
               "import optlab\n"
               f"rows = optlab.compare({str(runs)!r})\n"
               "print(len(rows), optlab.load(rows[0]['path']).status, optlab.run.__module__)\n")
    done = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["3", "completed", "optlab.api"]


def test_optlab_sweep_is_the_package_and_the_function():
    import optlab.sweep.grid  # the package imported first: `optlab.sweep` is then the module, still callable

    assert callable(optlab.sweep) and optlab.sweep.build is optlab.sweep.grid.build
    with pytest.raises(ConfigError, match="^lr= must be a positive finite number, got '0'$"):
        optlab.sweep("tiny", lr=0)
    with pytest.raises(ConfigError, match="^lr= must be a positive finite number, got '-1'$"):
        optlab.sweep("tiny", lr=(0.1, -1))  # a tuple lists alternatives of a one-number setting
    with pytest.raises(ConfigError, match=r"^start= must be two finite numbers W1,W2 .*, got '\[1\]'$"):
        optlab.sweep("tiny", start=[(0, 0), 1])  # and is one value of a tuple-valued one
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        optlab.nope  # noqa: B018


@pytest.mark.slow
def test_the_readme_session_runs_as_shown(tmp_path, monkeypatch):
    """The README's notebook-style session, executed literally (doctest), in an empty folder."""
    block = re.search(r"## From Python\n.*?```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S).group(1)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "pandas", None)  # len() is the same for both; keep it deterministic
    test = doctest.DocTestParser().get_doctest(block, {}, "README", str(README), 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test, out=lambda text: pytest.fail(text))
    assert runner.failures == 0 and runner.tries >= 10
