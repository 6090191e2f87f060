"""``E1000.mapped_word``: the heads' register words as views a kernel reads directly (the compiled reap does),
the same answers as ``read32``; no other register is handed out."""

from __future__ import annotations

from device.e1000 import E1000
from ring import regs
from tests.device.test_head_read import QUEUES, device, heads


def test_a_head_word_view_reads_what_read32_reads() -> None:
    dev = device()
    views = {offset: dev.mapped_word(offset) for offset in heads()}
    for i, offset in enumerate(heads()):
        dev.write32(offset, 0x2_0000 + 5 * i + 2)
    for offset, view in views.items():
        assert view is not None and view.shape == (1,)
        assert int(view[0]) == dev.read32(offset)
    dev.write32(regs.CTRL, regs.CTRL_RST)  # a reset writes the register file in place: the views stay right
    assert [int(v[0]) for v in views.values() if v is not None] == [0] * len(heads())


def test_no_other_register_is_mapped() -> None:
    dev: E1000 = device()
    others = [regs.STATUS, regs.ICR, regs.CTRL, regs.TDT, regs.RDT, regs.queue_reg(regs.TDH, QUEUES), regs.TDH + 2]
    assert [dev.mapped_word(offset) for offset in others] == [None] * len(others)
