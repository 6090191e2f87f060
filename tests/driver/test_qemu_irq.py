"""The QEMU back end's interrupt path made lean: read-ahead of the ring heads, doorbell kick, cable probe.

The read-ahead changes which qtest commands go out, never what the device
does: the differential test drives the same TX bursts and RX frames through
the whole stack (tenant queues, the kernel's verifier, the poller) twice,
once with the handlers' head reads answered from the poll's read-ahead and
once with every read a round trip of its own, and requires the same bytes on
the wire, in the same order, the same frames in the tenant's hands, the same
completions and the same audit.  The other tests pin down the read-ahead's
rules (once, to the polling thread, dropped by a write) and the probe.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any, cast

import pytest

from driver.pci import PciFunction
from driver.qemu.irq import READ_AHEAD
from driver.qemu.loopback import CableProbe, cable_socket, port_of, udp_backlog
from driver.qemu.machine import QemuE1000
from driver.qemu.qtest import Qtest
from driver.tenant.rxq import RxQueue
from driver.tenant.txq import TxQueue
from ring import regs
from ring.frames import FrameBatch
from tests.conftest import MAC0, MAC1, frame, seq_frame
from tests.driver.qemu_rig import Rig, qemu_rig
from verifier.audit.memory import MemoryAudit

DEADLINE_S = 5.0


class FakeQtest:
    """Records the register accesses a QemuE1000 makes; every read answers 0xAB."""

    def __init__(self) -> None:
        self.reads: list[int] = []
        self.writes: list[tuple[int, int]] = []

    def readl(self, addr: int) -> int:
        self.reads.append(addr)
        return 0xAB

    def writel(self, addr: int, value: int) -> None:
        self.writes.append((addr, value))


def fake_nic() -> tuple[QemuE1000, FakeQtest]:
    qtest = FakeQtest()
    return QemuE1000("nic0", cast(Qtest, qtest), 0x1000_0000, MAC0, cast(PciFunction, None)), qtest


def test_a_read_ahead_value_is_served_once() -> None:
    nic, qtest = fake_nic()
    nic.read_ahead({regs.TDH: 5, regs.RDH: 7})
    assert nic.read32(regs.TDH) == 5 and nic.read32(regs.RDH) == 7 and qtest.reads == []
    assert nic.read32(regs.TDH) == 0xAB  # the second read goes to the device
    assert nic.read32(regs.STATUS) == 0xAB  # and registers never read ahead always do
    assert qtest.reads == [0x1000_0000 + regs.TDH, 0x1000_0000 + regs.STATUS]


def test_a_write_drops_the_read_ahead() -> None:
    nic, qtest = fake_nic()
    nic.read_ahead({regs.TDH: 5})
    nic.write32(regs.TDT, 3)  # QEMU transmits inside this write: TDH may have moved
    assert nic.read32(regs.TDH) == 0xAB and qtest.reads == [0x1000_0000 + regs.TDH]


def test_the_read_ahead_is_for_the_polling_thread_only() -> None:
    nic, qtest = fake_nic()
    nic.read_ahead({regs.TDH: 5})
    seen: list[int] = []
    other = threading.Thread(target=lambda: seen.append(nic.read32(regs.TDH)))
    other.start()
    other.join()
    assert seen == [0xAB] and len(qtest.reads) == 1  # another thread's read is a read of its own
    assert nic.read32(regs.TDH) == 5
    nic.read_ahead(None)
    nic.read_ahead(None)  # dropping twice is harmless


def test_the_tx_doorbell_kicks_the_poller() -> None:
    nic, _ = fake_nic()
    kicks: list[int] = []
    nic.kick = lambda: kicks.append(1)
    nic.write32(regs.RDT, 1)
    nic.write32(regs.TDT, 1)
    assert kicks == [1]


def test_the_cable_probe_sees_a_waiting_frame() -> None:
    a, b = cable_socket(), cable_socket()
    try:
        a.connect(b.getsockname())
        probe = CableProbe([b])
        try:
            assert not probe.waiting() and udp_backlog([port_of(b)]) == 0
            a.send(frame(b"x" * 50, dst=MAC0, src=MAC1))
            deadline = time.monotonic() + DEADLINE_S
            while not probe.waiting() and time.monotonic() < deadline:
                time.sleep(0.001)
            assert probe.waiting() and udp_backlog([port_of(b)]) > 0
            b.recv(65536)
            assert not probe.waiting()
        finally:
            probe.close()
        probe.close()  # idempotent
    finally:
        a.close()
        b.close()


# -- the whole stack, with and without the read-ahead ------------------------------------------


def round_trips(rig: Rig) -> list[int]:
    """A list that grows by one per qtest round trip (``execute``) of the rig's connection."""
    calls: list[int] = []
    qtest = rig.machine.connection
    inner = qtest.execute

    def counted(lines: Sequence[str]) -> list[str]:
        calls.append(len(lines))
        return inner(lines)

    qtest.execute = counted  # type: ignore[method-assign]
    return calls


