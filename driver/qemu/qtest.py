"""A client of QEMU's qtest protocol: port I/O, MMIO and guest memory, one text line per access.

qtest (QEMU's softmmu/qtest.c, the server behind ``-qtest``) reads commands
such as ``writel ADDR VALUE``, ``readl ADDR``, ``outl PORT VALUE``, ``inl
PORT``, ``read ADDR SIZE`` and ``write ADDR SIZE 0xHEX`` and answers each,
in order, with ``OK``, ``OK VALUE``, or ``FAIL``/``ERR`` and a message.
Lines beginning with ``IRQ`` are asynchronous interrupt notices (only sent
after ``irq_intercept_in``/``_out``); they are skipped.

The speed lever is pipelining.  A round trip costs about 45 us on this
project's machine, a pipelined command about 3 us.  Writes are therefore
*posted*, as PCI memory writes are (PCI Local Bus Specification 3.0, 3.2.5
"Transaction Ordering and Posting"): the command is sent at once, its ``OK``
is collected later, and any read first collects every answer still owed.
Answers keep their order, so a read also flushes every earlier write, as a
PCI read flushes posted writes ahead of it.  A failed posted write is
reported by the next read or ``flush``.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Sequence

#: Answers owed before a write waits for them: keeps QEMU from blocking on a full reply buffer.
MAX_POSTED = 1024


class QtestError(Exception):
    """QEMU refused a command, or the connection broke (QEMU exited or hung)."""


class QtestRefused(QtestError):
    """QEMU answered FAIL or ERR: the command was wrong, the connection is still in step."""


class Qtest:
    """One qtest connection.  Thread-safe: every command holds the connection's lock."""

    def __init__(self, sock: socket.socket, timeout_s: float = 10.0) -> None:
        sock.settimeout(timeout_s)
        self._sock = sock
        self._reader = sock.makefile("rb")
        self._lock = threading.Lock()
        self._owed: list[str] = []  # posted commands whose answers are not read yet
        self._broken: str | None = None  # why answers can no longer be matched to commands
        self.commands = 0  # every command sent (statistics for benchmarks)

    @property
    def socket(self) -> socket.socket:
        """The bare socket, for a benchmark of the protocol itself (bench/qemu_rate.py).

        Whoever writes on it must have flushed this client first, stop every
        other user, and read each answer it causes, or this client's answers
        no longer match its commands.
        """
        return self._sock

    # -- the wire ------------------------------------------------------------
    def _send(self, lines: Sequence[str]) -> None:
        try:
            self._sock.sendall("".join(f"{line}\n" for line in lines).encode("ascii"))
        except OSError as err:
            raise QtestError(f"qtest connection lost while sending {lines[0]!r}: {err}") from None
        self.commands += len(lines)

    def _answer(self, command: str) -> str:
        """The payload of the next answer ("" for a bare OK); raises on FAIL/ERR or a closed connection."""
        while True:
            try:
                raw = self._reader.readline()
            except OSError as err:  # includes the socket timeout
                raise QtestError(f"no answer from QEMU to {command!r}: {err}") from None
            if not raw:
                raise QtestError(f"QEMU closed the qtest connection (command {command!r})")
            line = raw.decode("ascii", "replace").strip()
            if line.startswith("IRQ"):
                continue
            if line == "OK":
                return ""
            if line.startswith("OK "):
                return line[3:]
            raise QtestRefused(f"QEMU refused {command!r}: {line}")

    def _collect_owed(self) -> None:
        """Read the answers of posted commands; the first refusal is raised after all are read."""
        owed, self._owed = self._owed, []
        failed: QtestRefused | None = None
        for command in owed:
            try:
                self._answer(command)
            except QtestRefused as err:
                failed = failed or err
        if failed is not None:
            raise failed

    def _check(self) -> None:
        if self._broken is not None:
            raise QtestError(f"qtest connection unusable: {self._broken}")

    def _out_of_step(self, err: BaseException) -> None:
        """An exception between a send and its answers (even Ctrl-C) leaves answers unmatched: stop using it."""
        if not isinstance(err, QtestRefused):
            self._broken = f"interrupted by {err.__class__.__name__}"

    # -- commands ----------------------------------------------------------------
    def execute(self, lines: Sequence[str]) -> list[str]:
        """Send ``lines`` in one write and return their answers' payloads, in order."""
        if not lines:
            return []
        with self._lock:
            self._check()
            try:
                self._send(lines)
                failed: QtestRefused | None = None
                try:
                    self._collect_owed()
                except QtestRefused as err:  # a posted write failed; these lines' answers still follow
                    failed = err
                answers = []
                for line in lines:  # read every answer, even after a refusal, to stay in step
                    try:
                        answers.append(self._answer(line))
                    except QtestRefused as err:
                        failed = failed or err
            except BaseException as err:
                self._out_of_step(err)
                raise
            if failed is not None:
                raise failed
            return answers

    def post(self, line: str) -> None:
        """Send a command whose answer is collected later (a posted write)."""
        with self._lock:
            self._check()
            self._owed.append(line)  # owed before it is sent: an interrupted send still counts
            try:
                self._send((line,))
                if len(self._owed) >= MAX_POSTED:
                    self._collect_owed()
            except BaseException as err:
                self._out_of_step(err)
                raise

    def flush(self) -> None:
        """Collect every answer still owed (raises if a posted command failed)."""
        with self._lock:
            self._check()
            try:
                self._collect_owed()
            except BaseException as err:
                self._out_of_step(err)
                raise

    # -- typed accesses ------------------------------------------------------------
    def writel(self, addr: int, value: int) -> None:
        """32-bit MMIO/memory write, posted."""
        self.post(f"writel {addr:#x} {value & 0xFFFF_FFFF:#x}")

    def readl(self, addr: int) -> int:
        return _u32(self.execute((f"readl {addr:#x}",))[0])

    def readl_many(self, addrs: Sequence[int]) -> list[int]:
        """Several 32-bit reads in one pipelined round trip."""
        return [_u32(v) for v in self.execute([f"readl {a:#x}" for a in addrs])]

    def writeb(self, addr: int, value: int) -> None:
        """8-bit MMIO write, posted (virtio's device_status is one byte wide: §4.1.3.1 wants its width)."""
        self.post(f"writeb {addr:#x} {value & 0xFF:#x}")

    def writew(self, addr: int, value: int) -> None:
        """16-bit MMIO write, posted."""
        self.post(f"writew {addr:#x} {value & 0xFFFF:#x}")

    def readb(self, addr: int) -> int:
        return _u32(self.execute((f"readb {addr:#x}",))[0]) & 0xFF

    def readb_many(self, addrs: Sequence[int]) -> list[int]:
        """Several 8-bit reads in one pipelined round trip (virtio's ISR bytes)."""
        return [_u32(v) & 0xFF for v in self.execute([f"readb {a:#x}" for a in addrs])]

    def readw(self, addr: int) -> int:
        return _u32(self.execute((f"readw {addr:#x}",))[0]) & 0xFFFF

    def outl(self, port: int, value: int) -> None:
        """32-bit port write, posted."""
        self.post(f"outl {port:#x} {value & 0xFFFF_FFFF:#x}")

    def inl(self, port: int) -> int:
        return _u32(self.execute((f"inl {port:#x}",))[0])

    def read(self, addr: int, size: int) -> bytes:
        """``size`` bytes of guest memory (``read ADDR SIZE`` answers with 0x and hex digits)."""
        if size <= 0:
            return b""
        payload = self.execute((f"read {addr:#x} {size:#x}",))[0]
        return bytes.fromhex(payload[2:] if payload.startswith("0x") else payload)

    def write(self, addr: int, data: bytes) -> None:
        """Write bytes into guest memory, posted."""
        if data:
            self.post(f"write {addr:#x} {len(data):#x} 0x{data.hex()}")

    def close(self) -> None:
        try:
            self._reader.close()
        finally:
            self._sock.close()


def _u32(payload: str) -> int:
    try:
        return int(payload, 16) & 0xFFFF_FFFF
    except ValueError:
        raise QtestError(f"expected a number from QEMU, got {payload!r}") from None
