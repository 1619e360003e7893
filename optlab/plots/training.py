"""The figures of a run: the tiny landscape, loss curves, learning curves, first-layer weights, sparsity."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import patheffects
from matplotlib.colors import LogNorm
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator

from optlab.plots._base import Curve, UnicodeLogFormatter, floats, masked, new_figure, save

# A white halo keeps lines and markers readable on any part of a colour map.
HALO = [patheffects.withStroke(linewidth=2.6, foreground="white")]

_CRITICAL_STYLE = {  # kind -> marker style; the legend gets one entry per kind present
    "minimum": dict(marker="*", s=220, c="white", edgecolors="black", linewidths=0.9),
    "saddle": dict(marker="X", s=110, c="white", edgecolors="black", linewidths=0.9),
    "maximum": dict(marker="^", s=110, c="white", edgecolors="black", linewidths=0.9),
}


def _landscape_bounds(trajectories: Sequence[np.ndarray], points: Sequence[tuple[float, float]]
                      ) -> tuple[float, float, float, float]:
    """Fit starts, critical points and trajectory points with a margin; at least [-2.5, 2.5]^2.

    Points farther than 10x the anchors (starts and critical points) are ignored, so a trajectory
    that diverges shows its first steps leaving the view instead of shrinking the landscape to a dot.
    """
    anchors = [t[0] for t in trajectories if len(t) and np.all(np.isfinite(t[0]))]
    anchors += [np.asarray(p, dtype=float) for p in points]
    reach = 10 * max([2.5] + [float(np.max(np.abs(a))) for a in anchors])
    pts = [np.full(2, -2.5), np.full(2, 2.5), *anchors]
    for t in trajectories:
        pts.extend(t[np.all(np.isfinite(t), axis=1) & np.all(np.abs(t) <= reach, axis=1)])
    pts = np.array(pts)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    margin = 0.08 * (hi - lo)
    return lo[0] - margin[0], hi[0] + margin[0], lo[1] - margin[1], hi[1] + margin[1]


def _log_levels(z: np.ndarray, n: int = 30) -> np.ndarray:
    good = z[np.isfinite(z) & (z > 0)]
    lo, hi = (float(good.min()), float(good.max())) if good.size else (1e-3, 1.0)
    if hi <= lo * (1 + 1e-9):
        lo, hi = lo / 10, hi * 10
    return np.geomspace(lo, hi, n)


def _clean_trajectory(traj: np.ndarray, bounds: tuple[float, float, float, float]) -> np.ndarray:
    """NaN for non-finite points and for points absurdly far away (they would overflow the renderer)."""
    t = np.asarray(traj, dtype=float).reshape(-1, 2)
    span = max(bounds[1] - bounds[0], bounds[3] - bounds[2])
    centre = np.array([(bounds[0] + bounds[1]) / 2, (bounds[2] + bounds[3]) / 2])
    with np.errstate(invalid="ignore"):
        far = ~np.all(np.abs(t - centre) <= 1e4 * span, axis=1)
    return np.where(far[:, None], np.nan, t)


def landscape(path: str | Path, loss_grid: Callable[[np.ndarray, np.ndarray], np.ndarray],
              trajectories: Sequence[tuple[str, np.ndarray]],
              critical_points: Sequence[tuple[str, tuple[float, float]]] = (),
              bounds: tuple[float, float, float, float] | None = None,
              title: str = "") -> Path:
    """A 2-weight loss surface (log-spaced filled contours) with optimizer paths and critical points."""
    raw = [np.asarray(t, dtype=float).reshape(-1, 2) for _, t in trajectories]
    if bounds is None:
        bounds = _landscape_bounds(raw, [p for _, p in critical_points])
    bounds = tuple(map(float, bounds))
    if not (bounds[0] < bounds[1] and bounds[2] < bounds[3]):
        raise ValueError(f"landscape bounds {bounds} must be (w1min, w1max, w2min, w2max) with min < max")
    w1, w2 = np.meshgrid(np.linspace(bounds[0], bounds[1], 300), np.linspace(bounds[2], bounds[3], 300))
    with np.errstate(all="ignore"):
        z = np.broadcast_to(np.asarray(loss_grid(w1, w2), dtype=float), w1.shape)
    levels = _log_levels(z)
    z = np.ma.masked_invalid(np.clip(z, levels[0], levels[-1]))

    ratio = min(max((bounds[3] - bounds[2]) / (bounds[1] - bounds[0]), 0.4), 2.5)  # equal aspect
    fig = new_figure(7.4, 5.6 * ratio + 0.9)
    ax = fig.add_subplot()
    filled = ax.contourf(w1, w2, z, levels=levels, norm=LogNorm(levels[0], levels[-1]), cmap="viridis")
    ax.contour(w1, w2, z, levels=levels[::3], colors="black", linewidths=0.5, alpha=0.35)
    # An inset colourbar is exactly as tall as the equal-aspect axes, whatever the bounds.
    bar = fig.colorbar(filled, cax=ax.inset_axes([1.04, 0.0, 0.045, 1.0]), label="loss (log scale)")
    bar.locator, bar.formatter = LogLocator(), UnicodeLogFormatter()  # decades, not level edges

    handles: list[Any] = []
    for i, ((label, _), traj) in enumerate(zip(trajectories, raw)):
        t = _clean_trajectory(traj, bounds)
        colour = f"C{(i + 1) % 10}"  # C0 (blue) vanishes into viridis' dark end
        diverged = not np.all(np.isfinite(traj))
        # A marker per step shows the step size; past ~200 steps they would merge into a thick line.
        line, = ax.plot(t[:, 0], t[:, 1], "-o", color=colour, lw=1.6, ms=2.8, path_effects=HALO,
                        markevery=max(1, len(t) // 200), zorder=3,
                        label=f"{label} (diverged)" if diverged else label)
        handles.append(line)
        finite = np.flatnonzero(np.all(np.isfinite(t), axis=1))
        if finite.size:
            ax.plot(*t[finite[0]], "o", ms=9, mfc=colour, mec="black", mew=1.2, zorder=4)
            ax.plot(*t[finite[-1]], "s", ms=8, mfc="none", mec=colour, mew=2.0, zorder=6)
    if raw:
        handles += [Line2D([], [], ls="", marker="o", ms=8, mfc="lightgrey", mec="black", label="start"),
                    Line2D([], [], ls="", marker="s", ms=7, mfc="none", mec="dimgrey", mew=2, label="end")]
    for kind in dict.fromkeys(k for k, _ in critical_points):
        style = _CRITICAL_STYLE.get(kind, dict(marker="D", s=70, c="white", edgecolors="black"))
        xy = np.array([p for k, p in critical_points if k == kind], dtype=float).reshape(-1, 2)
        handles.append(ax.scatter(xy[:, 0], xy[:, 1], zorder=5, label=kind, **style))

    ax.set(xlim=bounds[:2], ylim=bounds[2:], xlabel="w₁", ylabel="w₂", title=title or "loss landscape")
    ax.set_aspect("equal")
    if handles:
        ax.legend(handles=handles, loc="best", fontsize="small", framealpha=0.85)
    return save(fig, path)


# ----------------------------------------------------------------------------- curves


def curves(path: str | Path, curves: Sequence[Curve], *, xlabel: str, ylabel: str,
           logy: bool = True, title: str = "") -> Path:
    """Overlaid lines, each with an optional shaded lo..hi band (e.g. mean ± std over seeds)."""
    ys = [floats(c.y) for c in curves]
    positive = np.concatenate([y[np.isfinite(y) & (y > 0)] for y in ys] + [np.array([])])
    logy = logy and positive.size > 0  # a log axis with nothing positive on it is an empty plot
    floor = float(positive.min()) if logy else -np.inf

    fig = new_figure(7.0, 4.5)
    ax = fig.add_subplot()
    for i, (c, y) in enumerate(zip(curves, ys)):
        x = floats(c.x)
        if x.shape != y.shape:
            raise ValueError(f"curve {c.label!r}: x has {x.size} points, y has {y.size}")
        line, = ax.plot(x, masked(y, logy), lw=1.8, color=f"C{i % 10}", label=c.label)
        if c.lo is not None and c.hi is not None:
            # On a log axis the lower edge of mean - std is often <= 0: floor it at the lowest value shown.
            lo, hi = np.maximum(floats(c.lo), floor), floats(c.hi)
            ok = np.isfinite(lo) & np.isfinite(hi) & np.isfinite(x)
            ax.fill_between(x, np.where(ok, lo, np.nan), np.where(ok, hi, np.nan), where=ok,
                            color=line.get_color(), alpha=0.2, lw=0)
    if logy:
        ax.set_yscale("log")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(True, which="major", alpha=0.3)
    if len(curves) > 1:
        ax.legend(fontsize="small")
    return save(fig, path)


# ----------------------------------------------------------------------------- learning curves


def learning_curves(path: str | Path, history: Mapping[str, Sequence[float]], title: str = "") -> Path:
    """Three panels: train/test loss, train/test error in % (best test error marked), learning rate."""
    n = max((len(floats(v)) for v in history.values()), default=0)
    epoch = floats(history["epoch"]) if "epoch" in history else np.arange(1.0, n + 1)

    def series(key: str, scale: float = 1.0) -> np.ndarray | None:
        if key not in history:
            return None
        v = floats(history[key]) * scale
        return v if v.size == epoch.size else None

    fig = new_figure(14.0, 4.0)
    ax_loss, ax_err, ax_lr = fig.subplots(1, 3)
    for ax, kind, scale in ((ax_loss, "loss", 1.0), (ax_err, "error", 100.0)):
        lines = [(split, style, series(f"{split}_{kind}", scale)) for split, style in (("train", "-"), ("test", "--"))]
        lines = [(split, style, v) for split, style, v in lines if v is not None]
        logy = any(np.any(np.isfinite(v) & (v > 0)) for _, _, v in lines)  # all-zero errors: linear axis
        for split, style, v in lines:
            ax.plot(epoch, masked(v, logy), style, lw=1.8, label=split)
        if ax.lines:
            ax.set_yscale("log" if logy else "linear")
            ax.legend(fontsize="small")
        ax.grid(True, which="both", alpha=0.25)
    test_err = series("test_error", 100.0)
    if test_err is not None and np.any(np.isfinite(test_err)):
        best = int(np.nanargmin(test_err))
        ax_err.axhline(test_err[best], color="black", ls=":", lw=1.2,
                       label=f"best test {test_err[best]:.2f}% (epoch {epoch[best]:g})")
        ax_err.legend(fontsize="small")
    if ax_err.get_yscale() == "log":  # percentages read better as 0.5, 1, 2, 5 than as 10^0
        ax_err.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax_err.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    lr = series("lr")
    if lr is not None:
        ax_lr.plot(epoch, lr, "-", color="C2", lw=1.8)
        pos = lr[np.isfinite(lr) & (lr > 0)]
        if pos.size == np.isfinite(lr).sum() and pos.size and pos.max() > 10 * pos.min():
            ax_lr.set_yscale("log")  # an annealed step size spans decades
        ax_lr.grid(True, which="both", alpha=0.25)
    ax_loss.set(title="loss", xlabel="epoch", ylabel="loss")
    ax_err.set(title="classification error", xlabel="epoch", ylabel="error (%)")
    ax_lr.set(title="learning rate", xlabel="epoch", ylabel="step size")
    if title:
        fig.suptitle(title)
    return save(fig, path)


# ----------------------------------------------------------------------------- weight tiles


def _grid_shape(n: int) -> tuple[int, int]:
    """A near-square (rows, cols) grid for n items: 225 -> (15, 15), 10 -> (3, 4)."""
    cols = max(1, math.ceil(math.sqrt(n)))
    return max(1, math.ceil(n / cols)), cols


def tile_grid(weights: np.ndarray, image_shape: tuple[int, int] = (28, 28), gap: int = 1) -> np.ndarray:
    """Mosaic of each unit's incoming weights as an image; gaps and empty slots are NaN.

    weights is (units, h*w) (a (h*w, units) matrix is transposed). Unit k lands in grid cell
    (k // cols, k % cols) at pixel offset (row * (h + gap), col * (w + gap)); the mosaic is
    (rows * (h + gap) - gap, cols * (w + gap) - gap): 225 units of 28x28 -> 434 x 434.
    """
    h, w = image_shape
    weights = np.asarray(weights, dtype=float)
    if weights.ndim != 2 or h * w not in weights.shape:
        raise ValueError(f"weights of shape {weights.shape} do not hold {h}x{w} images")
    if weights.shape[1] != h * w:
        weights = weights.T
    rows, cols = _grid_shape(weights.shape[0])
    mosaic = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap), np.nan)
    for k, unit in enumerate(weights):
        r, c = divmod(k, cols)
        mosaic[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = unit.reshape(h, w)
    return mosaic


def weight_tiles(path: str | Path, snapshots: Mapping[int, np.ndarray],
                 image_shape: tuple[int, int] = (28, 28), title: str = "") -> Path:
    """First-layer weights as image tiles, one panel per snapshot epoch (grey, symmetric scale)."""
    if not snapshots:
        raise ValueError("weight_tiles needs at least one snapshot")
    items = sorted(((int(e), w) for e, w in snapshots.items()), key=lambda item: item[0])
    n = len(items)
    cols = n if n <= 4 else math.ceil(n / 2) if n <= 10 else 5
    rows = math.ceil(n / cols)
    fig = new_figure(3.7 * cols, 4.0 * rows + (0.3 if title else 0))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, (epoch, w) in zip(axes, items):
        mosaic = tile_grid(w, image_shape)
        vmax = float(np.nanmax(np.abs(mosaic))) if np.any(np.isfinite(mosaic)) else 1.0
        vmax = vmax if vmax > 0 else 1.0
        ax.imshow(mosaic, cmap="gray", vmin=-vmax, vmax=vmax, interpolation="antialiased")
        ax.set_title(f"epoch {epoch}\n|w| ≤ {vmax:.2g}", fontsize="medium")
        ax.set_facecolor("#3b5b8c")  # gaps (NaN) in a colour no weight can take
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[n:]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    return save(fig, path)


# ----------------------------------------------------------------------------- sparsity


def sparsity(path: str | Path, activity: Sequence[np.ndarray], dead: Sequence[int], title: str = "") -> Path:
    """Per hidden layer, a histogram over units of the fraction of test inputs that activate each unit.

    activity[k] is (units,) fractions in [0, 1]; an (inputs, units) activation matrix is also
    accepted and reduced to mean(h > 0). Units that are never active get their own red bar at 0.
    """
    layers = len(activity)
    fig = new_figure(max(4.6 * layers, 5.0), 3.8)
    axes = np.atleast_1d(fig.subplots(1, max(layers, 1), sharey=True, squeeze=False)).ravel()
    edges = np.linspace(0.0, 1.0, 21)
    for k, (ax, act) in enumerate(zip(axes, activity)):
        a = np.asarray(act, dtype=float)
        frac = (a > 0).mean(axis=0) if a.ndim == 2 else a.ravel()
        frac = frac[np.isfinite(frac)]
        zero = int(np.sum(frac == 0))
        counts, _ = np.histogram(frac[frac > 0], bins=edges)
        ax.bar(edges[:-1], counts, width=0.05, align="edge", color="C0", edgecolor="white",
               label="active sometimes")
        ax.bar([-0.05], [zero], width=0.05, align="edge", color="C3", edgecolor="white",
               label="never active (0)")
        n_dead = int(dead[k]) if k < len(dead) else zero
        ax.set(title=f"layer {k + 1}: {n_dead} dead of {frac.size} units", xlim=(-0.07, 1.02),
               xlabel="fraction of test inputs with hᵢ > 0")
        ax.grid(True, axis="y", alpha=0.3)
    axes[0].set_ylabel("units")
    if layers:
        axes[0].legend(fontsize="small", loc="upper left")
    if title:
        fig.suptitle(title)
    return save(fig, path)


# ----------------------------------------------------------------------------- heatmap
