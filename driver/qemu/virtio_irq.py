"""The interrupt line of QEMU's virtio-net devices: poll each ISR byte over qtest and raise ``irq`` when set.

QEMU's virtio-pci signals a used-buffer notification by setting bit 0 of
the ISR status and, with MSI-X disabled, raising INTx (virtio 1.2 §4.1.4.5;
QEMU hw/virtio/virtio.c ``virtio_notify`` -> ``virtio_irq``), which without
firmware reaches nothing a qtest client sees cheaply, as for the e1000
(driver/qemu/irq.py).  The ISR byte carries the same fact and a read clears
it, so a thread reads every NIC's ISR in one pipelined round trip and calls
the NIC's ``irq`` when a bit is set; the bits are also kept in the NIC's
InterruptStatus view (``QemuVirtioMmio.latch_isr``).  QEMU sets the bit only
while the driver asks for notifications (the avail ring's flags: the
kernel's shadow ring and the tenant's driver leave them 0).

Quiet, for ``drain``, also needs transmit work to be over: QEMU's
virtio-net transmits in a bottom half scheduled by the notify (hw/net/
virtio-net.c ``virtio_net_handle_tx_bh``), so a notify's chains may still
wait when the next qtest command is answered.  A NIC whose transmitq1 has
chains QEMU has not returned (``QemuVirtioMmio.tx_busy``, read from the
shared RAM) counts as busy until it has.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from driver.qemu.irq import CausePoller, nothing_waits
from driver.qemu.qtest import Qtest
from driver.qemu.virtio_mmio import QemuVirtioMmio


class IsrPoller(CausePoller):
    """Polls the ISR of QEMU's virtio-net devices ``nics`` (behind their virtio-mmio adapters) on its own thread."""

    def __init__(
        self,
        qtest: Qtest,
        nics: Sequence[QemuVirtioMmio],
        waiting: Callable[[], bool] = nothing_waits,
        min_sleep_s: float = 50e-6,
        max_sleep_s: float = 1e-3,
    ) -> None:
        super().__init__(qtest, nics, waiting, min_sleep_s, max_sleep_s)
        self.nics = list(nics)
        self._reads = [nic.transport.isr_address for nic in self.nics]

    def poll_once(self) -> int:
        """Read every ISR, run the handler of each NIC with a bit set; busy also counts unfinished transmit work."""
        with self._poll_lock:
            busy_tx = [nic.tx_busy() for nic in self.nics]  # before the ISR read: work done after it sets a bit
            values = self.qtest.readb_many(self._reads)
            self.rounds += 1
            busy = 0
            for nic, isr, tx in zip(self.nics, values, busy_tx, strict=True):
                if isr:
                    nic.latch_isr(isr)
                    if nic.irq is not None:
                        self.interrupts += 1
                        nic.irq()
                busy += bool(isr) or tx
            return busy
