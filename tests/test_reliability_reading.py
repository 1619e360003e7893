"""Reading side of reliability: odd terminals, wrong-typed metrics files, broken data files, hostile names.

Each test here stands for one row of README.md's "## Reliability" table.
"""

from __future__ import annotations

import html
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote_to_bytes

import pytest
from typer.testing import CliRunner

from optlab.cli import app
from optlab.cli.encoding import HANDLER, ascii_for, degrade_to_ascii
from optlab.results import read_metrics

ENCODINGS = ["ascii", "latin-1"]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


# ----------------------------------------------------------------------------- non-UTF-8 terminals


def optlab_in(encoding: str, *args, cwd: Path) -> subprocess.CompletedProcess:
    """`python -m optlab ARGS` with stdout and stderr in `encoding`, as on an old server or a CI runner."""
    env = {**os.environ, "PYTHONIOENCODING": encoding, "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, "-m", "optlab", *map(str, args)], capture_output=True, env=env,
                          cwd=cwd, timeout=300)


def assert_clean(result: subprocess.CompletedProcess, encoding: str, code: int = 0) -> tuple[str, str]:
    """Exit `code`, no traceback, and both streams valid in `encoding`; returns them decoded."""
    stdout, stderr = result.stdout.decode(encoding), result.stderr.decode(encoding)
    assert result.returncode == code, stderr
    assert "Traceback" not in stderr and "UnicodeEncodeError" not in stderr, stderr
    return stdout, stderr


def test_ascii_spelling_of_what_optlab_prints():
    assert ascii_for("η ≤ σ λ ∇C × → ← ± …") == "eta <= sigma lambda gradC x -> <- +/- ..."
    assert ascii_for("(H + λI)⁻¹∇C") == "(H + lambdaI)^-1gradC" and ascii_for("w2²") == "w2^2"
    assert ascii_for("┏━┳┃╋") == "+-+|+" and ascii_for("Θé") == "Thetae"
    assert ascii_for("run\udcff") == "run\\xff"  # an undecodable file-name byte, shown, not a crash


@pytest.mark.parametrize("encoding, errors, after", [
    ("ascii", "strict", ("optlab-ascii", HANDLER)),  # renamed, or click would write UTF-8 bytes past the handler
    ("latin-1", "backslashreplace", ("latin-1", HANDLER)),
    ("utf-8", "strict", ("utf-8", HANDLER)),  # only an undecodable file-name byte could fail here
    ("utf-8", "surrogateescape", ("utf-8", "surrogateescape")),  # raw bytes back out: left alone
])
def test_the_handler_goes_where_printing_could_fail(encoding, errors, after):
    stream = io.TextIOWrapper(io.BytesIO(), encoding=encoding, errors=errors)
    degrade_to_ascii(stream)
    assert (stream.encoding, stream.errors) == after
    stream.write("η ≤ 1\n")
    stream.flush()
    assert stream.buffer.getvalue() == ("eta <= 1\n" if encoding != "utf-8" else "η ≤ 1\n").encode(encoding)


@pytest.mark.slow
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_every_command_degrades_to_ascii_on_a_non_utf8_terminal(tmp_path, encoding):
    run = optlab_in(encoding, "run", "tiny", "--steps", "3", "--out", tmp_path / "out", cwd=tmp_path)
    stdout, _ = assert_clean(run, encoding)
    folder = Path(stdout.splitlines()[-1])
    assert folder.parent == tmp_path / "out" and read_metrics(folder)["status"] == "completed"
    assert "eta=0.25" in stdout and "gradC" in stdout

    sweep = optlab_in(encoding, "sweep", "tiny", "--lr", "0.1,0.2", "--steps", "3", "--out", tmp_path / "sw",
                      cwd=tmp_path)
    stdout, _ = assert_clean(sweep, encoding)
    assert Path(stdout.splitlines()[-1]).parent == tmp_path / "sw"

    shown = {}
    for args in (["analyze", folder], ["list"], ["data", "info"], ["--help"], ["sweep", "--help"]):
        shown[args[0]], _ = assert_clean(optlab_in(encoding, *args, cwd=tmp_path), encoding)
        assert shown[args[0]].strip(), args
    assert "theta <- theta - eta gradC" in shown["list"] and "lambdamax" in shown["analyze"]
    # typer.echo (click) writes the one-line errors: they degrade too ("2³²" -> "2^32" in ASCII)
    _, stderr = assert_clean(optlab_in(encoding, "run", "tiny", "--seed", "-1", cwd=tmp_path), encoding, code=2)
    assert stderr.startswith("error: --seed must be an integer in [0, 2") and stderr.count("\n") == 1
    assert encoding != "ascii" or "[0, 2^32)" in stderr


