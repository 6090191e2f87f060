"""Raw rings for driver tests: descriptors and buffers written straight into memory, registers by write32.

This is what a driver does below ``TxQueue``/``RxQueue``; the tests use it
to hand the device exactly the descriptors (good or hostile) they want.
Every offset comes from ring/regs.py and every layout from ring/descriptors.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from device.dma import DmaBatch
from device.e1000 import E1000
from ring import indices, regs
from ring.descriptors import DESC_SIZE, RX_DESC, TX_DESC, TXD_CMD_EOP, TXD_CMD_IFCS, TXD_CMD_RS
from ring.memory import PhysicalMemory

BUF = 2048
GOOD = TXD_CMD_EOP | TXD_CMD_IFCS | TXD_CMD_RS


class RawTx:
    """A TX ring of ``size`` descriptors and one 2 KiB buffer per slot, programmed by hand."""

    def __init__(self, dev: E1000, memory: PhysicalMemory, size: int = 16, owner: int = 7) -> None:
        self.dev, self.memory, self.size = dev, memory, size
        self.base = memory.alloc(size * DESC_SIZE, owner).phys
        self.bufs = memory.alloc(size * BUF, owner).phys
        self.ring = memory.view(self.base, size * DESC_SIZE).view(TX_DESC)
        self.tail = 0
        dev.write32(regs.TDBAL, self.base & 0xFFFF_FFFF)
        dev.write32(regs.TDBAH, self.base >> 32)
        dev.write32(regs.TDLEN, size * DESC_SIZE)
        dev.write32(regs.TDH, 0)
        dev.write32(regs.TDT, 0)

    def buf(self, slot: int) -> int:
        return self.bufs + slot * BUF

    def put(self, data: bytes = b"", cmd: int = GOOD, addr: int | None = None, length: int | None = None) -> int:
        """Write one descriptor at the tail (its bytes in the slot's buffer); return the slot."""
        slot = self.tail
        if data:
            self.memory.view(self.buf(slot), len(data))[:] = np.frombuffer(data, dtype=np.uint8)
        desc = np.zeros(1, dtype=TX_DESC)
        desc["addr"] = self.buf(slot) if addr is None else addr
        desc["length"] = len(data) if length is None else length
        desc["cmd"] = cmd
        self.ring[slot] = desc[0]
        self.tail = indices.advance(self.tail, 1, self.size)
        return slot

    def kick(self) -> None:
        self.dev.write32(regs.TDT, self.tail)

    def send(self, *frames: bytes, cmd: int = GOOD) -> None:
        for f in frames:
            self.put(f, cmd)
        self.kick()

    @property
    def head(self) -> int:
        return self.dev.reg(regs.TDH)


class RawRx:
    """An RX ring with every slot but one posted, buffers of 2 KiB, programmed by hand."""

    def __init__(self, dev: E1000, memory: PhysicalMemory, size: int = 16, owner: int = 8) -> None:
        self.dev, self.memory, self.size = dev, memory, size
        self.base = memory.alloc(size * DESC_SIZE, owner).phys
        self.bufs = memory.alloc(size * BUF, owner).phys
        self.ring = memory.view(self.base, size * DESC_SIZE).view(RX_DESC)
        self.ring["addr"] = self.bufs + np.arange(size, dtype=np.uint64) * BUF
        dev.write32(regs.RDBAL, self.base & 0xFFFF_FFFF)
        dev.write32(regs.RDBAH, self.base >> 32)
        dev.write32(regs.RDLEN, size * DESC_SIZE)
        dev.write32(regs.RDH, 0)
        dev.write32(regs.RDT, size - 1)

    def data(self, slot: int) -> bytes:
        return self.memory.view(int(self.ring["addr"][slot]), int(self.ring["length"][slot])).tobytes()


@dataclass
class DmaLog:
    """A DMA observer that keeps every batch it is shown."""

    memory: PhysicalMemory
    batches: list[DmaBatch] = field(default_factory=list)

    def __call__(self, batch: DmaBatch) -> None:
        self.batches.append(batch)

    def of(self, purpose: str) -> list[DmaBatch]:
        return [b for b in self.batches if b.purpose == purpose]

    def ranges(self, purpose: str, allowed: bool = True) -> list[tuple[int, int]]:
        """``(phys, length)`` of every access of ``purpose`` with the given verdict."""
        out = []
        for b in self.of(purpose):
            for phys, length, ok in zip(b.phys.tolist(), b.lengths.tolist(), b.allowed.tolist(), strict=True):
                if ok == allowed:
                    out.append((int(phys), int(length)))
        return out

    def assert_bounded(self) -> None:
        """No access the bus allowed ever reached outside physical memory (checked with Python ints)."""
        for b in self.batches:
            assert b.addrs.size == b.lengths.size == b.phys.size == b.allowed.size
            for phys, length, ok in zip(b.phys.tolist(), b.lengths.tolist(), b.allowed.tolist(), strict=True):
                if ok:
                    assert phys >= 0 and length >= 0 and phys + length <= self.memory.size, (b.purpose, phys, length)


def watch(*devs: E1000) -> DmaLog:
    log = DmaLog(devs[0].dma.memory)
    for dev in devs:
        dev.dma.observers.append(log)
    return log


def u8(data: bytes) -> npt.NDArray[np.uint8]:
    return np.frombuffer(data, dtype=np.uint8)
