"""The interrupt line of QEMU's e1000s: poll ICR over qtest and raise ``irq`` on a cause.

QEMU signals the e1000's interrupt as a level on INTx, which without firmware
is routed nowhere a qtest client can see cheaply (the PIIX3 PIRQ routers are
disabled at reset).  ICR carries the same information: every cause sets a
bit there whatever IMS says (QEMU hw/net/e1000.c ``set_interrupt_cause``),
and a read returns and clears it (``mac_icr_read``; manual 13.4.17).  So a
thread reads the ICR of every NIC in one pipelined round trip and calls the
NIC's ``irq`` when a cause is set, as the emulated NIC's threaded engine
calls it from its poller.

Every qtest round trip is a wait for QEMU, so a poll does in one what an
interrupt handler would do in three: the same pipelined batch that reads
ICR reads each NIC's TDH and RDH right after it, and a handler's first read
of those registers is answered from there (``QemuE1000.read_ahead``).  The
value is what a read issued at that point would return: later than the ICR
read, so any completion after it sets a cause again and is seen by the next
poll.  A doorbell write wakes a sleeping poller at once (``QemuE1000.kick``),
so the first poll after a burst does not wait out an idle back-off.

``drain`` answers "is anything still in flight?" for callers that must know
(the pingpong demo's idle check).  Within QEMU a frame is either still in a
UDP socket's receive queue (``waiting``: driver/qemu/loopback.py
``CableProbe``) or already placed, with its cause in ICR: QEMU's main loop
handles socket reads and qtest commands on one thread, and TX runs inside
the TDT write.  No frame waiting followed by an ICR read of zero on every
NIC (the read also flushes every posted doorbell) therefore means nothing is
left, except frames QEMU cannot take (a full RX ring), which leave the
tenant work to do.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Protocol, Self

from driver.qemu.machine import QemuE1000
from driver.qemu.qtest import Qtest
from ring import regs

#: Registers a handler reads first (the kernel's reap reads the ring heads), read ahead with ICR.
READ_AHEAD = (regs.TDH, regs.RDH)


def nothing_waits() -> bool:
    return False


class Kicked(Protocol):
    """A device whose doorbell writes wake the poller (``kick``, set by the poller, called after a doorbell)."""

    kick: Callable[[], None] | None


class CausePoller(ABC):
    """A thread that polls interrupt causes over qtest and runs the handlers; ``drain`` waits for quiet.

    A subclass says what one poll reads (``poll_once``: e1000's ICR here,
    virtio's ISR in driver/qemu/virtio_irq.py); the thread's back-off, the
    doorbell wake-up and the drain are the same for every device.
    ``waiting``: whether a frame waits on a cable for QEMU to take it in
    (``QemuMachine.cables.waiting``); without it only the causes are looked at.
    """

    def __init__(
        self,
        qtest: Qtest,
        kicked: Sequence[Kicked],
        waiting: Callable[[], bool] = nothing_waits,
        min_sleep_s: float = 50e-6,
        max_sleep_s: float = 1e-3,
    ) -> None:
        self.qtest = qtest
        self.waiting = waiting
        self.min_sleep_s = min_sleep_s
        self.max_sleep_s = max_sleep_s
        self.rounds = 0
        self.interrupts = 0  # handler calls made
        self.error: Exception | None = None  # why the thread stopped (QEMU went away, a handler failed)
        self._poll_lock = threading.Lock()  # one poll at a time: a cause read and its handlers belong together
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._draining = 0  # drains in progress: they poll, the thread need not
        self._thread = threading.Thread(target=self._run, name="qemu-irq", daemon=True)
        self._kicked = list(kicked)
        for dev in self._kicked:
            dev.kick = self._wake.set

    @abstractmethod
    def poll_once(self) -> int:
        """Read every device's cause and run the handler of each with one; return how many were busy."""

    def _run(self) -> None:
        sleep = self.min_sleep_s
        while not self._stop.is_set():
            if self._draining:
                self._stop.wait(self.max_sleep_s)
                continue
            try:
                busy = self.poll_once()
            except Exception as err:  # kept for drain() to raise in the caller's thread
                if not self._stop.is_set():
                    self.error = err
                return
            if busy:
                sleep = self.min_sleep_s
            elif self._wake.wait(sleep):  # a doorbell: poll again now, and soon after
                self._wake.clear()
                sleep = self.min_sleep_s
            else:
                sleep = min(sleep * 2, self.max_sleep_s)

    def drain(self, timeout_s: float = 5.0) -> bool:
        """Wait until no frame waits on a cable and no NIC shows a cause; False if ``timeout_s`` passed first.

        While frames wait on a cable QEMU has work the drain cannot speed up,
        so it sleeps instead of polling (a qtest command costs QEMU's one
        thread as much as a frame does); the poller thread holds off
        meanwhile.  A poll that found a cause is followed by another at once
        (the handler may have rung a doorbell).
        """
        if self.error is not None:
            raise self.error
        deadline = time.monotonic() + timeout_s
        self._draining += 1
        try:
            while True:
                frames_wait = self.waiting()  # first: a frame QEMU takes in after this shows in the ICR read below
                busy = 0 if frames_wait else self.poll_once()
                if not frames_wait and not busy:
                    return True
                if time.monotonic() >= deadline:
                    return False
                if not busy:
                    time.sleep(self.min_sleep_s)
        finally:
            self._draining -= 1

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        for dev in self._kicked:
            dev.kick = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class IrqPoller(CausePoller):
    """Polls ICR of QEMU's e1000s ``nics`` on its own thread.

    ``read_ahead``: the registers read with each ICR for the handlers (none:
    every handler read is a round trip of its own, as before the read-ahead).
    """

    def __init__(
        self,
        qtest: Qtest,
        nics: Sequence[QemuE1000],
        waiting: Callable[[], bool] = nothing_waits,
        min_sleep_s: float = 50e-6,
        max_sleep_s: float = 1e-3,
        read_ahead: Sequence[int] = READ_AHEAD,
    ) -> None:
        super().__init__(qtest, nics, waiting, min_sleep_s, max_sleep_s)
        self.nics = list(nics)
        self.read_ahead = tuple(read_ahead)
        self._reads = [nic.bar0 + offset for nic in self.nics for offset in (regs.ICR, *self.read_ahead)]

    def poll_once(self) -> int:
        """Read every ICR and run the handler of each NIC with a cause; return how many had one."""
        with self._poll_lock:
            values = self.qtest.readl_many(self._reads)
            self.rounds += 1
            busy = 0
            per_nic = 1 + len(self.read_ahead)
            for i, nic in enumerate(self.nics):
                row = values[i * per_nic : (i + 1) * per_nic]
                if not row[0]:
                    continue
                busy += 1
                if nic.irq is not None:
                    self.interrupts += 1
                    nic.read_ahead(dict(zip(self.read_ahead, row[1:], strict=True)))
                    try:
                        nic.irq()
                    finally:
                        nic.read_ahead(None)
            return busy
