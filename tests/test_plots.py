"""Figures render headless, write real PNGs, and survive the inputs a diverged run produces."""

from __future__ import annotations

import threading
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from optlab import plots
from optlab.plots import Curve

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read_png(path: Path, min_px: int = 300, max_px: int = 2500) -> np.ndarray:
    """Assert `path` is a non-blank PNG of a sensible size; return its pixels."""
    assert path.is_file()
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[2] in (3, 4)
    assert min_px <= img.shape[0] <= max_px and min_px <= img.shape[1] <= max_px, img.shape
    assert img[..., :3].std() > 0.02, "figure is blank"
    assert not list(path.parent.glob(".*.tmp")), "temporary file left behind"
    return img


def bowl(w1: np.ndarray, w2: np.ndarray) -> np.ndarray:
    """A positive loss with a saddle at the origin and minima at (±1, 0)."""
    return (w1**2 - 1) ** 2 + w2**2 + 1e-3


def test_landscape_draws_trajectories_and_critical_points(tmp_path):
    t = np.linspace(0, 1, 20)[:, None]
    traj = np.hstack([0.2 + 0.8 * t, 1.5 - 1.5 * t])
    out = plots.landscape(tmp_path / "land.png", bowl, [("gd", traj), ("newton", traj[::4] * 0.9)],
                          critical_points=[("minimum", (1.0, 0.0)), ("minimum", (-1.0, 0.0)),
                                           ("saddle", (0.0, 0.0))], title="tiny")
    assert out == tmp_path / "land.png"
    img = read_png(out)
    assert img.shape[1] > img.shape[0] * 0.9  # roughly square with a colourbar


def test_landscape_tolerates_nan_inf_and_far_points(tmp_path):
    diverged = np.array([[0.5, 0.5], [2.0, -3.0], [1e8, 1e9], [1e300, -1e300], [np.inf, np.nan], [np.nan, np.nan]])
    out = plots.landscape(tmp_path / "div.png", bowl, [("gd lr=2", diverged)])
    read_png(out)


def test_landscape_auto_bounds_ignore_divergence_but_cover_starts():
    far = np.array([[3.0, -4.0], [30.0, 40.0], [1e12, 1e12], [np.nan, np.nan]])
    w1min, w1max, w2min, w2max = plots.training._landscape_bounds([far], [(0.0, 0.0)])
    assert w1min <= -2.5 and w2max >= 2.5  # at least [-2.5, 2.5]^2
    assert w2min < -4.0 and w1max > 30.0  # the start and the in-reach step are shown
    assert w1max < 100  # the runaway point does not shrink the landscape to a dot


def test_landscape_with_explicit_bounds_and_no_trajectories(tmp_path):
    out = plots.landscape(tmp_path / "empty.png", lambda a, b: np.exp(a) + b**2 + 0.1, [],
                          bounds=(-1, 1, -2, 2))
    read_png(out)


def test_curves_with_bands_and_nonpositive_values(tmp_path):
    x = np.arange(50.0)
    mean = np.exp(-x / 10)
    std = 0.8 * mean
    mean_b = mean.copy()
    mean_b[10] = 0.0      # masked on the log axis
    mean_b[20] = np.nan   # a diverged seed
    mean_b[30] = np.inf
    out = plots.curves(tmp_path / "c.png",
                       [Curve("sgd", x, mean, mean - 2 * std, mean + std), Curve("adam", x, mean_b)],
                       xlabel="epoch", ylabel="test loss", title="5 seeds")
    read_png(out)


def test_curves_log_axis_with_nothing_positive_falls_back_to_linear(tmp_path):
    out = plots.curves(tmp_path / "z.png", [Curve("zero", np.arange(5), np.zeros(5))], xlabel="x", ylabel="y")
    read_png(out)


def test_curves_reject_mismatched_lengths(tmp_path):
    with pytest.raises(ValueError, match="x has 3 points, y has 4"):
        plots.curves(tmp_path / "bad.png", [Curve("a", np.arange(3), np.ones(4))], xlabel="x", ylabel="y")


