"""Ctrl-C that is never lost.

Python raises KeyboardInterrupt wherever the main thread happens to be when SIGINT comes.
Inside a weakref callback or a `__del__` (run by garbage collection at any moment) it is
printed as "Exception ignored" and dropped, and the command would run on to its end. While
`recording()` is active (around every `raid` command) the handler also records the
signal, and long loops call `check()` at safe points (each batch), which raises it again.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

_pending = False
_active = False


def _handler(signum, frame) -> None:
    global _pending
    _pending = True
    raise KeyboardInterrupt


@contextlib.contextmanager
def recording() -> Iterator[None]:
    """SIGINT through the recording handler inside the block (main thread only, as Python
    requires; elsewhere the block runs unchanged); the previous handler afterwards."""
    global _pending, _active
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, _handler)
    _pending, _active = False, True
    try:
        yield
    finally:
        _pending, _active = False, False
        signal.signal(signal.SIGINT, previous)


def restore() -> None:
    """SIGINT handled again (after a library set it to be ignored): recorded inside
    `recording()`, Python's default elsewhere."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _handler if _active else signal.default_int_handler)


def check() -> None:
    """Raise KeyboardInterrupt once if SIGINT came and was not raised where it landed."""
    global _pending
    if _pending:
        _pending = False
        raise KeyboardInterrupt
