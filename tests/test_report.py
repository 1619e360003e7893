"""`optlab report` and `optlab reproduce`: a self-contained HTML page, its Markdown twin, one-command reproduction."""

from __future__ import annotations

import base64
import html
import inspect
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple
from urllib.parse import unquote

import pytest
from typer.testing import CliRunner

import optlab.runs
from optlab.cli import app
from optlab.errors import ConfigError

PNG = b"\x89PNG\r\n\x1a\n"
GIF = b"GIF89a"
# What the page draws: 5 overlays (tiny loss + landscape + the race GIF, mnist loss + test error) + each run's loss.png.
OVERLAYS = ["mnist-loss.png", "mnist-test_error.png", "tiny-landscape.png", "tiny-loss.png", "tiny-race.gif"]
RUN_IDS = ["mnist-adam-s0", "tiny-adam-s0", "tiny-gd-s0", "tiny-gd-s1"]


@pytest.fixture
def results(tmp_path: Path, write_run) -> Path:
    root = tmp_path / "results"
    write_run(root, subdir="a", run_id="tiny-gd-s0", seed=0, summary={"final_loss": 1.0})
    write_run(root, subdir="a", run_id="tiny-gd-s1", seed=1, summary={"final_loss": 3.0})
    write_run(root, subdir="b/c", run_id="tiny-adam-s0", optimizer="adam", lr=0.1)
    write_run(root, "mnist", run_id="mnist-adam-s0", optimizer="adam", lr=0.001)
    (root / "broken").mkdir()
    (root / "broken" / "metrics.json").write_text('{"schema_version": 1, "run_')
    return root


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def data_uris(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/(?:png|gif);base64,([A-Za-z0-9+/=]+)"', page)]


def test_report_is_one_self_contained_page_with_every_figure(results: Path) -> None:
    result = invoke("report", results)
    assert result.exit_code == 0, result.output
    page_path = results / "report.html"
    assert result.stdout.splitlines() == [f"report: {page_path}", f"markdown: {results / 'report.md'}"]
    page = page_path.read_text()
    images = data_uris(page)
    assert len(images) == page.count("<img") == len(OVERLAYS) + len(RUN_IDS)
    assert all(img.startswith(PNG) or img.startswith(GIF) for img in images)
    # nothing to fetch: no external source, stylesheet or script
    assert not re.search(r'(src|href)="(?!data:)', page) and "<script" not in page and "<link" not in page
    body = page[page.index("<tbody>"):page.index("</tbody>")]
    assert re.findall(r"<tr[^>]*><td>([^<]+)</td>", body) == RUN_IDS
    assert "broken" in page[page.index("<h2>Skipped</h2>"):]
    # each run's figures sit in its experiment's section
    mnist, tiny = page.index('id="experiment-mnist"'), page.index('id="experiment-tiny"')
    assert mnist < page.index("<h3>mnist-adam-s0</h3>") < tiny < page.index("<h3>tiny-gd-s1</h3>")
    assert sorted(p.name for p in (results / "report-figures").iterdir()) == OVERLAYS


def test_markdown_twin_links_the_same_figures_by_relative_path(results: Path) -> None:
    assert invoke("report", results).exit_code == 0
    md_path = results / "report.md"
    text = md_path.read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(links) == len(OVERLAYS) + len(RUN_IDS)
    assert all(not Path(unquote(link)).is_absolute() and (md_path.parent / unquote(link)).is_file() for link in links)
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert len(table) == 2 + len(RUN_IDS) and table[2].startswith("| mnist-adam-s0 |")


def test_out_option_and_group_by_seed(results: Path, tmp_path: Path) -> None:
    out = tmp_path / "site" / "lecture.html"
    result = invoke("report", results, "--out", out, "--group-by-seed")
    assert result.exit_code == 0, result.output
    page = out.read_text()
    body = page[page.index("<tbody>"):page.index("</tbody>")]
    assert body.count("<tr") == 3  # the two tiny gd seeds are one row
    assert "tiny-gd-s0 (+1)" in body and "2 ± 1.414" in body  # final loss 1 and 3: mean 2, std √2
    assert (tmp_path / "site" / "lecture.md").is_file()
    assert sorted(p.name for p in (tmp_path / "site" / "lecture-figures").iterdir()) == OVERLAYS


def test_missing_run_figure_is_a_note_not_a_broken_image(results: Path) -> None:
    (results / "a" / "tiny-gd-s1" / "loss.png").unlink()
    assert invoke("report", results, "--where", "experiment=tiny").exit_code == 0
    page = (results / "report.html").read_text()
    assert page.count("<img") == 3 + 2  # tiny overlays + the two runs that still have their figure
    assert "figure loss is missing from the run folder" in page


def test_a_schema_1_run_and_a_schema_2_run_are_reported_side_by_side_each_under_its_caption(
        tmp_path: Path, write_run) -> None:
    write_run(tmp_path, run_id="old-s0", seed=0, schema_version=1)
    new = write_run(tmp_path, run_id="new-s1", seed=1)
    assert invoke("report", tmp_path).exit_code == 0
    page, text = (tmp_path / "report.html").read_text(), (tmp_path / "report.md").read_text()
    assert page.count("<img") == 3 + 2  # the tiny overlays of both runs, and each run's own figure
    assert (new / "loss.png").read_bytes() in data_uris(page)
    # schema 2: the entry's caption; schema 1 has none, so the figure's name
    assert "<figcaption>new-s1: the loss per step, a fixture</figcaption>" in page
    assert "<figcaption>old-s0: loss</figcaption>" in page
    assert "![new-s1: the loss per step, a fixture](new-s1/loss.png)" in text
    assert "![old-s0: loss](old-s0/loss.png)" in text


@pytest.mark.parametrize("args, code, message", [
    (["--out", "page.md"], 2, "error: --out page.md: give the report an .html name"),
    (["--where", "optimizer=newton"], 1, "no runs match --where optimizer=newton"),
])
def test_report_errors(results: Path, args, code, message) -> None:
    result = invoke("report", results, *args)
    assert result.exit_code == code
    assert result.stderr.splitlines()[-1].startswith(message)


def test_report_with_no_runs_exits_1(tmp_path: Path) -> None:
    result = invoke("report", tmp_path)
    assert result.exit_code == 1 and result.stderr.strip() == f"no runs found in {tmp_path}"
    assert not (tmp_path / "report.html").exists()


# ----------------------------------------------------------------------------- in a real browser


CHECKS = """<script>
window.addEventListener("load", () => {
  const pre = document.createElement("pre");
  pre.id = "checks";
  pre.textContent = JSON.stringify({
    images: [...document.images].map(img => img.naturalWidth),
    rows: [...document.querySelectorAll("#runs tbody tr")].map(tr => tr.cells[0].textContent),
  });
  document.body.appendChild(pre);
});
</script>"""


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium package")
def test_report_renders_in_headless_chromium(results: Path, tmp_path: Path) -> None:
    assert invoke("report", results).exit_code == 0
    page = (results / "report.html").read_text()
    probe = tmp_path / "probe.html"  # the report plus a script that writes what the browser saw
    probe.write_text(page.replace("</body>", CHECKS + "</body>"))
    profile = tempfile.mkdtemp(dir=tmp_path)
    dom = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=120, check=True).stdout
    found = re.search(r'<pre id="checks">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    checks = json.loads(html.unescape(found.group(1)))
    assert len(checks["images"]) == len(OVERLAYS) + len(RUN_IDS)
    assert all(width > 0 for width in checks["images"]), checks["images"]
    assert checks["rows"] == RUN_IDS


# ----------------------------------------------------------------------------- reproduce


class Outcome(NamedTuple):
    run_dir: Path
    status: str


@pytest.fixture
def fake_runner(monkeypatch, write_run):
    """Stand in for optlab.runs.runner: each experiments/NAME.toml becomes a tiny run NAME (broken.toml fails)."""
    calls: list[str] = []

    def run_file(path: Path, results_root: Path, quiet: bool = True) -> Outcome:
        calls.append(path.name)
        if path.stem == "broken":
            raise ConfigError(f"{path}: unknown optimizer 'adma'")
        return Outcome(write_run(results_root, run_id=path.stem, optimizer=path.stem), "completed")

    fake = type(sys)("optlab.runs.runner")
    fake.run_file = run_file
    monkeypatch.setitem(sys.modules, "optlab.runs.runner", fake)
    monkeypatch.setattr(optlab.runs, "runner", fake, raising=False)
    return calls


def test_reproduce_runs_every_experiment_file_then_builds_the_report(tmp_path: Path, fake_runner, write_run) -> None:
    experiments = tmp_path / "experiments"
    experiments.mkdir()
    for name in ("sgd.toml", "adam.toml", "README.md"):
        (experiments / name).write_text("")
    out = tmp_path / "lecture"
    write_run(out, run_id="stale-from-last-time")
    result = invoke("reproduce", "lecture", "--experiments", experiments, "--out", out)
    assert result.exit_code == 0, result.output
    assert fake_runner == ["adam.toml", "sgd.toml"]
    page = (out / "report.html").read_text()
    assert re.findall(r"<tr[^>]*><td>([^<]+)</td>", page) == ["adam", "sgd"]  # only this reproduction
    assert (out / "report.md").is_file() and "report: " in result.stdout


def test_reproduce_goes_on_past_a_broken_file_and_exits_1(tmp_path: Path, fake_runner) -> None:
    experiments = tmp_path / "experiments"
    experiments.mkdir()
    for name in ("adam.toml", "broken.toml", "sgd.toml"):
        (experiments / name).write_text("")
    result = invoke("reproduce", "lecture", "--experiments", experiments, "--out", tmp_path / "out")
    assert result.exit_code == 1
    assert fake_runner == ["adam.toml", "broken.toml", "sgd.toml"]
    assert f"failed broken.toml: {experiments / 'broken.toml'}: unknown optimizer 'adma'" in result.stderr
    assert (tmp_path / "out" / "report.html").is_file()


def test_reproduce_without_experiment_files_is_a_one_line_error(tmp_path: Path) -> None:
    result = invoke("reproduce", "lecture", "--experiments", tmp_path / "none")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: --experiments {tmp_path / 'none'}: no such folder")
    (tmp_path / "empty").mkdir()
    result = invoke("reproduce", "lecture", "--experiments", tmp_path / "empty")
    assert result.exit_code == 2 and "no *.toml experiment files" in result.stderr


def test_the_real_runner_has_the_signature_reproduce_calls() -> None:
    runner = pytest.importorskip("optlab.runs.runner")
    if not hasattr(runner, "run_file"):
        pytest.skip("optlab.runs.runner has no run_file yet")
    params = list(inspect.signature(runner.run_file).parameters)
    assert params[:3] == ["path", "results_root", "quiet"]


def test_legend_labels_add_only_the_keys_that_tell_runs_apart_and_folder_names_for_twins():
    """Two runs that differ in momentum only gain `momentum=`; two of the very same settings (a single run
    and a sweep's lane) gain their folders' names instead of every key of their config; a lone run gains
    nothing."""
    from optlab.reporting.compare import Row, Run
    from optlab.reporting.report import labels

    base = {"optimizer": "momentum", "lr": 0.05, "lr_schedule": "constant", "steps": 20, "seed": 0,
            "start": [0.5, 1.5], "grad_noise": 0.0, "momentum": 0.9}

    def row(folder: str, **changes) -> Row:
        return Row(values={}, runs=[Run(Path("results") / folder, {"config": {**base, **changes}})])

    rows = [row("a", momentum=0.5), row("b"), row("single", lr=0.25), row("001-tiny-lr0.25", lr=0.25),
            row("lone", optimizer="adam")]
    assert labels(rows) == ["momentum lr=0.05 momentum=0.5", "momentum lr=0.05 momentum=0.9",
                            "momentum lr=0.25 (single)", "momentum lr=0.25 (001-tiny-lr0.25)", "adam lr=0.05"]
