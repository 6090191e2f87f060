"""Register map offsets per the 8254x manual, section 13; queue_reg and reg_name."""

from __future__ import annotations

import pytest

from ring import regs

DATASHEET = {
    "CTRL": 0x0000,
    "STATUS": 0x0008,
    "ICR": 0x00C0,
    "IMS": 0x00D0,
    "IMC": 0x00D8,
    "RCTL": 0x0100,
    "TCTL": 0x0400,
    "TIPG": 0x0410,
    "RDBAL": 0x2800,
    "RDBAH": 0x2804,
    "RDLEN": 0x2808,
    "RDH": 0x2810,
    "RDT": 0x2818,
    "TDBAL": 0x3800,
    "TDBAH": 0x3804,
    "TDLEN": 0x3808,
    "TDH": 0x3810,
    "TDT": 0x3818,
    "RAL0": 0x5400,
    "RAH0": 0x5404,
    "MPC": 0x4010,
    "GPRC": 0x4074,
    "GPTC": 0x4080,
    "GORCL": 0x4088,
    "GOTCL": 0x4090,
    "TPR": 0x40D0,
    "TPT": 0x40D4,
}


@pytest.mark.parametrize(("name", "offset"), sorted(DATASHEET.items()))
def test_offset(name: str, offset: int) -> None:
    assert getattr(regs, name) == offset
    assert regs.reg_name(offset) == name


def test_bar_and_alignment() -> None:
    assert regs.BAR0_SIZE == 128 * 1024
    assert regs.REG_WIDTH == 4
    assert regs.RING_LEN_ALIGN == 128
    assert all(offset % regs.REG_WIDTH == 0 for offset in regs.NAMES)
    assert len(set(regs.NAMES)) == len(regs.NAMES)  # no two names share an offset


def test_ring_register_tuples() -> None:
    assert regs.TX_RING_REGS == (0x3800, 0x3804, 0x3808, 0x3810, 0x3818)
    assert regs.RX_RING_REGS == (0x2800, 0x2804, 0x2808, 0x2810, 0x2818)


def test_control_bits() -> None:
    assert regs.CTRL_SLU == 1 << 6
    assert regs.CTRL_RST == 1 << 26
    assert regs.STATUS_LU == 1 << 1
    assert regs.RCTL_EN == 1 << 1
    assert regs.RCTL_LPE == 1 << 5
    assert regs.RCTL_SECRC == 1 << 26
    assert regs.TCTL_EN == 1 << 1
    assert regs.TCTL_PSP == 1 << 3
    assert regs.RAH_AV == 1 << 31
    assert regs.RCTL_BSIZE_BYTES[(0, False)] == 2048


def test_queue_reg() -> None:
    assert regs.queue_reg(regs.TDT, 0) == regs.TDT
    assert regs.queue_reg(regs.TDBAL, 1) == 0x3900
    assert regs.queue_reg(regs.RDBAL, 1) == 0x2900
    assert regs.queue_reg(regs.RDT, 3) == 0x2B18


@pytest.mark.parametrize(
    ("offset", "name"),
    [(0x3918, "TDT1"), (0x3900, "TDBAL1"), (0x2A10, "RDH2"), (0x3F08, "TDLEN7"), (0x2B18, "RDT3")],
)
def test_reg_name_of_queue_registers(offset: int, name: str) -> None:
    assert regs.reg_name(offset) == name


def test_reg_name_unknown() -> None:
    assert regs.reg_name(0x4000 + 0x100 * 8 + 0x18) == "reg[0x4818]"
    assert regs.reg_name(0x4018) == "reg[0x4018]"
    # queue 8 is beyond the 8 queues of the family
    assert regs.reg_name(regs.queue_reg(regs.TDT, 8)) == f"reg[{regs.TDT + 0x800:#06x}]"
