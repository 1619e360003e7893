"""The page `optlab reproduce lecture` writes: the lecture's sections in order, then the runs table.

Each section (optlab.reporting.lecture) shows the lecture's claim, what optlab measured for it in
this reproduction (or "not measured: why"), and its figures: those named in its runs' metrics.json
"figures" and, where the section says so, the runs overlaid (compare's landscape and race GIF).
Experiment files that no section reads follow under "Further experiments", each run with its own
figures, and the compare table of every run closes the page. Like `optlab report`, the HTML embeds
its images (it opens offline as one file) and escapes every text; the Markdown twin beside it
links the same files by relative path and passes every text through md_text.
"""

from __future__ import annotations

import html
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from optlab.errors import ConfigError
from optlab.reporting import lecture
from optlab.reporting.compare import Row, Run, Skipped, make_rows
from optlab.reporting.report import (
    CSS,
    FigureFile,
    RunFigure,
    compare_figures,
    encoded,
    html_table,
    img_tag,
    run_figures,
    run_meta,
    slug,
)
from optlab.reporting.tables import markdown_table, md_text
from optlab.results import write_atomic

TITLE = "The lecture, reproduced by optlab"
_LECTURE_CSS = (".claim{font-size:1.05rem}.measured{background:#f4f8f4;border-left:3px solid #070;padding:.3rem .6rem}"
                ".measured .missing{color:#a33}section figure{max-width:calc(50% - 1rem)}")


@dataclass(frozen=True)
class Figure:
    """One figure under a section: a file and its caption, or (file None) why it cannot be shown."""

    caption: str
    file: Path | None


@dataclass(frozen=True)
class Block:
    """A section as the page shows it."""

    section: lecture.Section
    sentences: list[tuple[bool, str]]
    figures: list[Figure]


def write_lecture(runs: Mapping[str, Run], problems: Mapping[str, str], rows: Sequence[Row],
                  skipped: Sequence[Skipped], html_path: Path, *, only: Sequence[str] = (),
                  source: str = "") -> tuple[Path, Path]:
    """Write the lecture's page and its Markdown twin (same name, .md); drawn figures go to `<name>-figures/`.

    runs: this reproduction's runs by experiment-file stem; problems: why a stem has no run (its
    file failed, or is not in the folder); rows: the compare table's rows; only: the parts chosen.
    """
    html_path = Path(html_path)
    md_path = html_path.with_suffix(".md")
    if md_path == html_path:
        raise ConfigError(f"--out {html_path}: give the page an .html name (the Markdown twin takes .md)")
    html_path.parent.mkdir(parents=True, exist_ok=True)
    measured = lecture.Runs({stem: run.record for stem, run in runs.items()}, problems)
    folder = html_path.parent / f"{html_path.stem}-figures"
    chosen = lecture.sections(only)
    extra = _unshown(chosen, runs)
    blocks = [_block(s, runs, measured, folder, extra.get(s.key, [])) for s in chosen]
    read = set(lecture.files(lecture.SECTIONS))
    further = [] if only else [(stem, run) for stem, run in runs.items() if stem not in read]
    meta = (f"{len(runs)} run{'s' * (len(runs) != 1)}, written {time.strftime('%Y-%m-%d %H:%M')}"
            + (f", from {source}" if source else ""))
    write_atomic(html_path, encoded(_html(blocks, further, rows, skipped, meta)))
    write_atomic(md_path, encoded(_markdown(blocks, further, rows, skipped, meta, md_path.parent)))
    return html_path, md_path


def _unshown(chosen: Sequence[lecture.Section], runs: Mapping[str, Run]) -> dict[str, list[tuple[str, str]]]:
    """A run's figures that no section names (an --animate GIF, --analyze's curvature), by the key of the
    first section that reads that run first: every figure a run lists is on the page once."""
    shown = {pair for s in chosen for pair in s.figures}
    out: dict[str, list[tuple[str, str]]] = {}
    for stem in dict.fromkeys(s.files[0] for s in chosen):
        home = next(s for s in chosen if s.files[0] == stem)
        if stem in runs:
            out[home.key] = [(stem, f.name) for f in run_figures([runs[stem]]) if (stem, f.name) not in shown]
    return out


def _block(section: lecture.Section, runs: Mapping[str, Run], measured: lecture.Runs, folder: Path,
           extra: Sequence[tuple[str, str]]) -> Block:
    # a stem without a run is said once, in the measured sentences; its figures' absence is not repeated
    figures = [_figure(runs[stem], name) for stem, name in (*section.figures, *extra) if stem in runs]
    overlaid = [runs[stem] for stem in section.overlay if stem in runs]
    if overlaid:
        drawn: list[FigureFile] = compare_figures(make_rows(overlaid), folder / slug(section.key))
        figures += [Figure(f.caption, f.path) for f in drawn]
    return Block(section, lecture.measured(section, measured), figures)


