"""The guest kernel's log as a stream (/dev/kmsg), and the VT-d fault lines in it.

The Intel IOMMU driver prints one line per DMA fault it takes from the
unit's fault recording registers (drivers/iommu/intel/dmar.c,
dmar_fault_do_one), in Linux 6.1::

    DMAR: [DMA Read NO_PASID] Request device [00:02.0] fault addr 0x7000 [fault reason 0x06] PTE Read access is not set

``fault addr`` is the page of the faulting IOVA (the fault record keeps
bits 63:12, dma_frcd_page_addr).  The VT-d fault reasons seen here (Intel
VT-d specification, 7.2.3 "Fault Reasons"): 0x04 address beyond the
guest address width, 0x05 write access not set in the page table entry,
0x06 read access not set.

The driver rate-limits these lines: one ratelimit state shared by every
fault (DEFAULT_RATELIMIT_BURST 10 per DEFAULT_RATELIMIT_INTERVAL 5 s), and
each fault interrupt spends two (the "DRHD: handling fault status" line and
the fault itself).  ``FAULT_SPACING_S`` keeps faults far enough apart that
none is dropped; QEMU's VT-d model also has a single fault recording
register, so a second fault before the driver cleared the first is lost
(primary fault overflow), another reason to take attacks one at a time.
"""

from __future__ import annotations

import errno
import os
import re
import time
from dataclasses import dataclass

KMSG = "/dev/kmsg"
#: Seconds between two faults so the driver's rate limit (10 lines / 5 s, 2 lines a fault) prints every one.
FAULT_SPACING_S = 1.3

FAULT_LINE = re.compile(
    r"DMAR: \[(?P<kind>DMA Read|DMA Write)[^\]]*\] Request device \[(?P<device>[0-9a-f]{2}:[0-9a-f]{2}\.[0-7])\] "
    r"fault addr 0x(?P<addr>[0-9a-f]+) \[fault reason 0x(?P<reason>[0-9a-f]+)\] ?(?P<text>.*)"
)

READ_NOT_SET = 0x06
WRITE_NOT_SET = 0x05
BEYOND_MGAW = 0x04  # "Access beyond MGAW"


@dataclass(frozen=True)
class DmarFault:
    """One fault the IOMMU reported: who, read or write, which page, why."""

    write: bool
    device: str  # bus:slot.function, e.g. 00:02.0
    addr: int  # page address of the faulting IOVA
    reason: int
    text: str

    @property
    def kind(self) -> str:
        return "write" if self.write else "read"

    def describe(self) -> str:
        return f"DMA {self.kind} fault at {self.addr:#x}, reason {self.reason:#04x} ({self.text})"


def parse_faults(log: str) -> list[DmarFault]:
    """Every DMAR DMA fault line in ``log`` (dmesg text or kmsg messages), in order."""
    return [
        DmarFault(m["kind"] == "DMA Write", m["device"], int(m["addr"], 16), int(m["reason"], 16), m["text"].strip())
        for m in FAULT_LINE.finditer(log)
    ]


class KernelLog:
    """New kernel messages since the last read, from /dev/kmsg (opened at its end)."""

    def __init__(self) -> None:
        self.fd = os.open(KMSG, os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(self.fd, 0, os.SEEK_END)

    def read(self) -> list[str]:
        """The messages that arrived since the last call (text only, without the kmsg prefix)."""
        out: list[str] = []
        while True:
            try:
                record = os.read(self.fd, 8192)
            except BlockingIOError:
                return out
            except OSError as err:
                if err.errno == errno.EPIPE:  # overwritten before we read it: carry on from the next one
                    continue
                raise
            _header, _, text = record.decode(errors="replace").partition(";")
            out.append(text.split("\n", 1)[0])

    def wait_faults(self, count: int, timeout_s: float) -> list[DmarFault]:
        """Read until ``count`` DMAR faults arrived or ``timeout_s`` passed; every fault seen is returned."""
        faults: list[DmarFault] = []
        deadline = time.monotonic() + timeout_s
        while True:
            faults += parse_faults("\n".join(self.read()))
            if len(faults) >= count or time.monotonic() > deadline:
                return faults
            time.sleep(0.05)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