# ----------------------------------------------------------------------------- wrong types in metrics.json


def _set(path: str, value) -> Callable[[dict], None]:
    """A corruption: set `section.key` (or a top-level key) of the record to `value`."""
    def corrupt(record: dict) -> None:
        *section, key = path.split(".")
        (record[section[0]] if section else record)[key] = value
    return corrupt


CORRUPTIONS = {
    "summary.final_loss": _set("summary.final_loss", "0.5"),
    "history.loss": _set("history.loss", 5),
    "config.seed": _set("config.seed", [1, 2]),
    "run_id": _set("run_id", 42),
    "history.params": _set("history.params", [[0.5, -0.5], [0.1], [0.2, 0.3]]),
    "config.lr_schedule": _set("config.lr_schedule", 5),
    "history.step": _set("history.step", ["a", "b", "c", "d"]),
    "status": _set("status", ["completed"]),
    "figures.loss": _set("figures.loss", {"file": "loss.png"}),
}


@pytest.fixture
def mixed_results(tmp_path, write_run) -> Callable[[str], tuple[Path, Path]]:
    """Two good tiny runs (seeds 0 and 1) and one whose metrics.json has `corruption` applied."""
    def make(corruption: str) -> tuple[Path, Path]:
        root = tmp_path / "results"
        for seed in (0, 1):
            write_run(root, run_id=f"good-s{seed}", seed=seed)
        bad = write_run(root, run_id="bad", seed=2)
        record = json.loads((bad / "metrics.json").read_text())
        CORRUPTIONS[corruption](record)
        (bad / "metrics.json").write_text(json.dumps(record))
        return root, bad / "metrics.json"
    return make


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_wrong_typed_metrics_are_skipped_once_naming_file_and_key(mixed_results, tmp_path, corruption):
    root, bad = mixed_results(corruption)
    for args in (["compare", root, "--out", tmp_path / "fig"], ["compare", root, "--group-by-seed", "--out",
                 tmp_path / "fig2"], ["report", root, "--out", tmp_path / "r.html"],
                 ["report", root, "--group-by-seed", "--out", tmp_path / "g.html"]):
        result = invoke(*args)
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        assert result.exit_code == 0, result.output
        skips = [line for line in result.stderr.splitlines() if line.startswith("skipped")]
        assert len(skips) == 1 and str(bad) in skips[0] and corruption in skips[0], result.stderr
    assert "good-s0" in invoke("compare", root, "--no-figures", "--format", "csv").stdout
    page = (tmp_path / "r.html").read_text()
    assert "good-s0" in page and "good-s1" in page and corruption in page  # the page lists the skip too


