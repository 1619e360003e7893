"""`optlab reproduce lecture`'s page: the lecture's sections in order, each claim with the number measured for it.

The fast tests stand a fake runner in for optlab.runs.runner (each experiment file becomes a run folder
written by hand); the slow one reproduces a small lecture for real (tiny runs, a short bifurcation, two
epochs of a small network on an MNIST-shaped synthetic dataset, a shallow signals run) and checks each
printed number against the runs' metrics.json and, for the tiny model, against the analytic values.
"""

from __future__ import annotations

import html
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import optlab.runs
from optlab.cli import app
from optlab.errors import ConfigError
from optlab.reporting import lecture
from optlab.results import figure_entry

REPO_EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
ORDER = ["landscape", "gd-slow", "gd-bounce", "newton", "momentum", "noisy-momentum", "adam", "bifurcation",
         "phase-diagrams", "animations", "mnist-curves", "mnist-weights", "mnist-sparsity", "saddles",
         "network-saddles", "signals"]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def section_ids(page: str) -> list[str]:
    return re.findall(r'<section id="([^"]+)">', page)


def measured_line(page: str, key: str) -> str:
    """The text of a section's "optlab measured" paragraph, unescaped, tags removed."""
    block = page.split(f'<section id="{key}">', 1)[1].split("</section>", 1)[0]
    found = re.search(r'<p class="measured">(.*?)</p>', block, re.S)
    return html.unescape(re.sub(r"<[^>]+>", "", found.group(1)))


# ----------------------------------------------------------------------------- the manifest


def test_sections_follow_the_lecture_and_name_the_repository_experiment_files() -> None:
    assert [s.key for s in lecture.SECTIONS] == ORDER
    assert [s.part for s in lecture.SECTIONS] == ["tiny"] * 10 + ["mnist"] * 3 + ["saddles"] * 2 + ["signals"]
    shipped = {f.stem for f in REPO_EXPERIMENTS.glob("*.toml")}
    assert set(lecture.files(lecture.SECTIONS)) <= shipped  # every file a section reads is shipped
    assert shipped - set(lecture.files(lecture.SECTIONS)) == {"mnist-hessian-free", "mnist-identity", "mnist-linear"}
    assert lecture.files(lecture.sections(["signals", "saddles"])) == [
        "tiny-newton-saddle", "tiny-saddle-free-newton", "tiny-newton", *lecture.INDEX_RUNS, "signals"]


def test_the_signals_experiment_file_is_the_lecture_s_grid() -> None:
    from optlab import config
    from optlab.runs.resolve import resolve

    cfg = resolve([config.read_toml(REPO_EXPERIMENTS / "signals.toml")])
    assert (cfg.experiment, cfg.depth, cfg.width) == ("signals", tuple(range(2, 21)), 256)
    assert (cfg.init, cfg.init_scale) == (("glorot", "he", "normal"), (0.5, 1.0, 2.0))


def test_a_missing_key_or_run_is_a_not_measured_sentence() -> None:
    record = {"status": "completed", "analysis": {"critical_point": "minimum", "hessian_eigenvalues": [5.84, 0.16]},
              "summary": {"final_loss": 0.1184}}
    runs = lecture.Runs({"tiny-newton": record}, {"tiny-gd-slow": "tiny-gd-slow.toml failed (bad lr)"})
    gd_slow = next(s for s in lecture.SECTIONS if s.key == "gd-slow")
    (ok, limit), (ok2, slow) = lecture.measured(gd_slow, runs)
    assert ok and limit == "λmax = 5.84 at the minimum, so 2/λmax = 0.3425."
    assert not ok2 and slow == "not measured: tiny-gd-slow.toml failed (bad lr)."
    record["analysis"]["hessian_eigenvalues"] = [0.16, None]  # NaN reads back as null
    assert lecture.measured(gd_slow, runs)[0] == (
        False, "not measured: the run of tiny-newton.toml has no finite number at analysis.hessian_eigenvalues "
               "(found None).")
    record["status"] = "diverged"
    assert lecture.measured(gd_slow, runs)[0] == (False, "not measured: the run of tiny-newton.toml ended diverged.")


# ----------------------------------------------------------------------------- the page, with a fake runner


