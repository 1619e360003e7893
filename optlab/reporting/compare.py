"""Many runs side by side: find, filter, group, sort, and format them as one table.

Everything here is a pure function over run records (the parsed metrics.json files); nothing
prints. `optlab.reporting.tables` formats the rows, the command line prints them, and
`optlab.reporting.report` draws the figures and writes the HTML page from the same rows.

Grouping (`--group-by-seed`): runs whose configs are equal apart from the seed (and apart from
paths that name where a run lived, such as data_dir) become one Row. Each numeric column then
holds a Stat: the mean and the sample standard deviation (ddof=1) over the runs where that
number exists (null, e.g. "never reached the target", is left out and the count says so).
With a single value the std is None (shown blank), not 0: one run says nothing about spread.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optlab.errors import ConfigError, ResultsError
from optlab.results import METRICS_FILE, find_runs, read_metrics

FORMATS = ("table", "markdown", "csv", "json")
# Config keys that say where a run lived rather than what it computed: never part of a group key.
RUN_SPECIFIC_KEYS = frozenset({"seed", "data_dir", "out", "out_dir", "run_dir", "results_dir", "run_id"})
# Top-level record keys that --where also understands, besides the config's own keys.
TOP_LEVEL_WHERE_KEYS = ("status", "run_id", "sweep_id")


@dataclass(frozen=True)
class Run:
    """One readable run folder and its parsed metrics.json."""

    path: Path
    record: dict


@dataclass(frozen=True)
class Skipped:
    """A run folder that could not be compared, and why (said once, then the rest go on)."""

    path: Path
    reason: str


@dataclass(frozen=True)
class Stat:
    """Mean ± sample std of one number over a group's runs; n counts the runs that had it."""

    mean: float | None
    std: float | None
    n: int


@dataclass
class Row:
    """One table row: a single run (values are plain) or a seed group (numeric values are Stats)."""

    values: dict[str, Any]
    runs: list[Run] = field(default_factory=list)
    grouped: bool = False

    @property
    def n(self) -> int:
        return len(self.runs)


# ----------------------------------------------------------------------------- discovery


def load_runs(paths: Sequence[Path]) -> tuple[list[Run], list[Skipped]]:
    """Every run folder below `paths` (any depth), read; unreadable metrics files are skipped, not fatal.

    Raises ResultsError (exit 2) for a path that does not exist or cannot be listed.
    """
    roots = []
    for p in map(Path, paths):
        if p.is_file() and p.name == METRICS_FILE:
            p = p.parent  # `compare results/x/metrics.json` means the run folder
        if not p.exists():
            raise ResultsError(f"{p}: no such file or folder")
        if not p.is_dir():
            raise ResultsError(f"{p}: not a folder (give a results folder or a run folder)")
        try:
            next(p.iterdir(), None)
        except OSError as e:
            raise ResultsError(f"{p}: cannot read ({e.strerror or e})") from None
        roots.append(p)
    runs, skipped = [], []
    for folder in find_runs(*roots):
        file = folder / METRICS_FILE
        try:
            record = read_metrics(file)  # also checks the types every reader here relies on
        except ResultsError as e:
            reason = str(e).removeprefix(f"{file}: ")
            skipped.append(Skipped(file, reason))
            continue
        runs.append(Run(folder, record))
    return runs, skipped


# ----------------------------------------------------------------------------- columns


def _fmt_num(v: float) -> str:
    return f"{v:.4g}"


def _fmt_pct(v: float) -> str:
    return f"{100 * v:.2f}%"


def _fmt_secs(v: float) -> str:
    return f"{v:.0f}s" if abs(v) >= 100 else f"{v:.3g}s"


@dataclass(frozen=True)
class Column:
    """A table column: its machine name (csv/json/--sort), header, how to read it and print it."""

    name: str
    header: str
    get: Callable[[Mapping[str, Any]], Any]
    fmt: Callable[[Any], str] = str
    metric: bool = False  # aggregated as mean ± std when grouping by seed


def _cfg(key: str) -> Callable[[Mapping[str, Any]], Any]:
    return lambda r: r["config"].get(key)


def _summ(*keys: str) -> Callable[[Mapping[str, Any]], Any]:
    """The first of `keys` present in the summary (`steps` for tiny, `epochs` for mnist)."""
    return lambda r: next((r["summary"][k] for k in keys if r["summary"].get(k) is not None), None)


