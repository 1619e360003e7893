"""`optlab compare`, `optlab report` and `optlab reproduce`: looking at finished runs together."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from optlab.cli.app import app
from optlab.cli.options import plugin_option
from optlab.errors import ConfigError, OptlabError, ResultsError
from optlab.reporting import compare as cmp
from optlab.reporting import tables

# Data (csv/json/markdown) goes to stdout so it pipes cleanly; notes and progress go to stderr.
err = Console(stderr=True, highlight=False)


class Format(str, enum.Enum):
    table = "table"
    markdown = "markdown"
    csv = "csv"
    json = "json"


class Target(str, enum.Enum):
    lecture = "lecture"


PathsArg = Annotated[list[Path], typer.Argument(
    metavar="RESULTS", show_default=False,
    help="Results folders or run folders; every run folder below them (any depth) is read.")]
GroupOpt = Annotated[bool, typer.Option(
    "--group-by-seed", help="One row per configuration: runs that differ only in seed become mean ± std, with n.")]


def _select(paths: Sequence[Path], where: Sequence[str], group: bool,
            sort: str | None = None, descending: bool = False) -> tuple[list[cmp.Row], list[cmp.Skipped]]:
    """Find, read, filter, group and sort runs; exit 1 with one line when nothing is left to show."""
    if sort is not None:
        cmp.sort_column(sort)  # a typo in --sort fails before any file is read
    conditions = cmp.parse_where(where)
    runs, skipped = cmp.load_runs(paths)
    for s in skipped:
        err.print(f"skipped {s.path}: {s.reason}", soft_wrap=True, markup=False)
    if not runs:
        err.print(f"no runs found in {', '.join(map(str, paths))}", soft_wrap=True, markup=False)
        raise typer.Exit(1)
    selected = cmp.filter_runs(runs, conditions)
    if not selected:
        err.print(f"no runs match {' '.join('--where ' + w for w in where)} (of {len(runs)} found)",
                  soft_wrap=True, markup=False)
        raise typer.Exit(1)
    rows = cmp.make_rows(selected)
    rows = cmp.group_by_seed(rows) if group else rows
    return cmp.sort_rows(rows, sort, descending), skipped


def _default_home(paths: Sequence[Path]) -> Path:
    """Where outputs go by default: the first results path (a run folder's own folder if given a file)."""
    first = Path(paths[0])
    return first.parent if first.is_file() else first


def _sort_help() -> str:
    """--sort's help, read from compare's columns: a column added there is listed here with no other edit."""
    names = [c.name for c in cmp.COLUMNS] + [a for a, target in cmp.SORT_ALIASES.items() if a == target]
    aliases = [a for a in cmp.SORT_ALIASES if a not in names]
    return f"Sort by a column: {', '.join(names)} (or {', '.join(aliases)}). Missing values go last."


@app.command()
def compare(
    paths: PathsArg,
    sort: Annotated[str | None, typer.Option(
        "--sort", metavar="METRIC",
        help=_sort_help())] = None,
    descending: Annotated[bool, typer.Option("--desc", help="Sort largest first.")] = False,
    where: Annotated[list[str], typer.Option(
        "--where", metavar="KEY=VALUE",
        help="Keep runs whose config KEY equals VALUE (e.g. optimizer=adam, lr=0.25, hidden=225,225, "
             "status=completed). Repeat for more keys; the same key twice means either value.")] = [],  # noqa: B006 (Typer's default; never mutated)
    group: GroupOpt = False,
    fmt: Annotated[Format, typer.Option(
        "--format", help="table (fits the terminal), or markdown, csv, json on stdout for piping.")] = Format.table,
    out: Annotated[Path | None, typer.Option(
        "--out", metavar="DIR", show_default=False,
        help="Folder for the overlaid figures (default: RESULTS/compare).")] = None,
    figures: Annotated[bool, typer.Option("--figures/--no-figures", help="Draw the overlaid figures.")] = True,
) -> None:
    """Show many runs side by side: one table, and overlaid loss, test-error and landscape figures.

    Runs of different experiments share the table but never a figure.
    """
    rows, _ = _select(paths, where, group, sort, descending)
    console = Console()
    rendered = tables.render(rows, fmt.value, width=console.width)
    if isinstance(rendered, str):
        typer.echo(rendered, nl=not rendered.endswith("\n"))
    else:
        console.print(rendered)
    if figures:
        from optlab.reporting.report import compare_figures

        folder = out if out is not None else _default_home(paths) / "compare"
        try:
            written = compare_figures(rows, folder)
        except OSError as e:
            raise ResultsError(f"cannot write figures to {folder} ({e.strerror or e}); "
                               "pass --out DIR or --no-figures") from None
        err.print(f"{len(written)} figures in {folder}", soft_wrap=True, markup=False)


@app.command()
def report(
    paths: PathsArg,
    out: Annotated[Path | None, typer.Option(
        "--out", metavar="FILE.html", show_default=False,
        help="Where to write the page; the Markdown twin goes beside it as FILE.md (default: RESULTS/report.html).")
    ] = None,
    where: Annotated[list[str], typer.Option(
        "--where", metavar="KEY=VALUE", help="Only runs whose config KEY equals VALUE (as in compare).")] = [],  # noqa: B006 (Typer's default)
    group: GroupOpt = False,
) -> None:
    """Write one self-contained HTML page (figures embedded, opens offline) and a Markdown twin.

    The page holds the compare table, overlaid figures per experiment, and every run's own figures.
    """
    rows, skipped = _select(paths, where, group)
    html_path = out if out is not None else _default_home(paths) / "report.html"
    html_path, md_path = _write(rows, skipped, html_path, ", ".join(map(str, paths)))
    typer.echo(f"report: {html_path}\nmarkdown: {md_path}")


def _write(rows, skipped, html_path: Path, source: str) -> tuple[Path, Path]:
    from optlab.reporting.report import write_report

    try:
        return write_report(rows, skipped, html_path, source=source)
    except OSError as e:
        raise ResultsError(f"cannot write the report to {html_path} ({e.strerror or e})") from None


@app.command()
def reproduce(
    target: Annotated[Target, typer.Argument(help="What to re-create: the lecture, section by section.")],
    experiments: Annotated[Path, typer.Option(
        "--experiments", metavar="DIR",
        help="Folder of experiment files; each *.toml in it is run (with --only, those of the chosen parts).")
    ] = Path("experiments"),
    out: Annotated[Path, typer.Option(
        "--out", metavar="DIR", help="Results folder for all the runs and the report.")] = Path("results/lecture"),
    only: Annotated[list[str], typer.Option(
        "--only", metavar="PART", help="Run and show only these parts of the lecture: tiny (seconds), mnist "
        "(minutes on a CPU), saddles, signals; comma-separated or repeated. Default: every file in DIR.")
    ] = [],  # noqa: B006 (Typer's default; never mutated)
    plugin: Annotated[list[str], plugin_option(annotated=True)] = [],  # noqa: B006 (Typer's default; never mutated)
) -> None:
    """Run the experiment files into one results folder, then write the lecture's page: section by section,
    in the lecture's order, its claim, the number optlab measured for it and its figures; the runs table last."""
    from optlab.reporting import lecture

    parts = _parts(only)
    files, problems = _lecture_files(experiments, lecture.files(lecture.sections(parts)), bool(parts))
    from optlab.runs import runner  # imports JAX: only now that there is work to do

    outcomes, failures = [], []
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=err, transient=False)
    with progress:
        task = progress.add_task(f"reproducing the {target.value}", total=len(files))
        for file in files:
            progress.update(task, description=f"running {file.name}")
            try:
                outcome = runner.run_file(file, out, quiet=True)
            except OptlabError as e:
                failures.append(f"{file.name}: {' '.join(str(e).split())}")
                problems[file.stem] = f"{file.name} failed ({' '.join(str(e).split())})"
            else:
                outcomes.append((file.stem, outcome))
                if outcome.status == "failed":
                    failures.append(f"{file.name}: run failed, see {outcome.run_dir}")
            progress.advance(task)
        progress.update(task, description=f"ran {len(files)} experiment files")
    for line in failures:
        err.print(f"failed {line}", soft_wrap=True, markup=False)
    if outcomes:  # the page shows exactly this reproduction, not older runs left in --out
        html_path, md_path = _write_lecture(outcomes, problems, out / "report.html", parts,
                                            f"{target.value} ({experiments})")
        typer.echo(f"{len(outcomes)} runs in {out}\nreport: {html_path}\nmarkdown: {md_path}")
    if failures:
        raise typer.Exit(1)


