"""`optlab data info | fetch`: where each dataset's files are, and downloading the missing ones."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from optlab.cli.app import app
from optlab.data import datasets

data_app = typer.Typer(
    help="Datasets (MNIST, Fashion-MNIST): where their files are, and fetching the missing ones.",
    no_args_is_help=True,
)
app.add_typer(data_app, name="data")

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help=f"Folder with the IDX files (directly or in a subfolder named after the dataset); "
        f"searched before ${datasets.ENV_VAR}, the user cache and /usr/share/datasets.",
        file_okay=False,
    ),
]


@data_app.command("info")
def info(data_dir: DataDir = None) -> None:
    """Show, for every dataset, where each file was found and whether its SHA-256 is a known one."""
    statuses = [s for entry in datasets.DATASETS for s in datasets.locate(entry.name, data_dir)]
    _print_table(statuses, title="Datasets")


@data_app.command("fetch")
def fetch(
    name: Annotated[str, typer.Argument(help="Dataset to fetch: " + ", ".join(datasets.DATASETS.names()))],
    data_dir: DataDir = None,
) -> None:
    """Download the dataset's missing files into the user cache (SHA-256 checked), then show them all."""
    statuses = datasets.fetch(name, data_dir)
    _print_table(statuses, title=f"{name}: all files present")


def _print_table(statuses: list[datasets.FileStatus], title: str) -> None:
    table = Table(title=title, caption=f"cache: {datasets.cache_root()}")
    table.add_column("dataset")
    table.add_column("file")
    table.add_column("location", overflow="fold")  # long paths wrap rather than lose their end
    table.add_column("found in")
    table.add_column("verified")
    for s in statuses:
        table.add_row(s.dataset, s.file, str(s.path.parent) if s.path else "-", s.found_in, _verified(s))
    Console().print(table)


def _verified(s: datasets.FileStatus) -> str:
    if s.path is None:
        return "-"
    return {True: "yes", False: "NO: unknown SHA-256", None: "not checked"}[s.verified]
