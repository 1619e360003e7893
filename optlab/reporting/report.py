"""Figures across runs, and the report: one self-contained HTML page plus its Markdown twin.

`compare_figures` overlays the selected runs of each experiment (never two experiments in one
figure): loss curves, test-error curves where there are any, and the figures the experiment
itself overlays (experiments.Experiment.overlays: e.g. trajectories on a landscape). Seed groups
draw their mean with a mean ± std band.

`write_report` puts the compare table, those overlays and each run's own figures (grouped by
experiment) on one HTML page whose images are base64 data URIs, so the page opens anywhere,
offline, as a single file (GIFs too: data:image/gif); the Markdown twin beside it links the same files by
relative path.
"""

from __future__ import annotations

import base64
import html
import os
import re
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

import numpy as np

from optlab.errors import ConfigError
from optlab.reporting.compare import RUN_SPECIFIC_KEYS, Row, Run, Skipped
from optlab.reporting.tables import markdown_table, md_text, table_cells
from optlab.results import figures_of, write_atomic

_MIME = {".png": "image/png", ".gif": "image/gif", ".svg": "image/svg+xml", ".jpg": "image/jpeg",
         ".jpeg": "image/jpeg"}


class FigureFile(NamedTuple):
    """A figure on disk and what it shows (the caption under it)."""

    experiment: str
    path: Path
    caption: str


# ----------------------------------------------------------------------------- overlaid figures


def _floats(values: Any) -> np.ndarray:
    """metrics.json stores NaN/inf as null: read them back as NaN."""
    return np.array([np.nan if v is None else v for v in (values or [])], dtype=float)


def _series(run: Run, x_key: str, y_key: str) -> tuple[np.ndarray, np.ndarray]:
    h = run.record["history"]
    y = _floats(h.get(y_key))
    x = _floats(h.get(x_key)) if len(h.get(x_key) or []) == len(y) else np.arange(len(y), dtype=float)
    return x, y


def labels(rows: Sequence[Row]) -> list[str]:
    """ "adam lr=0.001 anneal" per row; rows that would share a label gain the fewest config keys
    that tell them apart ("momentum lr=0.05 grad_noise=0.3"), so a legend stays short but unambiguous.
    Runs of the very same settings are told apart by their folders' names ("gd lr=0.25 (single)")."""
    base = [_base_label(r.runs[0].record["config"]) for r in rows]
    extra: list[list[str]] = [[] for _ in rows]
    skip = {"optimizer", "lr", "lr_schedule", "experiment"} | (RUN_SPECIFIC_KEYS - {"seed"})
    if any(r.grouped for r in rows):
        skip.add("seed")  # a group stands for all its seeds
    for text in set(base):
        clash = [i for i, b in enumerate(base) if b == text]
        configs = [rows[i].runs[0].record["config"] for i in clash]
        candidates = sorted({k for c in configs for k in c} - skip,
                            key=lambda k: (-len({repr(c.get(k)) for c in configs}), k))
        chosen: list[str] = []
        told_apart = 1  # distinct label tails so far
        for key in candidates:  # greedy: the key with most distinct values first, if it tells more apart
            if told_apart == len(configs):
                break
            if (told := len(set(_values(configs, [*chosen, key])))) > told_apart:
                chosen, told_apart = [*chosen, key], told
        values = _values(configs, chosen)
        same = Counter(values)
        for i, c, v in zip(clash, configs, values):
            extra[i] = [f"{k}={_short(c.get(k))}" for k in chosen]
            if same[v] > 1:
                extra[i].append(f"({rows[i].runs[0].path.name})")
    return [" ".join([b, *e] + ([f"(n={r.n})"] if r.grouped else [])) for b, e, r in zip(base, extra, rows)]


def _values(configs: Sequence[dict], keys: Sequence[str]) -> list[tuple[str, ...]]:
    return [tuple(repr(c.get(k)) for k in keys) for c in configs]


