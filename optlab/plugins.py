"""Plug-ins: Python files and installed packages that register optimizers, schedules, experiments, ….

A plug-in is a module that, when imported, registers things through the decorators of the
top-level package (`optlab.optimizer`, `optlab.schedule`, `optlab.experiment`, …). It is loaded from

    --plugin FILE.py                 on run, sweep, list, analyze, reproduce (repeatable)
    plugins = ["file.py"]            in an experiment TOML (paths relative to that file)
    OPTLAB_PLUGINS=a.py:b.py         the environment (os.pathsep-separated paths)
    entry points `optlab.plugins`    installed packages: `name = "package.module"` (imported), or
                                     `"package.module:register"` (imported, then called with no arguments)

Each is loaded once per process (a file by its resolved path, an entry point by its name). What it
registered is remembered, so that a plug-in that fails half-way leaves nothing behind and `forget`
(tests) can take it back. Every loaded plug-in is recorded in a run's metrics.json
(`environment.plugins`: its path, or its entry point's name, and the sha256 of its file), and
`check_recorded` makes `optlab run --resume` load the same code or refuse in one line.

Bad input is one ConfigError line naming the file: missing, not Python, an exception while it is
imported (its file:line and message), a name registered twice, a factory optlab cannot call.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import sys
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optlab import config
from optlab.errors import ConfigError, ResultsError
from optlab.registry import DuplicateName, Registry

ENTRY_POINT_GROUP = "optlab.plugins"
ENV_VAR = "OPTLAB_PLUGINS"


@dataclass
class Plugin:
    """A loaded plug-in: where it came from, the sha256 of its file, and what it registered."""

    name: str  # the file's resolved path, or the entry point's name
    sha256: str
    entry_point: str | None = None  # "package.module[:attr]" for an installed package's
    registered: list[tuple[Registry, str]] = field(default_factory=list)

    def record(self) -> dict[str, str]:
        """Its entry in metrics.json's environment.plugins."""
        if self.entry_point is None:
            return {"path": self.name, "sha256": self.sha256}
        return {"name": self.name, "entry_point": self.entry_point, "sha256": self.sha256}


_LOADED: dict[str, Plugin] = {}  # key: the resolved path, or "entry-point:NAME"
_AUTOMATIC: dict[str, Any] = {"env": None, "entry_points": False}  # what load_automatic has done


def loaded() -> list[Plugin]:
    return list(_LOADED.values())


def records() -> list[dict[str, str]]:
    """environment.plugins of a run: every plug-in loaded in this process, in the order they were."""
    return [p.record() for p in _LOADED.values()]


def origin(registry: Registry, name: str) -> str | None:
    """The plug-in (file name or entry point) that registered `name` in `registry`, None for optlab's own."""
    for p in _LOADED.values():
        if any(r is registry and n == name for r, n in p.registered):
            return Path(p.name).name if p.entry_point is None else f"entry point {p.name}"
    return None


# ---- loading -------------------------------------------------------------------------------------


def load_files(paths: Iterable[str | Path], source: str = "--plugin") -> list[Plugin]:
    """Load each file (once per process); `source` says where it was named, for the errors."""
    return [load_file(p, source) for p in paths]


