"""The figures of analyses and sweeps: heat-maps over a grid, signal scale with depth, Hessian spectra."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import LogNorm, Normalize
from matplotlib.patches import Patch

from optlab.plots._base import floats, masked, new_figure, save

ANNOTATE_UP_TO = 12  # rows and columns: beyond this a number per cell is unreadable, the colour bar says it
MAX_TICKS = 16  # labels per axis; a 100-value axis labels every 7th
DIVERGED_COLOUR = "#d62728"  # red: not in viridis, so a diverged cell cannot pass for a value


class HeatmapLayout(NamedTuple):
    """What `heatmap` draws, computed before drawing (so that tests can check it without reading pixels)."""

    values: np.ma.MaskedArray  # the grid, non-finite cells masked (drawn in DIVERGED_COLOUR)
    norm: Normalize  # LogNorm or Normalize over the finite values
    annotate: bool  # a number in each cell
    row_ticks: list[int]
    col_ticks: list[int]


def heatmap_layout(values: np.ndarray, log: bool | None = None) -> HeatmapLayout:
    """The masked grid, its colour scale and which cells and ticks get labels.

    `log`: a logarithmic colour scale (losses: pass True; it falls back to linear when some finite
    value is not positive); None decides by the data, log when every finite value is positive and
    they span over two decades.
    """
    v = np.atleast_2d(np.asarray(values, dtype=float))
    finite = v[np.isfinite(v)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    positive = finite.size > 0 and lo > 0
    use_log = positive and (hi > 100 * lo if log is None else log)
    if use_log:
        norm = LogNorm(lo, hi if hi > lo else lo * 10)
    else:
        norm = Normalize(lo, hi if hi > lo else lo + 1)
    annotate = max(v.shape) <= ANNOTATE_UP_TO
    return HeatmapLayout(np.ma.masked_invalid(v), norm, annotate, _ticks(v.shape[0]), _ticks(v.shape[1]))


def _ticks(n: int) -> list[int]:
    step = -(-n // MAX_TICKS)
    return list(range(0, n, step))


def heatmap(path: str | Path, values: np.ndarray, row_labels: Sequence[str], col_labels: Sequence[str], *,
            xlabel: str, ylabel: str, title: str = "", fmt: str = "{:.3g}", log: bool | None = None,
            colorbar_label: str = "") -> Path:
    """A grid of one final metric as an image with a colour bar; diverged (NaN/inf) cells in red.

    Readable at any size: up to ANNOTATE_UP_TO rows and columns each cell also carries its
    number (or "diverged"); beyond, the colour bar alone reads the values and at most MAX_TICKS
    labels go on each axis. The colour scale is `heatmap_layout`'s (log for losses).
    """
    v = np.atleast_2d(np.asarray(values, dtype=float))
    if v.shape != (len(row_labels), len(col_labels)):
        raise ValueError(f"values of shape {v.shape} do not match {len(row_labels)} rows x {len(col_labels)} cols")
    layout = heatmap_layout(v, log)
    cmap = colormaps["viridis"].with_extremes(bad=DIVERGED_COLOUR)
    width, height = (2.6 + 1.1 * v.shape[1], 1.8 + 0.55 * v.shape[0]) if layout.annotate else (8.0, 6.5)
    fig = new_figure(min(width, 16), min(height, 12))
    ax = fig.add_subplot()
    image = ax.imshow(layout.values, cmap=cmap, norm=layout.norm, aspect="auto", interpolation="nearest")
    fig.colorbar(image, ax=ax, label=colorbar_label)
    if layout.annotate:
        _annotate(ax, v, cmap, layout.norm, fmt)
    if layout.values.mask.any():
        fig.legend(handles=[Patch(color=DIVERGED_COLOUR, label=f"diverged ({int(layout.values.mask.sum()):,} cells)")],
                   loc="outside lower left", fontsize="small", frameon=False)
    ax.set_xticks(layout.col_ticks, [str(col_labels[i]) for i in layout.col_ticks],
                  rotation=0 if layout.annotate else 60, ha="center" if layout.annotate else "right")
    ax.set_yticks(layout.row_ticks, [str(row_labels[i]) for i in layout.row_ticks])
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    return save(fig, path)


def _annotate(ax, v: np.ndarray, cmap, norm: Normalize, fmt: str) -> None:
    for (r, c), x in np.ndenumerate(v):
        if np.isfinite(x):
            red, green, blue, _ = cmap(norm(x))
            dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
            ax.text(c, r, fmt.format(x), ha="center", va="center", fontsize="small",
                    color="white" if dark else "black")
        else:
            ax.text(c, r, "diverged", ha="center", va="center", fontsize="small", color="white", style="italic")


# ----------------------------------------------------------------------------- curvature and signals


def signals(path: str | Path, lines: Sequence[tuple[str, np.ndarray, np.ndarray]], title: str = "", *,
            panels: Sequence[tuple[str, Sequence[tuple[str, np.ndarray, np.ndarray]]]] | None = None) -> Path:
    """Two panels against the hidden layer index on a log axis: activation std (forward) and
    gradient norm at the pre-activations (backward); one line (label, std, grad) per init.

    `panels` [(name, lines), …] instead draws one such row per name (e.g. per activation); `lines` is then unused.
    """
    rows = list(panels) if panels is not None else [("", lines)]
    fig = new_figure(11.0, 4.5 * max(len(rows), 1))
    axes = fig.subplots(max(len(rows), 1), 2, squeeze=False)
    for (name, row), (forward, backward) in zip(rows, axes):
        for i, (label, std, grad) in enumerate(row):
            std, grad = floats(std), floats(grad)
            layers = np.arange(1, len(std) + 1)
            forward.plot(layers, masked(std, True), marker=".", color=f"C{i % 10}", label=label)
            backward.plot(layers, masked(grad, True), marker=".", color=f"C{i % 10}", label=label)
        prefix = f"{name}: " if name else ""
        forward.set(xlabel="hidden layer", ylabel="activation std", yscale="log", title=prefix + "forward")
        backward.set(xlabel="hidden layer", ylabel="‖∂C/∂z‖", yscale="log", title=prefix + "backward")
        for ax in (forward, backward):
            ax.grid(True, which="major", alpha=0.3)
        forward.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return save(fig, path)


def spectral_density(path: str | Path, eigenvalue: Sequence[float], density: Sequence[float],
                     top: Sequence[float] = (), title: str = "", *, sigma: float | None = None,
                     negative: Mapping[str, Sequence[float]] | None = None,
                     other: tuple[str, Sequence[float], Sequence[float]] | None = None) -> Path:
    """The eigenvalue density on a log axis (its bulk is near 0, its outliers orders of magnitude
    thinner), with the top eigenvalues marked and the smoothing width σ in the legend.

    `negative` ({"eigenvalue", "density", "sigma"}: the negative eigenvalues alone, smoothed on
    their own scale) adds a second panel, so that the cluster at zero, smeared by σ, cannot pass
    for negative curvature; `other` (label, eigenvalue, density) overlays a second matrix's density.
    """
    fig = new_figure(12.0 if negative else 7.0, 4.5)
    axes = fig.subplots(1, 2 if negative else 1, squeeze=False)[0]
    ax = axes[0]
    label = "density" + (f" (σ = {sigma:.2g})" if sigma else "")
    _log_density(ax, eigenvalue, density, "C0", label)
    if other is not None:
        _log_density(ax, other[1], other[2], "C2", other[0])
    for value in floats(top):
        ax.axvline(value, color="C3", lw=0.6, alpha=0.5)
    ax.axvline(0.0, color="black", lw=0.8, ls=":")
    ax.set(xlabel="eigenvalue", ylabel="density", title=title)
    ax.legend(fontsize="small")
    if negative:
        neg = axes[1]
        _log_density(neg, negative["eigenvalue"], negative["density"], "C1",
                     f"negative eigenvalues (σ = {float(negative['sigma']):.2g})")
        neg.set(xlabel="eigenvalue", title="negative side, without the cluster at zero")
        neg.legend(fontsize="small")
    for a in axes:
        a.grid(True, which="major", alpha=0.3)
    return save(fig, path)


def _log_density(ax, eigenvalue, density, color: str, label: str) -> None:
    x, y = floats(eigenvalue), floats(density)
    positive = y[np.isfinite(y) & (y > 0)]
    floor = max(float(positive.max()) * 1e-8, float(positive.min())) if positive.size else 1e-12
    ax.semilogy(x, np.where(np.isfinite(y) & (y > floor), y, floor), color=color, label=label)


def edge_of_stability(path: str | Path, epochs: Sequence[float], lambda_max: Sequence[float],
                      lr: Sequence[float], title: str = "") -> Path:
    """λmax of the Hessian and 2/λmax against the learning rate η over training: gradient descent
    on a quadratic is stable only while η < 2/λmax ("edge of stability", Cohen et al., 2021)."""
    e, lam, eta = floats(epochs), floats(lambda_max), floats(lr)
    fig = new_figure(7.0, 4.5)
    ax = fig.add_subplot()
    with np.errstate(divide="ignore", invalid="ignore"):
        ax.semilogy(e, masked(2 / lam, True), marker="o", color="C0", label="2 / λmax")
    ax.semilogy(e, masked(eta, True), marker=".", color="C3", label="learning rate η")
    twin = ax.twinx()
    twin.semilogy(e, masked(lam, True), ls="--", color="C2", label="λmax")
    twin.set_ylabel("λmax")
    ax.set(xlabel="epoch", ylabel="step size", title=title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")
    twin.legend(loc="upper right", fontsize="small")
    return save(fig, path)
