"""What every figure shares: the Agg figure, the atomic PNG write, masking of non-finite values."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from optlab.results import write_atomic

DPI = 120


class Curve(NamedTuple):
    """One line of a `curves` figure; `lo`/`hi` (e.g. mean ± std over seeds) draw a band."""

    label: str
    x: np.ndarray
    y: np.ndarray
    lo: np.ndarray | None = None
    hi: np.ndarray | None = None


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    # "tight" also fits inset axes (the landscape's colourbar), which constrained layout ignores.
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white", bbox_inches="tight", pad_inches=0.08)
    write_atomic(path, buf.getvalue())
    return path


def floats(values: Any) -> np.ndarray:
    """A float array, with None (how metrics.json stores NaN/inf) read back as NaN."""
    if values is None:
        return np.array([], dtype=float)
    return np.array([np.nan if v is None else v for v in np.ravel(np.asarray(values, dtype=object))], dtype=float)


def masked(y: np.ndarray, logy: bool) -> np.ndarray:
    """Non-finite values (and non-positive ones on a log axis) become NaN, which breaks the line."""
    keep = np.isfinite(y) & ((y > 0) if logy else True)
    return np.where(keep, y, np.nan)

