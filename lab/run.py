"""Boot the lab VM, run one command in it, and bring back its exit code, output and kernel log.

The command runs as root in the guest, in /project (the project, shared
read-write), from ``/bin/sh /lab/run/command.sh``.  /lab/run is this run's
folder on the host: the guest's init writes ``exit_code``, ``dmesg.txt``
and the guest uptimes ``uptime.start``/``uptime.end`` there; the host writes
``console.log`` (everything on the serial line).  QEMU is killed on a
timeout, on any error and on Ctrl-C, and dies with this process if it is
killed (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import os
import selectors
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TextIO

from lab import qemu
from lab.image import LabImage
from lab.spec import cache_root

PROJECT = Path(__file__).resolve().parent.parent
#: Where the project is mounted in the guest, and this run's folder.
GUEST_PROJECT = "/project"
GUEST_RUN_DIR = "/lab/run"
#: exit codes of ``python -m lab run`` when the command itself reported none (as timeout(1) and env(1) do)
EXIT_TIMEOUT = 124
EXIT_NO_REPORT = 125
RUNS_KEPT = 20
PR_SET_PDEATHSIG = 1
#: QEMU's own stderr lines that are expected in the lab and only clutter the echo (they stay in console.log):
#: the e1000e has no netdev on purpose, and the VT-d model reports each translation failure it sees.
QEMU_NOISE = ("has no peer", "qemu-system-x86_64: vtd_", "New fault is not recorded")


class LabRunError(Exception):
    """The lab could not run the command (no QEMU, a bad argument); one line."""


@dataclass(frozen=True)
class LabResult:
    """What one boot produced.  ``exit_code`` is None when the guest reported none (crash, timeout)."""

    exit_code: int | None
    timed_out: bool
    run_dir: Path
    seconds: float  # wall time from QEMU's start to its exit
    boot_seconds: float | None  # guest uptime when the command started
    command_seconds: float | None  # guest time the command took

    @property
    def console(self) -> str:
        return _read(self.run_dir / "console.log")

    def summary(self) -> str:
        boot = f"{self.boot_seconds:.1f} s" if self.boot_seconds is not None else "?"
        cmd = f"{self.command_seconds:.1f} s" if self.command_seconds is not None else "?"
        status = (
            "timed out"
            if self.timed_out
            else f"exit {self.exit_code}"
            if self.exit_code is not None
            else "no exit code"
        )
        return f"lab: {status}; {self.seconds:.1f} s in all (guest boot {boot}, command {cmd}); files in {self.run_dir}"


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _uptime(path: Path) -> float | None:
    try:
        return float(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def new_run_dir() -> Path:
    """A fresh folder under the cache's runs/ (the oldest beyond RUNS_KEPT are removed)."""
    runs = cache_root() / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    old = sorted(runs.iterdir(), key=lambda p: p.stat().st_mtime)
    for stale in old[: max(0, len(old) - RUNS_KEPT + 1)]:
        shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=runs))


def command_script(command: str | Sequence[str], env: Mapping[str, str] | None = None) -> str:
    """/lab/run/command.sh: exports, cd /project, the command (a shell line, or argv quoted as such)."""
    line = command if isinstance(command, str) else shlex.join(command)
    columns, rows = shutil.get_terminal_size()
    exports = {"TERM": os.environ.get("TERM", "vt100"), "COLUMNS": str(columns), "LINES": str(rows), **(env or {})}
    lines = ["# written by lab/run.py; run by the guest's init as /bin/sh /lab/run/command.sh"]
    lines += [f"export {key}={shlex.quote(value)}" for key, value in exports.items()]
    lines += [f"cd {GUEST_PROJECT}", f"cat /proc/uptime > {GUEST_RUN_DIR}/uptime.start", line]
    return "\n".join(lines) + "\n"


def _die_with_parent() -> None:
    """In QEMU's child process: SIGKILL when the process that started it dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run(
    image: LabImage,
    command: str | Sequence[str],
    *,
    timeout: float = 600.0,
    echo: TextIO | None = None,
    env: Mapping[str, str] | None = None,
    run_dir: Path | None = None,
    config: qemu.VmConfig | None = None,
) -> LabResult:
    """Boot, run ``command`` in the guest, power off; the serial output is copied to ``echo`` as it comes."""
    config = config or qemu.VmConfig()
    if shutil.which("qemu-system-x86_64") is None:
        raise LabRunError("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)")
    if timeout <= 0:
        raise LabRunError(f"timeout must be positive, got {timeout}")
    run_dir = run_dir or new_run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("exit_code", "dmesg.txt", "uptime.start", "uptime.end", "console.log"):
        (run_dir / stale).unlink(missing_ok=True)
    (run_dir / "command.sh").write_text(command_script(command, env))
    argv = qemu.command(image, PROJECT, run_dir, config)
    (run_dir / "qemu.argv").write_text(shlex.join(argv) + "\n")
    start = time.monotonic()
    timed_out = False
    with (run_dir / "console.log").open("wb") as log:
        if config.interactive:
            proc = subprocess.Popen(argv, stderr=log, preexec_fn=_die_with_parent)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                _stop(proc)
        else:
            timed_out = _stream(argv, log, echo, start + timeout)
    seconds = time.monotonic() - start
    code_text = _read(run_dir / "exit_code").strip()
    started, ended = _uptime(run_dir / "uptime.start"), _uptime(run_dir / "uptime.end")
    return LabResult(
        exit_code=int(code_text) if code_text.lstrip("-").isdigit() else None,
        timed_out=timed_out,
        run_dir=run_dir,
        seconds=seconds,
        boot_seconds=started,
        command_seconds=ended - started if started is not None and ended is not None else None,
    )


def _stream(argv: list[str], log: BinaryIO, echo: TextIO | None, deadline: float) -> bool:
    """Run QEMU with its serial line on a pipe; copy it to the log (and ``echo``). True on timeout."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, preexec_fn=_die_with_parent)  # fmt: skip
    assert proc.stdout is not None
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # a chunk may end inside a character
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            if not selector.select(min(left, 1.0)):
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:  # QEMU closed the serial line: it is exiting
                with contextlib.suppress(subprocess.TimeoutExpired):  # if it lingers, ``finally`` kills it
                    proc.wait(5)
                return False
            log.write(chunk)
            log.flush()
            if echo is not None:
                text = decoder.decode(chunk).replace("\r\n", "\n")
                echo.write("".join(line for line in text.splitlines(True) if not any(n in line for n in QEMU_NOISE)))
                echo.flush()
    finally:
        selector.close()
        _stop(proc)
        proc.stdout.close()
