"""A sweep's runs in one file, `SWEEP_DIR/runs.npz`: every configuration's metrics.json record, columnar.

Why: a sweep of 10,000 tiny configurations as 10,000 run folders writes 30,000 files with an
fsync each and ~140 MB of JSON (a 100-step history is ~14 KB of text per configuration); as one
table it is one compressed file of ~35 MB, written once. `optlab sweep --layout` chooses (by
default folders up to optlab.sweep.store.FOLDERS_UP_TO configurations, a table beyond).

The file is a NumPy .npz archive (a zip of .npy arrays, no pickles), readable without optlab:

    header.json         UTF-8 JSON (as uint8 bytes): {"kind": "optlab-sweep-table", "table_version",
                        "count", "shared": the record keys equal in every record (schema_version,
                        experiment, environment, sweep_id, ...), "config": the config settings equal
                        in every record, "config_order", "history": [keys stored as arrays],
                        "params": [keys stored as arrays]}
    records.json        UTF-8 JSON: one object per configuration with the rest of its record
                        (run_id, status, summary, analysis, figures, its own config settings, and
                        any history series that is not a regular numeric array)
    history/KEY         every configuration's series KEY, shape (count, longest, ...), padded
    history_length/KEY  its length per configuration (-1: the record has no such series)
    params/KEY          the final parameters (as params.npz keys them), shape (count, ...)
    params_saved        which configurations have saved parameters (bool, count)

`read_table` rebuilds each record exactly as its metrics.json would read (NaN as null), checked
with the same `check_types`. Versions: TABLE_VERSION is the layout of this file (1); each record
inside keeps the metrics.json schema_version it follows. A reader refuses a newer table or
schema in one line saying to upgrade, and reads every older one.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from optlab import results
from optlab.errors import ResultsError
from optlab.results.checks import check_types

TABLE_FILE = "runs.npz"
TABLE_KIND = "optlab-sweep-table"
TABLE_VERSION = 1
_NEVER_SHARED = ("run_id", "status", "config", "history", "summary", "analysis", "figures")


def write_table(path: Path, records: Sequence[Mapping[str, Any]],
                params: Sequence[Mapping[str, np.ndarray] | None] = ()) -> Path:
    """Write `records` (metrics.json records, current schema) and their flat `params` as one table, atomically."""
    records = [_jsonable(r) for r in records]
    shared = _shared(records, [k for k in records[0] if k not in _NEVER_SHARED]) if records else {}
    config = _shared([r["config"] for r in records], list(records[0]["config"])) if records else {}
    arrays, stacked = {}, []
    for key in _keys(r["history"] for r in records):
        column = _stack([r["history"].get(key) for r in records])
        if column is not None:
            arrays[f"history/{key}"], arrays[f"history_length/{key}"] = column
            stacked.append(key)
    rows = []
    for r in records:
        row = {k: v for k, v in r.items() if k not in shared}
        row["config"] = {k: v for k, v in r["config"].items() if k not in config}
        row["history"] = {k: v for k, v in r["history"].items() if k not in stacked}
        rows.append(row)
    saved_params = _params(params, len(records), arrays)
    header = {"kind": TABLE_KIND, "table_version": TABLE_VERSION, "count": len(records), "shared": shared,
              "config": config, "config_order": list(records[0]["config"]) if records else [],
              "history": stacked, "params": saved_params}
    arrays["header.json"], arrays["records.json"] = _json_bytes(header), _json_bytes(rows)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    results.write_atomic(Path(path), buffer.getvalue())
    return Path(path)


def _jsonable(record: Mapping[str, Any]) -> dict:
    """What metrics.json would hold, except that numeric history arrays stay arrays (converting 10,000
    histories element by element to JSON values and back would cost more than the whole sweep)."""
    record = results.upgraded(record)
    history = {k: v if _numeric_array(v) else _plain(v) for k, v in record["history"].items()}
    return {k: _plain(v) for k, v in record.items() if k != "history"} | {"history": history}


def _plain(value: Any) -> Any:
    """results.to_jsonable, with the JSON types themselves passed through first (a sweep converts millions)."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is dict:
        return {str(k): _plain(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [_plain(v) for v in value]
    return results.to_jsonable(value)


def _numeric_array(value: Any) -> bool:
    return isinstance(value, np.ndarray) and value.dtype.kind in "biuf" and value.ndim >= 1


def _listed(a: np.ndarray) -> list:
    """An array as JSON values: NaN and ±inf as None, as results.to_jsonable writes them."""
    if a.dtype.kind != "f":
        return a.tolist()
    finite = np.isfinite(a)
    if finite.all():
        return a.tolist()
    out = a.astype(object)
    out[~finite] = None
    return out.tolist()


def _shared(dicts: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> dict[str, Any]:
    """The keys whose value is the same in every dict (compared as JSON values)."""
    first = dicts[0]
    return {k: first[k] for k in keys if all(k in d and d[k] == first[k] for d in dicts)}


def _keys(dicts) -> list[str]:
    out: dict[str, None] = {}
    for d in dicts:
        out.update(dict.fromkeys(d))
    return list(out)


def _stack(series: Sequence[Any]) -> tuple[np.ndarray, np.ndarray] | None:
    """Every record's series as one padded array and its lengths; None when one is not a regular numeric array."""
    arrays = []
    for s in series:
        if s is None:
            arrays.append(None)
            continue
        if _numeric_array(s):
            arrays.append(s)
            continue
        if not isinstance(s, list) or any(isinstance(v, (str, dict)) for v in s):
            return None
        try:
            a = np.array([np.nan if v is None else v for v in s] if None in s else s)
        except ValueError:  # ragged
            return None
        if a.dtype.kind not in "biuf" or (a.size and a.ndim < 1):
            return None
        arrays.append(a)
    present = [a for a in arrays if a is not None]
    if not present or len({a.shape[1:] for a in present if a.size}) > 1:
        return None
    inner = next((a.shape[1:] for a in present if a.size), ())
    dtype = np.result_type(*[a.dtype for a in present])
    if dtype.kind == "b" and len({a.dtype.kind for a in present}) > 1:
        return None
    longest = max(len(a) for a in present)
    out = np.zeros((len(arrays), longest, *inner), dtype=dtype)
    lengths = np.full(len(arrays), -1, dtype=np.int64)
    for i, a in enumerate(arrays):
        if a is not None:
            out[i, : len(a)] = a.reshape(len(a), *inner)
            lengths[i] = len(a)
    return out, lengths


def _params(params: Sequence[Mapping[str, np.ndarray] | None], n: int, arrays: dict) -> list[str]:
    """Stack each params key over the configurations that saved parameters (when its shape is the same)."""
    params = list(params) + [None] * (n - len(params))
    saved = np.array([p is not None for p in params], dtype=bool)
    keys = _keys(p for p in params if p is not None)
    out = []
    for key in keys:
        values = [np.asarray(p[key]) for p in params if p is not None and key in p]
        if len(values) != int(saved.sum()) or len({v.shape for v in values}) > 1:
            continue  # not one regular array over the configurations: left out (see the README)
        full = np.zeros((n, *values[0].shape), dtype=np.result_type(*values))
        full[saved] = np.stack(values)
        arrays[f"params/{key}"] = full
        out.append(key)
    arrays["params_saved"] = saved
    return out


def _json_bytes(obj: Any) -> np.ndarray:
    return np.frombuffer(json.dumps(obj, allow_nan=False, separators=(",", ":")).encode(), dtype=np.uint8)


# ----------------------------------------------------------------------------- reading


def read_table(path: Path) -> list[dict]:
    """Every record of a sweep table, as its metrics.json would read; ResultsError naming the file if it cannot.

    Refused: a file that is not a table, a newer table version or record schema (saying to
    upgrade), and a record whose types readers cannot use (`check_types`).
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            header = _header(path, data)
            rows = json.loads(bytes(data["records.json"]).decode("utf-8"))
            columns = {k: (data[f"history/{k}"], data[f"history_length/{k}"]) for k in header["history"]}
            saved = data["params_saved"]
    except ResultsError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, UnicodeDecodeError) as e:
        detail = " ".join(str(e).split()) or type(e).__name__
        raise ResultsError(f"{path}: cannot read the sweep table (truncated or corrupt?): {detail}") from None
    if not isinstance(rows, list) or len(rows) != header["count"] or len(saved) != header["count"]:
        raise ResultsError(f"{path}: malformed sweep table, {header['count']} records announced")
    return [_record(path, i, row, header, columns) for i, row in enumerate(rows)]


def read_params(path: Path, index: int) -> dict[str, np.ndarray]:
    """Configuration `index`'s saved parameters (params.npz's keys), {} when it saved none."""
    with np.load(Path(path), allow_pickle=False) as data:
        header = _header(Path(path), data)
        if not data["params_saved"][index]:
            return {}
        return {k: data[f"params/{k}"][index] for k in header["params"]}


def _header(path: Path, data) -> dict:
    if "header.json" not in data.files:
        raise ResultsError(f"{path}: not an optlab sweep table (no header.json)")
    header = json.loads(bytes(data["header.json"]).decode("utf-8"))
    if not isinstance(header, dict) or header.get("kind") != TABLE_KIND or not isinstance(
            header.get("table_version"), int):
        raise ResultsError(f"{path}: not an optlab sweep table")
    if header["table_version"] > TABLE_VERSION:
        raise ResultsError(f"{path}: written by a newer optlab (sweep table version {header['table_version']}, "
                           f"this one reads up to {TABLE_VERSION}); upgrade optlab to read it")
    return header


def _record(path: Path, i: int, row: dict, header: dict, columns: dict) -> dict:
    """Record i: the shared keys, its own, its config in the written order, its history series."""
    record = {**header["shared"], **row}
    own = row.get("config", {})
    merged = {**header["config"], **own}
    record["config"] = {k: merged[k] for k in [*header["config_order"], *own] if k in merged}
    history = {}
    for key, (values, lengths) in columns.items():
        if lengths[i] >= 0:
            history[key] = _listed(values[i, : lengths[i]])
    record["history"] = {**history, **row.get("history", {})}
    where = f"{path} (record {i}, run {record.get('run_id')!r})"
    version = record.get("schema_version")
    if not isinstance(version, int):
        raise ResultsError(f"{where}: not an optlab record (no integer schema_version)")
    if version > results.SCHEMA_VERSION:
        raise ResultsError(f"{where}: written by a newer optlab (schema {version}, this one reads up to "
                           f"{results.SCHEMA_VERSION}); upgrade optlab to read it")
    missing = [k for k in results.REQUIRED_KEYS if k not in record]
    problem = f"incomplete record, missing {', '.join(missing)}" if missing else check_types(record)
    if problem:
        raise ResultsError(f"{where}: malformed record, {problem}")
    return record


def find_tables(*roots: Path) -> list[Path]:
    """Every sweep table below `roots` (any depth), sorted."""
    seen, out = set(), []
    for root in map(Path, roots):
        candidates = [root] if root.is_file() and root.name == TABLE_FILE else sorted(root.rglob(TABLE_FILE))
        for file in candidates:
            if file.resolve() not in seen:
                seen.add(file.resolve())
                out.append(file)
    return out