def test_learning_curves_reads_history_with_none_and_zero(tmp_path):
    n = 30
    e = np.arange(1, n + 1)
    history = {
        "epoch": e.tolist(),
        "train_loss": (1 / e).tolist(),
        "test_loss": (1 / e + 0.05).tolist(),
        "train_error": np.r_[0.1 / e[:-5], np.zeros(5)].tolist(),  # reaches 0: masked on log axis
        "test_error": (0.012 + 0.2 / e).tolist(),
        "lr": (0.1 / (1 + e / 5)).tolist(),
    }
    history["test_loss"][3] = None  # metrics.json stores non-finite numbers as null
    out = plots.learning_curves(tmp_path / "lc.png", history, title="mnist adam")
    img = read_png(out)
    assert img.shape[1] > 2.5 * img.shape[0]  # three panels side by side


def test_tile_grid_layout_and_placement():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(225, 784))
    mosaic = plots.tile_grid(w, (28, 28))
    assert mosaic.shape == (15 * 29 - 1, 15 * 29 - 1) == (434, 434)
    k = 37  # row 2, column 7
    np.testing.assert_array_equal(mosaic[2 * 29:2 * 29 + 28, 7 * 29:7 * 29 + 28], w[k].reshape(28, 28))
    assert np.isnan(mosaic[28, :]).all() and np.isnan(mosaic[:, 28]).all()  # 1-pixel gaps
    assert np.isfinite(mosaic).sum() == 225 * 784


def test_tile_grid_accepts_transposed_weights_and_pads_empty_cells():
    w = np.arange(10 * 4, dtype=float).reshape(10, 4)  # 10 units of 2x2
    mosaic = plots.tile_grid(w.T, (2, 2))  # (pixels, units) as in x @ W
    assert mosaic.shape == (3 * 3 - 1, 4 * 3 - 1)  # 10 units -> 3 rows x 4 cols
    np.testing.assert_array_equal(mosaic[6:8, 3:5], w[9].reshape(2, 2))  # unit 9: row 2, col 1
    assert np.isnan(mosaic[6:8, 6:8]).all()  # slot 10 is empty
    with pytest.raises(ValueError, match="do not hold 28x28 images"):
        plots.tile_grid(np.zeros((5, 100)))


def test_weight_tiles_seven_snapshots(tmp_path):
    rng = np.random.default_rng(1)
    snaps = {e: rng.normal(scale=0.05 * e, size=(25, 784)) for e in (50, 1, 2, 3, 4, 5, 10)}
    snaps[3][0, :] = np.nan  # a diverged unit does not blank the panel
    out = plots.weight_tiles(tmp_path / "w.png", snaps, title="first-layer weights")
    img = read_png(out)
    assert img.shape[1] > img.shape[0]  # two rows of four
    with pytest.raises(ValueError):
        plots.weight_tiles(tmp_path / "none.png", {})


def test_sparsity_histograms(tmp_path):
    rng = np.random.default_rng(2)
    act1 = np.r_[np.zeros(12), rng.uniform(0, 1, 213)]
    act2 = rng.normal(size=(500, 225)) + 1.0  # raw activations are reduced to mean(h > 0)
    out = plots.sparsity(tmp_path / "s.png", [act1, act2], dead=[12, 0])
    read_png(out)


def test_heatmap_with_diverged_cells(tmp_path):
    v = np.array([[0.9, 0.1, 0.02], [0.05, 0.004, np.nan], [np.nan, np.inf, np.nan]])
    out = plots.heatmap(tmp_path / "h.png", v, ["1e-3", "1e-2", "1e-1"], ["0", "0.9", "0.99"],
                        xlabel="momentum", ylabel="learning rate", title="final loss")
    read_png(out, min_px=200)
    with pytest.raises(ValueError, match="do not match"):
        plots.heatmap(tmp_path / "bad.png", v, ["a"], ["b"], xlabel="x", ylabel="y")


