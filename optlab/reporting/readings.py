"""Reading numbers from a reproduction's run records, for the lecture's page (optlab.reporting.lecture).

Each lookup either gives a value that is really there (a finite number, a list of them, a key's value)
or raises NotMeasured saying, in the reader's words, which run lacks what; the page prints that
sentence in place of the number. Plain dicts only: no JAX, no experiment code.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class NotMeasured(Exception):
    """A measure could not read its number: the run is missing or failed, or a key is absent."""


def fmt(x: float) -> str:
    """How the page prints a measured number: 4 significant digits (0.342466 -> "0.3425")."""
    return f"{x:.4g}"


def pct(x: float) -> str:
    """A fraction as a percentage with two decimals (0.01234 -> "1.23%")."""
    return f"{100 * x:.2f}%"


@dataclass
class Runs:
    """The runs of one reproduction by experiment-file stem, and why a stem has none."""

    records: Mapping[str, Mapping[str, Any]]
    problems: Mapping[str, str] = field(default_factory=dict)

    def record(self, stem: str) -> Mapping[str, Any]:
        """The completed run of `stem`.toml; NotMeasured saying why there is none."""
        if stem not in self.records:
            raise NotMeasured(self.problems.get(stem) or f"{stem}.toml was not run")
        record = self.records[stem]
        if record.get("status") != "completed":
            raise NotMeasured(f"the run of {stem}.toml ended {record.get('status')}")
        return record

    def get(self, stem: str, key: str) -> Any:
        """A value of the run's metrics.json by dotted key ("analysis.critical_point")."""
        value: Any = self.record(stem)
        for part in key.split("."):
            if not isinstance(value, Mapping) or value.get(part) is None:
                raise NotMeasured(f"the run of {stem}.toml has no {key} in its metrics.json")
            value = value[part]
        return value

    def number(self, stem: str, key: str) -> float:
        """A finite number of the run's metrics.json."""
        return finite(self.get(stem, key), stem, key)

    def numbers(self, stem: str, key: str) -> list[float]:
        """A list of finite numbers (a history or a list of eigenvalues); None entries are refused."""
        values = self.get(stem, key)
        if not isinstance(values, list) or not values:
            raise NotMeasured(f"the run of {stem}.toml has no list {key} in its metrics.json")
        return [finite(v, stem, key) for v in values]


def finite(value: Any, stem: str, key: str) -> float:
    """`value` as a float, if it is a finite number (not a bool); else NotMeasured naming the run and key."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise NotMeasured(f"the run of {stem}.toml has no finite number at {key} (found {value!r})")
    return float(value)


def coordinate(x: float) -> str:
    """A weight as the page prints it: fmt, but 0 for |x| < 1e-12 (Newton lands on the saddle at 1e-260)."""
    return "0" if abs(x) < 1e-12 else fmt(x)
