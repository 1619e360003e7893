"""Animated trajectories: `optlab run tiny --animate`'s GIF, compare's race of tiny runs, GIFs in the report."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from optlab.cli import app
from optlab.experiments import tiny as tiny_experiment
from optlab.plots import Racer, animation, frame_steps
from optlab.problems import tiny

ORANGE, GREEN = (255, 127, 14), (44, 160, 44)  # C1 and C2: the first two runs' markers


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def frames_of(path: Path) -> list[np.ndarray]:
    with Image.open(path) as gif:
        assert gif.format == "GIF"
        out = []
        for i in range(gif.n_frames):
            gif.seek(i)
            out.append(np.asarray(gif.convert("RGB"), dtype=int))
    return out


def pixel(frame: np.ndarray, axes, point) -> np.ndarray:
    """The frame's colour at data point (w1, w2) of `axes` (display y counts up from the bottom)."""
    x, y = axes.transData.transform(np.asarray(point, dtype=float))
    return frame[int(round(frame.shape[0] - y)), int(round(x))]


def near(colour, target, tolerance: int = 40) -> bool:
    return bool(np.max(np.abs(np.asarray(colour) - np.asarray(target))) <= tolerance)


def layout(racers, **how):
    """The animation's axes as its frames have them: the same scene, drawn once."""
    sc = animation.scene(tiny.loss_grid, racers, tiny.CRITICAL_POINTS, minimum_loss=tiny.MINIMUM_LOSS, **how)
    sc.fig.canvas.draw()
    return sc


def test_frame_steps_keep_every_iterate_of_a_short_run_and_the_ends_of_a_long_one():
    assert frame_steps(13).tolist() == list(range(13))
    long = frame_steps(100_001)
    assert len(long) == 100 and long[0] == 0 and long[-1] == 100_000
    assert np.ptp(np.diff(long)) <= 1  # evenly spaced, up to rounding
    assert frame_steps(101).tolist() == sorted(set(frame_steps(101).tolist())) and len(frame_steps(101)) == 100


def test_run_animate_writes_a_gif_whose_frames_go_from_the_start_to_the_final_iterate(tmp_path: Path):
    run_dir = tmp_path / "run"
    result = invoke("run", "tiny", "--opt", "gd", "--lr", "0.25", "--steps", "12", "--start", "0.5,2",
                    "--animate", "--run-dir", run_dir)
    assert result.exit_code == 0, result.output
    record = json.loads((run_dir / "metrics.json").read_text())
    entry = record["figures"]["trajectory"]
    assert entry["path"] == "trajectory.gif" and entry["frames"] == 13 and entry["fps"] > 0 and entry["steps"] == 12
    assert "moving over the loss surface" in entry["caption"] and record["config"]["animate"] is True

    points, losses = np.array(record["history"]["params"]), np.array(record["history"]["loss"])
    start, end = points[0], points[-1]
    assert np.linalg.norm(end - start) > 0.5  # far enough apart to tell the marker's two places
    frames = frames_of(run_dir / "trajectory.gif")
    sc = layout([Racer("gd η=0.25", points, losses)], title="gd η=0.25")
    assert len(frames) == 13 and frames[0].shape[:2] == sc.fig.canvas.get_width_height()[::-1]
    assert near(pixel(frames[0], sc.landscape, start), ORANGE)  # the marker sets out from the start...
    assert not near(pixel(frames[0], sc.landscape, end), ORANGE)  # ...and is not at the end yet
    assert near(pixel(frames[-1], sc.landscape, end), ORANGE)  # the last frame shows the final iterate
    # the loss panel fills in: its dot is at step 0's gap in frame 0 and at the last step's in the last frame
    gap = losses - tiny.MINIMUM_LOSS
    assert near(pixel(frames[0], sc.loss, (0, gap[0])), ORANGE)
    assert near(pixel(frames[-1], sc.loss, (12, gap[-1])), ORANGE)
    assert not near(pixel(frames[0], sc.loss, (12, gap[-1])), ORANGE)


def test_without_animate_there_is_no_gif(tmp_path: Path):
    result = invoke("run", "tiny", "--steps", "3", "--run-dir", tmp_path / "run")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert "trajectory" not in record["figures"] and not list((tmp_path / "run").glob("*.gif"))
    assert record["config"]["animate"] is False


def test_a_long_history_is_subsampled_to_100_frames_with_both_ends(tmp_path: Path):
    t = np.linspace(0, 1, 1001)[:, None]
    points = (1 - t) * np.array([-2.0, 0.5]) + t * np.array([1.2, 1.2])
    shown = animation.race(tmp_path / "long.gif", tiny.loss_grid, [Racer("line", points)], dpi=30)
    assert shown["frames"] == 100 and shown["frame_steps"][0] == 0 and shown["frame_steps"][-1] == 1000
    with Image.open(tmp_path / "long.gif") as gif:
        assert gif.n_frames == 100


def tiny_record(start, end, steps: int) -> dict:
    t = np.linspace(0, 1, steps + 1)[:, None]
    params = (1 - t) * np.asarray(start) + t * np.asarray(end)
    loss = tiny.loss_grid(params[:, 0], params[:, 1])
    return {"history": {"step": list(range(steps + 1)), "params": params.tolist(), "loss": loss.tolist()}}


