"""Figures: one function per figure, plain arrays and dicts in, a PNG path out.

Every function builds a `matplotlib.figure.Figure` on the Agg canvas (no pyplot, no global
state), so figures render headless and from threads, and writes the PNG atomically through
`optlab.results.write_atomic`. Nothing here knows about the engine or the run folder layout.
Non-finite numbers (a diverged run) never break a figure: they are masked, and the view is
clipped to what is meaningful.
"""

from optlab.plots._base import DPI, Curve
from optlab.plots.analysis import edge_of_stability, heatmap, signals, spectral_density
from optlab.plots.training import (
           curves,
           landscape,
           learning_curves,
           sparsity,
           tile_grid,
           weight_tiles,
)

__all__ = ["DPI", "Curve", "curves", "edge_of_stability", "heatmap", "landscape", "learning_curves", "signals",
           "sparsity", "spectral_density", "tile_grid", "weight_tiles"]
