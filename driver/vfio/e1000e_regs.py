"""What the 82574L (QEMU's e1000e) needs beyond ring/regs.py: its PCI IDs, MDIC fields and the PHY's BMCR.

The 82574L keeps the 8254x register offsets and legacy descriptor formats
that ring/regs.py and ring/descriptors.py declare (82574 GbE Controller
Datasheet, section 10 "Programming Interface": CTRL, STATUS, ICR/IMS/IMC,
RCTL/TCTL, RDBAL..RDT, TDBAL..TDT, RAL0/RAH0 at the same addresses; legacy
TX descriptors when CMD.DEXT = 0, legacy RX descriptors while
RFCTL.EXTEN = 0).  What the sandbox's emulated e1000 never needed is the
PHY: the lab receives what it sends through PHY loopback, set in the PHY's
control register through MDIC.

- MDIC (0x00020): PCI/PCI-X Family manual 317453-006, 13.4.7 "MDI Control
  Register", the same layout on the 82574: DATA 15:0, REGADD 20:16, PHYADD
  25:21, OP 27:26 (01 write, 10 read), R (ready) 28, I 29, E (error) 30.
  The 82574's internal PHY answers at address 1 (QEMU's e1000e sets E for
  any other address, hw/net/e1000e_core.c e1000e_set_mdic).
- PHY register 0, the control register (BMCR): IEEE 802.3 clause 22.2.4.1;
  bit 14 is loopback.  QEMU's e1000e hands every transmitted frame straight
  back to its own receive path while it is set (e1000e_tx_pkt_send).
"""

from __future__ import annotations

#: The 82574L's PCI device ID (Linux drivers/net/ethernet/intel/e1000e/hw.h, E1000_DEV_ID_82574L);
#: the vendor is driver/pci.py's VENDOR_INTEL.
PCI_DEVICE_82574L = 0x10D3

# -- MDIC fields (13.4.7) ---------------------------------------------------------------------
MDIC_DATA_MASK = 0xFFFF
MDIC_REG_SHIFT = 16
MDIC_PHY_SHIFT = 21
MDIC_OP_WRITE = 1 << 26
MDIC_OP_READ = 2 << 26
MDIC_READY = 1 << 28
MDIC_ERROR = 1 << 30
#: The 82574's internal PHY.
PHY_ADDRESS = 1

# -- PHY registers (IEEE 802.3 clause 22) ------------------------------------------------------
PHY_BMCR = 0  # basic mode control register
BMCR_FULL_DUPLEX = 1 << 8
BMCR_SPEED_1000 = 1 << 6  # speed select, most significant bit (with bit 13 clear: 1000 Mb/s)
BMCR_LOOPBACK = 1 << 14


def mdic_write(reg: int, data: int) -> int:
    """The MDIC value that writes ``data`` into PHY register ``reg``."""
    return (data & MDIC_DATA_MASK) | (reg << MDIC_REG_SHIFT) | (PHY_ADDRESS << MDIC_PHY_SHIFT) | MDIC_OP_WRITE


def mdic_read(reg: int) -> int:
    """The MDIC value that reads PHY register ``reg`` (the data arrives in bits 15:0 with READY)."""
    return (reg << MDIC_REG_SHIFT) | (PHY_ADDRESS << MDIC_PHY_SHIFT) | MDIC_OP_READ
