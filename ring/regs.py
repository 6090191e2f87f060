"""Register map of the Intel 8254x family (BAR0, 128 KiB of 32-bit registers).

Offsets and bits from the PCI/PCI-X Family of Gigabit Ethernet Controllers
Software Developer's Manual (317453-006), section 13 "Register Descriptions".
Queue n of a multi-queue member (82571 and later) sits at the queue-0 offset
plus ``QUEUE_STRIDE * n``; the 8254x itself has one queue of each kind.
"""

from __future__ import annotations

from ring.descriptors import DESC_SIZE

BAR0_SIZE = 128 * 1024
REG_WIDTH = 4

# -- general (13.4) ---------------------------------------------------------
CTRL = 0x0000
STATUS = 0x0008
EECD = 0x0010
EERD = 0x0014
CTRL_EXT = 0x0018
MDIC = 0x0020
ICR = 0x00C0  # interrupt cause read (clear on read)
ITR = 0x00C4
ICS = 0x00C8
IMS = 0x00D0
IMC = 0x00D8

# -- receive (13.4.22 ...) --------------------------------------------------
RCTL = 0x0100
RDBAL = 0x2800
RDBAH = 0x2804
RDLEN = 0x2808
RDH = 0x2810
RDT = 0x2818
RDTR = 0x2820
MTA = 0x5200
RAL0 = 0x5400
RAH0 = 0x5404

# -- transmit ---------------------------------------------------------------
TCTL = 0x0400
TIPG = 0x0410
TDBAL = 0x3800
TDBAH = 0x3804
TDLEN = 0x3808
TDH = 0x3810
TDT = 0x3818
TIDV = 0x3820

QUEUE_STRIDE = 0x100  # 82571+: RDBAL1 = 0x2900, TDBAL1 = 0x3900

# -- statistics (13.7), all clear on read -----------------------------------
CRCERRS = 0x4000
MPC = 0x4010  # missed packets: no RX descriptor available
XONRXC = 0x4048  # XON received (13.7.10): the link partner let this port transmit again
XONTXC = 0x404C  # XON transmitted
XOFFRXC = 0x4050  # XOFF received: the link partner paused this port's transmitter
XOFFTXC = 0x4054  # XOFF transmitted: this port paused its partner (its receive ring was full)
GPRC = 0x4074  # good packets received
GPTC = 0x4080  # good packets transmitted
GORCL = 0x4088
GORCH = 0x408C
GOTCL = 0x4090
GOTCH = 0x4094
TORL = 0x40C0
TORH = 0x40C4
TOTL = 0x40C8
TOTH = 0x40CC
ROC = 0x40AC  # receive oversize count (13.7.36)
TPR = 0x40D0  # total packets received
TPT = 0x40D4  # total packets transmitted
STATS_FIRST = 0x4000
STATS_LAST = 0x4124

# -- CTRL bits --------------------------------------------------------------
CTRL_FD = 1 << 0
CTRL_SLU = 1 << 6  # set link up
CTRL_RST = 1 << 26  # device reset (self-clearing)
CTRL_RFCE = 1 << 27  # receive flow control: honour a PAUSE (XOFF) from the link partner (13.4.1)
CTRL_TFCE = 1 << 28  # transmit flow control: send PAUSE when the receive side has no room

# -- STATUS bits ------------------------------------------------------------
STATUS_FD = 1 << 0
STATUS_LU = 1 << 1  # link up

# -- ICR / IMS bits ---------------------------------------------------------
ICR_TXDW = 1 << 0  # transmit descriptor written back
ICR_TXQE = 1 << 1  # transmit queue empty
ICR_LSC = 1 << 2  # link status change
ICR_RXDMT0 = 1 << 4  # receive descriptor minimum threshold
ICR_RXO = 1 << 6  # receiver overrun
ICR_RXT0 = 1 << 7  # receiver timer interrupt

# -- RCTL bits (13.4.22) ----------------------------------------------------
RCTL_EN = 1 << 1
RCTL_SBP = 1 << 2
RCTL_UPE = 1 << 3  # unicast promiscuous
RCTL_MPE = 1 << 4  # multicast promiscuous
RCTL_LPE = 1 << 5  # long packet enable
RCTL_BAM = 1 << 15  # broadcast accept
RCTL_BSIZE_SHIFT = 16
RCTL_BSIZE_MASK = 0x3 << RCTL_BSIZE_SHIFT
RCTL_BSEX = 1 << 25  # buffer size extension (x16)
RCTL_SECRC = 1 << 26  # strip CRC

#: RCTL.BSIZE code -> receive buffer bytes, without and with BSEX (table 13-66).
RCTL_BSIZE_BYTES: dict[tuple[int, bool], int] = {
    (0, False): 2048,
    (1, False): 1024,
    (2, False): 512,
    (3, False): 256,
    (1, True): 16384,
    (2, True): 8192,
    (3, True): 4096,
}

# -- TCTL bits (13.4.33) ----------------------------------------------------
TCTL_EN = 1 << 1
TCTL_PSP = 1 << 3  # pad short packets

# -- RAH bits ---------------------------------------------------------------
RAH_AV = 1 << 31  # address valid

#: TDLEN and RDLEN "must be 128-byte aligned" (13.4.27, 13.4.38): bits 6:0 are ignored.
RING_LEN_ALIGN = 128
#: TDLEN/RDLEN hold the ring's length in bits 19:7 (13.4.27, 13.4.38); bits 31:20 are reserved, so the
#: longest ring is 0xFFF80 bytes: 65528 legacy descriptors.  A ring of 65536 (1 MiB) reads back as 0.
RING_LEN_MASK = 0x000F_FF80
#: The most descriptors a legacy ring can hold (RING_LEN_MASK / 16-byte descriptors).
MAX_RING_SLOTS = RING_LEN_MASK // DESC_SIZE

#: Registers that hold a queue's ring: the ones a hostile tenant would love to
#: repoint.  Offsets are for queue 0.
RX_RING_REGS = (RDBAL, RDBAH, RDLEN, RDH, RDT)
TX_RING_REGS = (TDBAL, TDBAH, TDLEN, TDH, TDT)

_NAMED = (
    "CTRL", "STATUS", "EECD", "EERD", "CTRL_EXT", "MDIC", "ICR", "ITR", "ICS", "IMS", "IMC",
    "RCTL", "RDBAL", "RDBAH", "RDLEN", "RDH", "RDT", "RDTR", "MTA", "RAL0", "RAH0", "TCTL",
    "TIPG", "TDBAL", "TDBAH", "TDLEN", "TDH", "TDT", "TIDV", "CRCERRS", "MPC", "GPRC", "GPTC",
    "GORCL", "GORCH", "GOTCL", "GOTCH", "TORL", "TORH", "TOTL", "TOTH", "ROC", "TPR", "TPT",
    "XONRXC", "XONTXC", "XOFFRXC", "XOFFTXC",
)  # fmt: skip
NAMES: dict[int, str] = {globals()[name]: name for name in _NAMED}


def queue_reg(offset: int, queue: int) -> int:
    """Offset of a per-queue register (given for queue 0) for queue ``queue``."""
    return offset + QUEUE_STRIDE * queue


def reg_name(offset: int) -> str:
    """Datasheet name of a register offset, with its queue when it has one."""
    if offset in NAMES:
        return NAMES[offset]
    for base in RX_RING_REGS + TX_RING_REGS:
        delta = offset - base
        if delta > 0 and delta % QUEUE_STRIDE == 0 and delta // QUEUE_STRIDE < 8:
            return f"{NAMES[base]}{delta // QUEUE_STRIDE}"
    return f"reg[{offset:#06x}]"
