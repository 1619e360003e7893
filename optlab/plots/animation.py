"""Animated trajectories: iterates moving over the tiny landscape, their loss curves filling in beside it.

`race` draws one or more 2-weight trajectories as a GIF (frames blitted on matplotlib's Agg canvas and
encoded by Pillow in one palette; no ffmpeg): each run is a marker that moves step by step over the
log-spaced contours, trailing its path, while the gap C − C* per step fills in on a log axis on the right.
Runs of different lengths share one clock (the step): a run that stopped early (diverged, or fewer steps)
waits at its last iterate.

Long histories are subsampled evenly to at most `max_frames` frames, always keeping the first and the
last iterate (`frame_steps`), so a 100,000-step run costs what a 100-step one does. The figure has a
fixed layout (no constrained layout, whose re-solve on a changing title would make the axes jitter), so
that every frame is the same picture but for the moving parts — and a pixel of data coordinates is the
same pixel in every frame (`scene` exposes the axes, e.g. for tests).

The GIF is encoded in memory and put in place by `optlab.results.write_atomic`: a reader never sees
half a GIF, and a killed run leaves no stray file of its own.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import BoundaryNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import LogLocator
from PIL import Image

from optlab.plots._base import floats, masked, plain_log_labels
from optlab.plots.training import _CRITICAL_STYLE, HALO, _clean_trajectory, _landscape_bounds, _log_levels
from optlab.results import write_atomic

MAX_FRAMES = 100
FPS = 12
GIF_DPI = 80
MAX_TRAIL = 5_000  # points of a trail or loss curve drawn per frame, at most: longer runs are thinned evenly
MAX_LEGEND = 10  # racers named in the legend; more would hide the landscape


class Racer(NamedTuple):
    """One animated run: its legend label, its iterates (steps + 1 rows of w1, w2), and its loss per step."""

    label: str
    points: np.ndarray
    losses: np.ndarray | None = None


def frame_steps(length: int, max_frames: int = MAX_FRAMES) -> np.ndarray:
    """The iterates shown, one per frame: all of them up to `max_frames`, else evenly spaced ones,
    always the first (0) and the last (length − 1)."""
    if length < 1 or max_frames < 2:
        raise ValueError(f"an animation needs an iterate and at least 2 frames, got {length} and {max_frames}")
    if length <= max_frames:
        return np.arange(length)
    return np.unique(np.round(np.linspace(0, length - 1, max_frames)).astype(int))


def _kept(length: int, steps: np.ndarray) -> np.ndarray:
    """The iterates a trail of `length` points draws: all, or MAX_TRAIL evenly spaced plus those shown in frames."""
    if length <= MAX_TRAIL:
        return np.arange(length)
    even = np.round(np.linspace(0, length - 1, MAX_TRAIL)).astype(int)
    return np.union1d(even, np.minimum(steps, length - 1))


class Scene(NamedTuple):
    """The animation's figure: `update(i)` moves everything to frame i, `frame(i)` also draws it and
    returns its pixels (height × width × RGB, uint8)."""

    fig: Figure
    landscape: Any  # the landscape's Axes (data coordinates w1, w2)
    loss: Any  # the loss panel's Axes, or None
    steps: np.ndarray  # the step shown in each frame
    update: Callable[[int], list]
    frame: Callable[[int], np.ndarray]


def _marker_colour(i: int) -> str:
    return f"C{(i + 1) % 10}"  # as plots.landscape: C0 (blue) vanishes into viridis' dark end


def scene(loss_grid: Callable[[np.ndarray, np.ndarray], np.ndarray], racers: Sequence[Racer],
          critical_points: Sequence[tuple[str, tuple[float, float]]] = (), *, minimum_loss: float = 0.0,
          title: str = "", max_frames: int = MAX_FRAMES, dpi: float = GIF_DPI) -> Scene:
    """Build the figure: landscape on the left, the loss gap (loss − `minimum_loss`) on the right when
    any racer has losses. Non-finite iterates (a diverged run read back from metrics.json) are hidden."""
    if not racers:
        raise ValueError("an animation needs at least one trajectory")
    raw = [np.asarray(r.points, dtype=float).reshape(-1, 2) for r in racers]
    if any(len(t) == 0 for t in raw):
        raise ValueError("every trajectory needs at least one iterate")
    bounds = tuple(map(float, _landscape_bounds(raw, [p for _, p in critical_points])))
    paths = [_clean_trajectory(t, bounds) for t in raw]
    gaps = [None if r.losses is None else masked(floats(r.losses) - minimum_loss, logy=True) for r in racers]
    with_loss = any(g is not None and np.isfinite(g).any() for g in gaps)
    length = max(len(t) for t in raw)
    steps = frame_steps(length, max_frames)

    ratio = min(max((bounds[3] - bounds[2]) / (bounds[1] - bounds[0]), 0.4), 2.5)
    height = 4.2
    side = height * 0.78 / ratio  # the landscape axes' width for an equal aspect at 78% of the height
    width = side + 1.1 + (4.2 if with_loss else 0.0)
    fig = Figure(figsize=(width, height), dpi=dpi, facecolor="white")
    left, bottom = 0.75 / width, 0.12
    ax = fig.add_axes((left, bottom, side / width, 0.78))

    # The landscape as an image of log-spaced bands (the look of plots.landscape's filled contours):
    # one image is cheap to draw again in each frame, where 30 filled contours are not.
    w1, w2 = np.meshgrid(np.linspace(bounds[0], bounds[1], 240), np.linspace(bounds[2], bounds[3], 240))
    with np.errstate(all="ignore"):
        z = np.broadcast_to(np.asarray(loss_grid(w1, w2), dtype=float), w1.shape)
    levels = _log_levels(z)
    z = np.ma.masked_invalid(np.clip(z, levels[0], levels[-1]))
    ax.imshow(z, origin="lower", extent=bounds, cmap="viridis", norm=BoundaryNorm(levels, 256),
              interpolation="nearest", aspect="auto")
    ax.contour(w1, w2, z, levels=levels[::3], colors="black", linewidths=0.4, alpha=0.3)
    criticals = []
    for kind in dict.fromkeys(k for k, _ in critical_points):
        style = _CRITICAL_STYLE.get(kind, dict(marker="D", s=70, c="white", edgecolors="black"))
        xy = np.array([p for k, p in critical_points if k == kind], dtype=float).reshape(-1, 2)
        criticals.append(ax.scatter(xy[:, 0], xy[:, 1], zorder=5, label=kind, **{**style, "s": style["s"] * 0.6}))
    ax.set(xlim=bounds[:2], ylim=bounds[2:], xlabel="w₁", ylabel="w₂")

    trails, heads, handles, start_rings = [], [], [], []
    for i, (racer, t) in enumerate(zip(racers, paths)):
        colour = _marker_colour(i)
        first = np.flatnonzero(np.all(np.isfinite(t), axis=1))
        if first.size:  # where it set out: an open ring, so the moving (filled) marker tells now from then
            start_rings += ax.plot(*t[first[0]], "o", ms=8, mfc="none", mec=colour, mew=1.5, zorder=4)
        trail, = ax.plot([], [], "-", color=colour, lw=1.4, path_effects=HALO, zorder=3)
        head, = ax.plot([], [], "o", ms=8, mfc=colour, mec="black", mew=1.0, zorder=7)
        trails.append(trail)
        heads.append(head)
        handles.append(Line2D([], [], ls="-", marker="o", color=colour, mfc=colour, mec="black", label=racer.label))
    if len(handles) <= MAX_LEGEND:
        ax.legend(handles=handles, loc="upper left", fontsize="x-small", framealpha=0.85)
    heading = fig.text(left, 0.955, "", fontsize="medium", va="top")

    lx = None
    curves, dots = [], []
    if with_loss:
        lx = fig.add_axes(((side + 1.65) / width, bottom, 3.3 / width, 0.78))
        finite = np.concatenate([g[np.isfinite(g)] for g in gaps if g is not None])
        lo, hi = float(finite.min()), float(finite.max())
        lx.set(yscale="log", xlim=(0, max(length - 1, 1)), ylim=(lo / 3, hi * 3), xlabel="step",
               ylabel=f"C − C* (C* = {minimum_loss:.4g})")
        lx.yaxis.set_major_locator(LogLocator())
        lx.grid(True, alpha=0.3)
        for i, g in enumerate(gaps):
            curve, = lx.plot([], [], "-", color=_marker_colour(i), lw=1.6)
            dot, = lx.plot([], [], "o", ms=5, color=_marker_colour(i), mec="black", mew=0.6)
            curves.append((curve, g))
            dots.append(dot)

    kept = {n: _kept(n, steps) for n in {len(t) for t in paths} | {len(g) for g in gaps if g is not None}}

    def update(frame: int) -> list:
        step = int(steps[frame])
        for t, trail, head in zip(paths, trails, heads):
            at = min(step, len(t) - 1)
            upto = kept[len(t)][: np.searchsorted(kept[len(t)], at, side="right")]
            trail.set_data(t[upto, 0], t[upto, 1])
            head.set_data(t[at : at + 1, 0], t[at : at + 1, 1])  # NaN (diverged): nothing drawn
        for (curve, g), dot in zip(curves, dots):
            if g is None:
                continue
            at = min(step, len(g) - 1)
            upto = kept[len(g)][: np.searchsorted(kept[len(g)], at, side="right")]
            curve.set_data(upto, g[upto])
            dot.set_data([at], g[at : at + 1])
        heading.set_text(f"{title + ': ' if title else ''}step {step:,} of {length - 1:,}")
        return [*trails, *heads, *(c for c, _ in curves), *dots, heading]

    # What never changes (the bands, contours, ticks, labels, legend) is drawn once and kept as pixels;
    # a frame restores them and draws over them only the moving parts and the markers that must stay on
    # top of the trails, in z-order (matplotlib's blitting: a 100-frame race in 0.4× the time of drawing
    # every frame's figure over a picture of the still parts, as this did before).
    moving = [*trails, *heads, *(c for c, _ in curves), *dots, heading]
    per_frame = sorted([*moving, *criticals, *start_rings], key=lambda artist: artist.get_zorder())
    plain_log_labels(fig)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()  # the moving parts are still empty
    background = canvas.copy_from_bbox(fig.bbox)

    def frame(i: int) -> np.ndarray:
        update(i)
        canvas.restore_region(background)
        for artist in per_frame:
            (artist.axes or fig).draw_artist(artist)
        return np.asarray(canvas.buffer_rgba())[..., :3].copy()

    return Scene(fig, ax, lx, steps, update, frame)


def race(path: str | Path, loss_grid: Callable[[np.ndarray, np.ndarray], np.ndarray], racers: Sequence[Racer],
         critical_points: Sequence[tuple[str, tuple[float, float]]] = (), *, minimum_loss: float = 0.0,
         title: str = "", max_frames: int = MAX_FRAMES, fps: int = FPS, dpi: float = GIF_DPI) -> dict:
    """Write the GIF of `racers` to `path` (atomically); returns what it holds: frames, fps and the steps shown."""
    path = Path(path)
    sc = scene(loss_grid, racers, critical_points, minimum_loss=minimum_loss, title=title,
               max_frames=max_frames, dpi=dpi)
    frames = shared_palette([Image.fromarray(sc.frame(i)) for i in range(len(sc.steps))])
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, buf.getvalue())
    return {"frames": int(len(sc.steps)), "fps": int(fps), "frame_steps": [int(s) for s in sc.steps]}


def shared_palette(frames: Sequence[Image.Image]) -> list[Image.Image]:
    """The frames in one 256-colour palette, chosen once by median cut from the last frame (which shows
    every trail and curve in full: its colours exactly when it has at most 256), each frame mapped to it
    without dithering. Pillow would otherwise run median cut on every frame: three quarters of a GIF's
    time, colours that may flicker between frames, and no unchanged pixels for frame differencing."""
    palette = frames[-1].convert("RGB").quantize(method=Image.Quantize.MEDIANCUT)
    return [frame.convert("RGB").quantize(palette=palette, dither=Image.Dither.NONE) for frame in frames]
