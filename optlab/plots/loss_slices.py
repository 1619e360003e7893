"""The figures of `optlab landscape`: the initial-to-final line, and the two planes through the final point.

(Not named landscape.py: importing optlab.plots.landscape would set the package attribute
`landscape`, the tiny problem's figure function, to that module.)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.colors import LogNorm, Normalize

from optlab.plots._base import floats, masked, new_figure, save


def interpolation_curve(path: str | Path, alpha, loss, error=None, *, title: str = "") -> Path:
    """Loss (left axis, log scale when it spans over a decade) and error (right axis) against α: θ₀ at α = 0,
    θ* at α = 1."""
    a, y = floats(alpha), floats(loss)
    fig = new_figure(6.4, 4.2)
    ax = fig.add_subplot()
    finite = y[np.isfinite(y)]
    logy = bool(finite.size and finite.min() > 0 and finite.max() > 10 * finite.min())  # only over a decade
    ax.plot(a, masked(y, logy), color="C0", label="loss")
    ax.set_yscale("log" if logy else "linear")
    for x, name in ((0.0, "θ₀ (initial)"), (1.0, "θ* (final)")):
        ax.axvline(x, color="0.6", linestyle=":", linewidth=1)
        ax.text(x, 1.0, name, transform=ax.get_xaxis_transform(), ha="center", va="bottom", fontsize="small")
    ax.set(xlabel="α in (1 − α) θ₀ + α θ*", ylabel="loss")
    if error is not None:
        right = ax.twinx()
        right.plot(a, masked(floats(error), False), color="C3", linestyle="--", label="error")
        right.set_ylabel("error", color="C3")
    ax.set_title(title, pad=16)
    return save(fig, path)


def landscape_planes(path: str | Path, random_plane: Mapping[str, Any], trajectory_plane: Mapping[str, Any], *,
                     title: str = "") -> Path:
    """Two contour panels of the loss: the random filter-normalised plane through θ*, and the trajectory's
    principal plane through θ* with the projected path (epochs marked, θ₀ and θ* labelled)."""
    fig = new_figure(11.5, 5.0)
    left, right = fig.subplots(1, 2)
    _contours(fig, left, random_plane)
    left.set(xlabel="δ (random, filter-normalised)", ylabel="η (random, filter-normalised)",
             title="random directions through θ*")
    _contours(fig, right, trajectory_plane)
    explained = trajectory_plane.get("explained_variance", [np.nan, np.nan])
    path_ = trajectory_plane["path"]
    x, y = floats(path_["x"]), floats(path_["y"])
    right.plot(x, y, "o-", color="white", markeredgecolor="black", markersize=4, linewidth=1.5)
    right.annotate("θ₀", (x[0], y[0]), textcoords="offset points", xytext=(5, 5), color="white", fontweight="bold")
    right.plot([0], [0], "*", color="red", markersize=12)
    right.set(xlabel=f"1st principal direction ({100 * explained[0]:.1f}% of the path's variance)",
              ylabel=f"2nd principal direction ({100 * explained[1]:.1f}%)",
              title="the training path on its principal plane through θ*")
    fig.suptitle(title)
    return save(fig, path)


def _contours(fig, ax, plane: Mapping[str, Any]) -> None:
    """Filled contours of plane["loss"] over plane["x"] × plane["y"], log-spaced when the loss spans decades."""
    xs, ys = floats(plane["x"]), floats(plane["y"])
    z = np.asarray(floats(plane["loss"])).reshape(len(ys), len(xs))
    finite = z[np.isfinite(z)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    log = lo > 0 and hi > 20 * lo
    levels = np.geomspace(lo, hi, 25) if log else np.linspace(lo, hi if hi > lo else lo + 1, 25)
    norm = LogNorm(lo, hi) if log else Normalize(levels[0], levels[-1])
    filled = ax.contourf(xs, ys, np.ma.masked_invalid(z), levels=levels, norm=norm, cmap="viridis", extend="max")
    ax.contour(xs, ys, np.ma.masked_invalid(z), levels=levels[::3], colors="black", linewidths=0.4, alpha=0.5)
    fig.colorbar(filled, ax=ax, label="loss", ticks=levels[::4], format="%.3g")  # plain numbers on a log scale too
    ax.plot([0], [0], "*", color="red", markersize=10)
