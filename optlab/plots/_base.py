"""What every figure shares: the Agg figure, the atomic PNG write, log-axis labels in plain text, masking of
non-finite values."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatterMathtext, LogFormatterSciNotation

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
    plain_log_labels(fig)
    buf = io.BytesIO()
    # "tight" also fits inset axes (the landscape's colourbar), which constrained layout ignores.
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white", bbox_inches="tight", pad_inches=0.08)
    write_atomic(path, buf.getvalue())
    return path


class UnicodeLogFormatter(LogFormatterSciNotation):
    """matplotlib's log-axis labels (10⁻², 2×10⁻³, the same ticks labelled) written in Unicode instead of
    mathtext: the same text, without starting matplotlib's TeX-like parser (a tenth of a second of a
    command's first figure). A label outside that simple form is left as mathtext."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        return unicode_of(super().__call__(x, pos))


_MATHDEFAULT = re.compile(r"\$\\mathdefault\{(.*)\}\$")
_POWER = re.compile(r"\^\{([-0-9]+)\}")
_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def unicode_of(label: str) -> str:
    """`$\\mathdefault{2\\times10^{-3}}$` as `2×10⁻³`; any other label as it is."""
    inner = _MATHDEFAULT.fullmatch(label)
    if inner is None:
        return label
    text = _POWER.sub(lambda m: m.group(1).translate(_SUPERSCRIPT), inner.group(1).replace("\\times", "×"))
    return label if any(c in text for c in "\\{}^_$") else text.replace("-", "−")


def plain_log_labels(fig: Figure) -> None:
    """Every log axis of `fig` (colour bars and inset axes included) labelled by `UnicodeLogFormatter`
    where it had matplotlib's default mathtext formatter, keeping that formatter's settings."""
    axes, seen = list(fig.axes), []
    while axes:
        ax = axes.pop()
        seen.append(ax)
        axes += [child for child in ax.child_axes if child not in seen]
        for axis in (ax.xaxis, ax.yaxis):
            for get, put in ((axis.get_major_formatter, axis.set_major_formatter),
                             (axis.get_minor_formatter, axis.set_minor_formatter)):
                old = get()
                if type(old) in (LogFormatterSciNotation, LogFormatterMathtext):
                    put(UnicodeLogFormatter(old._base, labelOnlyBase=old.labelOnlyBase,
                                            minor_thresholds=old.minor_thresholds, linthresh=old._linthresh))


def floats(values: Any) -> np.ndarray:
    """A float array, with None (how metrics.json stores NaN/inf) read back as NaN."""
    if values is None:
        return np.array([], dtype=float)
    return np.array([np.nan if v is None else v for v in np.ravel(np.asarray(values, dtype=object))], dtype=float)


def masked(y: np.ndarray, logy: bool) -> np.ndarray:
    """Non-finite values (and non-positive ones on a log axis) become NaN, which breaks the line."""
    keep = np.isfinite(y) & ((y > 0) if logy else True)
    return np.where(keep, y, np.nan)

