"""The figures of the dynamics experiments: a bifurcation diagram and a phase diagram over two hyperparameters."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps, patheffects
from matplotlib.colors import LogNorm

from optlab.plots._base import new_figure, save

GAP_FLOOR = 1e-16
OUTLINE = [patheffects.withStroke(linewidth=3.4, foreground="black")]  # white lines that read on any colour


def bifurcation(path: str | Path, lrs: np.ndarray, w1: np.ndarray, loss: np.ndarray,
                marks: Sequence[tuple[float, str]] = (), title: str = "") -> Path:
    """The last iterates against the step size: w1 (top) and the loss on a log axis (bottom).

    `w1` and `loss` are (len(lrs), T): the last T iterates of each run. One dot per iterate, so
    a fixed point is one dot per η, a 2-cycle two, chaos a smear. Non-finite or absurd values
    (diverged runs) are left out. `marks` are vertical lines (η, label), e.g. 2/λmax.
    """
    lrs = np.asarray(lrs, dtype=float)
    w1, loss = np.asarray(w1, dtype=float), np.asarray(loss, dtype=float)
    x = np.broadcast_to(lrs[:, None], w1.shape)
    fig = new_figure(8, 6.5)
    top, bottom = fig.subplots(2, 1, sharex=True)
    with np.errstate(invalid="ignore"):
        keep_w = np.isfinite(w1) & (np.abs(w1) < 1e3)
        keep_c = np.isfinite(loss) & (loss > 0) & (loss < 1e6)
    top.scatter(x[keep_w], w1[keep_w], s=0.3, c="black", linewidths=0, rasterized=True)
    bottom.scatter(x[keep_c], loss[keep_c], s=0.3, c="black", linewidths=0, rasterized=True)
    bottom.set_yscale("log")
    for value, label in marks:
        for ax in (top, bottom):
            ax.axvline(value, color="tab:red", linestyle="--", linewidth=1, label=label if ax is top else None)
    if marks:
        top.legend(loc="upper left", fontsize="small")
    top.set(ylabel="w1 (last iterates)", title=title, xlim=(lrs.min(), lrs.max()))
    bottom.set(xlabel="step size η", ylabel="C (last iterates)")
    return save(fig, path)


def phase_diagram(path: str | Path, x: np.ndarray, y: np.ndarray, gap: np.ndarray,
                  boundaries: Sequence[tuple[str, np.ndarray, np.ndarray]] = (),
                  points: Sequence[tuple[str, float, float]] = (),
                  xlabel: str = "step size η", ylabel: str = "", title: str = "") -> Path:
    """A map of the final loss gap C − C* over a grid (x columns, y rows; `gap` of shape (len(y), len(x))),
    on a log colour scale.

    Non-finite cells (diverged runs) are grey; gaps below GAP_FLOOR (rounding) take the floor's colour.
    Each boundary (label, xs, ys) is a curve drawn over the map, clipped to it; each point (label, x, y)
    a star.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    gap = np.asarray(gap, dtype=float)
    if gap.shape != (len(y), len(x)):
        raise ValueError(f"gap of shape {gap.shape} does not match {len(y)} rows x {len(x)} columns")
    with np.errstate(invalid="ignore"):
        good = gap[np.isfinite(gap) & (gap > 0)]
    # Below GAP_FLOOR a float64 loss near C* ≈ 0.12 is rounding (its spacing there is 1.4e-17): one colour.
    lo = max(float(good.min()) if good.size else GAP_FLOOR, GAP_FLOOR)
    hi = max(float(good.max()) if good.size else 1.0, 10 * lo)
    norm = LogNorm(lo, hi)
    cmap = colormaps["viridis"].with_extremes(bad="#b0b0b0")
    fig = new_figure(8, 6)
    ax = fig.add_subplot()
    with np.errstate(invalid="ignore"):
        shown = np.ma.masked_invalid(np.where(np.isfinite(gap), np.maximum(gap, lo), np.nan))
    image = ax.pcolormesh(x, y, shown, cmap=cmap, norm=norm, shading="nearest", rasterized=True)
    fig.colorbar(image, ax=ax, label="final C − C* (grey: diverged)")
    styles = ["-", "--", ":", "-."]
    for i, (label, xs, ys) in enumerate(boundaries):
        ax.plot(xs, ys, color="white", linestyle=styles[i % len(styles)], linewidth=1.8, label=label,
                path_effects=OUTLINE)
    for label, px, py in points:
        ax.scatter([px], [py], marker="*", s=160, c="white", edgecolors="black", linewidths=0.8, zorder=3,
                   label=label)
    ax.set(xlim=(x.min(), x.max()), ylim=(y.min(), y.max()), xlabel=xlabel, ylabel=ylabel, title=title)
    if boundaries or points:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncols=2, fontsize="small", frameon=False)
    return save(fig, path)