def test_compare_races_every_run_with_a_marker_of_its_own(tmp_path: Path):
    a = tiny_record((0.5, 2.0), (1.2, 1.2), 6)
    b = tiny_record((-2.0, -0.3), (-1.2, -1.2), 4)  # shorter: it waits at its end while the other goes on
    written = tiny_experiment.overlays([("a", a), ("b", b)], tmp_path / "tiny")
    race = dict((p.name, c) for p, c in written)
    assert set(race) == {"tiny-landscape.png", "tiny-race.gif"} and "2 runs racing" in race["tiny-race.gif"]
    frames = frames_of(tmp_path / "tiny-race.gif")
    racers = [Racer(name, np.array(r["history"]["params"]), np.array(r["history"]["loss"]))
              for name, r in (("a", a), ("b", b))]
    sc = layout(racers, title="tiny")
    assert len(frames) == 7  # the longer run's 7 iterates
    (a0, a_end), (b0, b_end) = ((r.points[0], r.points[-1]) for r in racers)
    assert near(pixel(frames[0], sc.landscape, a0), ORANGE) and near(pixel(frames[0], sc.landscape, b0), GREEN)
    assert not near(pixel(frames[0], sc.landscape, a_end), ORANGE)
    assert not near(pixel(frames[0], sc.landscape, b_end), GREEN)
    assert near(pixel(frames[-1], sc.landscape, a_end), ORANGE) and near(pixel(frames[-1], sc.landscape, b_end), GREEN)
    assert near(pixel(frames[4], sc.landscape, b_end), GREEN)  # b arrived at step 4 and stays


def test_report_embeds_the_race_gif_and_markdown_links_it(tmp_path: Path, write_run):
    root = tmp_path / "results"
    for seed in (0, 1):
        write_run(root, run_id=f"tiny-gd-s{seed}", seed=seed, history=tiny_record((0.5, 2 - seed), (1.2, 1.2), 4)
                  ["history"] | {"lr": [0.25] * 5, "grad_norm": [1.0] * 5})
    result = invoke("report", root, "--out", tmp_path / "report.html")
    assert result.exit_code == 0, result.output
    page = (tmp_path / "report.html").read_text()
    gifs = [base64.b64decode(m) for m in re.findall(r'src="data:image/gif;base64,([A-Za-z0-9+/=]+)"', page)]
    assert len(gifs) == 1 and gifs[0][:6] == b"GIF89a"
    assert gifs[0] == (tmp_path / "report-figures" / "tiny-race.gif").read_bytes()
    assert "(report-figures/tiny-race.gif)" in (tmp_path / "report.md").read_text()


def test_compare_races_at_most_max_racers_and_says_so(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(tiny_experiment, "MAX_RACERS", 2)
    lines = [(f"r{i}", tiny_record((-2.0 + i, 2.0), (1.2, 1.2), 2)) for i in range(3)]
    written = dict((p.name, c) for p, c in tiny_experiment.overlays(lines, tmp_path / "tiny"))
    assert "the first 2 of the 3 runs" in written["tiny-race.gif"]
    assert "3 trajectories" in written["tiny-landscape.png"]  # the still picture keeps them all
    sc = layout([Racer(n, np.array(r["history"]["params"]), np.array(r["history"]["loss"])) for n, r in lines[:2]],
                title="tiny")
    frame = frames_of(tmp_path / "tiny-race.gif")[0]
    assert near(pixel(frame, sc.landscape, (-2.0, 2.0)), ORANGE)
    assert near(pixel(frame, sc.landscape, (-1.0, 2.0)), GREEN)
    assert not near(pixel(frame, sc.landscape, (0.0, 2.0)), (214, 39, 40))  # no third (red) marker


@pytest.mark.parametrize("how", [["--animate"], ["--set", "animate=true"]])
def test_a_sweep_refuses_animate_in_one_line(tmp_path: Path, how):
    result = invoke("sweep", "tiny", "--lr", "0.1,0.2", "--steps", "3", *how, "--out", tmp_path)
    assert result.exit_code == 2, result.output
    if how == ["--animate"]:
        assert "No such option" in result.output  # `optlab sweep` does not offer it
    else:
        assert "animate is for single runs" in result.output and len(result.output.strip().splitlines()) == 1
        assert not list(tmp_path.rglob("*.gif"))


def test_the_frames_share_one_palette_and_keep_every_colour_of_the_last():
    """Frames of up to 256 colours, all of them in the last frame: one palette for all, and each frame's
    pixels come back exactly (no dithering)."""
    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, (200, 3), dtype=np.uint8)
    last = colours[rng.permutation(np.arange(64 * 64) % 200)].reshape(64, 64, 3)
    earlier = [colours[rng.integers(0, 200, (64, 64))] for _ in range(3)]
    frames = [Image.fromarray(a).convert("RGBA") for a in [*earlier, last]]
    mapped = animation.shared_palette(frames)
    assert all(f.mode == "P" for f in mapped)
    assert len({bytes(f.getpalette()) for f in mapped}) == 1
    for image, source in zip(mapped, [*earlier, last]):
        np.testing.assert_array_equal(np.asarray(image.convert("RGB")), source)
