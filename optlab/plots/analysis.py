"""The figures of analyses and sweeps: heat-maps over a grid, signal scale with depth, Hessian spectra."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import LogNorm, Normalize

from optlab.plots._base import floats, masked, new_figure, save


def heatmap(path: str | Path, values: np.ndarray, row_labels: Sequence[str], col_labels: Sequence[str], *,
            xlabel: str, ylabel: str, title: str = "", fmt: str = "{:.3g}") -> Path:
    """A grid of one final metric with the value in each cell; NaN/inf cells read "diverged".

    The colour scale is logarithmic when every finite value is positive and they span over
    two decades (final losses across learning rates usually do), linear otherwise.
    """
    v = np.atleast_2d(np.asarray(values, dtype=float))
    if v.shape != (len(row_labels), len(col_labels)):
        raise ValueError(f"values of shape {v.shape} do not match {len(row_labels)} rows x {len(col_labels)} cols")
    finite = v[np.isfinite(v)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    norm = LogNorm(lo, hi) if lo > 0 and hi > 100 * lo else Normalize(lo, hi if hi > lo else lo + 1)
    cmap = colormaps["viridis"].with_extremes(bad="#c8c8c8")

    fig = new_figure(min(2.6 + 1.1 * v.shape[1], 16), min(1.8 + 0.55 * v.shape[0], 12))
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(v), cmap=cmap, norm=norm, aspect="auto")
    fig.colorbar(image, ax=ax)
    for (r, c), x in np.ndenumerate(v):
        if np.isfinite(x):
            red, green, blue, _ = cmap(norm(x))
            dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
            ax.text(c, r, fmt.format(x), ha="center", va="center", fontsize="small",
                    color="white" if dark else "black")
        else:
            ax.text(c, r, "diverged", ha="center", va="center", fontsize="small", color="#444444",
                    style="italic")
    ax.set_xticks(range(v.shape[1]), [str(s) for s in col_labels])
    ax.set_yticks(range(v.shape[0]), [str(s) for s in row_labels])
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    return save(fig, path)



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
