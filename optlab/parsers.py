"""Parsers of setting values: a raw value (a string from the command line, or a TOML value) -> a typed one.

Each raises ValueError("must be …") saying what it wants; optlab.runs.resolve turns that into the
one-line ConfigError that names where the value came from (`--lr`, `--set lr`, `lr in FILE.toml`).
A leaf: optlab.config declares every setting with one of these, and commands with options of their
own (`optlab analyze --k`) use them too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any


def _number(raw: Any, kind: type) -> Any:
    if isinstance(raw, bool):
        raise ValueError
    if isinstance(raw, str):
        raw = raw.strip().replace("_", "")
    value = kind(raw)
    if kind is int and isinstance(raw, float) and not raw.is_integer():
        raise ValueError
    return value


def checked(kind: type, test: Callable[[Any], bool], wants: str) -> Callable[[Any], Any]:
    def parse(raw: Any) -> Any:
        try:
            value = _number(raw, kind)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"must be {wants}") from None
        if not test(value):
            raise ValueError(f"must be {wants}")
        return value

    parse.wants = wants  # type: ignore[attr-defined]
    return parse


positive = checked(float, lambda v: math.isfinite(v) and v > 0, "a positive finite number")
non_negative = checked(float, lambda v: math.isfinite(v) and v >= 0, "a finite number ≥ 0")
fraction = checked(float, lambda v: 0 < v <= 1, "a number in (0, 1]")
open_fraction = checked(float, lambda v: 0 < v < 1, "a number strictly between 0 and 1")
unit_interval = checked(float, lambda v: 0 <= v < 1, "a number in [0, 1)")
seed_int = checked(int, lambda v: 0 <= v < 2**32, "an integer in [0, 2³²)")


def count(limit: int) -> Callable[[Any], int]:
    return checked(int, lambda v: 1 <= v <= limit, f"an integer from 1 to {limit:,}")


def name(raw: Any) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError("must be a non-empty name")
    return raw.strip()


def one_of(*options: str) -> Callable[[Any], str]:
    """One of a few fixed words (a setting whose values are not a registry's names)."""
    wants = "one of " + ", ".join(options)

    def parse(raw: Any) -> str:
        text = raw.strip() if isinstance(raw, str) else raw
        if text not in options:
            raise ValueError(f"must be {wants}")
        return text

    parse.wants = wants  # type: ignore[attr-defined]
    return parse


def optional_path(raw: Any) -> str | None:
    if raw is None or (isinstance(raw, str) and raw.strip() == ""):
        return None
    if not isinstance(raw, str):
        raise ValueError("must be a path")
    return raw


def number_list(item: Callable[[Any], Any], length: int | None, wants: str) -> Callable[[Any], tuple]:
    def parse(raw: Any) -> tuple:
        items = raw.split(",") if isinstance(raw, str) else raw
        if not isinstance(items, (list, tuple)) or (length is not None and len(items) != length) or not items:
            raise ValueError(f"must be {wants}")
        try:
            return tuple(item(x) for x in items)
        except ValueError:
            raise ValueError(f"must be {wants}") from None

    return parse


def int_range(raw: Any, low: int, high: int) -> tuple[int, ...]:
    """`5`, `2,5,10` or `2..20` (inclusive) -> a tuple of integers in [low, high].

    A range's ends are checked before it is expanded: `1..10000000000` is refused at once.
    """
    wants = f"integers from {low} to {high:,}: a list 2,5,10 or a range 2..20"
    text = ",".join(map(str, raw)) if isinstance(raw, (list, tuple)) else str(raw)
    first, dots, last = text.partition("..")
    try:
        ends = (int(first), int(last)) if dots else None
        values = () if dots else tuple(_number(x, int) for x in text.split(","))
    except (TypeError, ValueError):
        raise ValueError(f"must be {wants}") from None
    if ends is not None and low <= ends[0] <= ends[1] <= high:
        values = tuple(range(ends[0], ends[1] + 1))
    if not values or not all(low <= v <= high for v in values):
        raise ValueError(f"must be {wants}")
    return values


finite = checked(float, math.isfinite, "a finite number")
start_point = number_list(finite, 2, "two finite numbers W1,W2 (e.g. --start 0.5,2)")
layer_sizes = number_list(count(100_000), None, "comma-separated positive layer widths (e.g. --hidden 225,225)")


def optional_positive(raw: Any) -> float | None:
    """None (unset) or a positive finite number: for settings whose absence means "off"."""
    return None if raw is None else positive(raw)


def setting_pairs(raw: Any) -> tuple[tuple[str, Any], ...]:
    """An optimizer's own settings, as recorded ({"b1": 0.9}) or held ((("b1", 0.9),)): name-value pairs.

    Only their shape is checked here; which names and values the optimizer takes, optlab.runs.resolve checks.
    """
    items = raw.items() if isinstance(raw, Mapping) else raw
    try:
        pairs = tuple((str(k), v) for k, v in items)
    except (TypeError, ValueError):
        raise ValueError("must be a table of the optimizer's own settings, e.g. {b1 = 0.9}") from None
    if any(isinstance(v, (Mapping, list, tuple)) for _, v in pairs):
        raise ValueError("must hold single values (numbers, true/false, text)")
    return pairs


def boolean(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("true", "on", "yes", "1"):
        return True
    if text in ("false", "off", "no", "0"):
        return False
    raise ValueError("must be true or false")
