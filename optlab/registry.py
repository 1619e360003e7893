"""A tiny named registry: register with a name and a one-line help; look up with a did-you-mean error."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from optlab.errors import ConfigError

T = TypeVar("T")


class DuplicateName(ValueError):
    """A name registered twice: optlab.plugins turns it into one line naming the plug-in file."""

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f"{kind} {name!r} is registered twice")
        self.kind, self.name = kind, name


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    help: str
    value: T


class Registry(Generic[T]):
    """A plain dict of named things, with the error messages a user needs.

    `kind` names what is registered ("optimizer", "schedule", ...) so that a failed
    lookup can say "unknown optimizer 'adma'; did you mean 'adam'?".
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, help: str, value: T) -> T:
        """Add `value` under `name` (a ValueError if taken); `help` is its line in `optlab list` and completion."""
        if name in self._entries:
            raise DuplicateName(self.kind, name)
        self._entries[name] = Entry(name, help, value)
        return value

    def unregister(self, name: str) -> T:
        """Remove `name` and return its value: for a plug-in registered only for a while (a test's)."""
        return self._entries.pop(self.entry(name).name).value

    def __call__(self, name: str, help: str) -> Callable[[T], T]:
        """Decorator form: `@OPTIMIZERS("adam", "Adam (Kingma & Ba, 2015)")`."""

        def decorate(value: T) -> T:
            return self.register(name, help, value)

        return decorate

    def __getitem__(self, name: str) -> T:
        return self.entry(name).value

    def entry(self, name: str) -> Entry[T]:
        """The entry named `name`, or a ConfigError with the closest name and the valid ones."""
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        valid = ", ".join(sorted(self._entries))
        close = difflib.get_close_matches(str(name), self._entries, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown {self.kind} {name!r}{hint} (valid: {valid})"

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def names(self) -> list[str]:
        """Every registered name, sorted: what help texts list and completion offers."""
        return sorted(self._entries)