@pytest.fixture
def fake_runner(monkeypatch, write_run):
    """Each NAME.toml becomes a tiny run (the conftest record: Hessian eigenvalues 0.16, 5.84 at a minimum);
    bifurcation-gd.toml fails."""
    calls: list[str] = []

    def run_file(path: Path, results_root: Path, quiet: bool = True):
        calls.append(path.stem)
        if path.stem == "bifurcation-gd":
            raise ConfigError(f"{path}: --lr-min 0.5 must be below --lr-max 0.2")
        extra = {"optimizer": "<b>adam</b>", "lr": 0.1, "figures": {
            "loss": figure_entry("loss.png", "the loss"), "trajectory": figure_entry("trajectory.gif", "racing")}
        } if path.stem == "tiny-adam" else {}
        folder = write_run(results_root, run_id=path.stem, **extra)
        return type("Outcome", (), {"run_dir": folder, "status": "completed"})()

    fake = type(sys)("optlab.runs.runner")
    fake.run_file = run_file
    monkeypatch.setitem(sys.modules, "optlab.runs.runner", fake)
    monkeypatch.setattr(optlab.runs, "runner", fake, raising=False)
    return calls


def experiments_dir(tmp_path: Path, *stems: str) -> Path:
    folder = tmp_path / "experiments"
    folder.mkdir()
    for stem in stems:
        (folder / f"{stem}.toml").write_text("")
    return folder


def test_page_holds_the_sections_in_order_and_says_what_could_not_be_measured(tmp_path: Path, fake_runner) -> None:
    folder = experiments_dir(tmp_path, "zeta-extra", "tiny-adam", "tiny-newton", "bifurcation-gd", "tiny-gd-oscillates")
    out = tmp_path / "out"
    result = invoke("reproduce", "lecture", "--experiments", folder, "--out", out)
    assert result.exit_code == 1  # bifurcation-gd failed; the page is still written
    assert fake_runner == ["tiny-newton", "tiny-gd-oscillates", "bifurcation-gd", "tiny-adam", "zeta-extra"]
    page = (out / "report.html").read_text()
    assert section_ids(page) == ORDER
    assert page.index("Further experiments") < page.index("zeta-extra.toml") < page.index('<h2 id="runs">')
    bounce = measured_line(page, "gd-bounce")
    assert bounce.startswith("optlab measured: λmax = 5.84 at the minimum, so 2/λmax = 0.3425.")
    assert "not measured: bifurcation-gd.toml failed (" in bounce and "must be below --lr-max 0.2)" in bounce
    assert measured_line(page, "momentum") == "optlab measured: not measured: tiny-momentum.toml is not in " \
                                              f"{folder}."
    adam = page.split('<section id="adam">')[1].split("</section>")[0]  # every figure the run lists, once
    assert re.findall(r"<figcaption>([^<]+)</figcaption>", adam) == ["tiny-adam: the loss", "tiny-adam: racing"]
    assert "tiny-adam lists no landscape figure in its metrics.json" in adam
    assert page.count("<figcaption>tiny-adam: racing</figcaption>") == 1
    assert "<b>adam</b>" not in page and "&lt;b&gt;adam&lt;/b&gt; η=0.1" in page  # escaped, as report.py does
    md = (out / "report.md").read_text()
    assert md.index("### The landscape") < md.index("### Adam") < md.index("### Exploding and vanishing signals")
    assert "\\<b\\>" not in md and "&lt;b&gt;adam&lt;/b&gt;" in md


def test_only_runs_and_shows_the_chosen_parts(tmp_path: Path, fake_runner) -> None:
    folder = experiments_dir(tmp_path, "tiny-newton", "tiny-newton-saddle", "signals", "zeta-extra")
    result = invoke("reproduce", "lecture", "--experiments", folder, "--out", tmp_path / "out", "--only", "saddles")
    assert result.exit_code == 0, result.output
    assert fake_runner == ["tiny-newton-saddle", "tiny-newton"]
    page = (tmp_path / "out" / "report.html").read_text()
    assert section_ids(page) == ["saddles", "network-saddles"] and "Further experiments" not in page
    assert "not measured: tiny-saddle-free-newton.toml is not in" in measured_line(page, "saddles")
    bad = invoke("reproduce", "lecture", "--experiments", folder, "--only", "tiny,mnst")
    assert bad.exit_code == 2 and "--only mnst: not a part of the lecture (choose from tiny, mnist" in bad.stderr


# ----------------------------------------------------------------------------- a real, small lecture


def write_mnist_like(folder: Path, n_train: int = 200, n_test: int = 100) -> Path:
    """MNIST's file layout, random 28×28 images of ten classes: a dataset to run the lecture's code path on."""
    from optlab.data.idx import write_idx

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.resize(np.arange(10, dtype=np.uint8), n)
        images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for c in range(10):
            images[labels == c, 2 * c + 4, 4:24] = 255  # a bar at the class's height: learnable
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return folder


