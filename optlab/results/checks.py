"""The types a metrics.json must hold for optlab's readers (compare, report, resume) to use it.

`read_metrics` calls `check_types` on every record it reads; a record that fails is refused once,
naming the file and the key, instead of crashing a table or a figure later.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# What readers of a record rely on, beyond the required keys being there. Hand-edited or foreign
# files break these; each is then refused naming the key, instead of crashing a table or figure.
_SECTIONS = ("config", "environment", "history", "summary", "analysis", "figures")
_TEXT_KEYS = ("run_id", "status", "experiment")
_CONFIG_TYPES = {"optimizer": "text", "lr_schedule": "text", "lr": "number", "seed": "integer"}
_SUMMARY_NUMBERS = ("steps", "epochs", "final_loss", "test_error", "best_test_error", "time_to_target_s",
                    "wall_time_s")
# The series the compare figures draw. Other history keys are the experiment's own (signals keeps
# per-depth lists of different lengths under grad_norm, for one).
_HISTORY_SERIES = ("step", "loss", "epoch", "train_loss", "test_error")


def check_types(record: Mapping[str, Any]) -> str | None:
    """What is wrong with a complete record's types ("summary.final_loss is text, expected a number"), or None.

    Only what optlab's readers use is checked: the top-level text fields, the sections being
    objects, the config and summary values the tables show, the numeric history series the
    figures draw (null stands for NaN), the tiny trajectory (equal-length rows of numbers) and
    the figures' file names and captions (`_check_figures`). Unknown keys are left alone, so experiments may store more.
    """
    for key in _TEXT_KEYS:
        if not isinstance(record[key], str):
            return _wrong(key, record[key], "text")
    for key in _SECTIONS:
        if not isinstance(record[key], dict):
            return _wrong(key, record[key], "an object")
    if "sweep_id" in record and not isinstance(record["sweep_id"], (str, type(None))):
        return _wrong("sweep_id", record["sweep_id"], "text")
    for key, kind in _CONFIG_TYPES.items():
        value = record["config"].get(key)
        if value is not None and not _is(value, kind):
            return _wrong(f"config.{key}", value, _EXPECTED[kind])
    for key in _SUMMARY_NUMBERS:
        value = record["summary"].get(key)
        if value is not None and not _is(value, "number"):
            return _wrong(f"summary.{key}", value, "a number")
    return (_check_plugins(record["environment"].get("plugins", [])) or _check_figures(record["figures"])
            or _check_history(record["history"]))


def _check_plugins(plugins: Any) -> str | None:
    """environment.plugins: a list of objects, each with a text sha256 and a text path (a file) or name
    (an installed package's entry point): what `optlab run --resume` loads and checks again."""
    if not isinstance(plugins, list):
        return _wrong("environment.plugins", plugins, "a list")
    for i, entry in enumerate(plugins):
        key = f"environment.plugins[{i}]"
        if not isinstance(entry, Mapping):
            return _wrong(key, entry, "an object")
        if not isinstance(entry.get("path", entry.get("name")), str):
            return f'{key} has no text "path" (a file) or "name" (an entry point)'
        if not isinstance(entry.get("sha256"), str):
            return _wrong(f"{key}.sha256", entry.get("sha256"), "text")
    return None


def _check_figures(figures: Mapping[str, Any]) -> str | None:
    """Each entry a file name (schema 1) or an object holding one under "path" and, if any, a text
    "caption" (schema 2). Either form passes in either version, since readers go through `figures_of`."""
    for name, entry in figures.items():
        key = f"figures.{name}"
        if isinstance(entry, Mapping):
            if "path" not in entry:
                return f'{key} is an object without a "path" (the file name)'
            if entry.get("caption") is not None and not isinstance(entry["caption"], str):
                return _wrong(f"{key}.caption", entry["caption"], "text")
            key, entry = f"{key}.path", entry["path"]
        if not isinstance(entry, str) or "\0" in entry:
            return _wrong(key, entry, "a file name")
    return None


def _check_history(history: Mapping[str, Any]) -> str | None:
    for key, series in history.items():
        if not isinstance(series, list):
            return _wrong(f"history.{key}", series, "a list")
        if key in _HISTORY_SERIES:
            bad = next((v for v in series if v is not None and not _is(v, "number")), _OK)
            if bad is not _OK:
                return _wrong(f"history.{key}", bad, "a list of numbers", item=True)
    rows = history.get("params", [])
    lengths = {len(row) for row in rows if isinstance(row, list)}
    if any(row is not None and not (isinstance(row, list) and all(v is None or _is(v, "number") for v in row))
           for row in rows):
        return "history.params holds an entry that is not a list of numbers"
    if len(lengths) > 1:
        return f"history.params has rows of different lengths ({', '.join(map(str, sorted(lengths)))})"
    return None


_OK = object()
_EXPECTED = {"text": "text", "number": "a number", "integer": "an integer"}
_JSON_KIND = {str: "text", bool: "true/false", int: "a number", float: "a number", list: "a list", dict: "an object"}


def _is(value: Any, kind: str) -> bool:
    if kind == "text":
        return isinstance(value, str)
    if isinstance(value, bool):  # JSON's true is not a number, even though Python's True is an int
        return False
    return isinstance(value, int) if kind == "integer" else isinstance(value, (int, float))


def _wrong(key: str, value: Any, expected: str, item: bool = False) -> str:
    kind = _JSON_KIND.get(type(value), type(value).__name__)
    return f"{key} {'holds' if item else 'is'} {kind}, expected {expected}"
