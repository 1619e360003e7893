"""Progress over epochs: a rich bar on a terminal, one line per epoch otherwise, or nothing."""

from __future__ import annotations

import sys
from collections.abc import Mapping

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)


def describe(metrics: Mapping[str, float]) -> str:
    """One epoch in a few words: `loss 0.0912  test 3.11%  lr 0.001  138k samples/s`."""
    parts = []
    if "loss" in metrics:
        parts.append(f"loss {metrics['loss']:.4f}")
    if "test_error" in metrics:
        parts.append(f"test {100 * metrics['test_error']:.2f}%")
    if "lr" in metrics:
        parts.append(f"lr {metrics['lr']:.2g}")
    if "samples_per_s" in metrics:
        parts.append(f"{metrics['samples_per_s'] / 1000:,.0f}k samples/s")
    return "  ".join(parts)


class Silent:
    def start(self, total: int, description: str) -> None: ...
    def advance(self, completed: int, metrics: Mapping[str, float]) -> None: ...
    def stop(self) -> None: ...


class Lines:
    """For logs and pipes: one summary line per epoch, on stderr so stdout stays parseable."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.total, self.description = 0, ""

    def start(self, total: int, description: str) -> None:
        self.total, self.description = total, description

    def advance(self, completed: int, metrics: Mapping[str, float]) -> None:
        line = f"{self.description} {completed}/{self.total}  {describe(metrics)}".rstrip()
        print(line, file=self.stream, flush=True)

    def stop(self) -> None: ...


class Bar:
    """A rich progress bar for a terminal."""

    def __init__(self, console: Console | None = None) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(bar_width=20), MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"), TimeRemainingColumn(),
            console=console or Console(stderr=True), transient=False,
        )
        self.task = None

    def start(self, total: int, description: str) -> None:
        self.progress.start()
        self.task = self.progress.add_task(description, total=total, info="training…")

    def advance(self, completed: int, metrics: Mapping[str, float]) -> None:
        self.progress.update(self.task, completed=completed, info=describe(metrics))

    def stop(self) -> None:
        self.progress.stop()


def for_terminal(quiet: bool):
    if quiet:
        return Silent()
    return Bar() if sys.stderr.isatty() else Lines()
