"""The experiment contract: a new experiment, one file, runs with every command and no edit elsewhere.

The file below is a 2-D quadratic bowl C(w) = ½ (w − c)ᵀ A (w − c) + C0, A = [[3, 1], [1, 3]]
(eigenvalues 2 and 4), c = (1, −2), C0 = 0.25. Gradient descent's error obeys
e_t = (I − ηA)^t e_0 exactly, so every number the commands report is known in closed form.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from optlab import results
from optlab.cli import app
from optlab.experiments import EXPERIMENTS

PLUGIN = '''
"""A quadratic bowl with its minimum at c: an experiment written outside optlab."""

import numpy as np

from optlab import plots, results
from optlab.experiments import (EXPERIMENTS, Experiment, RunResult, Sweeping, SweepProgram, default_summary_line,
                                training_head)

A = np.array([[3.0, 1.0], [1.0, 3.0]])
C = np.array([1.0, -2.0])
C0 = 0.25


def loss(w):
    e = w - C
    return 0.5 * e @ A @ e + C0


def loss_grid(w1, w2):
    e1, e2 = w1 - C[0], w2 - C[1]
    return 0.5 * (A[0, 0] * e1**2 + 2 * A[0, 1] * e1 * e2 + A[1, 1] * e2**2) + C0


def descend(lrs, start, steps):
    """Gradient descent for every step size at once (float64, vmapped): points (lanes, steps + 1, 2)."""
    import jax
    import jax.numpy as jnp

    with jax.enable_x64(True):
        a, c = jnp.asarray(A), jnp.asarray(C)

        def run(lr):
            def step(w, _):
                w = w - lr * a @ (w - c)
                return w, w
            w0 = jnp.asarray(start, jnp.float64)
            return jnp.concatenate([w0[None], jax.lax.scan(step, w0, None, length=steps)[1]])

        return np.asarray(jax.vmap(run)(jnp.asarray(lrs, jnp.float64)))


def result(points, lr, run_dir=None, entry=results.figure_entry):
    losses = np.array([loss(w) for w in points])
    distance = float(np.linalg.norm(points[-1] - C))
    history = {"step": np.arange(len(points)), "loss": losses, "params": points, "lr": np.full(len(points), lr)}
    summary = {"final_loss": float(losses[-1]), "distance": distance, "steps": len(points) - 1}
    figures = {}
    if run_dir is not None:
        plots.landscape(run_dir / "path.png", loss_grid, [(f"η={lr:g}", points)], [("minimum", tuple(C))], title="bowl")
        figures["path"] = entry("path.png", f"the bowl and gradient descent's {len(points) - 1} steps at η={lr:g}",
                                steps=len(points) - 1)
    return RunResult("completed", history, summary, {}, figures, {"w": points[-1]})


def bare_name(path, caption, **meta):
    """What a plug-in written for schema 1 returns as a figure: the file name alone."""
    return path


def prepare(cfg):
    def job(ctx):
        ctx.progress.start(1, "bowl")
        out = result(descend([cfg.lr], cfg.start, cfg.steps)[0], cfg.lr, ctx.run_dir)
        ctx.progress.advance(1, {"loss": out.summary["final_loss"]})
        ctx.progress.stop()
        return out
    return job


def run_lanes(cfgs, lanes, run_dirs, progress, save_progress):
    points = descend([c.lr for c in cfgs], cfgs[0].start, cfgs[0].steps)
    out = [result(p, c.lr, d, entry=bare_name) for p, c, d in zip(points, cfgs, run_dirs)]
    progress.advance(len(cfgs), [r.summary for r in out])
    return out


def analyze(record, saved, options):
    import jax
    import jax.numpy as jnp

    from optlab.curvature import analysis

    with jax.enable_x64(True):
        bowl = lambda w, batch=None, key=None: 0.5 * (w - C) @ jnp.asarray(A) @ (w - C) + C0
        report = analysis.hessian_spectrum(bowl, jnp.asarray(saved["w"]), k=options.k_for(2))
    return {"data": "none", **report}


def summary_line(record):
    return default_summary_line(record) + f", {record['summary']['distance']:.3g} from the minimum"


def overlays(lines, stem):
    path = stem.with_name(stem.name + "-bowl.png")
    trajectories = [(label, np.array(record["history"]["params"], float)) for label, record in lines]
    plots.landscape(path, loss_grid, trajectories, [("minimum", tuple(C))], title="bowl")
    return [(path, f"bowl: {len(trajectories)} trajectories")]


EXPERIMENTS.register("bowl", "a quadratic bowl, minimum C0 = 0.25 at (1, -2)", Experiment(
    prepare, fields=("steps", "start"), sweep=Sweeping(lambda cfg, cache: SweepProgram(run_lanes, 1024),
                                                       array_keys=("lr", "seed")),
    metrics=("distance", "final_loss"), analyze=analyze, summary_line=summary_line, overlays=overlays))
'''

A = np.array([[3.0, 1.0], [1.0, 3.0]])
MINIMUM, C0, START, STEPS = np.array([1.0, -2.0]), 0.25, (3.0, 3.0), 20


def gd_point(lr: float, t: int) -> np.ndarray:
    """w_t = c + (I − ηA)^t (w_0 − c), by hand."""
    return MINIMUM + np.linalg.matrix_power(np.eye(2) - lr * A, t) @ (np.array(START) - MINIMUM)


def bowl_loss(w: np.ndarray) -> float:
    return float(0.5 * (w - MINIMUM) @ A @ (w - MINIMUM) + C0)


@pytest.fixture(scope="module")
def bowl(tmp_path_factory):
    """The plug-in file, imported (it registers itself), and unregistered afterwards."""
    file = tmp_path_factory.mktemp("plugin") / "bowl_experiment.py"
    file.write_text(PLUGIN)
    spec = importlib.util.spec_from_file_location("bowl_experiment", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    EXPERIMENTS.unregister("bowl")
    sys.modules.pop("bowl_experiment", None)


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_the_hand_formula_is_right():
    # η = 0.25: I − ηA is 0 along (1, 1) (λ = 4) and 0.5 along (1, −1) (λ = 2); e0 = (2, 5) = 3.5(1, 1) − 1.5(1, −1)
    e1 = gd_point(0.25, 1) - MINIMUM
    np.testing.assert_allclose(e1, [-0.75, 0.75], atol=1e-15)
    assert bowl_loss(gd_point(0.25, 1)) == pytest.approx(0.5 * 2 * (2 * 0.75**2) + C0)  # ½ λ |e|² along λ = 2


def test_a_plugin_experiment_runs_with_run_analyze_sweep_compare_and_report(bowl, tmp_path):
    listed = cli("list")
    assert "bowl" in listed.stdout and "a quadratic bowl" in listed.stdout

    run_dir = tmp_path / "single"
    done = cli("run", "bowl", "--lr", "0.25", "--steps", STEPS, "--start", "3,3", "--run-dir", run_dir)
    assert done.exit_code == 0, done.output
    assert "bowl gd η=0.25 constant: completed, loss 0.25" in done.stdout
    record = results.read_metrics(run_dir)
    assert record["experiment"] == "bowl" and record["config"]["start"] == [3.0, 3.0]
    np.testing.assert_allclose(record["history"]["params"][1], gd_point(0.25, 1), rtol=1e-15)
    np.testing.assert_allclose(record["history"]["params"][-1], MINIMUM, atol=1e-5)  # 0.5^20 · 3.5√2 = 4.7e-6
    assert record["summary"]["final_loss"] == pytest.approx(bowl_loss(gd_point(0.25, STEPS)), rel=1e-12)
    assert record["summary"]["final_loss"] == pytest.approx(C0, abs=1e-10)
    caption = f"the bowl and gradient descent's {STEPS} steps at η=0.25"
    assert record["figures"] == {"path": {"path": "path.png", "caption": caption, "steps": STEPS}}
    assert (run_dir / "path.png").read_bytes()[:4] == b"\x89PNG"

    analyzed = cli("analyze", run_dir)
    assert analyzed.exit_code == 0, analyzed.output
    analyzed = results.read_metrics(run_dir)
    hessian = analyzed["analysis"]["hessian"]
    assert analyzed["figures"]["path"] == record["figures"]["path"]  # kept, and the density's entry added:
    assert analyzed["figures"]["spectral_density"]["measured_on"] == hessian["data"] == "none"
    np.testing.assert_allclose(sorted(hessian["bottom_eigenvalues"]), [2.0, 4.0], atol=1e-9)  # A's eigenvalues
    assert hessian["trace"] == pytest.approx(6.0)

    swept = cli("sweep", "bowl", "--lr", "0.05,0.25", "--steps", STEPS, "--start", "3,3", "--best", "distance",
                "--figures", "all", "--out", tmp_path / "sweeps", "-q")
    assert swept.exit_code == 0, swept.output
    sweep_dir = Path(swept.stdout.strip().splitlines()[-1])
    summary = json.loads((sweep_dir / "summary.json").read_text())
    assert summary["metric"] == "distance" and summary["best"] == "001-bowl-gd-lr0.25"
    for run in summary["runs"]:
        lane = results.read_metrics(run["path"])
        w = gd_point(lane["config"]["lr"], STEPS)
        assert lane["summary"]["final_loss"] == pytest.approx(bowl_loss(w), rel=1e-12)
        assert lane["summary"]["distance"] == pytest.approx(np.linalg.norm(w - MINIMUM), rel=1e-9)
        # the lanes return bare file names, as a plug-in written for schema 1 does: recorded as schema 2
        assert lane["schema_version"] == 2 and lane["figures"] == {"path": {"path": "path.png"}}
    slow = results.read_metrics(sweep_dir / "000-bowl-gd-lr0.05")["summary"]["final_loss"]
    assert slow == pytest.approx(bowl_loss(gd_point(0.05, STEPS)), rel=1e-12) and slow > C0 + 1e-3

    compared = cli("compare", sweep_dir, "--format", "json", "--out", tmp_path / "figures")
    assert compared.exit_code == 0, compared.output
    table = json.loads(compared.stdout)
    assert sorted(r["final_loss"] for r in table) == pytest.approx(sorted(
        bowl_loss(gd_point(lr, STEPS)) for lr in (0.05, 0.25)), rel=1e-9)
    assert (tmp_path / "figures" / "bowl-bowl.png").read_bytes()[:4] == b"\x89PNG"  # the plug-in's own overlay

    reported = cli("report", tmp_path, "--out", tmp_path / "report.html")
    assert reported.exit_code == 0, reported.output
    page = (tmp_path / "report.md").read_text()
    assert "bowl: 3 trajectories" in page  # the single run and the sweep's two
    assert f"![single: {caption}]" in page  # a run's own figure under its caption
    assert "![000-bowl-gd-lr0.05: path]" in page  # no caption: its name


def test_the_registry_forgets_an_unregistered_experiment(bowl):
    from optlab.errors import ConfigError

    EXPERIMENTS.register("bowl-copy", "a copy", EXPERIMENTS["bowl"])
    assert EXPERIMENTS.unregister("bowl-copy") is EXPERIMENTS["bowl"]
    assert "bowl-copy" not in EXPERIMENTS
    with pytest.raises(ConfigError, match="unknown experiment 'bowl-copy'"):
        EXPERIMENTS.unregister("bowl-copy")


def test_experiment_modules_import_without_jax():
    """So that the commands that only read results (compare, report, list, --help) can use the registry."""
    import subprocess

    code = ("import sys, optlab.experiments, optlab.problems.tiny, optlab.runs.record, optlab.reporting.report; "
            "print(sorted(m for m in ('jax', 'optax') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_an_experiment_without_analyze_or_sweep_hooks_is_refused_in_one_line(tmp_path, write_run):
    run = write_run(tmp_path, experiment="signals", run_id="signals-run")
    results.save_params(run, {})  # what a signals run saves: nothing trained
    analyzed = cli("analyze", run)
    assert analyzed.exit_code == 2 and analyzed.output.count("\n") == 1
    assert analyzed.output == f"error: {run}: a 'signals' run has no trained parameters to analyze\n"
    swept = cli("sweep", "signals", "--set", "width=8,16", "--out", tmp_path / "out")
    assert swept.exit_code == 2 and swept.output == "error: experiment 'signals' cannot be swept yet\n"
    assert not (tmp_path / "out").exists()
