"""The interrupt line of QEMU's e1000s: poll ICR over qtest and raise ``irq`` on a cause.

QEMU signals the e1000's interrupt as a level on INTx, which without firmware
is routed nowhere a qtest client can see cheaply (the PIIX3 PIRQ routers are
disabled at reset).  ICR carries the same information: every cause sets a
bit there whatever IMS says (QEMU hw/net/e1000.c ``set_interrupt_cause``),
and a read returns and clears it (``mac_icr_read``; manual 13.4.17).  So a
thread reads the ICR of every NIC in one pipelined round trip and calls the
NIC's ``irq`` when a cause is set, as the emulated NIC's threaded engine
calls it from its poller.

``drain`` answers "is anything still in flight?" for callers that must know
(the pingpong demo's idle check).  Within QEMU a frame is either still in a
UDP socket's receive queue (read with driver/qemu/loopback.py ``udp_backlog``)
or already placed, with its cause in ICR: QEMU's main loop handles socket
reads and qtest commands on one thread, and TX runs inside the TDT write.
A backlog of zero followed by an ICR read of zero on every NIC (the read
also flushes every posted doorbell) therefore means nothing is left, except
frames QEMU cannot take (a full RX ring), which leave the tenant work to do.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from driver.qemu.loopback import udp_backlog
from driver.qemu.machine import QemuE1000
from driver.qemu.qtest import Qtest
from ring import regs


class IrqPoller:
    """Polls ICR of ``nics`` on its own thread; ``drain`` waits until the machine is quiet."""

    def __init__(
        self,
        qtest: Qtest,
        nics: Sequence[QemuE1000],
        ports: Sequence[int] = (),
        min_sleep_s: float = 50e-6,
        max_sleep_s: float = 1e-3,
    ) -> None:
        self.qtest = qtest
        self.nics = list(nics)
        self.ports = list(ports)
        self.min_sleep_s = min_sleep_s
        self.max_sleep_s = max_sleep_s
        self.rounds = 0
        self.interrupts = 0  # handler calls made
        self.error: Exception | None = None  # why the thread stopped (QEMU went away, a handler failed)
        self._icr = [nic.bar0 + regs.ICR for nic in self.nics]
        self._poll_lock = threading.Lock()  # one poll at a time: an ICR read and its handlers belong together
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="qemu-irq", daemon=True)

    def poll_once(self) -> int:
        """Read every ICR and run the handler of each NIC with a cause; return how many had one."""
        with self._poll_lock:
            causes = self.qtest.readl_many(self._icr)
            self.rounds += 1
            busy = 0
            for nic, cause in zip(self.nics, causes, strict=True):
                if cause:
                    busy += 1
                    if nic.irq is not None:
                        self.interrupts += 1
                        nic.irq()
            return busy

    def _run(self) -> None:
        sleep = self.min_sleep_s
        while not self._stop.is_set():
            try:
                busy = self.poll_once()
            except Exception as err:  # kept for drain() to raise in the caller's thread
                if not self._stop.is_set():
                    self.error = err
                return
            if busy:
                sleep = self.min_sleep_s
            else:
                time.sleep(sleep)
                sleep = min(sleep * 2, self.max_sleep_s)

    def drain(self, timeout_s: float = 5.0) -> bool:
        """Wait until no frame waits in a socket and no NIC shows a cause; False if ``timeout_s`` passed first."""
        if self.error is not None:
            raise self.error
        deadline = time.monotonic() + timeout_s
        while True:
            if udp_backlog(self.ports) == 0 and self.poll_once() == 0:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(self.min_sleep_s)

    def start(self) -> IrqPoller:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def __enter__(self) -> IrqPoller:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
