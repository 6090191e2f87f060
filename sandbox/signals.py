"""Ctrl-C and SIGTERM end a command the same way, and its exit code says which one it was.

``kill PID`` (SIGTERM) is how service managers, CI runners and ``timeout(1)``
ask a program to stop; a terminal's Ctrl-C sends SIGINT.  Python turns only
SIGINT into ``KeyboardInterrupt``, and by default SIGTERM kills the process
without unwinding: no ``finally``, no report, a namespace left behind.  So
every command runs under :func:`sigterm_as_interrupt`, which makes SIGTERM
raise ``KeyboardInterrupt("SIGTERM")``: every place that handles Ctrl-C
(the demos, ``audit follow``, ``ping --serve``, driver/netns.py's cleanup)
handles SIGTERM too, with no code of its own.

The exit code is the shell's for a process killed by that signal, 128 + its
number (:func:`exit_code`): 130 after Ctrl-C, 143 after SIGTERM.

A command with something to save (``fuzz``) asks to be *told* instead of
unwound: :func:`requested_stop` turns the first SIGINT or SIGTERM into a
flag its loop checks between units of work; a second one raises
``KeyboardInterrupt`` as usual, for a user who will not wait.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any

#: Exit code after Ctrl-C, as a shell reports a process killed by SIGINT (128 + 2).
EXIT_INTERRUPTED = 128 + signal.SIGINT
#: The signals that ask a command to stop, handled alike.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def exit_code(interrupt: KeyboardInterrupt | None = None, signum: int | None = None) -> int:
    """128 + the signal that ended the command: from ``signum``, else from the interrupt's signal name, else SIGINT."""
    if signum is None and interrupt is not None and interrupt.args:
        name = str(interrupt.args[0])
        signum = signal.Signals[name].value if name in signal.Signals.__members__ else None
    return 128 + (signum if signum is not None else signal.SIGINT)


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _raise(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises ``KeyboardInterrupt("SIGTERM")`` as Ctrl-C raises ``KeyboardInterrupt``."""
    if not _on_main_thread():  # handlers belong to the main thread (a test calling main() from a worker)
        yield
        return
    old = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@dataclass
class StopRequest:
    """Which signal asked to stop (None: none yet); read ``requested`` between units of work."""

    signum: int | None = None

    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str | None:
        return None if self.signum is None else signal.Signals(self.signum).name

    def exit_code(self) -> int:
        return exit_code(signum=self.signum)


@contextmanager
def requested_stop() -> Iterator[StopRequest]:
    """The first SIGINT or SIGTERM sets the request; a second raises ``KeyboardInterrupt``.  Old handlers return."""
    stop = StopRequest()
    if not _on_main_thread():
        yield stop
        return

    def ask(signum: int, frame: FrameType | None) -> None:
        if stop.signum is not None:
            _raise(signum, frame)
        stop.signum = signum

    old: dict[int, Any] = {sig: signal.signal(sig, ask) for sig in STOP_SIGNALS}
    try:
        yield stop
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