def _base_label(cfg: dict) -> str:
    parts = [str(cfg.get("optimizer", "?"))]
    if isinstance(cfg.get("lr"), (int, float)):
        parts.append(f"lr={cfg['lr']:g}")
    if cfg.get("lr_schedule") not in (None, "constant"):
        parts.append(str(cfg["lr_schedule"]))
    return " ".join(parts)


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, list):
        return ",".join(map(_short, v))
    return str(v)


def _curve(row: Row, label: str, x_key: str, y_key: str):
    """One plots.Curve: the run itself, or for a seed group the mean over runs with a ±std band."""
    from optlab.plots import Curve

    series = [_series(run, x_key, y_key) for run in row.runs]
    if not row.grouped:
        return Curve(label, *series[0])
    length = max(len(y) for _, y in series)
    x = next(x for x, y in series if len(y) == length)
    # Runs may stop early (divergence): pad with NaN and average what each step has.
    ys = np.full((len(series), length), np.nan)
    for i, (_, y) in enumerate(series):
        ys[i, : len(y)] = y
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(ys, axis=0)
        count = np.sum(np.isfinite(ys), axis=0)
        std = np.where(count > 1, np.nanstd(ys, axis=0, ddof=1), np.nan)
    return Curve(label, x, mean, mean - std, mean + std)


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text) or "experiment"


MAX_OVERLAID = 50  # runs per experiment in compare's overlaid figures


def _how_many(shown: Sequence[Row], every: Sequence[Row]) -> str:
    if len(shown) == len(every):
        return f"{len(shown)} runs"
    return f"the first {len(shown)} of {len(every):,} runs (in the table's order: --sort and --where choose)"


def compare_figures(rows: Sequence[Row], out_dir: Path) -> list[FigureFile]:
    """Per experiment: overlaid loss curves, test-error curves (if any), and the experiment's own overlays."""
    from optlab import plots

    by_exp: dict[str, list[Row]] = {}
    for row in rows:
        by_exp.setdefault(str(row.values["experiment"]), []).append(row)
    figures = []
    for exp, everyone in by_exp.items():
        # A sweep of thousands overlaid is one unreadable blot (and minutes of drawing): the first
        # MAX_OVERLAID in the table's order are drawn (--sort and --where choose); the table keeps all.
        group = everyone[:MAX_OVERLAID]
        names = labels(group)
        has_epochs = any("train_loss" in r.runs[0].record["history"] for r in group)
        x_key, loss_key = ("epoch", "train_loss") if has_epochs else ("step", "loss")
        xlabel = "epoch" if has_epochs else "step"
        band = " (mean ± std over seeds)" if any(r.grouped for r in group) else ""
        path = plots.curves(out_dir / f"{slug(exp)}-loss.png",
                            [_curve(r, lab, x_key, loss_key) for r, lab in zip(group, names)],
                            xlabel=xlabel, ylabel="training loss", title=f"{exp}: loss")
        figures.append(FigureFile(exp, path, f"{exp}: training loss of {_how_many(group, everyone)}{band}"))
        with_err = [(r, lab) for r, lab in zip(group, names) if r.runs[0].record["history"].get("test_error")]
        if with_err:
            path = plots.curves(out_dir / f"{slug(exp)}-test_error.png",
                                [_curve(r, lab, "epoch", "test_error") for r, lab in with_err],
                                xlabel="epoch", ylabel="test error", title=f"{exp}: test error")
            figures.append(FigureFile(exp, path, f"{exp}: test error of {len(with_err)} runs{band}"))
        figures += _experiment_overlays(exp, group, names, out_dir / slug(exp))
    return figures


def _experiment_overlays(exp: str, rows: Sequence[Row], names: Sequence[str], stem: Path) -> list[FigureFile]:
    """The experiment's own overlays of these runs (a seed group gives one line per seed); none if unknown."""
    from optlab.experiments import EXPERIMENTS

    overlays = EXPERIMENTS[exp].overlays if exp in EXPERIMENTS else None
    if overlays is None:
        return []
    lines = [(label + (f" seed={run.record['config'].get('seed')}" if row.grouped else ""), run.record)
             for row, label in zip(rows, names) for run in row.runs]
    return [FigureFile(exp, path, caption) for path, caption in overlays(lines, stem)]


