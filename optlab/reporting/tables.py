"""The compare table in every output format: rich (fitted to the terminal), Markdown, CSV, JSON.

Human formats show formatted cells (mean ± std for groups); machine formats (CSV, JSON) carry the
raw numbers so that they can be piped into other tools.
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from rich import box
from rich.markup import escape
from rich.table import Table

from optlab.errors import ConfigError
from optlab.reporting.compare import (
    BY_NAME,
    COLUMNS,
    DISPLAY,
    FORMATS,
    RUN_SPECIFIC_KEYS,
    Row,
    Stat,
    _fmt_num,
)


def headers(grouped: bool) -> list[str]:
    """Column headers of the human formats (table, markdown, HTML); groups gain an n column."""
    out = [BY_NAME[n].header if n in BY_NAME else "lr" for n in DISPLAY]
    return out[:4] + ["seeds", "n"] + out[5:] if grouped else out


def cells(row: Row) -> list[str]:
    """One row as the strings the human formats show, in `headers` order."""
    out = []
    for name in DISPLAY:
        if name == "lr+schedule":
            lr, sched = row.values["lr"], row.values["lr_schedule"]
            out.append(" ".join(s for s in (_fmt_num(lr) if isinstance(lr, (int, float)) else "", sched or "") if s))
        elif name == "run" and row.grouped:
            ids = row.values["run"]
            out.append(ids[0] + (f" (+{len(ids) - 1})" if len(ids) > 1 else ""))
        elif name == "seed" and row.grouped:
            out += [",".join(str(s) for s in row.values["seed"]), str(row.n)]
        else:
            out.append(_cell(row.values[name], BY_NAME[name].fmt, row.n))
    return out


def _cell(value: Any, fmt: Callable[[Any], str], group_n: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, Stat):
        return fmt(value)
    if value.mean is None:
        return ""
    text = fmt(value.mean) if not value.std else f"{fmt(value.mean)} ± {fmt(value.std)}"
    # Say when the mean is over fewer runs than the group has (e.g. only 2 of 3 reached the target).
    return text if value.n == group_n else f"{text} ({value.n} of {group_n})"


_STATUS_STYLE = {"completed": "green", "diverged": "red", "failed": "red", "running": "yellow", "interrupted": "yellow"}


# Two-line headers keep numeric columns as narrow as their numbers; the run id folds first.
_SHORT = {"steps/epochs": "steps/\nepochs", "final loss": "final\nloss", "test error": "test\nerror",
          "best test error": "best test\nerror", "time to target": "time to\ntarget", "wall time": "wall\ntime"}


# When the terminal is narrow, these go (columns with one value in every row first, then in this
# order) rather than squeezing every column into slivers.
_OPTIONAL = ("steps/epochs", "time to target", "best test error", "wall time", "seeds", "seed", "experiment")


def table_cells(rows: Sequence[Row], drop_empty: bool = False) -> tuple[list[str], list[list[str]]]:
    """Headers and cell strings of the human formats; drop_empty leaves out columns blank in every row."""
    head = headers(any(r.grouped for r in rows))
    body = [cells(r) for r in rows]
    if drop_empty:  # e.g. test error when comparing only tiny runs
        keep = [i for i, h in enumerate(head) if h in ("run", "status") or any(t[i] for t in body)]
        head, body = [head[i] for i in keep], [[t[i] for i in keep] for t in body]
    return head, body


def rich_table(rows: Sequence[Row], title: str | None = None, width: int | None = None) -> Table:
    """A compact rich Table that fits `width` columns (no limit when None).

    Columns empty in every row are left out; if the rest is still too wide, run ids fold and
    then the least useful columns are hidden (and named in the caption), so numbers never
    wrap into unreadable slivers.
    """
    head, body = table_cells(rows, drop_empty=True)
    hidden = _fit(head, body, width) if width else []
    keep = [i for i, h in enumerate(head) if h not in hidden]
    table = Table(title=title, header_style="bold", title_justify="left", box=box.SIMPLE_HEAD,
                  caption=f"hidden to fit the terminal: {', '.join(hidden)}" if hidden else None)
    for i in keep:
        h = head[i]
        right = h in _SHORT or h in ("seed", "seeds", "n")
        table.add_column(_SHORT.get(h, h), justify="right" if right else "left", overflow="fold",
                         no_wrap=h not in ("run", "lr"))
    status_at = head.index("status")
    for row, texts in zip(rows, body):
        texts = [escape(t) for t in texts]
        style = _STATUS_STYLE.get(str(row.values["status"]))
        texts[status_at] = f"[{style}]{texts[status_at]}[/]" if style else texts[status_at]
        table.add_row(*(texts[i] for i in keep))
    return table


def _fit(head: list[str], body: list[list[str]], width: int) -> list[str]:
    """The optional columns to hide so the table fits `width` (run ids may fold to 16 characters)."""
    def least(i: int) -> int:
        words = [w for t in body for w in (t[i].split() if head[i] == "lr" else [t[i]])]
        natural = max(len(x) for x in _SHORT.get(head[i], head[i]).splitlines() + words)
        return min(natural, 16) if head[i] == "run" else natural

    need = {h: least(i) + 3 for i, h in enumerate(head)}  # a cell's text plus padding and the gap
    same = {h for i, h in enumerate(head) if len({t[i] for t in body}) == 1}
    hidden: list[str] = []
    for name in sorted((h for h in _OPTIONAL if h in need), key=lambda h: (h not in same, _OPTIONAL.index(h))):
        if sum(need.values()) + 1 <= width:
            break
        hidden.append(name)
        del need[name]
    return hidden


_MD_INLINE = re.compile(r"([\\`*_\[\]|~])")  # emphasis, code, links, table cells, strike-through
# What would make the text a list item, heading or setext underline at the start of a line.
_MD_LINE_START = (re.compile(r"^(\s*)([-+=#])"), re.compile(r"^(\s*\d{1,9})([.)])(?=\s|$)"))


def md_text(text: object) -> str:
    """`text` as literal Markdown: its own syntax backslash-escaped, < > & as HTML entities, on one line.

    Run names are folder names, and a folder may be called `<img src=x onerror=alert(1)>`:
    Markdown renderers pass raw HTML through, so it must not reach them as a tag.
    """
    one_line = " ".join(str(text).splitlines())
    escaped = _MD_INLINE.sub(r"\\\1", one_line)
    for pattern in _MD_LINE_START:
        escaped = pattern.sub(r"\1\\\2", escaped)
    return html.escape(escaped, quote=False)


def markdown_table(rows: Sequence[Row], drop_empty: bool = False) -> str:
    """A GitHub-flavoured Markdown table (numbers right-aligned), one line per row, every cell `md_text`."""
    head, body = table_cells(rows, drop_empty)
    left = {"run", "experiment", "optimizer", "lr", "status"}
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join("---" if h in left else "---:" for h in head) + "|"]
    lines += ["| " + " | ".join(md_text(c) for c in texts) + " |" for texts in body]
    return "\n".join(lines) + "\n"


def machine_record(row: Row, with_config: bool = False) -> dict[str, Any]:
    """A row as plain data for csv/json: raw numbers (fractions, seconds), Stats as mean/std/n."""
    v = row.values
    if row.grouped:
        out: dict[str, Any] = {"runs": v["run"], "paths": [str(r.path) for r in row.runs], "n": row.n}
        out |= {k: v[k] for k in ("experiment", "optimizer", "lr", "lr_schedule")}
        out |= {"seeds": v["seed"], "status": v["status"]}
    else:
        out = {"run": v["run"], "path": str(row.runs[0].path)}
        out |= {c.name: v[c.name] for c in COLUMNS if not c.metric and c.name != "run"}
    for c in COLUMNS:
        if c.metric:
            s = v[c.name]
            out[c.name] = {"mean": s.mean, "std": s.std, "n": s.n} if isinstance(s, Stat) else s
    if with_config:
        cfg = row.runs[0].record["config"]
        out["config"] = {k: x for k, x in cfg.items() if not (row.grouped and k in RUN_SPECIFIC_KEYS)}
    return out


def to_json(rows: Sequence[Row]) -> str:
    """A JSON list of rows (with each run's config), for `jq` and scripts."""
    return json.dumps([machine_record(r, with_config=True) for r in rows], indent=1, allow_nan=False) + "\n"


def to_csv(rows: Sequence[Row]) -> str:
    """CSV with a header; lists joined by ';', a group's metric as X_mean, X_std, X_n columns."""
    flat = []
    for row in rows:
        item: dict[str, Any] = {}
        for k, x in machine_record(row).items():
            if isinstance(x, dict):
                item |= {f"{k}_{part}": x[part] for part in ("mean", "std", "n")}
            else:
                item[k] = ";".join(map(str, x)) if isinstance(x, list) else x
        flat.append(item)
    fields = list(dict.fromkeys(k for item in flat for k in item))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat)
    return buffer.getvalue()


def render(rows: Sequence[Row], fmt: str, width: int | None = None) -> str | Table:
    """The rows in one of FORMATS: a rich Table (fitting `width`) for "table", a string for the others."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
    if fmt == "table":
        n_runs = sum(r.n for r in rows)
        title = f"{n_runs} runs" if not any(r.grouped for r in rows) else f"{len(rows)} groups of {n_runs} runs"
        return rich_table(rows, title, width)
    return {"markdown": markdown_table, "csv": to_csv, "json": to_json}[fmt](rows)
