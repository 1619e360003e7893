"""A run folder as a Python object: what `optlab.run` returns and `optlab.load` reads back.

Everything comes from the folder's metrics.json (the results contract: its keys are the attributes'
names) and, on request, params.npz; nothing here imports JAX, so loading runs in a notebook is cheap.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from optlab import results
from optlab.errors import ResultsError

# Summary numbers worth showing in a Run's repr, in this order (the first few an experiment has).
_SHOWN = ("final_loss", "test_error", "best_test_error", "steps", "epochs")


@dataclass(frozen=True, repr=False)
class Run:
    """One run: its folder (`path`) and its metrics.json (`metrics`, a dict, as written)."""

    path: Path
    metrics: dict
    notes: Sequence[str] = field(default=(), compare=False)  # what the run had to say (the CLI's `note:` lines)

    @property
    def run_id(self) -> str:
        return self.metrics["run_id"]

    @property
    def status(self) -> str:
        """completed, diverged, interrupted, failed (or running, for a run still writing its folder)."""
        return self.metrics["status"]

    @property
    def experiment(self) -> str:
        return self.metrics["experiment"]

    @property
    def config(self) -> dict:
        """The settings that applied to the run (metrics.json's `config`)."""
        return self.metrics["config"]

    @property
    def summary(self) -> dict:
        return self.metrics["summary"]

    @property
    def history(self) -> dict:
        """Per step or per epoch lists (loss, lr, test_error, ...), as metrics.json holds them."""
        return self.metrics["history"]

    @property
    def analysis(self) -> dict:
        return self.metrics["analysis"]

    @property
    def figures(self) -> dict[str, Path]:
        """Each figure's name -> the path of its file (PNG or GIF) in the run folder."""
        entries = results.figures_of(self.metrics)
        return {name: self.path / results.figure_path(entry) for name, entry in entries.items()}

    def params(self) -> dict[str, np.ndarray]:
        """The final parameters from params.npz, by key ("w", "layers/0/w", ...); read on each call."""
        return results.load_params(self.path)

    def __hash__(self) -> int:  # equal runs have equal paths; metrics, a dict, cannot be hashed
        return hash(self.path)

    def __repr__(self) -> str:
        numbers = [f"{k}={self.summary[k]:.4g}" for k in _SHOWN
                   if isinstance(self.summary.get(k), (int, float)) and not isinstance(self.summary.get(k), bool)]
        optimizer = self.config.get("optimizer")
        what = f"{self.experiment} {optimizer}" if optimizer else self.experiment
        return f"<Run {self.run_id}: {what}, {self.status}{', ' if numbers else ''}{', '.join(numbers[:3])}>"


def load(path: str | os.PathLike) -> Run:
    """The run in folder `path` (or its metrics.json); ResultsError for anything that is not a readable run."""
    path = Path(path)
    if path.name == results.METRICS_FILE and path.is_file():
        path = path.parent
    if not path.exists():
        raise ResultsError(f"{path}: no such folder")
    if not path.is_dir():
        raise ResultsError(f"{path}: not a run folder (give the folder that holds {results.METRICS_FILE})")
    if not (path / results.METRICS_FILE).exists():
        inside = sum(1 for _ in results.find_runs(path))
        hint = (f"; it holds {inside} run folder{'s' * (inside != 1)} (optlab.compare reads them all)"
                if inside else "")
        raise ResultsError(f"{path}: not a run folder (no {results.METRICS_FILE}){hint}")
    return Run(path, results.read_metrics(path))
