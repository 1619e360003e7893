"""Ctrl-C and SIGTERM at any moment: exit 130 / 143, one line, the run recorded `interrupted`.

Python's own handling fails in three ways. Before the handler exists (the first second, while
JAX imports) Ctrl-C gives a KeyboardInterrupt traceback and SIGTERM kills without a word. A
KeyboardInterrupt raised while JAX is inside C++ can surface in a callback that swallows it, and
the run completes with exit 0. And when the exception ends the process while XLA's compiler
threads still run, interpreter teardown can crash (Segmentation fault, exit 139) after
`interrupted` was recorded.

So `run_main` installs the handler before any heavy import, and the handler raises nothing
while signals are *deferred* (during the imports, and while a run writes its record): it only
notes the signal, and `check()` raises KeyboardInterrupt at safe points (after the imports,
before the run folder is made, before each epoch's record and after its checkpoint, before the
final record). Elsewhere (preparing a run, downloading its data, other commands) it raises
KeyboardInterrupt at once, as Python's own handler does, except inside a garbage-collection
callback or a finalizer, which would swallow it: there the signal is sent again 20 ms later. If
it is lost all the same, the next safe point or the end of the command raises it again. After
the error line the process leaves with os._exit, which skips the teardown that can crash. This
module uses only the standard library, so that it is cheap to import first.
"""

from __future__ import annotations

import functools
import gc
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
_received: list[int] = []
_installed = False
_deferred = False
_leave_hooks: list[Callable[[], None]] = []  # run before os._exit, which skips atexit


def install() -> None:
    """Route SIGINT and SIGTERM to `_handler` (only possible from the main thread)."""
    global _installed
    if threading.current_thread() is threading.main_thread():
        for signum in EXIT_CODES:
            signal.signal(signum, _handler)
        _installed = True


def installed() -> bool:
    return _installed


def _handler(signum: int, frame) -> None:
    _received.append(signum)
    if _deferred:
        return
    if _in_callback(frame):  # JAX's gc callback, a __del__: they would swallow it and print a traceback
        retry = threading.Timer(0.02, os.kill, (os.getpid(), signum))
        retry.daemon = True
        retry.start()  # so the handler runs again a moment later, outside the callback
        return
    raise KeyboardInterrupt


def _in_callback(frame) -> bool:
    """True if `frame` runs inside a garbage-collection callback or a finalizer (exceptions there are lost)."""
    callbacks = {getattr(cb, "__code__", None) for cb in gc.callbacks}
    while frame is not None:
        if frame.f_code in callbacks or frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


@contextmanager
def deferred() -> Iterator[None]:
    """Signals inside only note themselves; code inside calls `check()` at its safe points.

    Raising at an arbitrary bytecode is what goes wrong: inside an extension's import (an
    ImportError traceback), inside JAX's garbage-collection callback (swallowed), or in the middle
    of writing the record.
    """
    global _deferred
    before, _deferred = _deferred, True
    try:
        yield
    finally:
        _deferred = before


def received() -> int | None:
    """The first signal this process received, or None."""
    return _received[0] if _received else None


def check() -> None:
    """A safe point: raise KeyboardInterrupt if a signal arrived (even one JAX swallowed)."""
    if _received:
        raise KeyboardInterrupt


def exit_code(default: int = 130) -> int:
    """130 after SIGINT, 143 after SIGTERM (the shell's 128 + signal number)."""
    return EXIT_CODES.get(received(), default)


def deferring(fn: Callable) -> Callable:
    """`fn` runs with signals deferred (see `deferred`)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with deferred():
            return fn(*args, **kwargs)
    return wrapper


def run_main(load: Callable[[], Callable[[], None]]) -> None:
    """Install the handler, then import (`load()`) and run the command line under it.

    A signal at any moment ends the process with its exit code and one `error:` line: during
    the imports, here; during a run, the runner records it and the CLI prints the line.
    """
    install()
    try:
        with deferred():
            entry = load()
        check()
        entry()
    except KeyboardInterrupt:
        _leave("error: interrupted", exit_code())
    except SystemExit as e:
        if received() is None:
            raise
        code = e.code if isinstance(e.code, int) else 1
        _leave("error: interrupted" if code in (0, 1) else None, exit_code())
    if received() is not None:  # a command that returned after the signal (it could not be raised)
        _leave("error: interrupted", exit_code())


def on_leave(hook: Callable[[], None]) -> None:
    """Run `hook` (cheap, no JAX) before the quick exit after a signal, as atexit would at a normal one."""
    _leave_hooks.append(hook)


def _leave(message: str | None, code: int) -> None:
    """Print `message`, flush, and exit at once: no interpreter teardown under XLA's threads."""
    for hook in _leave_hooks:
        try:
            hook()
        except Exception:
            pass  # leaving regardless: the kernel ends the claims anyway
    try:
        if message:
            print(message, file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os._exit(code)
