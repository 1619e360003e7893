"""Figures: one function per figure, plain arrays and dicts in, a PNG path out.

Every function builds a `matplotlib.figure.Figure` on the Agg canvas (no pyplot, no global
state), so figures render headless and from threads, and writes the PNG atomically through
`optlab.results.write_atomic`. Nothing here knows about the engine or the run folder layout.
Non-finite numbers (a diverged run) never break a figure: they are masked, and the view is
clipped to what is meaningful.

Importing this package costs nothing: each name loads its module (and with it matplotlib, a
third of a second) on first use, so that commands which draw nothing — `--help`, `list`, a
table-only `compare` — never pay for it.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOME = {
    "DPI": "_base", "Curve": "_base",
    "Racer": "animation", "frame_steps": "animation", "race": "animation",
    "bifurcation": "dynamics", "phase_diagram": "dynamics",
    "interpolation_curve": "loss_slices", "landscape_planes": "loss_slices",
    "edge_of_stability": "analysis", "heatmap": "analysis", "heatmap_layout": "analysis",
    "signals": "analysis", "spectral_density": "analysis",
    "curves": "training", "landscape": "training", "learning_curves": "training", "sparsity": "training",
    "tile_grid": "training", "weight_tiles": "training",
}
__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    globals()[name] = value  # later look-ups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return __all__
