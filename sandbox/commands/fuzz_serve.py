"""``nic-sandbox fuzz --serve``: the campaign's web view (auditor/web/), served while it runs -- syz-manager's page.

The server runs in a process of its own, forked before the campaign starts,
not in a thread of the campaign: the view indexes the campaign's audit log
as it grows (tens of thousands of records a second) and re-verifies its
chain, work that would take the campaign's GIL.  The campaign sends the
server plain messages over a pipe (``CampaignBoard.apply``, about twice a
second: the counts per class, each distinct escape once, the end); a
message is a few kilobytes.  The listening socket is bound here first, so a
port in use or a refused address is one line and exit 2 before anything
runs (auditor/web/guard.py: loopback unless ``--serve-allow-remote`` and a
token, as ``audit serve``).

Reproducers are downloadable while the campaign runs: the first time an
escape (class, oracle kind) is seen its batch is written to
``DIR/cases/MODE-CLASS-KIND.json`` as found; at the end the campaign
minimises it into the same file, as without ``--serve``.

With ``--ray`` the numbers come from the driver (fuzz/cluster/driver.py,
``ray_status``): the corpus actor's counts of the pushed blocks, each block
counted once even when a replacement reran it, so the last of them is the
report's; each distinct finding arrives with the case its worker minimised,
written to the same file as it arrives.

When the campaign ends the server stays up for ``--serve-linger SECONDS``
-- by default until Ctrl-C when stdin is a terminal, and not at all
otherwise (a script or CI job never hangs on it).  A campaign ended by
Ctrl-C or SIGTERM does not linger: the user asked to stop.  Ctrl-C or
SIGTERM during the linger ends it; the exit code stays the campaign's.
The server process ignores the terminal's Ctrl-C (the command decides, as
for ``--jobs`` workers) and dies with the command (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import argparse
import ctypes
import multiprocessing
import shlex
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypeVar

from fuzz import case as case_mod
from fuzz.campaign import CampaignResult, Finding, ProgressInfo
from fuzz.cluster.corpus import Found
from fuzz.cluster.driver import Status
from fuzz.jobs import PR_SET_PDEATHSIG
from sandbox.argtypes import bounded_number
from sandbox.commands.audit_serve import add_bind_flags, bind, bind_flags, needs_extra, server
from sandbox.signals import requested_stop
from verifier.modes.protection import Protection

P = TypeVar("P", bound=argparse.ArgumentParser)
#: Not audit serve's 8015: both can run at once on their defaults.
DEFAULT_PORT = 8016
#: Seconds between two updates sent to the server (the page polls once a second).
SEND_S = 0.5
#: Longest linger asked for (a day); the default on a terminal is "until Ctrl-C".
MAX_LINGER = 86400.0
FLAGS = bind_flags("serve-")
#: How long the server gets to stop before it is terminated.
STOP_S = 5.0


def add_flags(campaign: argparse.ArgumentParser) -> None:
    """The ``--serve`` flags of ``fuzz campaign``."""
    group = campaign.add_argument_group(
        "web view (--serve)",
        "a syz-manager-like page of the running campaign: per-class counts and rates, coverage and escapes over "
        "time, each escape's reproducer to download with its replay command, and the campaign's audit log; "
        "with one process, --jobs N or --ray (the Ray driver streams what its workers pushed)",
    )
    group.add_argument("--serve", action="store_true", help=f"serve the view (http://127.0.0.1:{DEFAULT_PORT}/)")
    add_bind_flags(group, "serve-", DEFAULT_PORT)
    group.add_argument(
        "--serve-linger",
        type=bounded_number(float, "--serve-linger", 0, MAX_LINGER),
        metavar="SECONDS",
        help="keep serving this long after the campaign ends (default: until Ctrl-C when stdin is a terminal, else 0)",
    )


def replay_command(path: str, protection: Protection) -> str:
    """The line a user copies to replay a case (quoted for a POSIX shell)."""
    return f"nic-sandbox fuzz replay {shlex.quote(path)} --protection {protection.value}"


def case_name(protection: Protection, finding: Finding) -> str:
    """``MODE-CLASS-KIND``: the case file's name (without ``.json``), as ``fuzz`` has always named it."""
    return f"{protection.value}-{finding.cls}-{finding.kind}"


