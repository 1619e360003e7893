"""The commands' setting options, generated from RunConfig's fields (each declared once, in optlab.config).

    @app.command("run", cls=SettingsCommand)
    @with_settings("run")
    def run_command(target: str, settings: dict | None = None, quiet: bool = False): ...

`with_settings(command)` gives the function a generated `__signature__` (Typer reads it) in which the
parameter named `settings` becomes one `typer.Option` per setting that `config.SETTINGS` offers to that
command: its flag, its metavar (`FLOAT` for run, `FLOAT,…` for sweep) and a completion callback when its
value names a registry entry. The command is then called with `settings` = {field name: raw value} of
the options given; parsing and validation stay with `resolve()`.

What an option's help says beyond its declared text (the names it accepts, its default per experiment,
the experiments whose own setting it is) is read from the registries when help is shown
(`SettingsCommand`), so that an optimizer registered anywhere shows up in `--help` and completion, and a
command that shows no help reads no registry.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import typer
from typer.completion import completion_init
from typer.core import TyperCommand, TyperOption

from optlab import config

# The app is built without Typer's --install-completion option, and Typer registers its shells only for
# that option; registering them here makes `eval "$(_OPTLAB_COMPLETE=source_bash optlab)"` (or zsh, fish)
# work, and with it the completion callbacks below. Costs nothing: typer.main has imported the module.
completion_init()


def with_settings(command: str) -> Callable[[Callable], Callable]:
    """Replace the function's `settings` parameter with the options of every setting `command` offers."""

    def decorate(func: Callable) -> Callable:
        own = inspect.signature(func).parameters.values()
        params = [q for p in own for q in (options(command) if p.name == "settings" else [p])]

        @functools.wraps(func)
        def call(**kwargs: Any) -> Any:
            given = {k: kwargs.pop(k) for k in list(kwargs) if k in config.SETTINGS}
            return func(**kwargs, settings={k: v for k, v in given.items() if v is not None})

        # Keyword-only throughout: Typer passes everything by name, and the order is then free.
        call.__signature__ = inspect.Signature([p.replace(kind=p.KEYWORD_ONLY) for p in params])
        return call

    return decorate


def options(command: str) -> list[inspect.Parameter]:
    """One `typer.Option` parameter per setting offered to `command`, in RunConfig's field order."""
    return [_option(key, spec, command) for key, spec in config.SETTINGS.items() if command in spec.commands]


def _option(key: str, spec: config.Setting, command: str) -> inspect.Parameter:
    info = typer.Option(None, config.flag(key), metavar=spec.metavar_for(command), help=spec.help,
                        show_default=False, autocompletion=completer(key) if spec.choices else None)
    annotation = bool | None if spec.metavar is None else str | None  # a switch, or a raw value for resolve()
    return inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=annotation)


def completer(key: str) -> Callable[[str], list[tuple[str, str]]]:
    """Shell completion of a setting whose value is a registry name; after a comma (`--init glorot,h`, a
    sweep's `--opt gd,ad`) it completes the last name."""

    def complete(incomplete: str) -> list[tuple[str, str]]:
        head, comma, last = incomplete.rpartition(",")
        registry = config.choices(config.SETTINGS[key])
        return [(head + comma + e.name, e.help) for e in registry if e.name.startswith(last)]

    return complete


def plugin_option(annotated: bool = False) -> Any:
    """`--plugin FILE.py` (repeatable), loaded as soon as it is parsed (eager, in the order given): before
    `--help` is generated when it comes first, and before anything reads a registry. `annotated`: for
    `Annotated[list[str], plugin_option(True)] = []`, which takes no default here."""
    default = () if annotated else ([],)
    return typer.Option(*default, "--plugin", metavar="FILE.py", show_default=False, is_eager=True,
                        callback=_load_plugins,
                        help="load a plug-in file first: its optimizers, schedules, experiments, … "
                             "(repeatable; also $OPTLAB_PLUGINS and installed packages)")


def _load_plugins(value: list[str]) -> list[str]:
    from optlab import plugins

    plugins.load_files(value or [])
    plugins.load_automatic()
    return value


class SettingsCommand(TyperCommand):
    """A command whose setting options describe themselves from the registries when its help is shown."""

    def format_help(self, ctx, formatter) -> None:
        from rich.markup import escape

        from optlab import plugins

        plugins.load_automatic()  # $OPTLAB_PLUGINS' and installed packages' optimizers show in --opt's help

        for param in self.params:
            if param.name in config.SETTINGS and isinstance(param, TyperOption):
                text = describe(param.name)
                param.help = escape(text) if self.rich_markup_mode == "rich" else text
        super().format_help(ctx, formatter)


def describe(key: str) -> str:
    """A setting's help: the experiments it applies to (unless all), its text, the names it takes, its default."""
    from optlab.experiments import EXPERIMENTS

    spec = config.SETTINGS[key]
    text = spec.help
    registry = config.choices(spec)
    if registry is not None:
        text += ": " + ", ".join(registry.names())
    applies = [e for e in EXPERIMENTS if key in config.applicable(e.value)]
    default = _default(key, {e.name: e.value.defaults for e in applies})
    if default:
        text += f" (default: {default})"
    return f"{_which(applies, EXPERIMENTS.names())}: {text}" if len(applies) < len(EXPERIMENTS.names()) else text


def _which(applies: list, every: list[str]) -> str:
    """The experiments a setting applies to, or, when that is most of them, the ones it does not."""
    names = [e.name for e in applies]
    if len(names) > len(every) / 2:
        return "all but " + ", ".join(n for n in every if n not in names)
    return ", ".join(names)


def _default(key: str, defaults: dict[str, Any]) -> str:
    """`50`, or the most common default then the experiments that differ (`0; mnist 0.3`); "" if unset or off."""
    base = _show(config.FIELDS[key].default)
    by_value: dict[str, list[str]] = {}
    for name, d in defaults.items():
        by_value.setdefault(_show(d.get(key, config.FIELDS[key].default)), []).append(name)
    if set(by_value) <= {""}:
        return ""
    ranked = sorted(by_value, key=lambda v: (-len(by_value[v]), v != base))
    others = [f"{', '.join(by_value[v])} {v or 'none'}" for v in ranked[1:]]
    return "; ".join([ranked[0] or "none", *others])


def _show(value: Any) -> str:
    if value is None or value is False:
        return ""
    if value is True:
        return "on"
    if isinstance(value, (tuple, list)):
        ints = all(isinstance(v, int) for v in value)
        if ints and len(value) > 2 and list(value) == list(range(value[0], value[-1] + 1)):
            return f"{value[0]}..{value[-1]}"
        return ",".join(map(_show, value))
    return f"{value:g}" if isinstance(value, float) else str(value)
