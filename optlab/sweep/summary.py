"""A sweep's outputs beside its run folders: the summary table, the heat-map and the best configuration."""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from optlab import plots, results

if TYPE_CHECKING:
    from optlab.sweep import Sweep


def summary_rows(sweep: Sweep, records: Sequence[dict], dirs: Sequence[Path | None]) -> list[dict]:
    """One row per configuration: run id, the varied settings, status, and every summary number."""
    rows = []
    for cfg, record, d in zip(sweep.configs, records, dirs):
        numbers = {k: v for k, v in record["summary"].items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        rows.append({"run_id": record["run_id"], **{k: _plain(getattr(cfg, k)) for k in sweep.columns},
                     "status": record["status"], **numbers, "config": record["config"],
                     "path": str(d) if d else None})
    return rows


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def score(row: Mapping[str, Any], metric: str) -> float:
    """The row's metric, lower is better; a diverged or missing one is +inf."""
    value = row.get(metric)
    return float(value) if row["status"] == "completed" and value is not None and np.isfinite(value) else float("inf")


def pick_best(rows: Sequence[dict], metric: str) -> dict | None:
    """The configuration with the lowest metric; ties go to the setting with the lower mean over its seeds."""
    means = {}
    for key, members in _by_setting(rows).items():
        means[key] = statistics.fmean(score(r, metric) for r in members)
    ranked = sorted(range(len(rows)), key=lambda i: (score(rows[i], metric), means[_setting(rows[i])], i))
    if not ranked or not np.isfinite(score(rows[ranked[0]], metric)):
        return None
    best = rows[ranked[0]]
    return best | {"seed_mean": means[_setting(best)], "metric": metric}


def _setting(row: Mapping[str, Any]) -> str:
    return repr(sorted((k, v) for k, v in row["config"].items() if k != "seed"))


def _by_setting(rows: Sequence[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in rows:
        out.setdefault(_setting(row), []).append(row)
    return out


def to_toml(cfg: Mapping[str, Any], comment: str, plugin_files: Sequence[str] = ()) -> str:
    """A flat experiment file of `cfg` for `optlab run FILE.toml` (None values are left out); `plugin_files`
    (absolute paths) become its `plugins = [...]`, so that it loads the code the sweep ran."""
    lines = [f"# {line}" for line in comment.splitlines()]
    if plugin_files:
        lines.append(f"plugins = {_toml_value(list(plugin_files))}")
    for key, value in cfg.items():
        if value is None or key in ("out", "run_dir"):
            continue
        if isinstance(value, Mapping):  # the optimizer's own settings: flat lines, as a user writes them
            lines += [f"{k} = {_toml_value(v)}" for k, v in value.items() if v is not None]
            continue
        lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value)  # shortest round-tripping form, valid TOML (1e-05, 0.001)
    if isinstance(value, int):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def heatmap_grid(sweep: Sweep, rows: Sequence[dict], metric: str) -> tuple[np.ndarray, list, list, str, str, str]:
    """The final metric over two varied settings: (values, row labels, col labels, ylabel, xlabel, note).

    With one varied setting the map is a single row. With more than two, the seed is averaged
    over first, then the first two remaining settings are shown and the others averaged over
    too; a cell with a diverged member reads "diverged" (NaN), since its mean is not defined.
    """
    varied = sweep.varied or list(sweep.grid)[:1] or ["experiment"]
    shown = [k for k in varied if k != "seed"][:2] or varied[:1]
    averaged = [k for k in varied if k not in shown]
    if len(shown) == 1:
        shown = ["", shown[0]]
    axes = [_unique([_plain(_get(r, k)) for r in rows]) for k in shown]
    cells: dict[tuple, list[float]] = {}
    for r in rows:
        value = score(r, metric)
        cells.setdefault(tuple(axes[j].index(_plain(_get(r, k))) for j, k in enumerate(shown)), []).append(
            value if np.isfinite(value) else np.nan)
    values = np.full([len(a) for a in axes], np.nan)
    for index, members in cells.items():
        values[index] = np.mean(members)
    note = f"mean over {', '.join(averaged)}" if averaged else ""
    labels = [[_label(v) for v in a] for a in axes]
    return values, labels[0], labels[1], shown[0], shown[1], note


def _get(row: Mapping[str, Any], key: str) -> Any:
    return row.get(key, "") if key else ""


def _unique(values: list) -> list:
    out = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


def _label(value: Any) -> str:
    if isinstance(value, list):
        return "-".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def write_outputs(sweep_dir: Path, sweep: Sweep, rows: Sequence[dict], metric: str, best: dict | None) -> None:
    """summary.csv, summary.json, heatmap.png, and best.toml when a best configuration was asked for."""
    fixed = ("config", "path", "run_id", "status", *sweep.columns)
    columns = ["run_id", *sweep.columns, "status", *_unique([k for r in rows for k in r if k not in fixed])]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: _label(r[k]) if isinstance(r.get(k), list) else r.get(k) for k in columns})
    results.write_atomic(sweep_dir / "summary.csv", buffer.getvalue().encode())
    results.write_json(sweep_dir / "summary.json", {
        "grid": {k: [_plain(v) for v in vs] for k, vs in sweep.grid.items()},
        "metric": metric, "best": best and best["run_id"],
        "runs": [{k: v for k, v in r.items() if k != "config"} for r in rows]})
    values, row_labels, col_labels, ylabel, xlabel, note = heatmap_grid(sweep, rows, metric)
    plots.heatmap(sweep_dir / "heatmap.png", values, row_labels, col_labels, xlabel=xlabel, ylabel=ylabel,
                  title=f"final {metric}" + (f" ({note})" if note else ""))
    if best:
        comment = (f"best of {sweep_dir.name} by {metric} = {best[metric]:.6g} "
                   f"(mean over its seeds {best['seed_mean']:.6g}): run {best['run_id']}\nrun it: optlab run best.toml")
        from optlab import plugins

        files = [p["path"] for p in plugins.records() if "path" in p]  # installed packages' load by themselves
        results.write_atomic(sweep_dir / "best.toml", to_toml(best["config"], comment, files).encode())