def _parts(only: Sequence[str]) -> list[str]:
    """--only's parts, comma-separated or repeated, each checked against the lecture's."""
    from optlab.reporting.lecture import PARTS

    parts = [p.strip() for item in only for p in item.split(",") if p.strip()]
    for p in parts:
        if p not in PARTS:
            raise ConfigError(f"--only {p}: not a part of the lecture (choose from {', '.join(PARTS)})")
    return parts


def _lecture_files(folder: Path, stems: Sequence[str], only: bool) -> tuple[list[Path], dict[str, str]]:
    """The files to run, the lecture's first in its order, and why a stem the lecture reads has none.

    With --only, just the chosen parts' files; otherwise every *.toml in the folder.
    """
    every = {f.stem: f for f in _experiment_files(folder)}
    problems = {s: f"{s}.toml is not in {folder}" for s in stems if s not in every}
    first = [every[s] for s in stems if s in every]
    if only and not first:
        raise ConfigError(f"--experiments {folder}: none of the chosen parts' files ({', '.join(stems)}) is in it")
    rest = [] if only else [f for s, f in sorted(every.items()) if s not in stems]
    return first + rest, problems


def _write_lecture(outcomes, problems: dict[str, str], html_path: Path, parts: Sequence[str],
                   source: str) -> tuple[Path, Path]:
    from optlab.reporting.lecture_page import write_lecture

    runs, skipped = {}, []
    for stem, outcome in outcomes:
        found, missed = cmp.load_runs([outcome.run_dir])
        skipped += missed
        if found:
            runs[stem] = found[0]
        else:
            problems[stem] = f"the run of {stem}.toml could not be read ({outcome.run_dir})"
    for s in skipped:
        err.print(f"skipped {s.path}: {s.reason}", soft_wrap=True, markup=False)
    try:
        return write_lecture(runs, problems, cmp.make_rows(runs.values()), skipped, html_path,
                             only=parts, source=source)
    except OSError as e:
        raise ResultsError(f"cannot write the report to {html_path} ({e.strerror or e})") from None


def _experiment_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise ConfigError(f"--experiments {folder}: no such folder "
                          "(run from the repository root or pass --experiments DIR)")
    files = sorted(folder.glob("*.toml"))
    if not files:
        raise ConfigError(f"--experiments {folder}: no *.toml experiment files in it")
    return files
