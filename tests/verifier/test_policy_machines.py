"""The kernel's documented configurations: RCTL follows the policy's RX buffer size, the accelerator can be off
per machine, and a pin over physically scattered frames covers exactly those frames."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from ring import regs
from ring.descriptors import TX_DESC, TXD_CMD_EOP
from ring.memory import PAGE_SIZE, PhysicalMemory
from verifier.kernel import Kernel
from verifier.modes.protection import Protection
from verifier.nic_control import rctl_for
from verifier.pins import Access, Pin, PinTable
from verifier.rules.checks import check_tx
from verifier.rules.policy import POLICIES


def test_rctl_programs_the_buffer_size_the_verifier_checks() -> None:
    assert rctl_for(2048) == regs.RCTL_EN | regs.RCTL_BAM | regs.RCTL_SECRC  # the default, as ever
    for size in (4096, 8192, 16384):
        rctl = rctl_for(size)
        code = (rctl & regs.RCTL_BSIZE_MASK) >> regs.RCTL_BSIZE_SHIFT
        assert regs.RCTL_BSIZE_BYTES[(code, bool(rctl & regs.RCTL_BSEX))] == size
        assert rctl & regs.RCTL_LPE
    with pytest.raises(ValueError, match="no 3000-byte"):
        rctl_for(3000)


def test_jumbo_policy_steps_the_two_frame_fast_paths_aside() -> None:
    jumbo = POLICIES["jumbo"]
    assert jumbo.tx_fast_path is None and jumbo.rx_buffer_size > PAGE_SIZE
    assert POLICIES["default"].tx_fast_path is not None


def test_a_kernel_without_accelerators_opens_numpy_only_queues() -> None:
    memory = PhysicalMemory(8 << 20, 1 << 20, seed=1)
    kernel = Kernel(memory, Protection.VERIFIER, accelerators=False)
    assert not kernel.accelerators


def test_a_pin_over_scattered_frames_covers_exactly_them() -> None:
    """A real mmap's pages sit in scattered frames: a pin of pages in frames 1030 and 1032 must not pin 1031."""
    pins = PinTable(tenant=1, frames=2048)
    pins.add(Pin(1, 1, 0x7F00_0000_0000, 2 * PAGE_SIZE, Access.READ, np.array([1030, 1032], dtype=np.int64)))
    assert pins.access[1030] and pins.access[1032] and not pins.access[1031]
    owners = np.full(2048, 1, dtype=np.int32)
    descs: Any = np.zeros(2, dtype=TX_DESC)
    descs["addr"], descs["length"], descs["cmd"] = (1031 * PAGE_SIZE, 1032 * PAGE_SIZE), 64, TXD_CMD_EOP
    v = check_tx(descs, pins, owners, 2048 * PAGE_SIZE, POLICIES["default"])
    assert v is not None and list(v.accepted) == [False, True]