def update_message(progress: ProgressInfo | CampaignResult) -> dict[str, Any]:
    """The board's ``update`` from a campaign's progress (or its result, at the end)."""
    if isinstance(progress, CampaignResult):
        elapsed, coverage = progress.seconds, None if progress.coverage is None else len(progress.coverage)
    else:
        elapsed, coverage = progress.elapsed, progress.coverage
    return {
        "op": "update",
        "elapsed": elapsed,
        "iterations": progress.iterations,
        "classes": {name: s.as_dict() for name, s in progress.stats.items()},
        "coverage": coverage,
    }


def escape_message(finding: Finding, path: str | None, protection: Protection) -> dict[str, Any]:
    """The board's ``escape``: a distinct finding, with its case file and replay command when written."""
    return {
        "op": "escape",
        "cls": finding.cls,
        "kind": finding.kind,
        "what": finding.escape.what,
        "seconds": finding.seconds,
        "case": path,
        "replay": None if path is None else replay_command(path, protection),
    }


def _serve(sock: socket.socket, conn: Connection, logs: list[str], token: str | None, loopback: bool) -> None:
    """The server process: uvicorn in a thread, the board fed from the pipe here until "stop" or the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C reaches the group: the command decides
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    from auditor.web.app import make_app
    from auditor.web.campaign import BoardError, CampaignBoard

    board = CampaignBoard()
    web = server(make_app(logs, token=token, loopback=loopback, board=board))
    thread = threading.Thread(target=web.run, kwargs={"sockets": [sock]}, name="fuzz-serve", daemon=True)
    thread.start()
    try:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break
            if not isinstance(message, dict) or message.get("op") == "stop":
                break
            try:
                board.apply(message)
            except BoardError as e:  # the command's own messages: a bug, said once, the view goes on
                print(f"fuzz --serve: {e}", file=sys.stderr, flush=True)
    finally:
        web.should_exit = True
        thread.join(STOP_S)
        sock.close()


class Serving:
    """The command's side of the view: the server process, the pipe to it, the cases written as found."""

    def __init__(
        self,
        args: argparse.Namespace,
        protection: Protection,
        directory: Path,
        logs: list[str],
    ) -> None:
        needs_extra("fuzz --serve")
        self.args = args
        self.protection = protection
        self.directory = directory
        self.binding = bind(args.serve_host, args.serve_port, args.serve_allow_remote, args.serve_token_file, FLAGS)
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        context: Any = multiprocessing.get_context(method)  # typeshed's BaseContext lacks Process
        reader, self.conn = context.Pipe(duplex=False)
        self.process = context.Process(
            target=_serve,
            args=(self.binding.sock, reader, logs, self.binding.token, self.binding.loopback),
            name="fuzz-serve",
            daemon=True,
        )
        self.process.start()
        reader.close()
        self.binding.sock.close()  # the server process has its own: the port is free once it exits
        self.alive = True
        self.last_sent = 0.0
        self.sent: set[tuple[str, str]] = set()
        self.seed = 1
        self.say(f"serving the campaign at {self.binding.url}")

    def say(self, text: str) -> None:
        """A line on stderr (stdout is the report's, with --json)."""
        print(f"fuzz: {text}", file=sys.stderr, flush=True)

    def send(self, message: dict[str, Any]) -> None:
        if not self.alive:
            return
        try:
            self.conn.send(message)
        except (OSError, ValueError) as e:  # the server process died: the campaign goes on without its view
            self.alive = False
            self.say(f"the web view stopped ({e}); the campaign goes on")

    def start(self, classes: list[str], seed: int, jobs: int, audit_logs: list[str], budget: dict[str, Any]) -> None:
        """The campaign as asked: the table's rows and what the page says about it."""
        self.seed = seed
        self.send(
            {
                "op": "start",
                "protection": self.protection.value,
                "seed": seed,
                "classes": classes,
                "jobs": jobs,
                "out": str(self.directory),
                "audit_logs": audit_logs,
                **budget,
            }
        )

    def progress(self, info: ProgressInfo) -> None:
        """A campaign's ``progress``: new escapes at once (their case written as found), counts every ``SEND_S``."""
        for finding in info.findings:
            if finding.key not in self.sent:
                self.sent.add(finding.key)
                self._escape(finding)
        now = time.monotonic()
        if now - self.last_sent < SEND_S and info.iterations != info.total:
            return
        self.last_sent = now
        self.send(update_message(info))

    def _escape(self, finding: Finding) -> None:
        path: str | None = None
        try:
            case = case_mod.Case.from_finding(finding, self.seed, self.protection)
            path = str(case_mod.write_case(case, self.directory / "cases", case_name(self.protection, finding)))
        except OSError as e:  # the end writes it again (and says so if it cannot): the view shows it without one
            self.say(f"cannot write the reproducer of {finding.cls}/{finding.kind} yet: {e.strerror or e}")
        self.send(escape_message(finding, path, self.protection))

    def ray_status(self, status: Status) -> None:
        """A ``--ray`` driver's report: new findings at once (their case written as it arrived), then the counts."""
        p = status.progress
        for found in p.found:
            self._found(found)
        self.send(
            {
                "op": "update",
                "elapsed": status.elapsed,
                "iterations": p.iterations,
                "classes": {name: s.as_dict() for name, s in p.stats.items()},
                "coverage": p.coverage,
                "jobs": status.workers,
            }
        )

    def _found(self, found: Found) -> None:
        path: str | None = None
        if found.case is not None:
            try:
                case = case_mod.Case.from_dict(found.case)
                name = f"{self.protection.value}-{found.cls}-{found.kind}"
                path = str(case_mod.write_case(case, self.directory / "cases", name))
            except (OSError, ValueError) as e:  # the end writes it again (and says so if it cannot)
                self.say(f"cannot write the reproducer of {found.cls}/{found.kind} yet: {e}")
        self.send(
            {
                "op": "escape",
                "cls": found.cls,
                "kind": found.kind,
                "what": found.what,
                "seconds": found.seconds,
                "case": path,
                "replay": None if path is None else replay_command(path, self.protection),
            }
        )

    def ending(self, result: CampaignResult, counts: bool = True) -> None:
        """The last batch is done: its final counts (not with ``--ray``: the driver's last report was the merged
        count already), and what the command does before the end (minimising takes a while)."""
        if counts:
            self.send(update_message(result))
        work = "writing its reproducers as found" if result.interrupted else "minimising its reproducers"
        n = len(result.findings)
        self.send({"op": "ending", "note": f"campaign over: {work} ({n} distinct escape{'' if n == 1 else 's'})"})

    def finish(self, result: CampaignResult, report: dict[str, Any], directory: Path) -> None:
        """The campaign's end: the minimised cases and whether each reproduces, the end check, the report."""
        escapes = []
        for f, shown in zip(result.findings, report["findings"], strict=True):
            escapes.append(
                {
                    "cls": f.cls,
                    "kind": f.kind,
                    "what": f.escape.what,
                    "seconds": f.seconds,
                    "case": shown["case"],
                    "replay": None if shown["case"] is None else replay_command(shown["case"], self.protection),
                    "minimised": not result.interrupted,
                    "reproduces": shown["reproduces"],
                }
            )
        self.send(
            {
                "op": "finish",
                "state": "interrupted" if result.interrupted else "done",
                "escapes": escapes,
                "audit_problems": [e.what for e in result.audit_problems],
                "report": str(directory / "report.json"),
            }
        )

    def linger(self, interrupted: bool) -> None:
        """Keep serving after the campaign, as ``--serve-linger`` (or its default) says; Ctrl-C/SIGTERM end it."""
        seconds = self.args.serve_linger
        if seconds is None:
            seconds = float("inf") if sys.stdin.isatty() else 0.0
        if interrupted or seconds <= 0 or not self.alive:
            return
        until = "until Ctrl-C" if seconds == float("inf") else f"for {seconds:g} s (or until Ctrl-C)"
        self.say(f"the campaign is over; still serving {self.binding.url} {until}")
        deadline = time.monotonic() + seconds
        with requested_stop() as stop:
            while not stop.requested() and time.monotonic() < deadline and self.process.is_alive():
                time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    def close(self) -> None:
        """Stop the server process (asked first, then terminated, then killed) and free the port."""
        self.send({"op": "stop"})
        self.conn.close()
        self.process.join(STOP_S)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(STOP_S)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


def both(
    first: Callable[[ProgressInfo], None] | None, second: Callable[[ProgressInfo], None] | None
) -> Callable[[ProgressInfo], None] | None:
    """One ``progress`` calling two (a terminal's bar and the web view), or the one given, or None."""
    if first is None or second is None:
        return first or second
    a, b = first, second

    def call(info: ProgressInfo) -> None:
        a(info)
        b(info)

    return call
