"""How ``nic-sandbox`` says no: one line on stderr that says what is wrong, and exit code 2.

Every command raises :class:`UsageError` for bad input (a flag, a file, a
scenario, a host without root); ``cli.main`` prints it with :func:`print_error`
and exits with :data:`EXIT_USAGE`, as POSIX utilities do for usage errors
(and argparse does for its own).
"""

from __future__ import annotations

from rich.console import Console

PROG = "nic-sandbox"
#: Exit code of bad usage: a bad flag, file, scenario or host (argparse's and POSIX utilities' convention).
EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


def print_error(message: str) -> None:
    """``nic-sandbox: error: MESSAGE`` on stderr, on one line however long (no wrapping, no markup)."""
    Console(stderr=True).print(f"{PROG}: error: {message}", markup=False, highlight=False, soft_wrap=True)
