"""The head registers' read (``E1000.read32`` answers TDH/RDH without the device lock): the same answers as
every other register read, the BAR's rules unchanged around them."""

from __future__ import annotations

import threading

from device.e1000 import ALL_ONES, E1000
from ring import regs
from ring.memory import PhysicalMemory

QUEUES = 4


def device() -> E1000:
    return E1000("n", PhysicalMemory(1 << 20, 1 << 16), bytes.fromhex("020000000001"), queues=QUEUES)


def heads() -> list[int]:
    return [regs.queue_reg(base, q) for base in (regs.TDH, regs.RDH) for q in range(QUEUES)]


def test_every_head_reads_its_register_word() -> None:
    dev = device()
    for i, offset in enumerate(heads()):
        dev.write32(offset, 0x1_0000 + 3 * i + 1)  # heads are 16 bits: the high bits are dropped on write
    for i, offset in enumerate(heads()):
        assert dev.read32(offset) == dev.reg(offset) == 3 * i + 1
    dev.write32(regs.CTRL, regs.CTRL_RST)
    assert [dev.read32(offset) for offset in heads()] == [0] * len(heads())


def test_offsets_beside_a_head_keep_the_bar_rules() -> None:
    dev = device()
    dev.write32(regs.TDH, 5)
    before = dev.counters.bad_register_access
    assert [dev.read32(regs.TDH + d) for d in (1, 2, 3)] == [ALL_ONES] * 3  # unaligned: a master abort
    assert dev.counters.bad_register_access == before + 3
    assert dev.read32(regs.queue_reg(regs.TDH, QUEUES)) == 0  # a queue this device lacks: a plain register


def test_a_head_reads_while_another_thread_holds_the_device_lock() -> None:
    dev = device()
    dev.write32(regs.RDH, 7)
    read: list[int] = []
    with dev.lock:  # the engines hold it for a whole burst; the interrupt handler's head read does not wait
        reader = threading.Thread(target=lambda: read.append(dev.read32(regs.RDH)))
        reader.start()
        reader.join(timeout=10)
    assert read == [7]