def load_file(path: str | Path, source: str = "--plugin") -> Plugin:
    """Import the plug-in file `path`, or raise a one-line ConfigError naming it."""
    shown = str(path)
    file = Path(path).expanduser()
    key = str(file.resolve())
    if key in _LOADED:
        return _LOADED[key]
    if not file.exists():
        raise ConfigError(f"{source} {shown}: no such plug-in file")
    if not file.is_file():
        raise ConfigError(f"{source} {shown}: not a file (a plug-in is one Python file, FILE.py)")
    if file.suffix != ".py":
        raise ConfigError(f"{source} {shown}: not a Python file (a plug-in is FILE.py)")
    sha = sha256(file)
    module_name = "optlab_plugin_" + re.sub(r"\W", "_", file.stem) + "_" + sha[:8]
    plugin = Plugin(key, sha)

    def execute() -> None:
        spec = importlib.util.spec_from_file_location(module_name, file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # dataclasses and pickling look a module up by its name
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(module_name, None)
            raise

    _registering(plugin, execute, f"plug-in {shown}", key)
    _LOADED[key] = plugin
    return plugin


def load_automatic() -> None:
    """The plug-ins of $OPTLAB_PLUGINS (read again whenever it changed) and of installed packages (once)."""
    value = os.environ.get(ENV_VAR, "")
    if value != _AUTOMATIC["env"]:
        load_files([p for p in value.split(os.pathsep) if p.strip()], ENV_VAR)
        _AUTOMATIC["env"] = value
    if not _AUTOMATIC["entry_points"]:
        _AUTOMATIC["entry_points"] = True
        for ep in _entry_points():
            load_entry_point(ep)


def _entry_points() -> list:
    from importlib.metadata import entry_points

    return sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def load_entry_point(ep) -> Plugin:
    """Import an installed package's plug-in (an `importlib.metadata.EntryPoint` of group optlab.plugins)."""
    key = f"entry-point:{ep.name}"
    if key in _LOADED:
        return _LOADED[key]
    where = f"plug-in entry point {ep.name} ({ep.value})"
    plugin = Plugin(ep.name, "", ep.value)

    def execute() -> None:
        target = ep.load()
        if callable(target) and not isinstance(target, type(sys)):
            target()

    _registering(plugin, execute, where, None)
    module = sys.modules.get(ep.value.partition(":")[0].strip())
    file = getattr(module, "__file__", None)
    plugin.sha256 = sha256(Path(file)) if file else ""
    _LOADED[key] = plugin
    return plugin


def _registering(plugin: Plugin, execute, where: str, file: str | None) -> None:
    """Run `execute` (the import), noting what it registers; on any failure take that back and raise
    one ConfigError: `where`, the line of the plug-in's own file the error came from, and the message."""
    registries = _registries()
    before = {id(r): set(r.names()) for r in registries}
    try:
        execute()
    except (Exception, SystemExit) as e:
        for registry in registries:
            for name in set(registry.names()) - before[id(registry)]:
                registry.unregister(name)
        raise ConfigError(f"{where}{_line(e, file)}: {_message(e, file)}") from None
    plugin.registered = [(r, n) for r in registries for n in r.names() if n not in before[id(r)]]


def _registries() -> list[Registry]:
    """Every registry whose names a setting takes (config's `choices`), imported now so that optlab's own
    entries are registered before a plug-in runs and are never counted as the plug-in's."""
    out: list[Registry] = []
    for spec in config.SETTINGS.values():
        registry = config.choices(spec)
        if registry is not None and all(registry is not r for r in out):
            out.append(registry)
    return out


def _line(e: BaseException, file: str | None) -> str:
    """`:LINE` of the innermost frame in the plug-in's file (the line it raised at, or called from)."""
    if isinstance(e, SyntaxError) and e.lineno and _same(e.filename, file):
        return f":{e.lineno}"
    frames = traceback.extract_tb(e.__traceback__)
    mine = [f for f in frames if _same(f.filename, file)]
    if not mine and file is None and frames:
        mine = frames[-1:]
        return f" ({mine[0].filename}:{mine[0].lineno})"
    return f":{mine[-1].lineno}" if mine else ""


def _same(filename: str | None, file: str | None) -> bool:
    return file is not None and filename is not None and Path(filename).resolve() == Path(file)


def _message(e: BaseException, file: str | None) -> str:
    if isinstance(e, DuplicateName):
        who = next((p for p in _LOADED.values() for r, n in p.registered if r.kind == e.kind and n == e.name), None)
        owner = "optlab's own" if who is None else f"from plug-in {who.name}"
        return f"registers {e.kind} {e.name!r}, which is already registered ({owner}); choose another name"
    if isinstance(e, SyntaxError):  # in a module the plug-in imports: say where
        elsewhere = f" ({e.filename}:{e.lineno})" if e.lineno and not _same(e.filename, file) else ""
        return f"SyntaxError: {e.msg}{elsewhere}"
    if isinstance(e, ConfigError):
        return str(e)
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def sha256(file: Path) -> str:
    return hashlib.sha256(Path(file).read_bytes()).hexdigest()


# ---- resuming: the same code or nothing -----------------------------------------------------------


def check_recorded(recorded: Sequence[dict], run_dir: Path) -> None:
    """Load the plug-ins a run recorded (environment.plugins); a missing or changed one refuses in one line."""
    for entry in recorded:
        if "path" in entry:
            _check_file(Path(entry["path"]), entry["sha256"], run_dir)
        else:
            _check_entry_point(entry, run_dir)


def _check_file(path: Path, recorded_sha: str, run_dir: Path) -> None:
    if not path.is_file():
        raise ResultsError(f"{run_dir}: the run used plug-in {path}, which no longer exists; a resumed run "
                           "runs the same code (put the file back, or start the run again)")
    now = sha256(path)
    if now != recorded_sha:
        raise ResultsError(f"{run_dir}: plug-in {path} has changed since the run started (sha256 {recorded_sha[:12]}… "
                           f"then, {now[:12]}… now); a resumed run runs the same code (restore it, or start again)")
    load_file(path, f"plug-in recorded by {run_dir}:")


def _check_entry_point(entry: dict, run_dir: Path) -> None:
    name = entry.get("name", "")
    ep = next((e for e in _entry_points() if e.name == name), None)
    if ep is None:
        raise ResultsError(f"{run_dir}: the run used plug-in entry point {name} ({entry.get('entry_point')}), "
                           "which no installed package provides now; install it again, or start the run again")
    plugin = load_entry_point(ep)
    if plugin.sha256 != entry["sha256"]:
        raise ResultsError(f"{run_dir}: plug-in entry point {name} has changed since the run started (sha256 "
                           f"{entry['sha256'][:12]}… then, {plugin.sha256[:12]}… now); a resumed run runs the same "
                           "code (reinstall that version, or start again)")


def forget() -> None:
    """Unregister everything the loaded plug-ins registered and forget them (for tests: registries are global)."""
    for plugin in reversed(list(_LOADED.values())):
        for registry, name in plugin.registered:
            if name in registry:
                registry.unregister(name)
    for name in [m for m in sys.modules if m.startswith("optlab_plugin_")]:
        del sys.modules[name]
    _LOADED.clear()
    _AUTOMATIC.update(env=None, entry_points=False)
