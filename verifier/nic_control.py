"""The kernel's driver for the NIC's control path: bring-up and queue programming.

Bring-up follows the 8254x manual's initialisation sequence (14.3-14.5):
reset with CTRL.RST, set link up (CTRL.SLU), program the receive address,
enable the receiver (RCTL: EN, BAM, SECRC, BSIZE as the policy's buffer size, 2048 by default) and the transmitter
(TCTL: EN, PSP), then program each queue's base, length, head and tail.
Only the kernel does this; tenants get a doorbell, not the control path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ring import regs
from ring.descriptors import DESC_SIZE
from ring.syscalls import RegisterBus

RX_BUFFER_SIZE = 2048
#: TIPG recommended for 802.3 copper (IPGT 10, IPGR1 8, IPGR2 6), 13.4.34.
TIPG_COPPER = 10 | (8 << 10) | (6 << 20)


@dataclass
class Nic:
    """The kernel's record of one NIC: its bus and who owns which queue."""

    name: str
    bus: RegisterBus
    mac: bytes
    queues: int
    owners: dict[tuple[str, int], int] = field(default_factory=dict)
    iommu_owner: int | None = None  # iommu mode: the tenant whose domain this device is in


def rctl_for(rx_buffer_size: int) -> int:
    """RCTL with the receive buffer size the kernel checks RX buffers over (BSIZE/BSEX, 8254x table 13-66).

    The two must agree: the device writes up to RCTL.BSIZE bytes into a buffer, and the verifier checks
    ``Policy.rx_buffer_size`` bytes of it.  A buffer longer than a standard frame (2048) is only of use for
    long packets, so RCTL.LPE goes with it (as Linux's e1000 sets LPE with a jumbo MTU).
    """
    codes = {size: code for code, size in regs.RCTL_BSIZE_BYTES.items()}
    if rx_buffer_size not in codes:
        raise ValueError(f"the 8254x has no {rx_buffer_size}-byte receive buffer (sizes: {sorted(codes)})")
    code, extended = codes[rx_buffer_size]
    rctl = regs.RCTL_EN | regs.RCTL_BAM | regs.RCTL_SECRC | (code << regs.RCTL_BSIZE_SHIFT)
    if extended:
        rctl |= regs.RCTL_BSEX
    if rx_buffer_size > RX_BUFFER_SIZE:
        rctl |= regs.RCTL_LPE
    return rctl


def bring_up(
    bus: RegisterBus,
    mac: bytes,
    interrupts: bool = False,
    rx_buffer_size: int = RX_BUFFER_SIZE,
    flow_control: bool = False,
) -> None:
    """Reset the NIC and enable its receiver (buffers of ``rx_buffer_size`` bytes) and transmitter.

    Without a trapping kernel the tenant polls (ixy and DPDK mask every
    interrupt); a trapping kernel unmasks TXDW and RXT0 so that it learns of
    completions it must write back into the tenants' rings.  ``flow_control``
    sets CTRL.RFCE and CTRL.TFCE (802.3x PAUSE, manual 3.5): the NIC pauses
    its link partner when its receive ring is full and honours the partner's
    pause, so a full ring upstream holds frames instead of missing them.
    """
    bus.write32(regs.CTRL, regs.CTRL_RST)
    bus.write32(regs.IMC, 0xFFFF_FFFF)
    if interrupts:
        bus.write32(regs.IMS, regs.ICR_TXDW | regs.ICR_RXT0)
    pause = regs.CTRL_RFCE | regs.CTRL_TFCE if flow_control else 0
    bus.write32(regs.CTRL, regs.CTRL_SLU | regs.CTRL_FD | pause)
    bus.write32(regs.RAL0, int.from_bytes(mac[:4], "little"))
    bus.write32(regs.RAH0, int.from_bytes(mac[4:6], "little") | regs.RAH_AV)
    bus.write32(regs.RCTL, rctl_for(rx_buffer_size))  # the default: BSIZE 00 = 2048
    bus.write32(regs.TIPG, TIPG_COPPER)
    bus.write32(regs.TCTL, regs.TCTL_EN | regs.TCTL_PSP)


def program_ring(bus: RegisterBus, tx: bool, queue: int, base: int, size: int) -> int:
    """Point a queue at a ring of ``size`` descriptors at ``base``; return its tail register."""
    bal, bah, rlen, head, tail = regs.TX_RING_REGS if tx else regs.RX_RING_REGS
    bus.write32(regs.queue_reg(bal, queue), base & 0xFFFF_FFFF)
    bus.write32(regs.queue_reg(bah, queue), base >> 32)
    bus.write32(regs.queue_reg(rlen, queue), size * DESC_SIZE)
    bus.write32(regs.queue_reg(head, queue), 0)
    bus.write32(regs.queue_reg(tail, queue), 0)
    return regs.queue_reg(tail, queue)