# ----------------------------------------------------------------------------- the report


class RunFigure(NamedTuple):
    run: Run
    name: str
    caption: str  # what the figure shows: the entry's caption (schema 2), else its name (schema 1)
    file: Path | None  # None when missing or outside the run folder


def run_figures(runs: Sequence[Run]) -> list[RunFigure]:
    """Each run's own figures, read from either schema through results.figures_of."""
    out = []
    for run in runs:
        folder = run.path.resolve()
        for name, entry in figures_of(run.record).items():
            file = (folder / entry["path"]).resolve()
            inside = file.is_relative_to(folder)  # a hand-edited "../../x" must not pull in other files
            caption = f"{run.record['run_id']}: {entry.get('caption') or name}"
            out.append(RunFigure(run, name, caption, file if inside and file.is_file() else None))
    return out


def write_report(rows: Sequence[Row], skipped: Sequence[Skipped], html_path: Path, *,
                 source: str = "") -> tuple[Path, Path]:
    """Write the HTML report and its Markdown twin (same name, .md); figures go to `<name>-figures/`."""
    html_path = Path(html_path)
    md_path = html_path.with_suffix(".md")
    if md_path == html_path:
        raise ConfigError(f"--out {html_path}: give the report an .html name (the Markdown twin takes .md)")
    html_path.parent.mkdir(parents=True, exist_ok=True)
    overlays = compare_figures(rows, html_path.parent / f"{html_path.stem}-figures")
    runs = [run for row in rows for run in row.runs]
    title = f"optlab report{': ' + source if source else ''}"
    write_atomic(html_path, encoded(_html(title, rows, skipped, overlays, runs)))
    write_atomic(md_path, encoded(_markdown(title, rows, skipped, overlays, runs, md_path.parent)))
    return html_path, md_path


CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:1200px;
padding:0 1rem;color:#222}
h1{font-size:1.6rem}h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2.5rem}h3{margin-top:1.8rem}
table{border-collapse:collapse;font-size:13px;display:block;overflow-x:auto}
th,td{padding:.25rem .6rem;border-bottom:1px solid #eee;text-align:right;white-space:nowrap}
th{background:#f5f5f5;position:sticky;top:0}td:nth-child(-n+5),th:nth-child(-n+5){text-align:left}
figure{display:inline-block;margin:.5rem 1rem 1rem 0;vertical-align:top}
figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:13px;color:#555}.meta{color:#555;font-size:13px}.missing{color:#a33}
td[class^="status-"]{text-align:left}.status-diverged,.status-failed{color:#b00}.status-completed{color:#070}
"""


def img_tag(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    mime = _MIME.get(path.suffix.lower(), "image/png")
    cap = html.escape(caption)
    return f'<figure><img src="data:{mime};base64,{data}" alt="{cap}"><figcaption>{cap}</figcaption></figure>'


def html_table(rows: Sequence[Row]) -> str:
    head, body = table_cells(rows, drop_empty=True)
    status_at = head.index("status")
    ths = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    trs = []
    for row, texts in zip(rows, body):
        tds = [f"<td>{html.escape(t)}</td>" for t in texts]
        status = html.escape(str(row.values["status"]))
        tds[status_at] = f'<td class="status-{status}">{html.escape(texts[status_at])}</td>'
        trs.append(f"<tr>{''.join(tds)}</tr>")
    return f'<table id="runs"><thead><tr>{ths}</tr></thead><tbody>{"".join(trs)}</tbody></table>'


def _html(title: str, rows: Sequence[Row], skipped: Sequence[Skipped], overlays: Sequence[FigureFile],
          runs: Sequence[Run]) -> str:
    n = len(runs)
    parts = [f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>',
             f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{CSS}</style></head><body>',
             f"<h1>{html.escape(title)}</h1>",
             f'<p class="meta">{n} run{"s" * (n != 1)}, written {time.strftime("%Y-%m-%d %H:%M")}</p>',
             "<h2>Runs</h2>", html_table(rows)]
    if skipped:
        items = "".join(f"<li><code>{html.escape(str(s.path))}</code>: {html.escape(s.reason)}</li>" for s in skipped)
        parts.append(f'<h2>Skipped</h2><ul class="missing">{items}</ul>')
    own = run_figures(runs)
    for exp in dict.fromkeys(str(r.record["experiment"]) for r in runs):
        parts.append(f'<section id="experiment-{html.escape(slug(exp))}"><h2>{html.escape(exp)}</h2>')
        parts += [img_tag(f.path, f.caption) for f in overlays if f.experiment == exp]
        for run in (r for r in runs if str(r.record["experiment"]) == exp):
            meta = html.escape(run_meta(run))
            parts.append(f"<h3>{html.escape(run.record['run_id'])}</h3><p class=\"meta\">{meta}</p>")
            for fig in (f for f in own if f.run is run):
                parts.append(img_tag(fig.file, fig.caption) if fig.file else
                             f'<p class="missing">figure {html.escape(fig.name)} is missing from the run folder</p>')
        parts.append("</section>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def run_meta(run: Run) -> str:
    """One line under a run's heading: what it was and how it ended."""
    cfg, summary = run.record["config"], run.record["summary"]
    bits = [str(cfg.get("optimizer", "?"))]
    if isinstance(cfg.get("lr"), (int, float)):
        bits.append(f"lr={cfg['lr']:g} {cfg.get('lr_schedule') or ''}".strip())
    bits += [f"seed={cfg.get('seed')}", str(run.record["status"])]
    if isinstance(summary.get("final_loss"), (int, float)):
        bits.append(f"final loss {summary['final_loss']:.4g}")
    if isinstance(summary.get("test_error"), (int, float)):
        bits.append(f"test error {100 * summary['test_error']:.2f}%")
    return " · ".join(bits)


def _markdown(title: str, rows: Sequence[Row], skipped: Sequence[Skipped], overlays: Sequence[FigureFile],
              runs: Sequence[Run], base: Path) -> str:
    """The report as Markdown: every text taken from run folders goes through md_text, so none is markup."""
    def link(path: Path, caption: str) -> str:
        rel = Path(os.path.relpath(path.resolve(), base.resolve())).as_posix()
        return f"![{md_text(caption)}]({quote(os.fsencode(rel))})\n"  # fsencode: the name's own bytes, %-quoted

    lines = [f"# {md_text(title)}\n", markdown_table(rows, drop_empty=True)]
    if skipped:
        lines.append("## Skipped\n\n" + "".join(f"- {md_text(s.path)}: {md_text(s.reason)}\n" for s in skipped))
    own = run_figures(runs)
    for exp in dict.fromkeys(str(r.record["experiment"]) for r in runs):
        lines.append(f"## {md_text(exp)}\n")
        lines += [link(f.path, f.caption) for f in overlays if f.experiment == exp]
        for run in (r for r in runs if str(r.record["experiment"]) == exp):
            lines.append(f"### {md_text(run.record['run_id'])}\n\n{md_text(run_meta(run))}\n")
            lines += [link(f.file, f.caption) if f.file else f"*figure {md_text(f.name)} is missing*\n"
                      for f in own if f.run is run]
    return "\n".join(lines)


def encoded(text: str) -> bytes:
    """UTF-8 of a page, with any byte of a file name that was not UTF-8 (a surrogate escape) shown as `\\xff`.

    Paths are decoded with surrogateescape, so a folder named with byte 0xff arrives as '\\udcff',
    which UTF-8 cannot encode; the page names it the way Python's own messages would.
    """
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace").encode("utf-8")
