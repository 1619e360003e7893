"""The command line: `optlab run | list | data | compare | report | reproduce`.

Each group of commands lives in its own module and registers itself on the one Typer app.
Importing them pulls in JAX (seconds), so `main` first installs the signal handling
(optlab.interrupts) and only then imports them; `app` is loaded on first use.
"""

from __future__ import annotations

import importlib
import sys
import types

COMMANDS = ("commands_analyze", "commands_data", "commands_landscape", "commands_results", "commands_run",
            "commands_sweep")


def _typer_app():
    """The Typer app with every command registered."""
    for name in COMMANDS:
        importlib.import_module(f"optlab.cli.{name}")
    return importlib.import_module("optlab.cli.app").app


def _app_main():
    _typer_app()
    return importlib.import_module("optlab.cli.app").main


def main() -> None:
    """The `optlab` command: signal handling first, then the imports and the app."""
    from optlab import interrupts

    interrupts.run_main(_app_main)


class _Package(types.ModuleType):
    """`optlab.cli.app` is the Typer app, as it always was, though it is imported lazily.

    Importing the submodule optlab/cli/app.py sets the package's attribute `app` to that module;
    the setter ignores it, so `from optlab.cli import app` always gives the Typer app.
    """

    @property
    def app(self):
        return _typer_app()

    @app.setter
    def app(self, value) -> None:
        pass


sys.modules[__name__].__class__ = _Package
__all__ = ["app", "main"]