def test_heatmap_all_diverged(tmp_path):
    out = plots.heatmap(tmp_path / "nan.png", np.full((2, 2), np.nan), ["a", "b"], ["c", "d"],
                        xlabel="x", ylabel="y")
    read_png(out, min_px=200)


def test_figures_render_from_threads(tmp_path):
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            plots.curves(tmp_path / f"t{i}.png", [Curve("a", np.arange(10), np.arange(1.0, 11) * (i + 1))],
                         xlabel="x", ylabel="y")
        except BaseException as e:  # noqa: BLE001 - collected and re-raised in the main thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i in range(4):
        read_png(tmp_path / f"t{i}.png")


def test_writes_into_missing_parent_folder(tmp_path):
    out = plots.curves(tmp_path / "figs" / "sub" / "c.png", [Curve("a", np.arange(3), np.ones(3))],
                       xlabel="x", ylabel="y", logy=False)
    read_png(out)


def test_landscape_rejects_empty_bounds(tmp_path):
    with pytest.raises(ValueError, match="min < max"):
        plots.landscape(tmp_path / "b.png", bowl, [], bounds=(1, 1, -1, 1))


def test_log_labels_are_matplotlibs_own_in_unicode():
    """The labels matplotlib's LogFormatterSciNotation gives (mathtext), rewritten: decades, multiples of
    decades (minor ticks), and a form we do not rewrite (a fractional exponent) left as it was."""
    from matplotlib.ticker import LogFormatterSciNotation

    from optlab.plots._base import UnicodeLogFormatter, new_figure, unicode_of

    fig = new_figure(3, 3)
    ax = fig.add_subplot()
    ax.set_yscale("log")
    ax.set_ylim(1.5e-3, 2.5e-3)  # under 0.4 of a decade: matplotlib labels every minor tick

    def labels(formatter):
        formatter.set_axis(ax.yaxis)
        formatter.set_locs([2e-3])
        return [formatter(v) for v in (1e-3, 1.0, 10.0, 2e-3, 5e12)]

    assert labels(LogFormatterSciNotation(labelOnlyBase=False)) == [
        r"$\mathdefault{10^{-3}}$", r"$\mathdefault{10^{0}}$", r"$\mathdefault{10^{1}}$",
        r"$\mathdefault{2\times10^{-3}}$", r"$\mathdefault{5\times10^{12}}$"]
    assert labels(UnicodeLogFormatter(labelOnlyBase=False)) == ["10⁻³", "10⁰", "10¹", "2×10⁻³", "5×10¹²"]
    assert unicode_of(r"$\mathdefault{10^{-2.50}}$") == r"$\mathdefault{10^{-2.50}}$"
    assert unicode_of("0.5") == "0.5"


def test_saved_figures_never_start_mathtext(tmp_path, monkeypatch):
    """Log axes, a LogNorm colour bar and an inset colour bar are written with no mathtext parsed at all,
    and their labels are the Unicode ones."""
    import matplotlib.mathtext
    from matplotlib.colors import LogNorm

    from optlab.plots._base import new_figure, save

    def refuse(self, text, *args, **kwargs):
        raise AssertionError(f"mathtext parsed: {text!r}")

    monkeypatch.setattr(matplotlib.mathtext.MathTextParser, "parse", refuse)
    fig = new_figure(6, 4)
    ax, heat = fig.subplots(1, 2)
    ax.plot(np.arange(1, 50), np.geomspace(1e-4, 3.0, 49))
    ax.set_yscale("log")
    image = heat.imshow(np.geomspace(1e-3, 1e2, 16).reshape(4, 4), norm=LogNorm())
    fig.colorbar(image, ax=heat)
    fig.colorbar(image, cax=heat.inset_axes([1.3, 0, 0.05, 1]))
    read_png(save(fig, tmp_path / "log.png"))
    labels = [t.get_text() for a in fig.axes + heat.child_axes for t in a.get_yticklabels() if t.get_text()]
    assert "10⁻²" in labels and not any("$" in label for label in labels), labels