def test_a_fifo_named_metrics_json_is_skipped_not_waited_on(tmp_path, write_run):
    write_run(tmp_path, run_id="good")
    (tmp_path / "pipe").mkdir()
    os.mkfifo(tmp_path / "pipe" / "metrics.json")
    result = subprocess.run([sys.executable, "-m", "optlab", "compare", tmp_path, "--no-figures"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"skipped {tmp_path / 'pipe' / 'metrics.json'}: not a regular file" in result.stderr
    assert "good" in result.stdout


# ----------------------------------------------------------------------------- saved parameters


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny") / "run"
    assert invoke("run", "tiny", "--steps", "3", "--run-dir", folder, "-q").exit_code == 0
    return folder


@pytest.mark.parametrize("damage", ["truncated", "empty", "flipped", "a single array"])
def test_analyze_on_a_damaged_params_npz_is_one_line_naming_the_file(tiny_run, tmp_path, damage):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_bytes((tiny_run / "metrics.json").read_bytes())
    raw = (tiny_run / "params.npz").read_bytes()
    damaged = {"truncated": raw[: len(raw) // 2], "empty": b"", "flipped": raw[:40] + bytes(40) + raw[80:],
               "a single array": b"\x93NUMPY\x01\x00v\x00{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }"
                                 + b" " * 53 + b"\n" + bytes(16)}[damage]
    (run / "params.npz").write_bytes(damaged)
    result = invoke("analyze", run)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {run / 'params.npz'}: cannot read the saved parameters")
    assert result.stderr.count("\n") == 1


# ----------------------------------------------------------------------------- hostile names in the report

HOSTILE = "<img src=x onerror=alert(1)>"


def test_markdown_twin_escapes_a_run_named_like_an_html_tag(tmp_path, write_run):
    write_run(tmp_path / "results", run_id=HOSTILE)
    write_run(tmp_path / "results", run_id="a_b*c|d", seed=1)
    assert invoke("report", tmp_path / "results").exit_code == 0
    markdown = (tmp_path / "results" / "report.md").read_text()
    page = (tmp_path / "results" / "report.html").read_text()
    assert "<img" not in markdown and "onerror=alert(1)&gt;" in markdown
    assert "### &lt;img src=x onerror=alert(1)&gt;" in markdown
    assert "| a\\_b\\*c\\|d |" in markdown  # emphasis and a cell break, taken literally
    assert "<img src=x" not in page and html.escape(HOSTILE) in page


def test_report_on_a_path_that_is_not_utf8(tmp_path, write_run):
    root = tmp_path / os.fsdecode(b"results\xff")  # a folder name with byte 0xff, as Python sees it
    run = write_run(root, run_id=os.fsdecode(b"run\xfe"))
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}  # strict: an unencodable name would crash the print
    result = subprocess.run([sys.executable, "-m", "optlab", "report", os.fsencode(root)], capture_output=True,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert result.stdout.decode().splitlines() == [f"report: {tmp_path}/results\\xff/report.html",
                                                   f"markdown: {tmp_path}/results\\xff/report.md"]
    page, markdown = (root / "report.html").read_text(), (root / "report.md").read_text()
    assert "results\\xff" in page and "run\\xfe" in page and "### run\\xfe" in markdown
    links = re.findall(r"\]\(([^)]+)\)", markdown)
    assert "run%FE/loss.png" in links  # the name's own bytes, so the link opens the file
    assert all(os.path.isfile(os.fsencode(root) + b"/" + unquote_to_bytes(link)) for link in links)
    assert run.is_dir()


def test_every_experiment_optlab_writes_passes_the_type_checks(tmp_path):
    """The checks refuse hand-edited files, never optlab's own: signals keeps ragged lists in its history."""
    for args in (["signals", "--depth", "2,3", "--width", "8", "--batch-size", "8"], ["tiny", "--steps", "3"]):
        assert invoke("run", *args, "--out", tmp_path, "-q").exit_code == 0
    assert invoke("sweep", "tiny", "--lr", "0.1,9", "--steps", "5", "--out", tmp_path, "-q").exit_code == 0
    result = invoke("compare", tmp_path, "--no-figures", "--format", "csv")
    assert result.exit_code == 0 and "skipped" not in result.stderr, result.stderr
    assert len(result.stdout.splitlines()) == 1 + 4 and "signals" in result.stdout and "diverged" in result.stdout
