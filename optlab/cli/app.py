"""The Typer app and its error handling: every user error is one line on stderr and exit code 2."""

from __future__ import annotations

import sys

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException

from optlab.errors import OptlabError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class OneLineErrors(TyperGroup):
    """Turn click's usage errors and optlab's own errors into `error: ...` on one line."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except TyperException as e:  # usage errors: unknown option, missing argument, bad choice
            fail(e.format_message(), e.exit_code or EXIT_USAGE, standalone_mode, e)
        except OptlabError as e:
            fail(str(e), getattr(e, "exit_code", EXIT_USAGE), standalone_mode, e)
        except (typer.Abort, KeyboardInterrupt) as e:
            fail("interrupted", EXIT_INTERRUPTED, standalone_mode, e)
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)


def fail(message: str, code: int, standalone_mode: bool, exc: BaseException) -> None:
    if not standalone_mode:
        raise exc
    message = " ".join(str(message).split())
    if message:  # empty for "no arguments, so help was shown"
        typer.echo(f"error: {message}", err=True)
    sys.exit(code)


app = typer.Typer(
    cls=OneLineErrors,
    name="optlab",
    help="Optimization experiments on feed-forward networks: run, compare, report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def main() -> None:
    """The `optlab` command: first make printing safe on non-UTF-8 terminals, then run the app."""
    from optlab.cli.encoding import degrade_to_ascii

    degrade_to_ascii()
    app()