def _figure(run: Run, name: str) -> Figure:
    """The run's figure `name` as its metrics.json lists it, or why it cannot be shown."""
    found: list[RunFigure] = [f for f in run_figures([run]) if f.name == name]
    if not found:
        return Figure(f"{run.record['run_id']} lists no {name} figure in its metrics.json", None)
    if found[0].file is None:
        return Figure(f"{found[0].caption}: the file is missing from the run folder", None)
    return Figure(found[0].caption, found[0].file)


# ----------------------------------------------------------------------------- HTML


def _html(blocks: Sequence[Block], further: Sequence[tuple[str, Run]], rows: Sequence[Row],
          skipped: Sequence[Skipped], meta: str) -> str:
    e = html.escape
    parts = [f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{e(TITLE)}</title>',
             '<meta name="viewport" content="width=device-width,initial-scale=1">'
             f"<style>{CSS}{_LECTURE_CSS}</style></head><body>",
             f"<h1>{e(TITLE)}</h1>", f'<p class="meta">{e(meta)}</p>', _contents(blocks, bool(further))]
    part = None
    for b in blocks:
        if b.section.part != part:
            part = b.section.part
            parts.append(f'<h2 id="part-{e(part)}">{e(lecture.PARTS.get(part, part))}</h2>')
        parts.append(f'<section id="{e(b.section.key)}"><h3>{e(b.section.title)}</h3>')
        parts.append(f'<p class="claim"><b>The lecture:</b> {e(b.section.claim)}</p>')
        said = " ".join(e(text) if ok else f'<span class="missing">{e(text)}</span>' for ok, text in b.sentences)
        parts.append(f'<p class="measured"><b>optlab measured:</b> {said}</p>')
        parts += [img_tag(f.file, f.caption) if f.file else f'<p class="missing">{e(f.caption)}</p>' for f in b.figures]
        parts.append("</section>")
    if further:
        parts.append('<h2 id="further">Further experiments</h2>')
        for stem, run in further:
            parts.append(f"<h3>{e(stem)}.toml</h3><p class=\"meta\">{e(run.record['run_id'])} · {e(run_meta(run))}</p>")
            for fig in run_figures([run]):
                parts.append(img_tag(fig.file, fig.caption) if fig.file else
                             f'<p class="missing">figure {e(fig.name)} is missing from the run folder</p>')
    parts += ['<h2 id="runs">Runs</h2>', html_table(rows) if rows else '<p class="missing">no runs</p>']
    if skipped:
        items = "".join(f"<li><code>{e(str(s.path))}</code>: {e(s.reason)}</li>" for s in skipped)
        parts.append(f'<h2>Skipped</h2><ul class="missing">{items}</ul>')
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _contents(blocks: Sequence[Block], further: bool) -> str:
    items = [f'<li><a href="#{html.escape(b.section.key)}">{html.escape(b.section.title)}</a></li>' for b in blocks]
    items += ['<li><a href="#further">Further experiments</a></li>'] if further else []
    items.append('<li><a href="#runs">Runs</a></li>')
    return f'<ol class="contents">{"".join(items)}</ol>'


# ----------------------------------------------------------------------------- Markdown


def _markdown(blocks: Sequence[Block], further: Sequence[tuple[str, Run]], rows: Sequence[Row],
              skipped: Sequence[Skipped], meta: str, base: Path) -> str:
    def link(path: Path, caption: str) -> str:
        rel = Path(os.path.relpath(path.resolve(), base.resolve())).as_posix()
        return f"![{md_text(caption)}]({quote(os.fsencode(rel))})\n"

    lines, part = [f"# {md_text(TITLE)}\n", f"{md_text(meta)}\n"], None
    for b in blocks:
        if b.section.part != part:
            part = b.section.part
            lines.append(f"## {md_text(lecture.PARTS.get(part, part))}\n")
        said = " ".join(md_text(text) if ok else f"*{md_text(text)}*" for ok, text in b.sentences)
        lines += [f"### {md_text(b.section.title)}\n", f"**The lecture:** {md_text(b.section.claim)}\n",
                  f"**optlab measured:** {said}\n"]
        lines += [link(f.file, f.caption) if f.file else f"*{md_text(f.caption)}*\n" for f in b.figures]
    if further:
        lines.append("## Further experiments\n")
        for stem, run in further:
            lines.append(f"### {md_text(stem + '.toml')}\n\n{md_text(run.record['run_id'] + ' · ' + run_meta(run))}\n")
            lines += [link(f.file, f.caption) if f.file else f"*figure {md_text(f.name)} is missing*\n"
                      for f in run_figures([run])]
    lines += ["## Runs\n", markdown_table(rows, drop_empty=True) if rows else "*no runs*\n"]
    if skipped:
        lines.append("## Skipped\n\n" + "".join(f"- {md_text(s.path)}: {md_text(s.reason)}\n" for s in skipped))
    return "\n".join(lines)
