"""``nic-sandbox``: the command line.

Every bad input ends the same way: one line on stderr that says what is
wrong, and exit code 2 (sandbox/errors.py).  ``--help`` on every command says
what it does and shows an example.

This module only assembles: each command is a module of ``sandbox/commands/``
with an ``add_parser`` and what it runs, and imports nothing from here.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from rich.console import Console

from sandbox.commands import audit, bench, demo, fuzz, mutants, scenario, verify
from sandbox.errors import EXIT_USAGE, PROG, UsageError, print_error
from sandbox.parser import Parser
from sandbox.signals import EXIT_INTERRUPTED, exit_code, sigterm_as_interrupt
from verifier.audit.log import AuditError
from world.scenario import ScenarioError

__all__ = ["EXIT_INTERRUPTED", "EXIT_USAGE", "PROG", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    top = Parser(
        prog=PROG,
        description=(
            "A kernel-bypass NIC driver sandbox: tenants drive emulated e1000 NICs from user space "
            "through descriptor rings and doorbells, in one simulated machine with no IOMMU."
        ),
        epilog=(
            "examples:\n"
            "  nic-sandbox demo                      send 100000 frames alice -> bob and back\n"
            "  nic-sandbox demo --size 1518 --batch 256\n"
            "  nic-sandbox scenario > my.toml        start a scenario of your own\n"
            "  nic-sandbox demo --scenario my.toml"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = top.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for command in (demo, scenario, audit, fuzz, mutants, verify, bench):
        command.add_parser(sub)
    return top


class StdoutError(Exception):
    """Standard output cannot take more bytes (a full disk, ``> /dev/full``, an I/O error)."""


class _GuardedStdout:
    """``sys.stdout`` whose write errors say they are stdout's (an ``OSError`` alone does not name its file)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            raise
        except OSError as err:
            raise StdoutError(err.strerror or str(err)) from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            raise
        except OSError as err:
            raise StdoutError(err.strerror or str(err)) from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def main(argv: Sequence[str] | None = None) -> int:
    real = sys.stdout
    sys.stdout = _GuardedStdout(real)
    try:
        return _run(argv)
    finally:
        sys.stdout = real


def _run(argv: Sequence[str] | None) -> int:
    out = Console()
    if not out.is_terminal:  # pipes and CI logs: wide enough that tables never wrap
        out = Console(width=120)
    try:
        with sigterm_as_interrupt():  # SIGTERM unwinds as Ctrl-C does (sandbox/signals.py)
            args = build_parser().parse_args(argv)
            code = int(args.func(args, out))
            sys.stdout.flush()  # a full disk or a closed pipe shows here, not at exit as a traceback
            return code
    except (UsageError, ScenarioError, AuditError) as e:  # AuditError: a log damaged where a command reads it
        print_error(str(e))
        return EXIT_USAGE
    except KeyboardInterrupt as interrupt:
        Console(stderr=True).print(f"{PROG}: interrupted", markup=False, highlight=False)
        return exit_code(interrupt)  # 130 after Ctrl-C, 143 after SIGTERM
    except BrokenPipeError:  # the reader went away (| head): as cat does, stop quietly
        _silence_stdout()
        return 0
    except StdoutError as e:
        _silence_stdout()
        print_error(f"cannot write to standard output: {e}")
        return EXIT_USAGE


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's own flush at exit cannot fail again (Python's signal docs)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.__stdout__.fileno() if sys.__stdout__ is not None else 1)
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