SMALL = {
    "tiny-newton": 'experiment = "tiny"\noptimizer = "newton"\nsteps = 20\nstart = [0.5, 1.5]\n',
    "tiny-gd-oscillates": 'experiment = "tiny"\noptimizer = "gd"\nlr = 0.35\nsteps = 100\nstart = [0.5, 1.5]\n',
    "bifurcation-gd": ('experiment = "bifurcation"\noptimizer = "gd"\nlr_min = 0.3\nlr_max = 0.45\nlr_count = 16\n'
                       'steps = 400\nstart = [0.5, 1.5]\n'),
    "mnist-adam-anneal": ('experiment = "mnist"\noptimizer = "adam"\nlr = 0.003\nlr_schedule = "anneal"\n'
                          'anneal_fraction = 0.5\nepochs = 2\nbatch_size = 20\nhidden = [16, 16]\n'
                          'input_noise = 0.3\ndata_dir = "{data}"\n'),
    "signals": ('experiment = "signals"\ndepth = [2, 4]\nwidth = 16\ninit = ["glorot", "he"]\n'
                'init_scale = [1.0]\nbatch_size = 32\ndata_dir = "{data}"\n'),
}


@pytest.mark.slow
def test_a_small_lecture_prints_the_numbers_of_its_runs(tmp_path: Path) -> None:
    data = write_mnist_like(tmp_path / "data")
    folder = tmp_path / "experiments"
    folder.mkdir()
    for stem, text in SMALL.items():
        (folder / f"{stem}.toml").write_text(text.replace("{data}", str(data)))
    out = tmp_path / "lecture"
    result = invoke("reproduce", "lecture", "--experiments", folder, "--out", out)
    assert result.exit_code == 0, result.output
    page = (out / "report.html").read_text()
    assert section_ids(page) == ORDER
    records = [json.loads(p.read_text()) for p in out.glob("*/metrics.json")]
    rec = {r["experiment"] if r["experiment"] != "tiny" else r["config"]["optimizer"]: r for r in records}
    newton, gd, bif, mnist, sig = (rec[k] for k in ("newton", "gd", "bifurcation", "mnist", "signals"))

    lam_min, lam_max = sorted(newton["analysis"]["hessian_eigenvalues"])
    assert (lecture.fmt(lam_min), lecture.fmt(lam_max), lecture.fmt(2 / lam_max)) == ("0.16", "5.84", "0.3425")
    c_star = newton["summary"]["final_loss"]
    assert lecture.fmt(c_star) == lecture.fmt(0.08 * 1.46 + 0.04**2)  # (s² − 1.5)² + 0.08s² at s² = 1.46
    bounce = measured_line(page, "gd-bounce")
    assert "λmax = 5.84 at the minimum, so 2/λmax = 0.3425." in bounce
    assert f"1 − ηλmax = {lecture.fmt(1 - 0.35 * lam_max)} per step" in bounce
    assert f"the run is oscillating, C − C* = {lecture.fmt(gd['summary']['final_loss'] - c_star)}." in bounce
    assert gd["summary"]["oscillating"] is True
    i = int(np.argmin(np.abs(np.array(bif["analysis"]["lr"]) - 0.35)))
    assert bif["analysis"]["period"][i] == 2
    assert f"the attractor at η = {lecture.fmt(bif['analysis']['lr'][i])} (the grid's nearest to 0.35) has period 2." \
        in bounce
    assert "not measured: tiny-gd-slow.toml is not in" in measured_line(page, "gd-slow")

    s = mnist["summary"]
    assert measured_line(page, "mnist-curves").startswith(
        f"optlab measured: Test error {100 * s['test_error']:.2f}% after 2 epochs (best "
        f"{100 * s['best_test_error']:.2f}% at epoch {s['best_epoch']}); the step went from 0.003 to "
        f"{mnist['history']['lr'][-1]:.3g}")
    dead, active = mnist["analysis"]["dead_units"], mnist["analysis"]["active_fraction"]
    assert (f"Layer 1: a unit is active on {active[0]:.1%} of the test images on average, {dead[0]} of 16 units "
            f"({dead[0] / 16:.1%}) never are; layer 2: a unit is active on {active[1]:.1%}") in \
        measured_line(page, "mnist-sparsity")
    assert "W1 is drawn after epochs 1, 2;" in measured_line(page, "mnist-weights")

    lines = {line["init"]: line for line in sig["summary"]["lines"] if line["activation"] == "relu"}  # the lecture's
    signals = measured_line(page, "signals")
    for init in ("glorot", "he"):
        assert (f"{init}×1 {lecture.fmt(lines[init]['forward_factor'])} "
                f"(theory {lecture.fmt(lines[init]['theory_factor'])})") in signals
    assert (lecture.fmt(lines["he"]["theory_factor"]), lecture.fmt(lines["glorot"]["theory_factor"])) == ("1", "0.7071")
    figures = re.findall(r"<figcaption>([^<]+)</figcaption>", page.split('<section id="signals">')[1])
    assert figures[0] == html.escape(f"{sig['run_id']}: {sig['figures']['signals']['caption']}")
