"""The command line: `optlab run | list | data | compare | report | reproduce`.

Each group of commands lives in its own module and registers itself on the one Typer app.
"""

from optlab.cli import (  # noqa: F401  (registers commands)
    commands_analyze,
    commands_data,
    commands_results,
    commands_run,
    commands_sweep,
)
from optlab.cli.app import app, main

__all__ = ["app", "main"]