COLUMNS: tuple[Column, ...] = (
    Column("run", "run", lambda r: r["run_id"]),
    Column("experiment", "experiment", lambda r: r["experiment"]),
    Column("optimizer", "optimizer", _cfg("optimizer")),
    Column("lr", "lr", _cfg("lr"), _fmt_num),
    Column("lr_schedule", "schedule", _cfg("lr_schedule")),
    Column("seed", "seed", _cfg("seed")),
    Column("status", "status", lambda r: r["status"]),
    Column("steps", "steps/epochs", _summ("steps", "epochs"), _fmt_num, metric=True),
    Column("final_loss", "final loss", _summ("final_loss"), _fmt_num, metric=True),
    Column("test_error", "test error", _summ("test_error"), _fmt_pct, metric=True),
    Column("best_test_error", "best test error", _summ("best_test_error"), _fmt_pct, metric=True),
    Column("time_to_target_s", "time to target", _summ("time_to_target_s"), _fmt_secs, metric=True),
    Column("wall_time_s", "wall time", _summ("wall_time_s"), _fmt_secs, metric=True),
)
BY_NAME = {c.name: c for c in COLUMNS}
SORT_ALIASES = {"run_id": "run", "epochs": "steps", "schedule": "lr_schedule", "n": "n",
                "time_to_target": "time_to_target_s", "wall_time": "wall_time_s"}
# What the table and markdown show: lr and schedule read best as one cell ("0.25 constant").
DISPLAY = ("run", "experiment", "optimizer", "lr+schedule", "seed", "status", "steps",
           "final_loss", "test_error", "best_test_error", "time_to_target_s", "wall_time_s")


def make_rows(runs: Iterable[Run]) -> list[Row]:
    """One Row per run, with every column's value read from its record (NaN/inf read as missing)."""
    def clean(v: Any) -> Any:  # json.loads accepts a bare NaN in a hand-edited file; JSON output must not
        return None if isinstance(v, float) and not math.isfinite(v) else v

    return [Row({c.name: clean(c.get(run.record)) for c in COLUMNS}, [run]) for run in runs]


# ----------------------------------------------------------------------------- --where


