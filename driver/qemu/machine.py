"""QEMU's e1000 as a reference device: start a bare QEMU, find its NICs, and expose their BARs.

A sandbox is only trusted if it agrees with systems nobody here wrote.  This
module runs ``qemu-system-x86_64`` with no guest OS (the CPU halts at the
reset vector), one e1000 (82540EM) per requested NIC, and guest RAM that is
the very memory the sandbox's kernel checks (a shared memfd, see
driver/qemu/args.py).  The project then does what firmware and a kernel
driver would: it finds each device through PCI configuration space, places
its BAR0, enables memory decoding and bus mastering (driver/pci.py), and
from then on reaches it only by 32-bit MMIO over qtest (driver/qemu/qtest.py).
``QemuE1000`` is a ``RegisterBus``, the same shape as the emulated ``E1000``,
so ``Kernel.attach_nic`` programs either one the same way.

Facts measured on Debian's QEMU 7.2 that shape this code:

- writing RCTL arms a one-second timer (``flush_queue_timer``) during which
  the e1000 refuses to receive; ``wait_rx_ready`` waits it out (frames that
  arrive meanwhile wait in QEMU's queue or the socket, not lost);
- CTRL.RST does not reset QEMU's registers, so a clean device is a fresh QEMU;
- ``clock_step`` is unknown without the qtest accelerator; the virtual
  clock follows real time under TCG.

QEMU runs in its own session (a Ctrl-C on the terminal reaches Python,
which then stops QEMU in order), and dies with its parent (PR_SET_PDEATHSIG,
so even a SIGKILL of Python ends it).  ``close`` is idempotent; a machine
nobody closed is stopped when it is garbage collected or at exit.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import signal
import socket
import subprocess
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from driver.pci import DEVICE_82540EM, VENDOR_INTEL, PciConfig, PciFunction
from driver.qemu.args import E1000, FIRST_NIC_SLOT, QEMU_BINARY, VIRTIO_NET, QemuNicSpec, qemu_argv
from driver.qemu.firmware import halting_firmware
from driver.qemu.loopback import CableProbe, rcvbuf_of
from driver.qemu.qtest import Qtest, QtestError
from driver.qemu.virtio_net import QemuVirtioNet
from driver.qemu.virtio_pci import VirtioPciTransport, VirtioTransportError
from ring import regs, virtio_pci

U32 = 0xFFFF_FFFF
#: Where BAR0 of the first NIC goes: in the PCI hole, above any RAM this module allows, below the IOAPIC.
BAR0_BASE = 0xE000_0000
#: MMIO window of each NIC (NIC i's BARs lie in BAR0_BASE + i * BAR_WINDOW): an e1000's BAR0 fills it.
BAR_WINDOW = regs.BAR0_SIZE
#: (vendor, device) of each model QEMU is asked for
PCI_IDS = {E1000: (VENDOR_INTEL, DEVICE_82540EM), VIRTIO_NET: (virtio_pci.VENDOR_VIRTIO, virtio_pci.DEVICE_VIRTIO_NET)}
#: Guest RAM this module accepts: all of it below the PCI hole of the pc machine.
MAX_MEMORY = 2 << 30
#: QEMU e1000 set_rx_control: timer_mod(flush_queue_timer, now + 1000 ms); plus a margin.
RCTL_RX_HOLDOFF_S = 1.05
#: prctl(2) option: the signal the child gets when its parent dies.
PR_SET_PDEATHSIG = 1
#: How long QEMU gets between SIGTERM and SIGKILL.
STOP_GRACE_S = 3.0
#: How much of the end of QEMU's log ``log_tail`` reads to find its last line.
LOG_TAIL_BYTES = 4096


class QemuError(Exception):
    """QEMU could not be started, or is not the machine expected."""


class QemuE1000:
    """One of QEMU's e1000s, reached through its BAR0: a ``RegisterBus``.

    Writes are posted (driver/qemu/qtest.py); a read returns only after every
    earlier write has reached the device.  ``irq`` is the interrupt line the
    composition root connects to the kernel; driver/qemu/irq.py raises it
    when the device's ICR shows a cause.
    """

    def __init__(self, name: str, qtest: Qtest, bar0: int, mac: bytes, pci: PciFunction) -> None:
        self.name = name
        self.qtest = qtest
        self.bar0 = bar0
        self.mac = bytes(mac)
        self.pci = pci
        self.irq: Callable[[], None] | None = None
        #: told after every TX doorbell: QEMU transmits inside the TDT write, so a cause is set when it returns
        self.kick: Callable[[], None] | None = None
        self.rx_ready_at = 0.0  # time.monotonic() from which the receiver accepts frames
        self._read_ahead: tuple[int, dict[int, int]] | None = None  # (thread, offset -> value read already)

    @staticmethod
    def _valid(offset: int) -> bool:
        return offset % regs.REG_WIDTH == 0 and 0 <= offset < regs.BAR0_SIZE

    def read_ahead(self, values: dict[int, int] | None) -> None:
        """Registers read already, in the poller's pipelined batch, for the calling thread's next reads of them.

        Each is served once, to this thread only, and all are dropped on the
        next write to the device: a read answered from here is a read issued
        a moment earlier, after every earlier write, as a posted read would be.
        ``None`` drops what is left.
        """
        self._read_ahead = None if values is None else (threading.get_ident(), values)

    def read32(self, offset: int) -> int:
        if not self._valid(offset):
            return U32  # as the emulated NIC: an access outside the BAR reads as a master abort
        ahead = self._read_ahead
        if ahead is not None and ahead[0] == threading.get_ident():
            value = ahead[1].pop(offset, None)
            if value is not None:
                return value
        return self.qtest.readl(self.bar0 + offset)

    def write32(self, offset: int, value: int) -> None:
        if not self._valid(offset):
            return
        self._read_ahead = None
        self.qtest.writel(self.bar0 + offset, value & U32)
        if offset == regs.RCTL:
            self.rx_ready_at = time.monotonic() + RCTL_RX_HOLDOFF_S
        elif offset == regs.TDT and self.kick is not None:
            self.kick()

    def wait_rx_ready(self) -> None:
        """Sleep until the one-second receive hold-off armed by the last RCTL write has passed."""
        delay = self.rx_ready_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)


class QemuMachine:
    """One QEMU process with ``nics`` e1000s and ``memory_size`` bytes of RAM shared with us (``ram``).

    Nothing of it has a name in a file system: RAM, firmware and QEMU's log
    are memfds passed down as ``/proc/self/fd/N`` (or as stdout/stderr), the
    qtest channel and the cables are sockets.  Whichever way the two
    processes end, no file is left behind.
    """

    def __init__(
        self,
        nics: Sequence[QemuNicSpec],
        memory_size: int = 64 << 20,
        binary: str = QEMU_BINARY,
        timeout_s: float = 10.0,
    ) -> None:
        problem = _spec_problem(nics, memory_size)
        if problem is not None:
            for nic in nics:  # the cable sockets are ours to close, whatever happens
                nic.sock.close()
            raise ValueError(problem)
        self.specs = list(nics)
        self.ports = [n.local_port for n in nics]  # where QEMU receives, one per NIC
        self.rcvbuf = min(rcvbuf_of(n.sock) for n in nics)  # the smallest receive buffer of any cable end
        self.cables = CableProbe(n.sock for n in nics)  # "does a frame wait for QEMU?" (closed with us)
        self.memory_size = memory_size
        self.process: subprocess.Popen[bytes] | None = None
        self.qtest: Qtest | None = None
        self.nics: dict[str, QemuE1000] = {}
        self.virtio: dict[str, QemuVirtioNet] = {}  # the virtio-net-pci NICs (model VIRTIO_NET)
        self._fds: list[int] = []  # memfds: RAM, firmware, log
        self._ram_fd = -1
        self._log_fd = -1
        self._ram_map: mmap.mmap | None = None
        self._finalizer = weakref.finalize(self, _stop, [None])
        try:
            self.ram = self._map_ram()
            self._launch(binary, timeout_s)
            self._probe()
        except BaseException:
            self.close()
            raise

    @property
    def connection(self) -> Qtest:
        """The qtest connection (raises once the machine is closed)."""
        if self.qtest is None:
            raise QemuError("the QEMU machine is closed")
        return self.qtest

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def _memfd(self, what: str, content: bytes = b"", size: int = 0) -> int:
        fd = os.memfd_create(f"nicsb-{what}-{os.getpid()}", os.MFD_CLOEXEC)
        self._fds.append(fd)
        if content:
            os.write(fd, content)
        if size:
            os.ftruncate(fd, size)
        return fd

    def _map_ram(self) -> npt.NDArray[np.uint8]:
        self._ram_fd = self._memfd("ram", size=self.memory_size)
        self._ram_map = mmap.mmap(self._ram_fd, self.memory_size)
        return np.frombuffer(self._ram_map, dtype=np.uint8)

    def _launch(self, binary: str, timeout_s: float) -> None:
        firmware = self._memfd("bios", halting_firmware())
        self._log_fd = self._memfd("log")
        ours, theirs = socket.socketpair()
        try:
            argv = qemu_argv(binary, Path(f"/proc/self/fd/{firmware}"), self._ram_fd, self.memory_size,
                             theirs.fileno(), self.specs)  # fmt: skip
            self.process = subprocess.Popen(
                argv,
                pass_fds=(self._ram_fd, firmware, theirs.fileno(), *(n.sock.fileno() for n in self.specs)),
                stdin=subprocess.DEVNULL,
                stdout=self._log_fd,
                stderr=self._log_fd,
                start_new_session=True,  # the terminal's Ctrl-C goes to us; we stop QEMU in order
                preexec_fn=_die_with_parent,
            )
        except BaseException as err:
            ours.close()
            if isinstance(err, FileNotFoundError):
                raise QemuError(f"{binary} is not installed (Debian package qemu-system-x86)") from None
            raise
        finally:
            theirs.close()
            for nic in self.specs:  # QEMU holds the cable sockets now (and self.cables a duplicate of each)
                nic.sock.close()
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _stop, [self.process])
        self.qtest = Qtest(ours, timeout_s)

    def _probe(self) -> None:
        """Find every NIC in its slot, place its BARs and enable it (the first qtest answer is the handshake)."""
        assert self.qtest is not None
        pci = PciConfig(self.qtest)
        try:
            found = {f.device: f for f in pci.scan()}
        except QtestError as err:
            raise QemuError(f"QEMU did not start: {self.log_tail() or err}") from None
        for i, spec in enumerate(self.specs):
            vendor, device = PCI_IDS[spec.model]
            fn = found.get(FIRST_NIC_SLOT + i)
            if fn is None or (fn.vendor, fn.device_id) != (vendor, device):
                raise QemuError(f"expected {spec.model} ({vendor:04x}:{device:04x}) in slot {FIRST_NIC_SLOT + i} "
                                f"for {spec.name}, found {fn and f'{fn.vendor:04x}:{fn.device_id:04x}'}")  # fmt: skip
            base = BAR0_BASE + i * BAR_WINDOW
            if spec.model == VIRTIO_NET:
                try:
                    transport = VirtioPciTransport(self.qtest, pci, fn, base, BAR_WINDOW)
                except VirtioTransportError as err:
                    raise QemuError(str(err)) from None
                self.virtio[spec.name] = QemuVirtioNet(spec.name, transport, spec.mac, fn)
                continue
            if pci.bar_size(fn) != regs.BAR0_SIZE:
                raise QemuError(f"{fn.bdf}: BAR0 is not {regs.BAR0_SIZE} bytes")
            pci.enable(fn, base)
            self.nics[spec.name] = QemuE1000(spec.name, self.qtest, base, spec.mac, fn)
        self.qtest.flush()

    def log_tail(self) -> str:
        """The last line QEMU wrote to stdout or stderr ("" if none)."""
        if self._log_fd < 0:
            return ""
        size = os.fstat(self._log_fd).st_size
        tail = min(size, LOG_TAIL_BYTES)
        text = os.pread(self._log_fd, tail, size - tail).decode(errors="replace")
        lines = text.strip().splitlines()
        return lines[-1] if lines else ""

    def log_size(self) -> int:
        """Bytes QEMU has written to stdout and stderr so far (a mark for ``log_since``)."""
        return os.fstat(self._log_fd).st_size if self._log_fd >= 0 else 0

    def log_since(self, mark: int) -> str:
        """What QEMU wrote to stdout and stderr after ``mark`` (its error reports, e.g. virtio_error's)."""
        if self._log_fd < 0:
            return ""
        size = os.fstat(self._log_fd).st_size
        return os.pread(self._log_fd, max(0, size - mark), mark).decode(errors="replace") if size > mark else ""

    def wait_rx_ready(self) -> None:
        """Wait out the receive hold-off of every NIC (see ``QemuE1000.wait_rx_ready``)."""
        for nic in self.nics.values():
            nic.wait_rx_ready()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def close(self) -> None:
        """Stop QEMU (SIGTERM, then SIGKILL after a grace period), close the connection, drop the memfds."""
        if self.qtest is not None:
            self.qtest.close()
            self.qtest = None
        self._finalizer()  # stops the process, once
        for nic in self.specs:
            nic.sock.close()
        self.cables.close()
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()
        self._log_fd = -1
        if self._ram_map is not None:
            with contextlib.suppress(BufferError):  # numpy views of the RAM remain: it goes with the last of them
                self._ram_map.close()
            self._ram_map = None

    def __enter__(self) -> QemuMachine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _spec_problem(nics: Sequence[QemuNicSpec], memory_size: int) -> str | None:
    """Why these NICs and this much RAM make no machine (None if they do)."""
    if not nics:
        return "a QEMU machine needs at least one NIC"
    if len({n.name for n in nics}) != len(nics):
        return "NIC names must be unique"
    if not 0 < memory_size <= MAX_MEMORY:
        return f"QEMU guest RAM must be at most {MAX_MEMORY >> 20} MiB, got {memory_size}"
    return None


def _stop(process_box: list[subprocess.Popen[bytes] | None]) -> None:
    process = process_box[0]
    if process is not None and process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent dies (Linux prctl PR_SET_PDEATHSIG)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
