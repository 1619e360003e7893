"""The Typer app and its error handling: every error is one line on stderr, with its own exit code.

Exit codes: 0 done; 1 `optlab run`: the run diverged; 2 bad input or a results folder refused
(in use, not empty); 74 a write failed (disk full, I/O error); 130 Ctrl-C; 143 SIGTERM.
"""

from __future__ import annotations

import sys

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException

from optlab import interrupts
from optlab.errors import OptlabError

EXIT_USAGE = 2
EXIT_IO = 74  # EX_IOERR, as optlab.results.WriteError
EXIT_INTERRUPTED = 130  # 143 after SIGTERM: interrupts.exit_code()


class OneLineErrors(TyperGroup):
    """Turn click's usage errors and optlab's own errors into `error: ...` on one line."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except TyperException as e:  # usage errors: unknown option, missing argument, bad choice
            fail(e.format_message(), e.exit_code or EXIT_USAGE, standalone_mode, e)
        except OptlabError as e:
            fail(str(e), getattr(e, "exit_code", EXIT_USAGE), standalone_mode, e)
        except (typer.Abort, KeyboardInterrupt, _Interrupted) as e:
            fail("interrupted", interrupts.exit_code(EXIT_INTERRUPTED), standalone_mode,
                 e.__cause__ if isinstance(e, _Interrupted) else e)
        except OSError as e:  # a write outside optlab.results (which names the file itself)
            fail(os_error_line(e), EXIT_IO, standalone_mode, e)
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)

    def make_context(self, *args, **kwargs):
        """Typer turns a KeyboardInterrupt while parsing or running a command into a silent exit 130
        (even after SIGTERM): carry it past Typer as `_Interrupted`, to say it in one line."""
        try:
            return super().make_context(*args, **kwargs)
        except KeyboardInterrupt as e:
            raise _Interrupted from e

    def invoke(self, ctx):
        """As `make_context`, for the command itself."""
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as e:
            raise _Interrupted from e


class _Interrupted(Exception):
    """A KeyboardInterrupt carried past Typer's own handling of it, to `OneLineErrors.main`."""


def os_error_line(e: OSError) -> str:
    """`I/O error on FILE: No space left on device`: the file (when the OS says) and the error, no traceback."""
    where = f" on {e.filename}" if e.filename else ""
    return f"I/O error{where}: {e.strerror or e}"


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