def parse_where(items: Sequence[str]) -> dict[str, list[str]]:
    """`["optimizer=adam", "lr=0.1", "lr=0.2"]` -> {"optimizer": ["adam"], "lr": ["0.1", "0.2"]}."""
    out: dict[str, list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--where {item!r}: expected key=value, e.g. --where optimizer=adam")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def where_keys(runs: Iterable[Run]) -> list[str]:
    """The keys --where can match: every config key seen, plus status, run_id and sweep_id."""
    keys = {k for run in runs for k in run.record["config"]} | {k for run in runs for k in _own(run.record)}
    return sorted(keys | set(TOP_LEVEL_WHERE_KEYS))


def _own(record: Mapping[str, Any]) -> Mapping[str, Any]:
    """The optimizer's own settings (config.optimizer_settings, e.g. a plug-in's b1): --where b1=0.9 matches them."""
    own = record["config"].get("optimizer_settings")
    return own if isinstance(own, Mapping) else {}


def filter_runs(runs: Sequence[Run], where: Mapping[str, Sequence[str]]) -> list[Run]:
    """Runs matching every key; a key given several times matches any of its values.

    Values compare as the run's own type: numbers numerically (lr=0.25 and lr=2.5e-1 are the
    same), booleans from true/false/1/0/yes/no, lists from "225,225", null from none/null.
    """
    known = where_keys(runs)
    for key in where:
        if key not in known:
            raise ConfigError(f"--where {key}: unknown key {key!r}; known keys: {', '.join(known)}")
    return [run for run in runs
            if all(any(_matches(_lookup(run.record, k), raw, k) for raw in raws) for k, raws in where.items())]


def _lookup(record: Mapping[str, Any], key: str) -> Any:
    if key in record["config"]:
        return record["config"][key]
    return _own(record).get(key, record.get(key, _MISSING))


_MISSING = object()
_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


def _matches(actual: Any, raw: str, key: str) -> bool:
    """Does the config value `actual` equal the command-line text `raw`, read as actual's type?"""
    if actual is _MISSING:
        return False
    if actual is None:
        return raw.lower() in ("none", "null", "")
    if isinstance(actual, bool):
        if raw.lower() not in _TRUE | _FALSE:
            raise ConfigError(f"--where {key}={raw}: {key} is true or false")
        return actual == (raw.lower() in _TRUE)
    if isinstance(actual, (int, float)):
        try:
            wanted = float(raw)
        except ValueError:
            raise ConfigError(f"--where {key}={raw}: {key} is a number") from None
        return math.isclose(float(actual), wanted, rel_tol=1e-12, abs_tol=0.0)
    if isinstance(actual, (list, tuple)):
        parts = [p.strip() for p in raw.split(",")] if raw.strip() else []
        return len(parts) == len(actual) and all(_matches(a, p, key) for a, p in zip(actual, parts))
    return str(actual) == raw


# ----------------------------------------------------------------------------- grouping


def group_key(record: Mapping[str, Any]) -> str:
    """The config minus seed and run-specific paths, as canonical JSON: equal keys group together."""
    cfg = {k: v for k, v in record["config"].items() if k not in RUN_SPECIFIC_KEYS}
    return json.dumps([record["experiment"], cfg], sort_keys=True, default=str)


def group_by_seed(rows: Sequence[Row]) -> list[Row]:
    """Fold rows whose configs differ only in seed into one Row of Stats (order of first appearance)."""
    groups: dict[str, list[Row]] = {}
    for row in rows:
        groups.setdefault(group_key(row.runs[0].record), []).append(row)
    return [_fold(members) for members in groups.values()]


def _fold(members: list[Row]) -> Row:
    first = members[0].values
    values: dict[str, Any] = {c.name: first[c.name] for c in COLUMNS if not c.metric}
    values["run"] = [m.values["run"] for m in members]
    values["seed"] = sorted({m.values["seed"] for m in members}, key=lambda s: _sortable(Row({"s": s}), "s"))
    counts = Counter(m.values["status"] for m in members)
    values["status"] = next(iter(counts)) if len(counts) == 1 else ", ".join(f"{s} {n}" for s, n in counts.items())
    for c in COLUMNS:
        if c.metric:
            values[c.name] = stat([m.values[c.name] for m in members])
    return Row(values, [r for m in members for r in m.runs], grouped=True)


def stat(values: Sequence[Any]) -> Stat:
    """Mean and sample std (ddof=1) of the finite numbers in `values`; std None when fewer than 2."""
    xs = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
    if not xs:
        return Stat(None, None, 0)
    return Stat(statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else None, len(xs))


# ----------------------------------------------------------------------------- sorting


def sort_column(name: str) -> str:
    """Resolve a --sort name (column name or alias such as wall_time) or raise a one-line error."""
    resolved = SORT_ALIASES.get(name, name)
    if resolved not in BY_NAME and resolved != "n":
        names = sorted(set(BY_NAME) | set(SORT_ALIASES))
        raise ConfigError(f"--sort {name}: unknown column; known columns: {', '.join(names)}")
    return resolved


def sort_rows(rows: Sequence[Row], by: str | None = None, descending: bool = False) -> list[Row]:
    """Sort by one column (missing values last either way); default: experiment, optimizer, lr, schedule, seed."""
    if by is None:
        keys = ("experiment", "optimizer", "lr", "lr_schedule", "seed", "run")
        return sorted(rows, key=lambda r: tuple(_sortable(r, k) for k in keys))
    name = sort_column(by)
    rows = sort_rows(rows)  # ties and missing values then keep the default order
    present = [r for r in rows if not _sortable(r, name)[0]]
    missing = [r for r in rows if _sortable(r, name)[0]]
    return sorted(present, key=lambda r: _sortable(r, name), reverse=descending) + missing


def _sortable(row: Row, name: str) -> tuple[bool, bool, float, str]:
    v = row.n if name == "n" else row.values.get(name)
    if isinstance(v, Stat):
        v = v.mean
    if isinstance(v, list):
        v = v[0] if v else None
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return (True, False, 0.0, "")
    # Numbers before text, so a column that mixes them (hand-edited configs) still sorts.
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (False, False, float(v), "")
    return (False, True, 0.0, str(v))