def drive(read_ahead: Sequence[int]) -> dict[str, Any]:
    """TX bursts out of nic0 and frames injected into nic1, through kernel and poller; everything observable."""
    with qemu_rig(nics=2) as rig:
        kernel = rig.attach_kernel(read_ahead=read_ahead)
        poller = rig.poller
        assert poller is not None
        tx = TxQueue(kernel.spawn("alice"), "nic0", size=64)
        rx = RxQueue(kernel.spawn("bob"), "nic1", size=64)
        rig.nic("nic1").wait_rx_ready()
        calls = round_trips(rig)
        sent = [seq_frame(i, 60 + (i * 97) % 1400) for i in range(90)]
        wire: list[bytes] = []
        for start in range(0, len(sent), 30):
            burst = sent[start : start + 30]
            assert tx.tx_burst(FrameBatch.from_frames(burst)) == len(burst)
            wire += rig.wire("nic0", len(burst))
            assert poller.drain(DEADLINE_S)
        injected = [frame(bytes((i + j) & 0xFF for j in range(46 + i * 11)), dst=MAC1, src=MAC0) for i in range(40)]
        rig.inject(injected, "nic1")
        got: list[bytes] = []
        deadline = time.monotonic() + DEADLINE_S
        while len(got) < len(injected) and time.monotonic() < deadline:
            got += list(rx.rx_burst())
        assert poller.drain(DEADLINE_S)
        tx.reap()
        audit = kernel.audit
        assert isinstance(audit, MemoryAudit)
        return {
            "sent": sent,
            "wire": wire,
            "quiet": rig.quiet_wire("nic0", 0.05),
            "received": got,
            "tx_completed": tx.stats.completed,
            "tx_refused": tx.stats.refused,
            "rx_frames": rx.stats.frames,
            "heads": [rig.nic(n).read32(r) for n in ("nic0", "nic1") for r in (regs.TDH, regs.RDH)],
            "audit": list(audit.records),
            "round_trips": len(calls),
        }


@pytest.mark.privileged
def test_read_ahead_keeps_the_wire_and_the_tenants_view_byte_exact() -> None:
    lean = drive(READ_AHEAD)
    reference = drive(())
    assert lean["wire"] == lean["sent"]  # QEMU put every frame on the cable, in order, byte for byte
    assert lean["received"] and lean["received"] == reference["received"]
    for key in ("wire", "quiet", "tx_completed", "tx_refused", "rx_frames", "heads", "audit"):
        assert lean[key] == reference[key], key


@pytest.mark.privileged
@pytest.mark.parametrize(("read_ahead", "trips"), [(READ_AHEAD, 1), ((), 2)])
def test_an_interrupt_costs_one_round_trip_with_the_read_ahead(read_ahead: Sequence[int], trips: int) -> None:
    """A TX completion: ICR and TDH in one pipelined batch, against ICR then the handler's own TDH read."""
    with qemu_rig() as rig:
        kernel = rig.attach_kernel(read_ahead=read_ahead)
        assert rig.poller is not None
        rig.poller.stop()  # this test polls by hand
        tx = TxQueue(kernel.spawn("alice"), "nic0", size=64)
        assert tx.tx_burst(FrameBatch.from_frames([seq_frame(1)])) == 1
        assert rig.wire() == [seq_frame(1)]
        calls = round_trips(rig)
        assert rig.poller.poll_once() == 1
        assert len(calls) == trips
        tx.reap()
        assert tx.stats.completed == 1  # the completion reached the user ring either way
