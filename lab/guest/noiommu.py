"""The seed's scenario on a real kernel: an e1000e under VFIO with *no* IOMMU, with and without the verifier.

Runs inside the lab VM's no-IOMMU variant (``python -m lab run --noiommu``;
lab/noiommu.py, docs/lab.md).  There the device reaches every physical
address, descriptors carry physical addresses, and the project's kernel is
the only thing between a tenant and the machine's memory:

- ``GuestPhysicalMemory`` (driver/vfio/guest_memory.py) makes the sandbox's
  physical address space the guest's own: the tenants' memory is hugepages
  at their real physical addresses, every other frame is the kernel's;
- the NIC is the 82574L in VFIO's no-IOMMU mode, its PHY looped back and
  its receiver promiscuous, so whatever it transmits comes back whole,
  whatever the first six bytes (the destination MAC) happen to be;
- the target is ``linux_banner``, the guest kernel's "Linux version ..."
  string (init/version.c), at its physical address: the start of "Kernel
  code" in /proc/iomem (the physical address of ``_text``) plus its offset
  from ``_text`` in /proc/kallsyms.  /proc/version prints the same text,
  so a frame that starts with it came out of the kernel's memory.

``leak_kernel_banner`` writes one TX descriptor naming that address.  In
mode ``none`` the doorbell reaches the device, which sends the kernel's
bytes and receives them again; in mode ``verifier`` the kernel refuses the
descriptor (``ADDR_NOT_PINNED``), audits it, and the device's TDH does not
move.
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from driver.tenant.rxq import RxQueue
from driver.tenant.txq import TxQueue
from driver.vfio.e1000e import E1000eVfio
from driver.vfio.guest_memory import IOMEM, GuestPhysicalMemory, HugepageRam
from lab.guest.world import NIC, bring_up
from ring import regs
from sandbox.demos.attack import RING, post_tx
from verifier.audit.memory import MemoryAudit
from verifier.kernel import Kernel, Process
from verifier.modes.protection import Protection

#: The tenants' DMA memory: 4 hugepages (8 MiB) of the guest's 1 GiB, each 2 MiB physically contiguous.
HUGEPAGES = 4
KALLSYMS = Path("/proc/kallsyms")
PROC_VERSION = Path("/proc/version")
#: init/version.c: the kernel's own banner, ``Linux version <release> (<builder>) (<compiler>) <version>\n``.
BANNER_SYMBOL = "linux_banner"
TEXT_SYMBOL = "_text"
POLL_S = 2.0


def kernel_symbol_phys(symbol: str, kallsyms: str | None = None, iomem: str | None = None) -> int:
    """Physical address of a kernel image symbol: "Kernel code" start + (symbol - _text).

    "Kernel code" in /proc/iomem starts at the physical address of ``_text``
    (arch/x86/kernel/setup.c, code_resource = __pa_symbol(_text)); the image
    is mapped linearly from there, so offsets within it carry over."""
    syms = KALLSYMS.read_text() if kallsyms is None else kallsyms
    addr: dict[str, int] = {}
    for name in (TEXT_SYMBOL, symbol):
        found = re.search(rf"^([0-9a-f]+) \w {re.escape(name)}$", syms, re.M)
        if found is None or int(found.group(1), 16) == 0:
            raise LookupError(f"{name} not in /proc/kallsyms, or hidden (kptr_restrict; not root?)")
        addr[name] = int(found.group(1), 16)
    text = IOMEM.read_text() if iomem is None else iomem
    code = re.search(r"^\s*([0-9a-f]+)-[0-9a-f]+ : Kernel code$", text, re.M)
    if code is None or int(code.group(1), 16) == 0:
        raise LookupError("no 'Kernel code' in /proc/iomem, or its address reads as 0 (not root?)")
    return int(code.group(1), 16) + addr[symbol] - addr[TEXT_SYMBOL]


@dataclass
class NoIommuWorld:
    """Real physical memory, the project's kernel and an 82574L in VFIO no-IOMMU mode."""

    protection: Protection
    memory: GuestPhysicalMemory
    kernel: Kernel
    nic: E1000eVfio
    audit: MemoryAudit
    tenants: dict[str, Process] = field(default_factory=dict)

    @classmethod
    def build(cls, bdf: str, protection: Protection = Protection.VERIFIER) -> NoIommuWorld:
        protection = Protection(protection)
        if protection not in (Protection.NONE, Protection.VERIFIER):
            raise ValueError(f"the no-IOMMU lab runs modes none and verifier, not {protection.value}")
        ram = HugepageRam(HUGEPAGES)
        try:
            memory = GuestPhysicalMemory(ram)
            audit = MemoryAudit()
            kernel = Kernel(memory, protection, audit)
            nic = E1000eVfio.open(bdf, noiommu=True)
        except BaseException:
            ram.close()
            raise
        try:
            # promiscuous: a leaked frame's "destination MAC" is whatever the leaked bytes begin with
            bring_up(kernel, nic, promiscuous=True)
        except BaseException:
            nic.close()
            ram.close()
            raise
        return cls(protection, memory, kernel, nic, audit)

    def spawn(self, name: str) -> Process:
        proc = self.kernel.spawn(name)
        self.tenants[name] = proc
        return proc

    def close(self) -> None:
        self.nic.close()
        self.memory.ram.close()

    def __enter__(self) -> NoIommuWorld:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class LeakResult:
    protection: Protection
    target: int  # the physical address the descriptor named
    expected: bytes  # the kernel's banner as /proc/version prints it
    received: list[bytes]  # every frame that came back through the PHY loopback
    tdh_moved: bool
    audit_reasons: list[str]

    @property
    def leaked(self) -> bool:
        return any(frame.startswith(self.expected) for frame in self.received)


def leak_kernel_banner(world: NoIommuWorld) -> LeakResult:
    """Mallory posts one TX descriptor naming the kernel's banner; what comes back through the loopback?"""
    expected = PROC_VERSION.read_bytes()
    target = kernel_symbol_phys(BANNER_SYMBOL)
    mallory = world.spawn("mallory")
    txq, rxq = TxQueue(mallory, NIC, size=RING), RxQueue(mallory, NIC, size=RING)
    tdh = world.nic.bar.read32(regs.TDH)
    post_tx(txq, target, len(expected))
    received: list[bytes] = []
    deadline = time.monotonic() + POLL_S
    while not received and time.monotonic() < deadline:
        world.nic.poll()
        batch = rxq.rx_burst()
        received += [batch.frame(i) for i in range(len(batch))]
        time.sleep(0.01)
    return LeakResult(
        protection=world.protection,
        target=target,
        expected=expected,
        received=received,
        tdh_moved=world.nic.bar.read32(regs.TDH) != tdh,
        audit_reasons=[str(r["reason"]) for r in world.audit.records],
    )


def main() -> int:
    """``python3 -m lab.guest.noiommu`` in the no-IOMMU lab: the leak, with and without the verifier."""
    from lab.qemu import E1000E_BDF

    for protection in (Protection.NONE, Protection.VERIFIER):
        with NoIommuWorld.build(E1000E_BDF, protection) as world:
            result = leak_kernel_banner(world)
        first = result.received[0][: len(result.expected)] if result.received else b""
        print(f"{protection.value:9s} descriptor -> phys {result.target:#x} ({BANNER_SYMBOL}): "
              f"TDH moved {result.tdh_moved}, {len(result.received)} frame(s) back, "
              f"audit {result.audit_reasons or '-'}")  # fmt: skip
        print(f"          first bytes back: {first[:96]!r}")
        print(f"          kernel bytes leaked: {result.leaked}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
